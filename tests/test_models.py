"""The fast CNN (hw2/models/fast/) computes its definition's function (hw2/models/cnn.py):
the same parameters, outputs and gradients with dropout off and on (the same masks), the same
parameters after Adam steps, and checkpoints that move between them; `impl='auto'` chooses."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from hw2 import models
from hw2.models import cnn
from hw2.models.fast import cnn as fast_cnn


def _images(seed, batch):
  """Images like the data's: in [0, 1], about half the pixels exactly 0 (background)."""
  return jnp.maximum(jax.random.uniform(jax.random.key(seed), (batch, 28, 28, 1)) * 2 - 1, 0.0)


def _assert_trees_close(a, b, **tolerance):
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(x, y, **tolerance)


# --- CNN ----------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def cnn_params():
  return cnn.CNN().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params']


def test_cnn_parameters_are_the_definitions(cnn_params):
  fast = fast_cnn.CNN().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params']
  _assert_trees_close(fast, cnn_params, rtol=0, atol=0)


@pytest.mark.slow
def test_cnn_outputs_and_gradients_equal_the_definitions(cnn_params):
  x, labels = _images(2, 16), jnp.arange(16) % 10
  rngs = {'dropout': jax.random.key(7)}
  fast, reference = fast_cnn.CNN(), cnn.CNN()
  for train in (False, True):
    np.testing.assert_allclose(fast.apply({'params': cnn_params}, x, train, rngs=rngs),
                               reference.apply({'params': cnn_params}, x, train, rngs=rngs),
                               atol=2e-6, rtol=1e-5)

  def loss(model, p):
    logits = model.apply({'params': p}, x, True, rngs=rngs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  ours = jax.grad(lambda p: loss(fast, p))(cnn_params)
  theirs = jax.grad(lambda p: loss(reference, p))(cnn_params)
  for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
    np.testing.assert_allclose(a, b, atol=1e-6 * float(np.abs(b).max()), rtol=1e-4)


def test_cnn_first_layer_maps_equal_the_definitions(cnn_params):
  x = _images(3, 2)
  np.testing.assert_allclose(
      fast_cnn.CNN().apply({'params': cnn_params}, x, method='first_layer_maps'),
      cnn.CNN().apply({'params': cnn_params}, x, method='first_layer_maps'), atol=1e-6)


def adam_steps(params, loss_at, steps, learning_rate):
  """`params` after `steps` jitted optax.adam steps on loss_at(params, t) (t: the step)."""
  tx = optax.adam(learning_rate)

  @jax.jit
  def step(p, opt_state, t):
    updates, opt_state = tx.update(jax.grad(loss_at)(p, t), opt_state, p)
    return optax.apply_updates(p, updates), opt_state

  p, opt_state = params, tx.init(params)
  for t in range(steps):
    p, opt_state = step(p, opt_state, t)
  return p


@pytest.mark.slow
def test_cnn_twenty_adam_steps_reach_the_definitions_parameters(cnn_params):
  """New batch and dropout key at each step, dropout on."""
  def loss_at(model):
    def loss(p, t):
      x, labels = _images(100 + t, 8), jax.random.randint(jax.random.key(t), (8,), 0, 10)
      logits = model.apply({'params': p}, x, True, rngs={'dropout': jax.random.key(t)})
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss

  ours, theirs = (adam_steps(cnn_params, loss_at(m), 20, 1e-3)
                  for m in (fast_cnn.CNN(), cnn.CNN()))
  for a, b, start in zip(*(jax.tree_util.tree_leaves(t) for t in (ours, theirs, cnn_params))):
    assert float(np.abs(b - start).max()) > 1e-3  # Training moved every parameter array...
    # ...and both moved them alike: within 5% of one step (lr 1e-3). Adam divides by the root of
    # the squared gradients' average, so where a gradient is near zero, the two definitions'
    # different rounding (which depends on the CPU's kernels) moves a weight by up to 1.3e-5.
    np.testing.assert_allclose(a, b, atol=5e-5, rtol=1e-4)


# --- Choosing ------------------------------------------------------------------------------------

@pytest.mark.parametrize('impl, module', [('reference', cnn), ('fast', fast_cnn),
                                          ('auto', fast_cnn)])  # The tests run on CPU.
def test_build_passes_config_model_as_keyword_arguments(impl, module):
  config = ml_collections.ConfigDict({'impl': impl, 'dropout_rate': 0.25})
  model = models.build('cnn', config, num_classes=7)
  assert type(model) is module.CNN  # pylint: disable=unidiomatic-typecheck
  assert (model.dropout_rate, model.num_classes) == (0.25, 7)
