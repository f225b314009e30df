"""The translator of hw2/models/seq2seq.py (its function, parameters and dropout masks), written
for speed on CPU (BUILD.md has the measurements):

- The input projections of all time steps are one matrix product before the scan, and at
  evaluation a token's projection is a row of (embedding W_input + b), a gather.
- The two directions of the encoder run in one `lax.scan`, and the scan's backward pass is written
  out: one reverse scan for the gate gradients with W_hidden transposed once outside the loop,
  then each dL/dW_hidden as one [H, T*B] x [T*B, 4H] product.
- Dropout draws nn.Dropout's own masks with the unrolled threefry of hw2/models/fast/layers.py.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp

from hw2.models.fast.layers import Dropout
from hw2.models.seq2seq import BilinearAttention
from hw2.models.seq2seq import LSTMState
from hw2.models.seq2seq import reverse_within_length as _reverse_within_length
from hw2.models.seq2seq import valid_steps as _valid_steps


def _lstm_step(state, projected_input, w_hidden):
  """One LSTM step with its gate activations: -> (i, f, g, o [B, H] each, new LSTMState)."""
  gates = projected_input + state.h @ w_hidden
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
  c = f * state.c + i * g
  return (i, f, g, o), LSTMState(c, o * jnp.tanh(c))


def lstm_cell(state, projected_input, w_hidden):
  """One LSTM step. projected_input = x W_in + b: [B, 4H]; w_hidden: [H, 4H]; gates i, f, g, o."""
  return _lstm_step(state, projected_input, w_hidden)[1]


def _scan_lstms_forward(projected, w_hidden, states, valid):
  """The forward pass of scan_lstms (time-major inside), keeping what the backward pass needs."""
  def step(states, xs):
    projected_t, valid_t = xs
    keep = valid_t[:, None]
    new_states, outputs, residuals = [], [], []
    for state, x, w in zip(states, projected_t, w_hidden):
      activations, (c, h) = _lstm_step(state, x, w)
      new_states.append(LSTMState(jnp.where(keep, c, state.c), jnp.where(keep, h, state.h)))
      outputs.append(jnp.where(keep, h, 0.0))
      residuals.append((jnp.concatenate(activations, -1), c, state.c, state.h))
    return tuple(new_states), (tuple(outputs), tuple(residuals))

  time_major = tuple(p.swapaxes(0, 1) for p in projected)
  states, (outputs, residuals) = jax.lax.scan(step, tuple(states), (time_major, valid.T))
  return tuple(o.swapaxes(0, 1) for o in outputs), states, residuals


@jax.custom_vjp
def scan_lstms(projected, w_hidden, states, valid):
  """Runs independent LSTMs over the same steps in one `lax.scan` (fewer loop iterations).

  Args:
    projected: tuple of input projections x W_in + b, [B, T, 4H_k] each.
    w_hidden: tuple of recurrent weights [H_k, 4H_k].
    states: tuple of initial LSTMStates ([B, H_k] each).
    valid: [B, T] bool; at invalid steps a state is kept and the output is 0.
  Returns:
    (tuple of outputs [B, T, H_k], tuple of final LSTMStates).

  The backward pass is written out (see the module docstring; tests/test_models.py checks it
  against autodiff).
  """
  outputs, states, _ = _scan_lstms_forward(projected, w_hidden, states, valid)
  return outputs, states


def _scan_lstms_fwd(projected, w_hidden, states, valid):
  outputs, final_states, residuals = _scan_lstms_forward(projected, w_hidden, states, valid)
  return (outputs, final_states), (residuals, w_hidden, valid)


def _scan_lstms_bwd(saved, cotangents):
  residuals, w_hidden, valid = saved
  d_outputs, d_final = cotangents
  w_transposed = tuple(w.T for w in w_hidden)

  def step(d_states, xs):
    valid_t, d_outputs_t, residuals_t = xs
    keep = valid_t[:, None]
    d_previous, d_gates = [], []
    for d_state, d_out, (activations, c, c_prev, _), w_t in zip(
        d_states, d_outputs_t, residuals_t, w_transposed):
      i, f, g, o = jnp.split(activations, 4, axis=-1)
      dh = jnp.where(keep, d_state.h + d_out, 0.0)
      tanh_c = jnp.tanh(c)
      dc = jnp.where(keep, d_state.c, 0.0) + dh * o * (1.0 - tanh_c * tanh_c)
      d_gate = jnp.concatenate([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f),
                                dc * i * (1.0 - g * g), dh * tanh_c * o * (1.0 - o)], -1)
      d_previous.append(LSTMState(jnp.where(keep, dc * f, d_state.c),
                                  jnp.where(keep, d_gate @ w_t, d_state.h)))
      d_gates.append(d_gate)
    return tuple(d_previous), tuple(d_gates)

  xs = (valid.T, tuple(d.swapaxes(0, 1) for d in d_outputs), residuals)
  d_initial, d_gates = jax.lax.scan(step, tuple(d_final), xs, reverse=True)
  d_w_hidden = tuple(jnp.einsum('tbh,tbg->hg', r[3], d) for r, d in zip(residuals, d_gates))
  return tuple(d.swapaxes(0, 1) for d in d_gates), d_w_hidden, d_initial, None


scan_lstms.defvjp(_scan_lstms_fwd, _scan_lstms_bwd)


class LSTM(nn.Module):
  """Single-layer LSTM over padded sequences."""
  input_size: int
  hidden_size: int

  def setup(self):
    four_h = 4 * self.hidden_size
    self.w_input = self.param('w_input', nn.initializers.lecun_normal(),
                              (self.input_size, four_h))
    self.w_hidden = self.param('w_hidden', nn.initializers.orthogonal(),
                               (self.hidden_size, four_h))
    self.bias = self.param('bias', nn.initializers.zeros, (four_h,))

  def initial_state(self, batch_size, dtype=jnp.float32):
    zeros = jnp.zeros((batch_size, self.hidden_size), dtype)
    return LSTMState(zeros, zeros)

  def project(self, inputs):
    """Input projections of all steps in one product: [B, T, D] -> [B, T, 4H]."""
    return inputs @ self.w_input + self.bias

  def __call__(self, inputs, state=None, lengths=None):
    """Runs over inputs [B, T, D].

    Args:
      inputs: [B, T, input_size].
      state: initial LSTMState ([B, H] each); zeros if None.
      lengths: [B] true lengths; steps at t >= lengths[b] leave the state unchanged and output 0.
        None means every step is real.
    Returns:
      outputs [B, T, H] and the final LSTMState (at each sequence's true end).
    """
    batch, steps = inputs.shape[:2]
    if state is None:
      state = self.initial_state(batch, inputs.dtype)
    (outputs,), (state,) = scan_lstms((self.project(inputs),), (self.w_hidden,), (state,),
                                      _valid_steps(batch, steps, lengths))
    return outputs, state


class Encoder(nn.Module):
  """embedding -> dropout -> BiLSTM (H/2 per direction) -> dropout."""
  vocab_size: int
  hidden_size: int
  dropout_rate: float

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.hidden_size)
    self.forward_lstm = LSTM(self.hidden_size, self.hidden_size // 2)
    self.backward_lstm = LSTM(self.hidden_size, self.hidden_size // 2)
    self.dropout = Dropout(self.dropout_rate)

  def __call__(self, source, lengths, train=False):
    """source [B, S] ids, lengths [B] -> outputs [B, S, H] (0 at padding), LSTMState [B, H]."""
    batch, steps = source.shape
    valid = _valid_steps(batch, steps, lengths)
    if train:
      x = self.dropout(self.embed(source), deterministic=False)
      forward_in = self.forward_lstm.project(x)
      backward_in = self.backward_lstm.project(_reverse_within_length(x, lengths))
    else:  # Without dropout, a token's projection is a row of (embedding W_input + b).
      forward_in = self.forward_lstm.project(self.embed.embedding)[source]
      backward_in = self.backward_lstm.project(self.embed.embedding)[
          _reverse_within_length(source, lengths)]
    # Both directions in one scan; the backward one reads each sentence reversed in place.
    start = self.forward_lstm.initial_state(batch, forward_in.dtype)
    (forward, backward), (forward_state, backward_state) = scan_lstms(
        (forward_in, backward_in), (self.forward_lstm.w_hidden, self.backward_lstm.w_hidden),
        (start, start), valid)
    backward = _reverse_within_length(backward, lengths)
    outputs = self.dropout(jnp.concatenate([forward, backward], -1), deterministic=not train)
    state = LSTMState(jnp.concatenate([forward_state.c, backward_state.c], -1),
                      jnp.concatenate([forward_state.h, backward_state.h], -1))
    return outputs * valid[..., None], state


class Decoder(nn.Module):
  """embedding -> dropout -> LSTM(H) -> [attention] -> dropout -> tied output projection."""
  vocab_size: int
  hidden_size: int
  dropout_rate: float
  use_attention: bool

  def setup(self):
    self.embed = nn.Embed(self.vocab_size, self.hidden_size)
    self.lstm = LSTM(self.hidden_size, self.hidden_size)
    self.dropout = Dropout(self.dropout_rate)
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
    """One decoding step without dropout: tokens [B] -> (logits [B, V], LSTMState).

    A token's LSTM input projection is a row of (embedding W_input + b) [V, 4H], so a step costs a
    gather there instead of a [B, H] x [H, 4H] product (V is small).
    """
    table = self.lstm.project(self.embed.embedding)
    state = lstm_cell(state, table[tokens], self.lstm.w_hidden)
    outputs = state.h[:, None]
    if self.use_attention:
      outputs, _ = self.attention(outputs, memory, memory_mask)
    return self.embed.attend(outputs[:, 0]) + self.output_bias, state


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
    return memory, jnp.arange(source.shape[1])[None, :] < lengths[:, None], state

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
