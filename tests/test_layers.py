"""hw2/models/fast/layers.py: the unrolled threefry is jax.random.bits, and dropout through it draws
nn.Dropout's masks bit for bit."""
import contextlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hw2.models.fast.layers import threefry_bits, threefry_dropout


@pytest.mark.parametrize('shape', [(8, 600), (3, 5, 7), (1,), (64, 600)])
def test_threefry_bits_are_jax_random_bits(shape):
  for seed in range(3):
    key = jax.random.fold_in(jax.random.key(seed), 11)
    np.testing.assert_array_equal(jax.jit(threefry_bits, static_argnums=1)(key, shape),
                                  jax.random.bits(key, shape, jnp.uint32))


def _dropout(rate, x, rngs, deterministic=False, fast=True):
  """nn.Dropout(rate) applied to x, under threefry_dropout when `fast`."""
  with nn.intercept_methods(threefry_dropout) if fast else contextlib.nullcontext():
    return nn.Dropout(rate).apply({}, x, deterministic, rngs=rngs)


@pytest.mark.parametrize('rate', [0.3, 0.5, 0.9, 1.0])
def test_threefry_dropout_equals_flax_dropout_bit_for_bit(rate):
  x = jax.random.normal(jax.random.key(9), (16, 600)) + 3.0
  for seed in range(3):
    rngs = {'dropout': jax.random.key(seed)}
    ours = jax.jit(lambda x: _dropout(rate, x, rngs))(x)  # pylint: disable=cell-var-from-loop
    np.testing.assert_array_equal(ours, _dropout(rate, x, rngs, fast=False))
    assert abs(float((ours == 0).mean()) - rate) < 0.03
  np.testing.assert_array_equal(_dropout(rate, x, {}, deterministic=True), x)


def test_threefry_dropout_replaces_jax_random_bits():
  x, rngs = jnp.ones((8, 600)), {'dropout': jax.random.key(0)}
  fast = str(jax.make_jaxpr(lambda x: _dropout(0.3, x, rngs))(x))
  library = str(jax.make_jaxpr(lambda x: _dropout(0.3, x, rngs, fast=False))(x))
  assert 'random_bits' in library and 'random_bits' not in fast


def test_threefry_dropout_takes_jax_path_for_other_key_types():
  x = jnp.ones((4, 50))
  rngs = {'dropout': jax.random.key(1, impl='rbg')}
  np.testing.assert_array_equal(_dropout(0.3, x, rngs), _dropout(0.3, x, rngs, fast=False))


def test_threefry_dropout_follows_the_non_partitionable_threefry_too():
  x = jnp.ones((8, 600))
  rngs = {'dropout': jax.random.key(4)}
  with jax.threefry_partitionable(False):
    np.testing.assert_array_equal(_dropout(0.3, x, rngs), _dropout(0.3, x, rngs, fast=False))
