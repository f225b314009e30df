"""A character-level encoder-decoder Transformer, beside the homework's LSTM translator
(hw2/models/seq2seq.py) and with its interface: `encode`, `decode` (teacher forcing), `decode_step`
(one token, for hw2/decoding.py), `__call__`.

Pre-norm layers (layer norm before each sub-layer, a residual connection around it, a final layer
norm), sinusoidal positions, target embeddings tied to the output projection as in the LSTM
model. Padding changes nothing: padded source positions are masked out of every attention.

The decoder state is a key/value cache of fixed shape, every leaf leading with the batch (as the
searches of hw2/decoding.py reorder it by beam): per decoder layer the projected keys and values
of the positions decoded so far, [B, heads, L, D / heads] with L = max_decode_length, and the
position `index` [B] of the next token. Keys and values are kept heads-first, the layout of the
attention's matrix products, so that no decoding step transposes the whole cache; each step
writes its position in place.

Shapes: B batch, S source length, T target length, D model width (hidden_size), V vocabulary size.
"""
import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from hw2.models.seq2seq import MASKED_SCORE
from hw2.models.seq2seq import valid_steps


def sinusoids(positions, width):
  """Sinusoidal position encodings: positions [...] int -> [..., width] (sin | cos halves)."""
  half = width // 2
  frequencies = jnp.exp(-math.log(10_000.0) * jnp.arange(half) / max(half - 1, 1))
  angles = positions[..., None].astype(jnp.float32) * frequencies
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], -1)


class Attention(nn.Module):
  """Multi-head scaled dot-product attention with Flax's DenseGeneral projections."""
  width: int
  num_heads: int

  def setup(self):
    head = (self.num_heads, self.width // self.num_heads)
    self.query = nn.DenseGeneral(head)
    self.key = nn.DenseGeneral(head)
    self.value = nn.DenseGeneral(head)
    self.out = nn.DenseGeneral(self.width, axis=(-2, -1))

  def keys_values(self, x):
    """x [B, L, D] -> keys, values [B, heads, L, D / heads]."""
    return (jnp.swapaxes(self.key(x), 1, 2), jnp.swapaxes(self.value(x), 1, 2))

  def attend(self, x, keys, values, mask):
    """Queries from x [B, T, D] over keys/values [B, heads, L, D / heads] where mask [B, T, L]
    -> (outputs [B, T, D], weights [B, heads, T, L])."""
    query = self.query(x) / math.sqrt(self.width // self.num_heads)
    scores = jnp.einsum('bthd,bhld->bhtl', query, keys)
    weights = jax.nn.softmax(jnp.where(mask[:, None], scores, MASKED_SCORE), axis=-1)
    return self.out(jnp.einsum('bhtl,bhld->bthd', weights, values)), weights

  def __call__(self, x, memory, mask):
    return self.attend(x, *self.keys_values(memory), mask)


class FeedForward(nn.Module):
  """Dense(ff_size) -> ReLU -> dropout -> Dense(D)."""
  width: int
  ff_size: int
  dropout_rate: float

  @nn.compact
  def __call__(self, x, train):
    x = nn.relu(nn.Dense(self.ff_size)(x))
    return nn.Dense(self.width)(nn.Dropout(self.dropout_rate)(x, deterministic=not train))


class EncoderLayer(nn.Module):
  width: int
  num_heads: int
  ff_size: int
  dropout_rate: float

  @nn.compact
  def __call__(self, x, mask, train):
    """x [B, S, D], mask [B, S, S] -> [B, S, D]."""
    drop = lambda y: nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    y = nn.LayerNorm()(x)
    x = x + drop(Attention(self.width, self.num_heads, name='self_attention')(y, y, mask)[0])
    y = nn.LayerNorm()(x)
    return x + drop(FeedForward(self.width, self.ff_size, self.dropout_rate)(y, train))


class DecoderLayer(nn.Module):
  width: int
  num_heads: int
  ff_size: int
  dropout_rate: float

  def setup(self):
    self.norms = [nn.LayerNorm() for _ in range(3)]
    self.self_attention = Attention(self.width, self.num_heads)
    self.cross_attention = Attention(self.width, self.num_heads)
    self.feed_forward = FeedForward(self.width, self.ff_size, self.dropout_rate)
    self.dropout = nn.Dropout(self.dropout_rate)

  def __call__(self, x, keys, values, self_mask, memory, memory_mask, train=False):
    """x [B, T, D]; self-attention over keys/values [B, L, ...] where self_mask [B, T, L];
    cross-attention over memory [B, S, D] where memory_mask [B, T, S].
    -> (x [B, T, D], cross-attention weights [B, heads, T, S])."""
    y = self.self_attention.attend(self.norms[0](x), keys, values, self_mask)[0]
    x = x + self.dropout(y, deterministic=not train)
    y, weights = self.cross_attention(self.norms[1](x), memory, memory_mask)
    x = x + self.dropout(y, deterministic=not train)
    y = self.feed_forward(self.norms[2](x), train)
    return x + self.dropout(y, deterministic=not train), weights

  def keys_values(self, x):
    """The self-attention keys and values of this layer's inputs x [B, T, D]."""
    return self.self_attention.keys_values(self.norms[0](x))


class DecodeCache(NamedTuple):
  keys: tuple  # Per decoder layer [B, heads, L, D / heads].
  values: tuple  # Same.
  index: jax.Array  # [B] int32: the position of the next token.


class Transformer(nn.Module):
  """Encoder-decoder Transformer over characters."""
  source_vocab_size: int
  target_vocab_size: int
  max_decode_length: int  # L: positions of the decode cache (config.decode.max_length).
  hidden_size: int = 128
  num_layers: int = 2  # Encoder layers, and decoder layers.
  num_heads: int = 4
  ff_size: int = 256
  dropout_rate: float = 0.1

  def setup(self):
    layer = dict(width=self.hidden_size, num_heads=self.num_heads, ff_size=self.ff_size,
                 dropout_rate=self.dropout_rate)
    self.source_embed = nn.Embed(self.source_vocab_size, self.hidden_size)
    self.target_embed = nn.Embed(self.target_vocab_size, self.hidden_size)
    self.encoder_layers = [EncoderLayer(**layer) for _ in range(self.num_layers)]
    self.decoder_layers = [DecoderLayer(**layer) for _ in range(self.num_layers)]
    self.encoder_norm = nn.LayerNorm()
    self.decoder_norm = nn.LayerNorm()
    self.dropout = nn.Dropout(self.dropout_rate)
    self.output_bias = self.param('output_bias', nn.initializers.zeros, (self.target_vocab_size,))

  def _embed(self, embed, tokens, positions, train):
    x = embed(tokens) * math.sqrt(self.hidden_size) + sinusoids(positions, self.hidden_size)
    return self.dropout(x, deterministic=not train)

  def encode(self, source, lengths, train=False):
    """source [B, S], lengths [B] -> (memory [B, S, D], memory_mask [B, S], empty DecodeCache)."""
    batch, steps = source.shape
    mask = valid_steps(batch, steps, lengths)
    x = self._embed(self.source_embed, source, jnp.arange(steps)[None, :], train)
    for layer in self.encoder_layers:
      x = layer(x, mask[:, None, :], train)
    memory = self.encoder_norm(x) * mask[..., None]
    heads = (self.num_heads, self.hidden_size // self.num_heads)
    empty = jnp.zeros((batch, heads[0], self.max_decode_length, heads[1]), memory.dtype)
    cache = DecodeCache(keys=(empty,) * self.num_layers, values=(empty,) * self.num_layers,
                        index=jnp.zeros((batch,), jnp.int32))
    return memory, mask, cache

  def _logits(self, x):
    return self.target_embed.attend(self.decoder_norm(x)) + self.output_bias

  def decode(self, tokens, state, memory, memory_mask, train=False):
    """Teacher forcing: tokens [B, T] (SOS first) -> (logits [B, T, V], state unchanged,
    cross-attention of the last layer averaged over heads [B, T, S])."""
    batch, steps = tokens.shape
    x = self._embed(self.target_embed, tokens, jnp.arange(steps)[None, :], train)
    causal = jnp.tril(jnp.ones((steps, steps), bool))[None]
    cross_mask = jnp.broadcast_to(memory_mask[:, None, :], (batch, steps, memory.shape[1]))
    for layer in self.decoder_layers:
      x, weights = layer(x, *layer.keys_values(x), causal, memory, cross_mask, train)
    return self._logits(x), state, weights.mean(axis=1)

  def decode_step(self, tokens, state, memory, memory_mask):
    """One token per row, no dropout: tokens [B], DecodeCache -> (logits [B, V], DecodeCache)."""
    index = state.index
    x = self._embed(self.target_embed, tokens[:, None], index[:, None], False)  # [B, 1, D]
    self_mask = (jnp.arange(self.max_decode_length)[None, :] <= index[:, None])[:, None, :]
    keys, values = [], []
    for layer, layer_keys, layer_values in zip(self.decoder_layers, state.keys, state.values):
      new_keys, new_values = layer.keys_values(x)
      # Every row is at the same position (the searches advance all rows together).
      keys.append(jax.lax.dynamic_update_slice(layer_keys, new_keys, (0, 0, index[0], 0)))
      values.append(jax.lax.dynamic_update_slice(layer_values, new_values, (0, 0, index[0], 0)))
      x, _ = layer(x, keys[-1], values[-1], self_mask, memory, memory_mask[:, None, :])
    return self._logits(x)[:, 0], DecodeCache(tuple(keys), tuple(values), index + 1)

  def __call__(self, source, lengths, target_inputs, train=False):
    """source [B, S], lengths [B], target_inputs [B, T] (SOS first) -> logits [B, T, V]."""
    memory, mask, state = self.encode(source, lengths, train)
    return self.decode(target_inputs, state, memory, mask, train)[0]
