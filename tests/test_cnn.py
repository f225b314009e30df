"""The homework CNN (hw2/models/cnn.py, the definition): parameter count, shapes, dropout only in
training, first-layer maps, it learns. tests/test_models.py holds the fast CNN to it."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hw2.models import count_params
from hw2.models.cnn import CNN


@pytest.fixture(scope='module')
def params():
  return CNN().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params']


@pytest.mark.slow
def test_parameter_count_is_the_homeworks(params):
  assert count_params(params) == 420_906
  assert params['conv1']['kernel'].shape == (5, 5, 1, 8)
  assert params['conv2']['kernel'].shape == (3, 3, 8, 16)
  assert params['dense1']['kernel'].shape == (576, 600)


def test_output_and_activation_map_shapes(params):
  x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
  assert CNN().apply({'params': params}, x).shape == (3, 10)
  maps = CNN().apply({'params': params}, x, method='first_layer_maps')
  assert maps.shape == (3, 28, 28, 8)


def test_first_layer_maps_are_the_first_convolution(params):
  x = jax.random.uniform(jax.random.key(3), (2, 28, 28, 1))
  maps = CNN().apply({'params': params}, x, method='first_layer_maps')
  expected = jax.lax.conv_general_dilated(
      x, params['conv1']['kernel'], (1, 1), ((2, 2), (2, 2)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + params['conv1']['bias']
  np.testing.assert_allclose(maps, expected, atol=1e-6)


def test_dropout_only_in_training(params):
  x = jax.random.uniform(jax.random.key(5), (4, 28, 28, 1))
  model = CNN()
  eval_a = model.apply({'params': params}, x)
  eval_b = model.apply({'params': params}, x, train=False)
  np.testing.assert_array_equal(eval_a, eval_b)
  train_a = model.apply({'params': params}, x, train=True, rngs={'dropout': jax.random.key(0)})
  train_b = model.apply({'params': params}, x, train=True, rngs={'dropout': jax.random.key(1)})
  assert not np.allclose(train_a, train_b)


def test_a_few_adam_steps_lower_the_loss_on_a_fixed_batch(params):
  x = jax.random.uniform(jax.random.key(6), (16, 28, 28, 1))
  y = jnp.arange(16) % 10
  model, tx = CNN(), optax.adam(1e-3)

  def loss_fn(p):
    logits = model.apply({'params': p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(p, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state, loss

  p, opt_state = params, tx.init(params)
  losses = []
  for _ in range(20):
    p, opt_state, loss = step(p, opt_state)
    losses.append(float(loss))
  assert losses[-1] < 0.5 * losses[0]


def test_the_definition_uses_flax_layers_only():
  jaxpr = str(jax.make_jaxpr(lambda p, x: CNN().apply({'params': p}, x))(
      CNN().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params'],
      jnp.zeros((2, 28, 28, 1))))
  assert jaxpr.count('conv_general_dilated') == 2 and 'custom_vjp' not in jaxpr
