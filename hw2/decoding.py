"""Greedy and beam-search decoding as pure JAX functions over fixed-shape state.

Both take the model step as `tokens_to_logprobs(tokens [N], state) -> (log_probs [N, V], state)`,
where `state` is any pytree whose leaves have leading dimension N (an LSTM carry, say), so the
searches know nothing of the model. Both run in `lax.while_loop` and stop as soon as no sequence
can change any more. Returned sequences hold the generated ids (SOS excluded) with EOS where the
sequence ended and PAD after it; a sequence that reaches `max_length` without EOS is kept as is.

Beam search keeps `beam_size` live hypotheses and `beam_size` finished ones per batch element.
Each step scores the top 2k extensions of the live beams; an extension that ends (EOS, or the
length limit) is finished if it ranks among the top k, as in fairseq, so that beam_size=1 is
exactly greedy decoding. A finished hypothesis of n tokens (EOS counted) and log-probability
logp scores logp / ((5 + n) / 6) ** alpha (GNMT's length penalty; alpha=0: plain logp).
The search stops early once no live beam can beat the k-th best finished one, so the n-best list
is final. Closures of
`tokens_to_logprobs` may hold per-row constants (encoder outputs) laid out like the flattened
beams, row b * beam_size + j for beam j of element b: beams never move across batch elements.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp

NEG_INF = -jnp.inf


def length_penalty(length, alpha):
  """GNMT length penalty ((5 + length) / 6) ** alpha."""
  return ((5.0 + length) / 6.0) ** alpha


def greedy_decode(tokens_to_logprobs, state, batch_size, max_length, sos_id, eos_id, pad_id=0):
  """Batched greedy decoding.

  Args:
    tokens_to_logprobs: model step (tokens [B], state) -> (log_probs [B, V], state).
    state: initial decoder state pytree, leading dim B.
    batch_size: B.
    max_length: the most tokens generated per sequence (EOS included).
    sos_id, eos_id, pad_id: special token ids.
  Returns:
    (sequences [B, max_length] int32, log-probabilities [B] of those sequences).
  """
  def cond(carry):
    i, _, _, finished, _, _ = carry
    return (i < max_length) & ~jnp.all(finished)

  def body(carry):
    i, tokens, sequences, finished, logp, state = carry
    log_probs, state = tokens_to_logprobs(tokens, state)
    next_tokens = jnp.argmax(log_probs, axis=-1).astype(jnp.int32)
    step_logp = jnp.take_along_axis(log_probs, next_tokens[:, None], axis=-1)[:, 0]
    logp = logp + jnp.where(finished, 0.0, step_logp)
    next_tokens = jnp.where(finished, pad_id, next_tokens)
    sequences = sequences.at[:, i].set(next_tokens)
    return i + 1, next_tokens, sequences, finished | (next_tokens == eos_id), logp, state

  init = (jnp.int32(0), jnp.full((batch_size,), sos_id, jnp.int32),
          jnp.full((batch_size, max_length), pad_id, jnp.int32),
          jnp.zeros((batch_size,), bool), jnp.zeros((batch_size,)), state)
  _, _, sequences, _, logp, _ = jax.lax.while_loop(cond, body, init)
  return sequences, logp


class BeamState(NamedTuple):
  """Fixed-shape state of the search. B batch, k beam size, L max length."""
  step: jax.Array             # [] int32: number of tokens generated so far.
  last_tokens: jax.Array      # [B, k] int32: the latest token of each live beam.
  live_sequences: jax.Array   # [B, k, L] int32.
  live_logp: jax.Array        # [B, k] log-probability of each live beam (-inf: empty slot).
  finished_sequences: jax.Array  # [B, k, L] int32.
  finished_scores: jax.Array  # [B, k] length-penalised scores, sorted best first (-inf: empty).
  model_state: object         # pytree with leading dim B * k.


def _gather_beams(x, indices):
  """x [B, n, ...], indices [B, m] -> [B, m, ...]."""
  return jnp.take_along_axis(x, indices.reshape(indices.shape + (1,) * (x.ndim - 2)), axis=1)


def beam_search(tokens_to_logprobs, state, batch_size, beam_size, max_length, sos_id, eos_id,
                alpha=0.0, pad_id=0):
  """Beam search with a length penalty and early stopping.

  Args:
    tokens_to_logprobs: model step (tokens [B*k], state) -> (log_probs [B*k, V], state).
    state: initial decoder state pytree with leading dim B (repeated k times here).
    batch_size: B.
    beam_size: k (1 reproduces greedy_decode).
    max_length: L, the most tokens per hypothesis (EOS included).
    sos_id, eos_id, pad_id: special token ids.
    alpha: length-penalty exponent >= 0 (0: no penalty).
  Returns:
    (sequences [B, k, L] int32, scores [B, k]): finished hypotheses, best first. Slots
    that never received a hypothesis have score -inf.
  """
  k, length_limit = beam_size, max_length
  best_possible_penalty = length_penalty(length_limit, alpha)

  def cond(s):
    # A live beam of log-prob l <= 0 can at best score l / penalty(L) (log-probs only fall), so
    # once the k-th finished score reaches that bound, no live beam can enter the n-best list.
    live_bound = jnp.max(s.live_logp, axis=1) / best_possible_penalty
    done = s.finished_scores[:, -1] >= live_bound  # Also true when no live beam is left (-inf).
    return (s.step < length_limit) & ~jnp.all(done)

  def body(s):
    log_probs, model_state = tokens_to_logprobs(s.last_tokens.reshape(-1), s.model_state)
    vocab = log_probs.shape[-1]
    candidates = (s.live_logp[:, :, None] + log_probs.reshape(batch_size, k, vocab))
    top_logp, top_index = jax.lax.top_k(candidates.reshape(batch_size, k * vocab), 2 * k)
    parent, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)  # [B, 2k]
    sequences = _gather_beams(s.live_sequences, parent)
    sequences = jax.lax.dynamic_update_index_in_dim(sequences, token, s.step, axis=2)
    ends = (token == eos_id) | (s.step + 1 == length_limit)

    # Finished: ended extensions ranked in the top k join the k best finished so far.
    in_top_k = jnp.arange(2 * k)[None, :] < k
    new_scores = jnp.where(ends & in_top_k, top_logp / length_penalty(s.step + 1, alpha), NEG_INF)
    all_scores = jnp.concatenate([s.finished_scores, new_scores], axis=1)
    all_sequences = jnp.concatenate([s.finished_sequences, sequences], axis=1)
    finished_scores, keep = jax.lax.top_k(all_scores, k)
    finished_sequences = _gather_beams(all_sequences, keep)

    # Live: the k best extensions that did not end.
    live_logp, keep = jax.lax.top_k(jnp.where(ends, NEG_INF, top_logp), k)
    flat_parent = (jnp.arange(batch_size)[:, None] * k + _gather_beams(parent, keep)).reshape(-1)
    model_state = jax.tree_util.tree_map(lambda x: x[flat_parent], model_state)
    return BeamState(s.step + 1, _gather_beams(token, keep), _gather_beams(sequences, keep),
                     live_logp, finished_sequences, finished_scores, model_state)

  init = BeamState(
      step=jnp.int32(0),
      last_tokens=jnp.full((batch_size, k), sos_id, jnp.int32),
      live_sequences=jnp.full((batch_size, k, length_limit), pad_id, jnp.int32),
      live_logp=jnp.tile(jnp.array([0.0] + [NEG_INF] * (k - 1)), (batch_size, 1)),
      finished_sequences=jnp.full((batch_size, k, length_limit), pad_id, jnp.int32),
      finished_scores=jnp.full((batch_size, k), NEG_INF),
      model_state=jax.tree_util.tree_map(lambda x: jnp.repeat(x, k, axis=0), state))
  final = jax.lax.while_loop(cond, body, init)
  return final.finished_sequences, final.finished_scores
