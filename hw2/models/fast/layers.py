"""What the fast (CPU) implementations change in Flax's layers: nn.Dropout's masks drawn by an
unrolled threefry that XLA's CPU backend runs as one kernel (the docstrings say why; BUILD.md how
much)."""
import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotate_left(x, bits):
  return (x << jnp.uint32(bits)) | (x >> jnp.uint32(32 - bits))


def threefry_bits(rng, shape):
  """uint32 [shape] equal bit for bit to jax.random.bits(rng, shape) for a threefry2x32 key.

  JAX lowers threefry on CPU as a loop of 5 iterations (small programs, slow to run: each
  iteration is a separate kernel); this is the same hash, Threefry-2x32 with 20 rounds, unrolled
  into one elementwise computation that XLA fuses into a single kernel. The counter of element i is
  the 64-bit flat index i (high word 0), as in JAX's partitionable threefry, built from iotas along
  each dimension so that the SPMD partitioner splits it like any elementwise op.
  """
  data = jax.random.key_data(rng)
  k0, k1 = data[0], data[1]
  ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(0x1BD11BDA))
  strides = np.cumprod((1,) + tuple(shape[::-1]))[:-1][::-1]
  index = sum(lax.broadcasted_iota(jnp.uint32, shape, d) * jnp.uint32(s)
              for d, s in enumerate(strides))
  x0, x1 = jnp.zeros(shape, jnp.uint32) + ks[0], index + ks[1]
  for i in range(5):
    for bits in _THREEFRY_ROTATIONS[i % 2]:
      x0 = x0 + x1
      x1 = x0 ^ _rotate_left(x1, bits)
    x0 = x0 + ks[(i + 1) % 3]
    x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
  return x0 ^ x1


def _is_partitionable_threefry(rng):
  return (jax.config.jax_threefry_partitionable
          and jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key)
          and str(jax.random.key_impl(rng)) == 'threefry2x32')


def bernoulli_keep(rng, keep_prob, shape):
  """jax.random.bernoulli(rng, keep_prob, shape), draw for draw, from `threefry_bits`.

  Keys of another PRNG implementation, JAX's non-partitionable threefry (an older counter layout)
  or more than 2**32 elements take jax.random.bernoulli itself.
  """
  if not _is_partitionable_threefry(rng) or int(np.prod(shape)) >= 2**32:
    return jax.random.bernoulli(rng, keep_prob, shape)
  # jax.random.uniform's mapping of 32 bits to [0, 1), then bernoulli's comparison.
  mantissa = threefry_bits(rng, shape) >> jnp.uint32(9)
  uniform = lax.bitcast_convert_type(mantissa | jnp.uint32(0x3F800000), jnp.float32) - 1.0
  return uniform < jnp.float32(keep_prob)


def threefry_dropout(next_fun, args, kwargs, context):
  """A Flax method interceptor (`nn.intercept_methods`): every nn.Dropout call inside it computes
  nn.Dropout's function, mask for mask (the same 'dropout' RNG stream, the same Bernoulli draws
  from the same threefry bits), with the bits from `threefry_bits`: on CPU one fused kernel
  instead of JAX's loop of five separate kernels. Other calls, and dropout with broadcast
  dimensions or an explicit rng, run as they are.
  """
  module = context.module
  if (type(module) is not nn.Dropout or context.method_name != '__call__'  # pylint: disable=unidiomatic-typecheck
      or module.broadcast_dims or kwargs.get('rng') is not None or len(args) > 2):
    return next_fun(*args, **kwargs)
  inputs = args[0]
  deterministic = nn.merge_param('deterministic', module.deterministic,
                                 args[1] if len(args) > 1 else kwargs.get('deterministic'))
  if module.rate == 0.0 or deterministic:
    return inputs
  if module.rate == 1.0:
    return jnp.zeros_like(inputs)
  keep_prob = 1.0 - module.rate
  keep = bernoulli_keep(module.make_rng(module.rng_collection), keep_prob, inputs.shape)
  return lax.select(keep, inputs / keep_prob, jnp.zeros_like(inputs))
