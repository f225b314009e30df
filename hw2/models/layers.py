"""Layers shared by the models."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def _mix32(x):
  """murmur3's 32-bit finaliser: a bijection on uint32 that scatters every input bit."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x85EBCA6B)
  x = x ^ (x >> 13)
  x = x * jnp.uint32(0xC2B2AE35)
  return x ^ (x >> 16)


def hashed_bits(rng, shape):
  """Pseudo-random uint32 [shape] from a counter hash keyed by two words drawn from `rng`.

  Each element is mix32(mix32(index ^ k0) + k1): a handful of fused integer ops per element, where
  threefry (jax.random.bits) runs a loop of rounds per pair of words. Good enough for dropout
  masks (not for anything that needs cryptographic quality).
  """
  keys = jax.random.bits(rng, (2,), jnp.uint32)
  index = jax.lax.iota(jnp.uint32, int(np.prod(shape))).reshape(shape)
  return _mix32(_mix32(index ^ keys[0]) + keys[1])


class HashDropout(nn.Module):
  """Inverted dropout (zero with probability `rate`, scale the rest by 1 / (1 - rate)) whose masks
  come from `hashed_bits`; on CPU this costs a small fraction of nn.Dropout's threefry bits.

  Uses the 'dropout' RNG collection, like nn.Dropout.
  """
  rate: float

  @nn.compact
  def __call__(self, inputs, deterministic):
    if deterministic or self.rate == 0.0:
      return inputs
    threshold = jnp.uint32(min(int(round(self.rate * 2.0**32)), 2**32 - 1))
    keep = hashed_bits(self.make_rng('dropout'), inputs.shape) >= threshold
    return jnp.where(keep, inputs / (1.0 - self.rate), jnp.zeros_like(inputs))
