"""Greedy and beam search against exhaustive search and teacher-forced rescoring."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hw2 import decoding

PAD, SOS, EOS = 0, 1, 2


def make_model(vocab_size, hidden=8, seed=0):
  """A small random recurrent 'model': state h [N, hidden], never emits PAD or SOS.

  Returns (init_state(batch) -> h [batch, hidden], tokens_to_logprobs).
  """
  rng = np.random.RandomState(seed)
  embed = jnp.asarray(rng.randn(vocab_size, hidden), jnp.float32)
  recur = jnp.asarray(rng.randn(hidden, hidden) * 0.8, jnp.float32)
  out = jnp.asarray(rng.randn(hidden, vocab_size) * 1.5, jnp.float32)
  out_bias = jnp.zeros(vocab_size).at[EOS].set(0.5)

  def init_state(sources):
    return jnp.tanh(jnp.asarray(sources, jnp.float32) @ jnp.ones((1, hidden)) * 0.3
                    + jnp.asarray(rng.randn(1, hidden), jnp.float32))

  def tokens_to_logprobs(tokens, h):
    h = jnp.tanh(h @ recur + embed[tokens])
    logits = (h @ out + out_bias).at[:, jnp.array([PAD, SOS])].set(-jnp.inf)
    return jax.nn.log_softmax(logits), h

  return init_state, tokens_to_logprobs


def sequence_logprob(tokens_to_logprobs, h, sequence):
  """Teacher-forced log-probability of one sequence (stops after EOS) and its length."""
  total, previous, length = 0.0, SOS, 0
  for token in sequence:
    if token == PAD:
      break
    log_probs, h = tokens_to_logprobs(jnp.array([previous]), h)
    total += float(log_probs[0, token])
    previous, length = token, length + 1
    if token == EOS:
      break
  return total, length


def _search(tokens_to_logprobs, h, k, max_length, alpha):
  return jax.jit(lambda h: decoding.beam_search(tokens_to_logprobs, h, h.shape[0], k, max_length,
                                                SOS, EOS, alpha, PAD))(h)


def _greedy(tokens_to_logprobs, h, max_length):
  return jax.jit(lambda h: decoding.greedy_decode(tokens_to_logprobs, h, h.shape[0], max_length,
                                                  SOS, EOS, PAD))(h)


SOURCES = np.array([[0.0], [1.0], [2.0], [-1.5], [0.7]])


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_beam_size_one_is_exactly_greedy(seed):
  init_state, step = make_model(7, seed=seed)
  h = init_state(SOURCES)
  greedy, greedy_logp = _greedy(step, h, 12)
  beam, scores = _search(step, h, 1, 12, 0.0)
  np.testing.assert_array_equal(beam[:, 0], greedy)
  np.testing.assert_allclose(scores[:, 0], greedy_logp, rtol=1e-5)


@pytest.mark.parametrize('alpha', [0.0, 0.8])
@pytest.mark.parametrize('seed', [0, 3])
def test_large_beam_finds_the_exhaustive_best(alpha, seed):
  vocab, max_length = 5, 3  # PAD, SOS, EOS, a, b: 15 complete hypotheses per source.
  init_state, step = make_model(vocab, seed=seed)
  h = init_state(SOURCES)
  _, scores = _search(step, h, 16, max_length, alpha)
  for row in range(len(SOURCES)):
    best = -np.inf
    for n in range(1, max_length + 1):
      for body in itertools.product([3, 4], repeat=n - 1):
        for last in ([EOS, 3, 4] if n == max_length else [EOS]):
          logp, length = sequence_logprob(step, h[row:row + 1], list(body) + [last])
          best = max(best, logp / decoding.length_penalty(length, alpha))
    np.testing.assert_allclose(scores[row, 0], best, rtol=1e-5)


@pytest.mark.parametrize('alpha', [0.0, 0.6])
def test_scores_equal_teacher_forced_log_probabilities(alpha):
  init_state, step = make_model(9, seed=4)
  h = init_state(SOURCES)
  sequences, scores = _search(step, h, 4, 10, alpha)
  assert np.all(np.diff(np.asarray(scores), axis=1) <= 1e-6)  # Best first.
  for row in range(len(SOURCES)):
    for j in range(4):
      assert np.isfinite(scores[row, j])
      logp, length = sequence_logprob(step, h[row:row + 1], list(np.asarray(sequences[row, j])))
      np.testing.assert_allclose(scores[row, j], logp / decoding.length_penalty(length, alpha),
                                 rtol=1e-4)


def test_finished_sequences_are_padded_after_eos():
  init_state, step = make_model(6, seed=5)
  sequences, scores = _search(step, init_state(SOURCES), 3, 15, 0.0)
  greedy, _ = _greedy(step, init_state(SOURCES), 15)
  kept = np.asarray(sequences)[np.isfinite(np.asarray(scores))]
  assert len(kept) == 3 * len(SOURCES)
  for sequence in list(kept) + list(np.asarray(greedy)):
    ends = np.flatnonzero(sequence == EOS)
    if len(ends):  # Ended early: EOS once, then only PAD.
      assert np.all(sequence[ends[0] + 1:] == PAD) and np.all(sequence[:ends[0]] > EOS)
    else:  # Reached the length limit: no PAD at all.
      assert np.all(sequence > EOS)
  assert np.any(np.asarray(sequences)[..., -1] == PAD)  # Some end early in this model.


@pytest.mark.parametrize('k', [1, 4])
def test_batch_equals_each_source_alone(k):
  init_state, step = make_model(8, seed=6)
  h = init_state(SOURCES)
  sequences, scores = _search(step, h, k, 10, 0.6)
  for row in range(len(SOURCES)):
    alone, alone_scores = _search(step, h[row:row + 1], k, 10, 0.6)
    np.testing.assert_array_equal(alone[0], sequences[row])
    np.testing.assert_allclose(alone_scores[0], scores[row], rtol=1e-5)
  greedy, _ = _greedy(step, h, 10)
  for row in range(len(SOURCES)):
    np.testing.assert_array_equal(_greedy(step, h[row:row + 1], 10)[0][0], greedy[row])


def test_beam_never_scores_below_greedy():
  init_state, step = make_model(10, seed=7)
  h = init_state(np.linspace(-2, 2, 16)[:, None])
  _, greedy_logp = _greedy(step, h, 12)
  _, scores = _search(step, h, 5, 12, 0.0)
  assert np.all(np.asarray(scores[:, 0]) >= np.asarray(greedy_logp) - 1e-5)
  assert np.any(np.asarray(scores[:, 0]) > np.asarray(greedy_logp) + 1e-3)


def _counted(search, step, h):
  """search(step counted, h) jitted -> (its outputs..., the model steps it ran), counted as the
  benchmarks count them (benchmarks/common.py)."""
  from benchmarks import common  # pylint: disable=g-import-not-at-top
  counts = []
  outputs = jax.block_until_ready(jax.jit(lambda h: search(common.counting(step, counts), h))(h))
  jax.effects_barrier()
  return (*outputs, len(counts))


@pytest.mark.parametrize('seed', [0, 3])  # Models whose greedy outputs all end early.
def test_counted_steps_are_the_model_steps_run(seed):
  """The benchmarks' step count: greedy runs until its longest sequence ends; beam search at
  least as long as its longest finished hypothesis, never past max_length."""
  init_state, step = make_model(7, seed=seed)
  h = init_state(SOURCES)
  sequences, _, steps = _counted(lambda step, h: decoding.greedy_decode(
      step, h, h.shape[0], 12, SOS, EOS, PAD), step, h)
  assert int(steps) == int((np.asarray(sequences) != PAD).sum(1).max())
  assert int(steps) < 12
  sequences, scores, steps = _counted(lambda step, h: decoding.beam_search(
      step, h, h.shape[0], 3, 12, SOS, EOS, 0.0, PAD), step, h)
  longest = int((np.asarray(sequences)[np.asarray(scores) > -np.inf] != PAD).sum(-1).max())
  assert longest <= int(steps) <= 12
