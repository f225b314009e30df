"""Layers of the fast (CPU) implementations: nn.Dense and nn.Dropout's functions, written so that
XLA's CPU backend runs them faster (the docstrings say why; BUILD.md how much)."""
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


class Dropout(nn.Module):
  """nn.Dropout's function, mask for mask (the same 'dropout' RNG, the same Bernoulli draws from
  the same threefry bits), with the bits from `threefry_bits`: on CPU one fused kernel instead of
  JAX's loop of five (about 0.15 ms of a 1.6 ms batch-8 CNN step, by the profiler's trace).

  Keys of another PRNG implementation, JAX's non-partitionable threefry (an older counter
  layout) or more than 2**32 elements take nn.Dropout's own path.
  """
  rate: float

  @nn.compact
  def __call__(self, inputs, deterministic):
    if deterministic or self.rate == 0.0:
      return inputs
    if self.rate == 1.0:
      return jnp.zeros_like(inputs)
    rng = self.make_rng('dropout')
    keep_prob = 1.0 - self.rate
    if not _is_partitionable_threefry(rng) or inputs.size >= 2**32:
      keep = jax.random.bernoulli(rng, keep_prob, inputs.shape)
    else:  # jax.random.uniform's mapping of 32 bits to [0, 1), then bernoulli's comparison.
      mantissa = threefry_bits(rng, inputs.shape) >> jnp.uint32(9)
      uniform = lax.bitcast_convert_type(mantissa | jnp.uint32(0x3F800000), jnp.float32) - 1.0
      keep = uniform < jnp.float32(keep_prob)
    return lax.select(keep, inputs / keep_prob, jnp.zeros_like(inputs))


SMALL_BATCH = 16  # See _dense_bwd.


@jax.custom_vjp
def dense(inputs, kernel, bias):
  """inputs [..., I] @ kernel [I, O] + bias [O] -> [..., O]: nn.Dense's function."""
  return lax.dot_general(inputs, kernel, (((inputs.ndim - 1,), (0,)), ((), ()))) + bias


def _dense_fwd(inputs, kernel, bias):
  return dense(inputs, kernel, bias), (inputs, kernel)


def _dense_bwd(residuals, g):
  """The gradients autodiff gives, with the kernel's ordered after the inputs'.

  The input gradient reads the old kernel, and nothing else orders that read before the optimizer
  writes the new kernel into the same buffer, so XLA copies the kernel every step to keep the old
  one (for the CNN's 576 x 600 matrix about 4% of a batch-8 step). Adding 0 * (one element of the
  input gradient) to the kernel gradient adds zero (for a finite input gradient) but makes the
  update wait for the input gradient, and the copy goes. The input gradient is then always
  computed: for a layer on inputs that need no gradient, nn.Dense is the better choice.

  The input gradient is computed as (kernel @ g^T)^T, its transpose kept apart by adding 0 (else
  XLA folds it back into g @ kernel^T): on CPU that product, with the kernel as its left operand,
  is faster for the few rows of a small batch (the CNN's batch-8 step: 3% by alternating both).

  For at most SMALL_BATCH rows the kernel gradient reads a copy of the inputs made once g exists
  (x + 0 * g[0, 0]). That changes only the order XLA gives the step's kernels: on CPU its runtime
  then runs the optimizer's update of a large kernel beside the rest of the backward pass instead
  of before it (the CNN, alternating both: batch 8 +5%, 16 +4%, 32 the same, 64 -4%).
  """
  inputs, kernel = residuals
  x, g2 = inputs.reshape(-1, kernel.shape[0]), g.reshape(-1, kernel.shape[1])
  d_inputs_t = lax.dot_general(kernel, g2, (((1,), (1,)), ((), ())))  # [I, N]
  d_inputs = (d_inputs_t + 0.0 * g2[0, 0]).T
  if x.shape[0] <= SMALL_BATCH:
    x = x + 0.0 * g2[0, 0]
  d_kernel = x.T @ g2 + 0.0 * d_inputs[0, 0]
  return d_inputs.reshape(inputs.shape), d_kernel, g2.sum(0)


dense.defvjp(_dense_fwd, _dense_bwd)


class Dense(nn.Module):
  """nn.Dense(features) with its parameters (kernel [I, features], bias [features], initialised
  as nn.Dense initialises them) and function, through `dense`, whose gradient lets XLA update the
  kernel in place."""
  features: int

  @nn.compact
  def __call__(self, inputs):
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (inputs.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,), jnp.float32)
    return dense(inputs, kernel, bias)
