"""Character-level translation with the homework's BiLSTM encoder / LSTM decoder (question 3)."""
import functools
import os

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from hw2 import decoding
from hw2 import losses
from hw2 import metrics
from hw2 import models
from hw2 import parallel
from hw2 import plots
from hw2 import records
from hw2.data import batching
from hw2.data import text
from hw2.errors import UserError
from hw2.tasks import base

VOCAB_FILE = 'vocab.json'
_LENGTH_MULTIPLE = 4  # Padded source lengths are multiples of this: few shapes, few compiles.


def make_decode_fn(model, beam_size, max_length, alpha):
  """Pure (params, source [B, S], lengths [B]) -> (sequences [B, n, L], scores [B, n]).

  n = 1 for greedy decoding (beam_size 1), else beam_size hypotheses, best first. PAD and SOS are
  never generated.
  """
  def decode(params, source, lengths):
    variables = {'params': params}
    memory, mask, state = model.apply(variables, source, lengths, method='encode')
    batch = source.shape[0]
    if beam_size > 1:  # Per-row constants laid out like the flattened beams.
      memory, mask = (jnp.repeat(x, beam_size, axis=0) for x in (memory, mask))

    def tokens_to_logprobs(tokens, state):
      logits, state = model.apply(variables, tokens, state, memory, mask,
                                  method='decode_step')
      logits = logits.at[:, jnp.array([text.PAD, text.SOS])].set(-jnp.inf)
      return jax.nn.log_softmax(logits), state

    if beam_size == 1:
      sequences, logp = decoding.greedy_decode(tokens_to_logprobs, state, batch, max_length,
                                               text.SOS, text.EOS, text.PAD)
      return sequences[:, None], logp[:, None]
    return decoding.beam_search(tokens_to_logprobs, state, batch, beam_size, max_length,
                                text.SOS, text.EOS, alpha, text.PAD)
  return decode


def _with_targets(path, pairs):
  """`pairs` (read from `path`), after checking that no target is empty."""
  empty = sum(1 for _, t in pairs if not t)
  if empty:
    raise UserError(f'{path}: {empty} pairs have an empty target after normalisation')
  return pairs


def masked_cross_entropy(logits, labels, label_smoothing=0.0):
  """Mean softmax cross-entropy over positions whose label is not PAD.

  logits [B, T, V], labels [B, T] -> scalar.
  """
  weights = (labels != text.PAD).astype(logits.dtype)
  return losses.masked_mean(losses.cross_entropy(logits, labels, label_smoothing), weights)


def sentence_cross_entropy(model, params, source, lengths, target):
  """Teacher-forced cross-entropy summed over each sentence's target positions, and their count.

  source [B, S], lengths [B], target [B, T] (SOS ... EOS PAD...) -> ([B], [B]).
  """
  logits = model.apply({'params': params}, source, lengths, target[:, :-1])
  labels = target[:, 1:]
  weights = (labels != text.PAD).astype(logits.dtype)
  return (jnp.sum(losses.cross_entropy(logits, labels) * weights, axis=1),
          jnp.sum(weights, axis=1))


class Translation(base.Task):
  """Source -> target sentences of a tab-separated corpus, character by character."""
  selection_metric = 'error_rate'
  selection_mode = 'min'

  def __init__(self, config, workdir, mode):
    super().__init__(config, workdir, mode)
    self.normalize = text.NORMALIZERS[config.normalize]
    self.splits = {}
    if mode == 'train':
      self.splits['train'] = self._read_training_split()
    if mode in ('train', 'eval'):  # eval: decoding settings are chosen on the validation split.
      self.splits['validation'] = self._read_evaluated_split('validation_file')
      self.splits['test'] = self._read_evaluated_split('test_file')
    if mode == 'train':  # Written by the loop, once every check has passed (workdir_files).
      self.source_vocab = text.Vocabulary.from_texts(s for s, _ in self.splits['train'])
      self.target_vocab = text.Vocabulary.from_texts(t for _, t in self.splits['train'])
    else:
      self.source_vocab, self.target_vocab = text.load_vocabularies(
          os.path.join(workdir, VOCAB_FILE))
    name = config.model.architecture
    # The Transformer's decode cache holds as many positions as decoding may generate.
    cache = {'max_decode_length': config.decode.max_length} if name == 'transformer' else {}
    self.model = models.build(name, config.model, source_vocab_size=self.source_vocab.size,
                              target_vocab_size=self.target_vocab.size, **cache)
    self.max_source_length = config.decode.max_source_length
    self._decode = parallel.jit_batched(
        make_decode_fn(self.model, config.decode.beam_size, config.decode.max_length,
                       config.decode.length_penalty), batch_argnums=(1, 2))
    # One sentence at a time (attention plots): replicated on every device.
    self._teacher_forced = parallel.jit_batched(
        functools.partial(self.model.apply, method='decode'), batch_argnums=())
    self._encode = parallel.jit_batched(functools.partial(self.model.apply, method='encode'),
                                        batch_argnums=())
    self._sentence_losses = parallel.jit_batched(
        functools.partial(sentence_cross_entropy, self.model), batch_argnums=(1, 2, 3))
    self._loss_arrays = {}  # split -> its id arrays for the validation loss, encoded once.
    self._predictions = {}  # split -> the translations of its last evaluation.

  def _path(self, field):
    if not self.config.data_dir:
      raise UserError('--config.data_dir is not set: give the folder of '
                      f'{self.config.train_file}, {self.config.validation_file}, '
                      f'{self.config.test_file}')
    return os.path.join(self.config.data_dir, self.config[field])

  def _read_pairs(self, field):
    """(path, normalised (source, target) pairs) of the split file config[field]."""
    path = self._path(field)
    pairs = text.read_pairs(path, self.config.source_column, self.config.target_column,
                            self.normalize)
    if not any(s or t for s, t in pairs):
      raise UserError(f'{path}: normalize={self.config.normalize!r} leaves no characters, so the '
                      'vocabulary would be empty (try --config.normalize=none)')
    return path, pairs

  def _read_training_split(self):
    """The training pairs with both sides within config.max_length (the longer are dropped)."""
    path, pairs = self._read_pairs('train_file')
    limit = self.config.max_length
    pairs = [(s, t) for s, t in pairs if len(s) <= limit and len(t) <= limit]
    if not pairs:
      raise UserError(f'{path}: no pair has both sides within --config.max_length={limit}')
    return _with_targets(path, pairs)

  def _read_evaluated_split(self, field):
    """Every pair of a validation or test split; each source must fit the decoder, checked
    before training."""
    path, pairs = self._read_pairs(field)
    limit = self.config.decode.max_source_length
    long = next((i for i, (s, _) in enumerate(pairs) if len(s) > limit), None)
    if long is not None:
      raise UserError(f'{path}: pair {long + 1} has a source of {len(pairs[long][0])} '
                      f'characters after normalisation, more than --config.decode.'
                      f'max_source_length={limit}; raise it or shorten the sentence')
    return _with_targets(path, pairs)

  # --- Training ---------------------------------------------------------------------------------

  def train_arrays(self):
    sources, targets = zip(*self.splits['train'])
    source, lengths = text.encode_sources(self.source_vocab, sources, max(map(len, sources)))
    target = text.encode_targets(self.target_vocab, targets, max(map(len, targets)) + 2)
    return {'source': source, 'source_length': lengths, 'target': target}

  def init_params(self, rng):
    source = jnp.zeros((1, 4), jnp.int32)
    return self.model.init(rng, source, jnp.array([4]), source)['params']

  def loss(self, params, batch, rng):
    """Mean cross-entropy over the non-PAD target positions (teacher forcing)."""
    target = batch['target']
    logits = self.model.apply({'params': params}, batch['source'], batch['source_length'],
                              target[:, :-1], train=True, rngs={'dropout': rng})
    return masked_cross_entropy(logits, target[:, 1:], self.config.label_smoothing)

  def teacher_forced_loss(self, params, split):
    """Mean cross-entropy per target character (EOS included, no label smoothing) of the split's
    pairs, teacher-forced, in fixed-size jitted batches."""
    if split not in self._loss_arrays:
      sources, targets = zip(*self.splits[split])
      ids, lengths = self.encode_sources(list(sources))
      self._loss_arrays[split] = {
          'source': ids, 'lengths': lengths,
          'target': text.encode_targets(self.target_vocab, targets, text.round_up(
              max(map(len, targets)) + 2, _LENGTH_MULTIPLE))}
    pending = [(self._sentence_losses(params, b['source'], b['lengths'], b['target']), valid)
               for b, valid in batching.padded_batches(self._loss_arrays[split],
                                                       self.config.eval_batch_size)]
    total = sum(float(np.asarray(loss)[:valid].sum()) for (loss, _), valid in pending)
    count = sum(float(np.asarray(count)[:valid].sum()) for (_, count), valid in pending)
    return total / count

  # --- Decoding ---------------------------------------------------------------------------------

  def encode_sources(self, sources):
    """Source id array [N, S] (S: the longest source rounded up to a multiple of 4) and lengths
    [N]; raises on a source longer than the model accepts."""
    longest = max((len(s) for s in sources), default=1)
    if longest > self.max_source_length:
      raise UserError(f'an input has {longest} characters after normalisation; this model '
                      f'translates at most {self.max_source_length} '
                      '(--config.decode.max_source_length)')
    return text.encode_sources(self.source_vocab, sources,
                               text.round_up(longest, _LENGTH_MULTIPLE))

  def source_batches(self, sources):
    """Yields (rows, batch): the sources in order of length, `eval_batch_size` at a time, as
    batch {'ids': [E, S], 'lengths': [E]} padded to the batch's longest source (S) and to E rows;
    rows are the indices into `sources` of its real rows."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    batch_size = self.config.eval_batch_size
    for start in range(0, len(order), batch_size):
      rows = order[start:start + batch_size]
      ids, lengths = self.encode_sources([sources[i] for i in rows])
      (batch, _), = batching.padded_batches({'ids': ids, 'lengths': lengths}, batch_size)
      yield rows, batch

  def translate(self, params, sources):
    """Decodes normalised source strings on the device, `eval_batch_size` at a time.

    Sources are batched in order of length, so each batch is padded only to its own longest
    source and stops decoding when its own sentences are done; all batches are dispatched before
    any result is read back.

    Returns:
      per source, the list of (translation, score) hypotheses, best first.
    """
    unknown = sorted({c for s in sources for c in self.source_vocab.unknown_chars(s)})
    if unknown:
      logging.warning('characters never seen in training map to UNK: %s', ''.join(unknown))
    pending = [(rows, self._decode(params, batch['ids'], batch['lengths']))
               for rows, batch in self.source_batches(sources)]
    hypotheses = [None] * len(sources)
    for rows, (sequences, scores) in pending:
      sequences, scores = np.asarray(sequences), np.asarray(scores)
      for k, row in enumerate(rows):
        hypotheses[row] = [(self.target_vocab.decode(s), float(score))
                           for s, score in zip(sequences[k], scores[k]) if score > -np.inf]
    return hypotheses

  def evaluate(self, params, split):
    sources, references = zip(*self.splits[split])
    predictions = [h[0][0] for h in self.translate(params, list(sources))]
    self._predictions[split] = predictions
    loss = self.teacher_forced_loss(params, split)
    return {'error_rate': metrics.error_rate(references, predictions),
            'exact_match': metrics.exact_match(references, predictions),
            'chrf': metrics.corpus_chrf(references, predictions),
            'bleu': metrics.corpus_bleu(references, predictions),
            'loss': loss, 'perplexity': float(np.exp(loss))}

  def samples(self):
    """The first config.num_samples validation pairs and their translations, as a markdown
    table."""
    pairs = self.splits['validation'][:self.config.num_samples]
    if not pairs or 'validation' not in self._predictions:
      return ''
    return records.markdown_table(['source', 'reference', 'translation'],
                        [(s, r, p) for (s, r), p in zip(pairs, self._predictions['validation'])])

  def attention_weights(self, params, source, prediction):
    """Attention [len(prediction) + 1, len(source)] over the source while the model produces
    prediction + EOS (teacher-forced on its own output, which reproduces greedy decoding)."""
    source_ids, lengths = self.encode_sources([source])
    memory, mask, state = self._encode({'params': params}, source_ids, lengths)
    tokens = text.encode_targets(self.target_vocab, [prediction], len(prediction) + 2)[:, :-1]
    _, _, weights = self._teacher_forced({'params': params}, tokens, state, memory, mask)
    return np.asarray(weights[0, :, :len(source)])

  def workdir_files(self):
    return {VOCAB_FILE: text.vocabularies_json(self.source_vocab, self.target_vocab)}

  def split_sizes(self):
    return {name: len(pairs) for name, pairs in self.splits.items()}

  def compilation_counts(self):
    return {'decode': self._decode.compilations(),
            'loss': self._sentence_losses.compilations()}

  # --- Outputs ----------------------------------------------------------------------------------

  def write_outputs(self, params, results):
    """Test translations (source, reference, prediction) and, with attention, heat maps; the
    predictions are those of the `evaluate(params, 'test')` that the loop has just made."""
    sources, references = zip(*self.splits['test'])
    predictions = self._predictions['test']
    lines = ['source\treference\tprediction\terror'] + [
        f'{s}\t{r}\t{p}\t{metrics.levenshtein(r, p) / len(r):.3f}'
        for s, r, p in zip(sources, references, predictions)]
    records.write_atomic(os.path.join(self.workdir, 'test_translations.tsv'),
                         '\n'.join(lines) + '\n')
    if not self.config.model.get('use_attention', True):  # The Transformer always attends.
      return
    for i in range(self.config.num_attention_plots):
      weights = self.attention_weights(params, sources[i], predictions[i])
      plots.plot_attention(weights, list(sources[i]), list(predictions[i]) + ['<eos>'],
                           os.path.join(self.workdir, f'attention_{i}.png'))
