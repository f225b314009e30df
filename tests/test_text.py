"""Normalisation, pair files, vocabularies and padded id arrays."""
import os

import numpy as np
import pytest

from conftest import SPA_ENG_DIR
from hw2 import records
from hw2.data import text
from hw2.errors import UserError


@pytest.mark.parametrize('raw, expected', [
    ('¿Qué tal, señor?', 'que tal senor ?'),
    ('Él está aquí.', 'el esta aqui .'),
    ("I'm  fine!!", 'i m fine ! !'),
    ('  Árbol, CAMIÓN; niño…  ', 'arbol camion nino'),  # '…' is not '.'
    ('vine por ustedes .', 'vine por ustedes .'),
    ('3 días', 'dias'),
])
def test_homework_normalisation(raw, expected):
  assert text.normalize_homework(raw) == expected


def test_none_normalisation_keeps_any_script_and_composes():
  assert text.normalize_none('Приве\u0301т') == 'Приве\u0301т'
  assert text.normalize_none('e\u0301') == '\u00e9'
  assert text.normalize_none('مرحبا') == 'مرحبا'


def test_real_homework_files():
  train = text.read_pairs(os.path.join(SPA_ENG_DIR, 'train-eng-spa.txt'), 1, 0,
                          text.normalize_homework)
  assert len(train) == 10_483
  assert train[2] == ('vine por ustedes .', 'i came for you .')
  assert max(max(len(s), len(t)) for s, t in train) < 20
  source, target = (text.Vocabulary.from_texts(side) for side in zip(*train))
  assert len(source.chars) == 30 and source.chars == target.chars


def test_line_without_tab_names_file_and_line(tmp_path):
  path = tmp_path / 'train.tsv'
  path.write_text('hello\thola\ngoodbye adios\n', encoding='utf-8')
  with pytest.raises(UserError, match=r'train.tsv:2: line has no tab'):
    text.read_pairs(str(path), 1, 0, text.normalize_none)


def test_missing_and_empty_files(tmp_path):
  with pytest.raises(UserError, match='data file not found: .*nope.tsv'):
    text.read_pairs(str(tmp_path / 'nope.tsv'), 1, 0, text.normalize_none)
  (tmp_path / 'empty.tsv').write_text('\n\n', encoding='utf-8')
  with pytest.raises(UserError, match='empty.tsv holds no sentence pairs'):
    text.read_pairs(str(tmp_path / 'empty.tsv'), 1, 0, text.normalize_none)


def test_vocabulary_round_trip_and_unk(tmp_path):
  vocab = text.Vocabulary.from_texts(['abc', 'cab d'])
  assert vocab.chars == (' ', 'a', 'b', 'c', 'd') and vocab.size == 9
  ids = vocab.encode('bad cab')
  assert min(ids) >= text.NUM_SPECIAL
  assert vocab.decode(ids) == 'bad cab'
  assert vocab.encode('axb') == [vocab.encode('a')[0], text.UNK, vocab.encode('b')[0]]
  assert vocab.decode(vocab.encode('axb')) == 'a\ufffdb'
  assert vocab.decode([text.SOS] + vocab.encode('ab') + [text.EOS] + vocab.encode('c')) == 'ab'
  records.write_atomic(str(tmp_path / 'v.json'),
                       text.vocabularies_json(vocab, text.Vocabulary(('я', 'ß'))))
  source, target = text.load_vocabularies(str(tmp_path / 'v.json'))
  assert source == vocab and target.chars == ('я', 'ß')


def test_padded_arrays():
  vocab = text.Vocabulary.from_texts(['abc'])
  source, lengths = text.encode_sources(vocab, ['ab', 'cab'], 5)
  np.testing.assert_array_equal(source, [[4, 5, 0, 0, 0], [6, 4, 5, 0, 0]])
  np.testing.assert_array_equal(lengths, [2, 3])
  target = text.encode_targets(vocab, ['ab', 'c'], 5)
  np.testing.assert_array_equal(target, [[1, 4, 5, 2, 0], [1, 6, 2, 0, 0]])
  assert text.round_up(0, 8) == 8 and text.round_up(17, 8) == 24 and text.round_up(16, 8) == 16


def test_a_byte_order_mark_is_no_character(tmp_path):
  path = tmp_path / 'bom.tsv'
  path.write_bytes('\ufeffhola\thello\nadios\tbye\n'.encode('utf-8'))
  pairs = text.read_pairs(str(path), 0, 1, text.normalize_none)
  assert pairs == [('hola', 'hello'), ('adios', 'bye')]
