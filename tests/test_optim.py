"""hw2/optim.py's Adam against optax.adam."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hw2 import optim


def _params():
  rng = np.random.RandomState(0)
  return {'kernel': jnp.asarray(rng.randn(30, 20), jnp.float32),
          'bias': jnp.zeros(20, jnp.float32), 'scale': jnp.ones((), jnp.float32)}


def _gradients(t, params):
  """Step t's gradients: magnitudes from 1e-6 to 10, some exactly 0 (a dead unit's)."""
  rng = np.random.RandomState(100 + t)
  def draw(p):
    g = rng.randn(*p.shape) * 10.0 ** rng.uniform(-6, 1, p.shape)
    return jnp.asarray(np.where(rng.rand(*p.shape) < 0.1, 0.0, g), jnp.float32)
  return jax.tree.map(draw, params)


def _train(tx, steps):
  params = _params()
  state = tx.init(params)
  update = jax.jit(tx.update)
  for t in range(steps):
    updates, state = update(_gradients(t, params), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def test_the_state_is_optax_adams():
  ours, theirs = optim.adam(1e-3).init(_params()), optax.adam(1e-3).init(_params())
  assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(theirs)
  for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
    assert a.shape == b.shape and a.dtype == b.dtype


def test_parameters_and_moments_follow_optax_adam():
  (ours, our_state), (theirs, their_state) = (_train(tx, 200) for tx in
                                              (optim.adam(1e-2), optax.adam(1e-2)))
  start = _params()
  for a, b, s in zip(*(jax.tree_util.tree_leaves(t) for t in (ours, theirs, start))):
    assert float(np.abs(b - s).max()) > 0.01  # 200 steps of lr 1e-2 moved every array...
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # ...and both alike.
  assert int(our_state[0].count) == int(their_state[0].count) == 200
  for a, b in zip(jax.tree_util.tree_leaves(our_state), jax.tree_util.tree_leaves(their_state)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-12)


def test_first_step_is_the_learning_rate_times_the_gradient_sign():
  """At t = 1 Adam's step is -lr * g / (|g| + eps): -lr * sign(g) where |g| >> eps, 0 where g = 0."""
  params = _params()
  grads = _gradients(0, params)
  updates, _ = optim.adam(1e-3).update(grads, optim.adam(1e-3).init(params), params)
  for u, g in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(grads)):
    g = np.asarray(g, np.float64)
    np.testing.assert_allclose(u, -1e-3 * g / (np.abs(g) + 1e-8), rtol=1e-5, atol=1e-10)
