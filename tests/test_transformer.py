"""The Transformer translator (hw2/models/transformer.py): padding invariance, the cached decoding
step against recomputing the whole prefix (greedy and beam search), attention masking, and a
short training run through the shared loop."""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from hw2 import decoding
from hw2 import train
from hw2.data import text
from hw2.models.transformer import Transformer
from test_translation import make_config
from test_translation import reverse_pairs
from test_translation import write_tsv

V_SRC, V_TGT, MAX_LENGTH = 12, 11, 12


@pytest.fixture(scope='module')
def model_and_params():
  model = Transformer(V_SRC, V_TGT, max_decode_length=MAX_LENGTH, hidden_size=32, num_layers=2,
                      num_heads=4, ff_size=48, dropout_rate=0.1)
  source = jnp.ones((1, 3), jnp.int32)
  params = model.init(jax.random.key(0), source, jnp.array([3]), source)['params']
  return model, params


@pytest.mark.slow
def test_padding_changes_nothing(model_and_params):
  model, params = model_and_params
  sentence = jnp.array([5, 7, 4, 9, 6])
  target = jnp.array([[1, 4, 6, 5, 2]])
  results = []
  for total in (5, 8, 13):
    source = jnp.zeros((1, total), jnp.int32).at[0, :5].set(sentence)
    memory, mask, state = model.apply({'params': params}, source, jnp.array([5]),
                                      method='encode')
    logits, _, weights = model.apply({'params': params}, target, state, memory, mask,
                                     method='decode')
    np.testing.assert_array_equal(memory[0, 5:], 0.0)
    np.testing.assert_array_equal(weights[0, :, 5:], 0.0)
    results.append((memory[0, :5], logits))
  for memory, logits in results[1:]:
    np.testing.assert_allclose(memory, results[0][0], atol=1e-5)
    np.testing.assert_allclose(logits, results[0][1], atol=1e-5)


def test_a_position_sees_only_the_tokens_before_it(model_and_params):
  model, params = model_and_params
  source, lengths = jnp.array([[5, 7, 4]]), jnp.array([3])
  memory, mask, state = model.apply({'params': params}, source, lengths, method='encode')
  a, b = jnp.array([[1, 4, 6, 5, 2]]), jnp.array([[1, 4, 6, 9, 9]])
  logits_a = model.apply({'params': params}, a, state, memory, mask, method='decode')[0]
  logits_b = model.apply({'params': params}, b, state, memory, mask, method='decode')[0]
  np.testing.assert_allclose(logits_a[:, :3], logits_b[:, :3], atol=1e-6)
  assert not np.allclose(logits_a[:, 3:], logits_b[:, 3:])


@pytest.mark.slow
def test_the_cached_step_equals_teacher_forced_decoding(model_and_params):
  model, params = model_and_params
  source, lengths = jnp.array([[5, 7, 4, 0], [4, 8, 9, 6]]), jnp.array([3, 4])
  memory, mask, state = model.apply({'params': params}, source, lengths, method='encode')
  tokens = jnp.array([[1, 4, 6, 5, 3], [1, 7, 7, 3, 2]])
  logits = model.apply({'params': params}, tokens, state, memory, mask, method='decode')[0]
  for t in range(tokens.shape[1]):
    step_logits, state = model.apply({'params': params}, tokens[:, t], state, memory, mask,
                                     method='decode_step')
    np.testing.assert_allclose(step_logits, logits[:, t], atol=1e-5)
  assert all(leaf.shape[0] == 2 for leaf in jax.tree_util.tree_leaves(state))


class Prefix(NamedTuple):
  """Decoding without the cache: the tokens so far [B, L] and their number [B]."""
  tokens: jax.Array
  length: jax.Array


def _step_functions(model, params, source, lengths, beam_size):
  variables = {'params': params}
  memory, mask, cache = model.apply(variables, source, lengths, method='encode')
  if beam_size > 1:
    memory, mask = (jnp.repeat(x, beam_size, axis=0) for x in (memory, mask))

  def finish(logits):
    return jax.nn.log_softmax(logits.at[:, jnp.array([text.PAD, text.SOS])].set(-jnp.inf))

  def cached(tokens, cache):
    logits, cache = model.apply(variables, tokens, cache, memory, mask, method='decode_step')
    return finish(logits), cache

  def recomputed(tokens, prefix):
    rows = jnp.arange(tokens.shape[0])
    prefix = Prefix(prefix.tokens.at[rows, prefix.length].set(tokens), prefix.length + 1)
    logits = model.apply(variables, prefix.tokens, None, memory, mask, method='decode')[0]
    return finish(logits[rows, prefix.length - 1]), prefix

  batch = source.shape[0]
  empty = Prefix(jnp.zeros((batch, MAX_LENGTH), jnp.int32), jnp.zeros((batch,), jnp.int32))
  return (cached, cache), (recomputed, empty)


@pytest.mark.slow
@pytest.mark.parametrize('beam_size', [1, 4])
def test_decoding_with_the_cache_equals_decoding_without(model_and_params, beam_size):
  model, params = model_and_params
  source = jnp.array([[5, 7, 4, 0, 0], [4, 8, 9, 6, 10], [3, 3, 0, 0, 0]])
  lengths = jnp.array([3, 5, 2])
  outputs = []
  for step, state in _step_functions(model, params, source, lengths, beam_size):
    if beam_size == 1:
      outputs.append(decoding.greedy_decode(step, state, 3, MAX_LENGTH, text.SOS, text.EOS,
                                            text.PAD))
    else:
      outputs.append(decoding.beam_search(step, state, 3, beam_size, MAX_LENGTH, text.SOS,
                                          text.EOS, 0.6, text.PAD))
  (tokens, logp), (tokens_without, logp_without) = outputs
  np.testing.assert_array_equal(tokens, tokens_without)
  np.testing.assert_allclose(logp, logp_without, atol=1e-4)


@pytest.mark.slow
def test_trains_and_translates_through_the_loop(tmp_path):
  rng = np.random.RandomState(0)
  for name, n in (('train', 1500), ('val', 100), ('test', 100)):
    write_tsv(tmp_path / f'{name}.tsv', reverse_pairs(rng, n))
  config = make_config(tmp_path, **{'num_epochs': 8, 'num_attention_plots': 1})
  config.model = ml_collections.ConfigDict(
      {'impl': 'auto', 'architecture': 'transformer', 'hidden_size': 32, 'num_layers': 2,
       'num_heads': 4, 'ff_size': 64, 'dropout_rate': 0.0})
  config.learning_rate, config.warmup_steps = 3e-3, 50
  results = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert results['test_error_rate'] < 0.25, results  # Chance is about 0.8.
  assert results['model_impl'] == 'reference'  # 'auto' on CPU, but fast/ has no Transformer.
  assert (tmp_path / 'run' / 'attention_0.png').exists()
