"""The homework CNN: parameter count, shapes, its fast conv/pool equal the library ops, it learns."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hw2.models import count_params
from hw2.models.cnn import CNN, conv_relu_pool, im2col_conv


@pytest.fixture(scope='module')
def params():
  return CNN().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params']


def test_parameter_count_is_the_homeworks(params):
  assert count_params(params) == 420_906
  assert params['conv1']['kernel'].shape == (5, 5, 1, 8)
  assert params['conv2']['kernel'].shape == (3, 3, 8, 16)
  assert params['dense1']['kernel'].shape == (576, 600)


def test_output_and_activation_map_shapes(params):
  x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
  assert CNN().apply({'params': params}, x).shape == (3, 10)
  maps = CNN().apply({'params': params}, x, method=CNN.first_layer_maps)
  assert maps.shape == (3, 28, 28, 8)


@pytest.mark.parametrize('shape, kernel, padding', [
    ((2, 28, 28, 1), (5, 5, 1, 8), ((2, 2), (2, 2))),
    ((2, 14, 14, 8), (3, 3, 8, 16), 'VALID'),
    ((1, 9, 7, 3), (2, 4, 3, 5), ((1, 0), (0, 3))),
])
def test_im2col_conv_equals_lax_conv(shape, kernel, padding):
  x = jax.random.normal(jax.random.key(2), shape)
  w = jax.random.normal(jax.random.key(3), kernel)
  expected = jax.lax.conv_general_dilated(x, w, (1, 1), padding,
                                          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(im2col_conv(x, w, (1, 1), padding), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('shape, kernel, padding', [
    ((2, 28, 28, 1), (5, 5, 1, 8), ((2, 2), (2, 2))),
    ((2, 14, 14, 8), (3, 3, 8, 16), ((0, 0), (0, 0))),
    ((1, 10, 8, 3), (2, 4, 3, 5), ((1, 0), (0, 3))),
])
def test_conv_relu_pool_equals_lax_conv_relu_max_pool(shape, kernel, padding):
  x = jax.random.normal(jax.random.key(2), shape)
  w = jax.random.normal(jax.random.key(3), kernel)
  b = jax.random.normal(jax.random.key(4), kernel[-1:])
  conv = jax.lax.conv_general_dilated(x, w, (1, 1), padding,
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  expected = nn.max_pool(nn.relu(conv + b), (2, 2), strides=(2, 2))
  np.testing.assert_allclose(conv_relu_pool(x, w, b, padding), expected, atol=1e-5, rtol=1e-5)
  # Its gradient too (the pool's gradient goes to the maximum of each window).
  grad = lambda f: jax.grad(lambda w: jnp.sum(jnp.sin(f(w))))(w)
  np.testing.assert_allclose(
      grad(lambda w: conv_relu_pool(x, w, b, padding)),
      grad(lambda w: nn.max_pool(nn.relu(jax.lax.conv_general_dilated(
          x, w, (1, 1), padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + b), (2, 2),
                                 strides=(2, 2))), atol=1e-4, rtol=1e-4)


class LibraryOpsCNN(nn.Module):
  """The homework CNN written with Flax's library layers (nn.Conv, nn.max_pool): the reference the
  fast layers must match, parameter names included."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.max_pool(nn.relu(nn.Conv(8, (5, 5), padding=2, name='conv1')(x)), (2, 2), (2, 2))
    x = nn.max_pool(nn.relu(nn.Conv(16, (3, 3), padding='VALID', name='conv2')(x)), (2, 2),
                    (2, 2))
    x = nn.relu(nn.Dense(600, name='dense1')(x.reshape(x.shape[0], -1)))
    x = nn.Dropout(0.3, name='dropout')(x, deterministic=not train)
    return nn.Dense(10, name='dense3')(nn.relu(nn.Dense(120, name='dense2')(x)))


def test_training_steps_equal_the_library_ops_model():
  """Same initial parameters, and the same parameters after 20 Adam steps with dropout (batch 8),
  as the model built from nn.Conv and nn.max_pool."""
  images = jax.random.uniform(jax.random.key(6), (160, 28, 28, 1))
  labels = jax.random.randint(jax.random.key(7), (160,), 0, 10)
  x0 = jnp.zeros((1, 28, 28, 1))
  results = []
  for model in (CNN(), LibraryOpsCNN()):
    params = model.init(jax.random.key(0), x0)['params']
    tx = optax.adam(5e-4)
    opt_state = tx.init(params)

    def step(carry, t, model=model, tx=tx):
      params, opt_state = carry
      def loss(p):
        batch = jax.lax.dynamic_slice_in_dim(images, t * 8, 8)
        logits = model.apply({'params': p}, batch, train=True,
                             rngs={'dropout': jax.random.fold_in(jax.random.key(1), t)})
        return optax.softmax_cross_entropy_with_integer_labels(
            logits, jax.lax.dynamic_slice_in_dim(labels, t * 8, 8)).mean()
      updates, opt_state = tx.update(jax.grad(loss)(params), opt_state)
      return (optax.apply_updates(params, updates), opt_state), None

    results.append((params, jax.jit(lambda c: jax.lax.scan(step, c, jnp.arange(20))[0])(
        (params, opt_state))[0]))
  (init_fast, fast), (init_reference, reference) = results
  jax.tree_util.tree_map(np.testing.assert_array_equal, init_fast, init_reference)
  moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), fast, init_fast)
  assert min(jax.tree_util.tree_leaves(moved)) > 1e-4  # The steps changed every array.
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4),
                         fast, reference)


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
