"""The fast implementations' layers (hw2/models/fast/layers.py). Dropout: nn.Dropout's masks, bit
for bit. Dense: nn.Dense's parameters, function and gradients, with its kernel updated in place."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hw2.models.fast.layers import Dense, Dropout, threefry_bits


@pytest.mark.parametrize('shape', [(8, 600), (3, 5, 7), (1,), (64, 600)])
def test_threefry_bits_are_jax_random_bits(shape):
  for seed in range(3):
    key = jax.random.fold_in(jax.random.key(seed), 11)
    np.testing.assert_array_equal(jax.jit(threefry_bits, static_argnums=1)(key, shape),
                                  jax.random.bits(key, shape, jnp.uint32))


@pytest.mark.parametrize('rate', [0.3, 0.5, 0.9])
def test_dropout_equals_flax_dropout_bit_for_bit(rate):
  x = jax.random.normal(jax.random.key(9), (16, 600)) + 3.0
  for seed in range(3):
    rngs = {'dropout': jax.random.key(seed)}
    ours = jax.jit(lambda x: Dropout(rate).apply({}, x, False, rngs=rngs))(x)
    np.testing.assert_array_equal(ours, nn.Dropout(rate).apply({}, x, False, rngs=rngs))
    assert abs(float((ours == 0).mean()) - rate) < 0.03
  np.testing.assert_array_equal(Dropout(rate).apply({}, x, True), x)


def test_dropout_takes_jax_path_for_other_key_types():
  x = jnp.ones((4, 50))
  rngs = {'dropout': jax.random.key(1, impl='rbg')}
  np.testing.assert_array_equal(Dropout(0.3).apply({}, x, False, rngs=rngs),
                                nn.Dropout(0.3).apply({}, x, False, rngs=rngs))


def test_dropout_follows_the_non_partitionable_threefry_too():
  x = jnp.ones((8, 600))
  rngs = {'dropout': jax.random.key(4)}
  with jax.threefry_partitionable(False):
    np.testing.assert_array_equal(Dropout(0.3).apply({}, x, False, rngs=rngs),
                                  nn.Dropout(0.3).apply({}, x, False, rngs=rngs))


@pytest.mark.parametrize('shape', [(5, 12), (2, 3, 12)])
def test_dense_is_flax_dense(shape):
  x = jax.random.normal(jax.random.key(1), shape)
  params = Dense(7).init(jax.random.key(0), x)
  flax_params = nn.Dense(7).init(jax.random.key(0), x)
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, flax_params)
  params = jax.tree_util.tree_map(lambda p: p + 0.1, params)  # A nonzero bias.
  weights = jax.random.normal(jax.random.key(2), shape[:-1] + (7,))

  def loss(module, params, x):
    return jnp.sum(jnp.tanh(module.apply(params, x)) * weights)

  ours = jax.grad(functools.partial(loss, Dense(7)), argnums=(0, 1))(params, x)
  theirs = jax.grad(functools.partial(loss, nn.Dense(7)), argnums=(0, 1))(params, x)
  np.testing.assert_allclose(Dense(7).apply(params, x), nn.Dense(7).apply(params, x), rtol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _adam_steps_hlo(module, tx):
  """Compiled HLO of 3 steps of optimizer `tx` (a scan) of a 2-layer MLP built from `module`."""
  x = jax.random.normal(jax.random.key(0), (8, 96))

  def loss(params):
    hidden = nn.relu(module(48).apply(params['one'], x))
    return jnp.sum(module(10).apply(params['two'], hidden) ** 2)

  params = {'one': module(48).init(jax.random.key(1), x),
            'two': module(10).init(jax.random.key(2), jnp.zeros((8, 48)))}
  def steps(params, opt_state):
    def body(carry, _):
      params, opt_state = carry
      updates, opt_state = tx.update(jax.grad(loss)(params), opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None
    return jax.lax.scan(body, (params, opt_state), None, length=3)[0]

  return jax.jit(steps, donate_argnums=(0, 1)).lower(params, tx.init(params)).compile().as_text()


def test_dense_kernels_are_updated_in_place_without_a_copy_per_step():
  # With nn.Dense, XLA copies each kernel whose old value the input gradient still reads.
  assert 'f32[48,10]{1,0} copy(' in _adam_steps_hlo(nn.Dense, optax.adam(1e-3))
  assert 'f32[48,10]{1,0} copy(' not in _adam_steps_hlo(Dense, optax.adam(1e-3))
