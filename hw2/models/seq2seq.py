"""The homework's character-level translator: BiLSTM encoder, LSTM decoder, optional bilinear
attention. The definition of the model, written with Flax's layers and a plain `lax.scan` of an
LSTM step, differentiated by JAX; the CPU implementation in hw2/models/fast/seq2seq.py computes the
same function with the same parameters (tests/test_models.py holds it to this one).

Shapes: B batch, S source length, T target length, H hidden size (128), V vocabulary size.
Padding changes nothing: past a sequence's true length an LSTM keeps its state and outputs 0.
"""
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

MASKED_SCORE = -1e9  # Attention score at padded source positions (exp underflows to 0).


class LSTMState(NamedTuple):
  c: jax.Array  # [B, H]
  h: jax.Array  # [B, H]


def valid_steps(batch, steps, lengths):
  """[B, T] bool: step t of row b is real (t < lengths[b]); all real if lengths is None."""
  if lengths is None:
    return jnp.ones((batch, steps), bool)
  return jnp.arange(steps)[None, :] < lengths[:, None]


def reverse_within_length(x, lengths):
  """Reverses each row's first lengths[b] steps of x [B, T, ...], leaving padding in place."""
  t = jnp.arange(x.shape[1])[None, :]
  index = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
  return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


class LSTM(nn.Module):
  """Single-layer LSTM over padded sequences; gates i, f, g, o."""
  input_size: int
  hidden_size: int

  def setup(self):
    four_h = 4 * self.hidden_size
    self.w_input = self.param('w_input', nn.initializers.lecun_normal(),
                              (self.input_size, four_h))
    self.w_hidden = self.param('w_hidden', nn.initializers.orthogonal(),
                               (self.hidden_size, four_h))
    self.bias = self.param('bias', nn.initializers.zeros, (four_h,))

  def cell(self, state, x):
    """One step: LSTMState ([B, H] each), x [B, input_size] -> LSTMState."""
    gates = x @ self.w_input + state.h @ self.w_hidden + self.bias
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * state.c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return LSTMState(c, jax.nn.sigmoid(o) * jnp.tanh(c))

  def __call__(self, inputs, state=None, lengths=None):
    """inputs [B, T, input_size], initial LSTMState (zeros if None), true lengths [B] (None: all
    steps real) -> outputs [B, T, H] (0 past each length), final LSTMState (at the true end)."""
    batch, steps = inputs.shape[:2]
    if state is None:
      zeros = jnp.zeros((batch, self.hidden_size), inputs.dtype)
      state = LSTMState(zeros, zeros)

    def step(state, xs):
      x, valid = xs
      new = self.cell(state, x)
      keep = valid[:, None]
      state = LSTMState(jnp.where(keep, new.c, state.c), jnp.where(keep, new.h, state.h))
      return state, jnp.where(keep, new.h, 0.0)

    valid = valid_steps(batch, steps, lengths)
    state, outputs = jax.lax.scan(step, state, (inputs.swapaxes(0, 1), valid.T))
    return outputs.swapaxes(0, 1), state


class Encoder(nn.Module):
  """embedding -> dropout -> BiLSTM (H/2 per direction) -> dropout."""
  vocab_size: int
  hidden_size: int
  dropout_rate: float

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.hidden_size)
    self.forward_lstm = LSTM(self.hidden_size, self.hidden_size // 2)
    self.backward_lstm = LSTM(self.hidden_size, self.hidden_size // 2)
    self.dropout = nn.Dropout(self.dropout_rate)

  def __call__(self, source, lengths, train=False):
    """source [B, S] ids, lengths [B] -> outputs [B, S, H] (0 at padding), LSTMState [B, H]."""
    x = self.dropout(self.embed(source), deterministic=not train)  # [B, S, H]
    forward, forward_state = self.forward_lstm(x, lengths=lengths)
    backward, backward_state = self.backward_lstm(reverse_within_length(x, lengths),
                                                  lengths=lengths)
    outputs = jnp.concatenate([forward, reverse_within_length(backward, lengths)], -1)
    outputs = self.dropout(outputs, deterministic=not train)
    state = LSTMState(jnp.concatenate([forward_state.c, backward_state.c], -1),
                      jnp.concatenate([forward_state.h, backward_state.h], -1))
    return outputs * valid_steps(*source.shape, lengths)[..., None], state


class BilinearAttention(nn.Module):
  """s_i = (W_in q) . h_i, masked; p = softmax(s); c = sum_i p_i h_i; out = tanh(W_out [q; c])."""
  hidden_size: int

  def setup(self):
    self.w_in = nn.Dense(self.hidden_size, use_bias=False)
    self.w_out = nn.Dense(self.hidden_size)

  def __call__(self, queries, memory, memory_mask):
    """queries [B, T, H], memory [B, S, H], memory_mask [B, S] bool ->
    (outputs [B, T, H], attention weights [B, T, S])."""
    scores = jnp.einsum('bth,bsh->bts', self.w_in(queries), memory)
    scores = jnp.where(memory_mask[:, None, :], scores, MASKED_SCORE)
    weights = jax.nn.softmax(scores, axis=-1)
    context = jnp.einsum('bts,bsh->bth', weights, memory)
    return jnp.tanh(self.w_out(jnp.concatenate([queries, context], -1))), weights


class Decoder(nn.Module):
  """embedding -> dropout -> LSTM(H) -> [attention] -> dropout -> tied output projection."""
  vocab_size: int
  hidden_size: int
  dropout_rate: float
  use_attention: bool

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.hidden_size)
    self.lstm = LSTM(self.hidden_size, self.hidden_size)
    self.dropout = nn.Dropout(self.dropout_rate)
    self.output_bias = self.param('output_bias', nn.initializers.zeros, (self.vocab_size,))
    if self.use_attention:
      self.attention = BilinearAttention(self.hidden_size)

  def __call__(self, tokens, state, memory, memory_mask, train=False):
    """tokens [B, T] -> logits [B, T, V], final LSTMState, attention [B, T, S] (or None)."""
    x = self.dropout(self.embed(tokens), deterministic=not train)
    outputs, state = self.lstm(x, state)
    weights = None
    if self.use_attention:
      outputs, weights = self.attention(outputs, memory, memory_mask)
    outputs = self.dropout(outputs, deterministic=not train)
    return self.embed.attend(outputs) + self.output_bias, state, weights

  def step(self, tokens, state, memory, memory_mask):
    """One decoding step without dropout: tokens [B] -> (logits [B, V], LSTMState)."""
    logits, state, _ = self(tokens[:, None], state, memory, memory_mask)
    return logits[:, 0], state


class Seq2Seq(nn.Module):
  """The homework's translation model (hidden and embedding size 128)."""
  source_vocab_size: int
  target_vocab_size: int
  hidden_size: int = 128
  dropout_rate: float = 0.3
  use_attention: bool = False

  def setup(self):
    self.encoder = Encoder(self.source_vocab_size, self.hidden_size, self.dropout_rate)
    self.decoder = Decoder(self.target_vocab_size, self.hidden_size, self.dropout_rate,
                           self.use_attention)

  def encode(self, source, lengths, train=False):
    """-> (memory [B, S, H], memory_mask [B, S], decoder start LSTMState [B, H])."""
    memory, state = self.encoder(source, lengths, train)
    return memory, valid_steps(*source.shape, lengths), state

  def decode(self, tokens, state, memory, memory_mask, train=False):
    """Teacher-forced decoding: tokens [B, T] -> (logits [B, T, V], LSTMState, attention)."""
    return self.decoder(tokens, state, memory, memory_mask, train)

  def decode_step(self, tokens, state, memory, memory_mask):
    """One decoding step (no dropout): tokens [B] -> (logits [B, V], LSTMState)."""
    return self.decoder.step(tokens, state, memory, memory_mask)

  def __call__(self, source, lengths, target_inputs, train=False):
    """source [B, S], lengths [B], target_inputs [B, T] (SOS first) -> logits [B, T, V]."""
    memory, mask, state = self.encode(source, lengths, train)
    return self.decode(target_inputs, state, memory, mask, train)[0]
