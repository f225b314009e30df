"""Sentence pairs for character-level translation: normalisation, vocabularies, padded id arrays.

A data file holds one pair a line, columns separated by tabs (the homework's files:
`english<TAB>spanish<TAB>42`). Which column is the source and which the target is configurable, as
is the normalisation, so any tab-separated file of string pairs in any script can be used.
"""
import dataclasses
import functools
import json
import os
import re
import unicodedata

import numpy as np

from hw2 import records
from hw2.errors import UserError

PAD, SOS, EOS, UNK = 0, 1, 2, 3
NUM_SPECIAL = 4
UNK_CHAR = '\ufffd'  # How an UNK id is shown in a decoded string.


def normalize_homework(text):
  """The homework's normalisation: lower-case, strip accents (NFD, drop combining marks), a space
  before each of . ! ?, every other character outside a-z a space, spaces collapsed, stripped."""
  text = ''.join(c for c in unicodedata.normalize('NFD', text.lower().strip())
                 if unicodedata.category(c) != 'Mn')
  text = re.sub(r'([.!?])', r' \1', text)
  text = re.sub(r'[^a-z.!?]+', ' ', text)
  return text.strip()


def normalize_none(text):
  """Only Unicode NFC (so that one character is one code point where possible)."""
  return unicodedata.normalize('NFC', text)


NORMALIZERS = {'homework': normalize_homework, 'none': normalize_none}


def read_pairs(path, source_column, target_column, normalize):
  """Reads (source, target) string pairs from a tab-separated file.

  Args:
    path: the file.
    source_column, target_column: 0-based column indices.
    normalize: a function str -> str applied to both sides.
  Returns:
    list of (source, target) after normalisation.
  Raises:
    UserError: missing or unreadable file, text that is not UTF-8, a line with too few
      tab-separated columns, or no pairs at all.
  """
  if not os.path.isfile(path):
    what = 'is a folder, not a file' if os.path.isdir(path) else 'not found'
    raise UserError(f'data file {what}: {path}')
  try:
    with open(path, 'rb') as f:
      raw_lines = f.read().splitlines()
  except OSError as e:
    raise UserError(f'cannot read data file {path}: {e.strerror}') from None
  pairs = []
  needed = max(source_column, target_column) + 1
  for line_number, raw in enumerate(raw_lines, 1):
    try:
      line = raw.decode('utf-8')
    except UnicodeDecodeError as e:
      raise UserError(f'{path}:{line_number}: not UTF-8 text (byte 0x{raw[e.start]:02x} at '
                      f'column {e.start + 1}); convert the file to UTF-8, e.g. with iconv') from None
    if line_number == 1:
      line = line.removeprefix('\ufeff')  # A byte order mark is no character of the text.
    if not line.strip():
      continue
    columns = line.split('\t')
    if len(columns) < needed:
      problem = 'has no tab' if len(columns) == 1 else f'has {len(columns)} columns'
      raise UserError(f'{path}:{line_number}: line {problem}; expected at least {needed} '
                      f'tab-separated columns (source column {source_column}, target column '
                      f'{target_column})')
    pairs.append((normalize(columns[source_column]), normalize(columns[target_column])))
  if not pairs:
    raise UserError(f'{path} holds no sentence pairs (the file is empty or blank)')
  return pairs


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Characters <-> ids. Ids 0..3 are PAD, SOS, EOS, UNK; characters start at 4."""
  chars: tuple

  @classmethod
  def from_texts(cls, texts):
    return cls(tuple(sorted({c for t in texts for c in t})))

  @property
  def size(self):
    return NUM_SPECIAL + len(self.chars)

  def encode(self, text):
    """Ids of the characters of `text`; unseen characters map to UNK."""
    index = self._index
    return [index.get(c, UNK) for c in text]

  def unknown_chars(self, text):
    return sorted({c for c in text if c not in self._index})

  def decode(self, ids):
    """String of `ids` up to the first EOS (PAD and SOS skipped, UNK shown as U+FFFD)."""
    out = []
    for i in ids:
      i = int(i)
      if i == EOS:
        break
      if i >= NUM_SPECIAL:
        out.append(self.chars[i - NUM_SPECIAL])
      elif i == UNK:
        out.append(UNK_CHAR)
    return ''.join(out)

  @functools.cached_property
  def _index(self):
    return {c: i + NUM_SPECIAL for i, c in enumerate(self.chars)}


def vocabularies_json(source, target):
  """The text of a vocabulary file (vocab.json) for a source and a target vocabulary."""
  return json.dumps({'source': list(source.chars), 'target': list(target.chars)},
                    ensure_ascii=False)


def load_vocabularies(path):
  """(source, target) vocabularies of a vocabulary file (vocabularies_json).

  Raises:
    UserError: the file is missing or damaged.
  """
  if not os.path.isfile(path):
    raise UserError(f'no vocabulary file {path}: train into this --workdir first')
  try:
    data = records.read_json(path)
    vocabularies = tuple(Vocabulary(tuple(data[side])) for side in ('source', 'target'))
    if not all(isinstance(c, str) and len(c) == 1 for v in vocabularies for c in v.chars):
      raise ValueError('an entry is not one character')
  except (records.DamagedFile, KeyError, TypeError, ValueError) as e:
    problem = e.problem if isinstance(e, records.DamagedFile) else f'not a vocabulary: {e}'
    raise UserError(f'{path} is damaged ({problem}): rerun the training command with this '
                    '--workdir, which rewrites it from the checkpoint') from None
  return vocabularies


def encode_sources(vocab, texts, length):
  """Source ids [N, length] (PAD after each sentence) and true lengths [N], both int32."""
  ids = np.full((len(texts), length), PAD, np.int32)
  lengths = np.zeros(len(texts), np.int32)
  for row, text in enumerate(texts):
    encoded = vocab.encode(text)[:length]
    ids[row, :len(encoded)] = encoded
    lengths[row] = len(encoded)
  return ids, lengths


def encode_targets(vocab, texts, length):
  """Target ids [N, length]: SOS, characters, EOS, then PAD (int32)."""
  ids = np.full((len(texts), length), PAD, np.int32)
  for row, text in enumerate(texts):
    encoded = [SOS] + vocab.encode(text)[:length - 2] + [EOS]
    ids[row, :len(encoded)] = encoded
  return ids


def round_up(n, multiple):
  """Smallest multiple of `multiple` that is >= max(n, 1): padded lengths come in few sizes."""
  return max(multiple, -(-n // multiple) * multiple)
