"""The homework CNN: parameter count, shapes, the function of Flax's library layers (outputs,
gradients, 20 Adam steps), it learns."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hw2.models import count_params
from hw2.models.cnn import CNN, max_of_4


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


class ReferenceCNN(nn.Module):
  """The homework CNN written with Flax's library layers: the function hw2's CNN must compute."""
  num_classes: int = 10
  dropout_rate: float = 0.3

  @nn.compact
  def __call__(self, images, train=False):
    x = nn.relu(nn.Conv(8, (5, 5), padding=2, name='conv1')(images))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(nn.Conv(16, (3, 3), padding='VALID', name='conv2')(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2)).reshape(images.shape[0], -1)
    x = nn.relu(nn.Dense(600, name='dense1')(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train, name='dropout')(x)
    x = nn.relu(nn.Dense(120, name='dense2')(x))
    return nn.Dense(self.num_classes, name='dense3')(x)


def _images(seed, batch):
  """Images like the data's: in [0, 1], about half the pixels exactly 0 (background)."""
  return jnp.maximum(jax.random.uniform(jax.random.key(seed), (batch, 28, 28, 1)) * 2 - 1, 0.0)


def test_parameters_are_the_library_layers_parameters(params):
  reference = ReferenceCNN().init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))['params']
  assert jax.tree_util.tree_structure(reference) == jax.tree_util.tree_structure(params)
  for a, b in zip(jax.tree_util.tree_leaves(reference), jax.tree_util.tree_leaves(params)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('chains', [1, 2, 3])  # 3 does not divide the batch: one chain.
def test_outputs_and_gradients_equal_the_library_layers(params, chains):
  x, labels = _images(2, 16), jnp.arange(16) % 10
  rngs = {'dropout': jax.random.key(7)}
  for train in (False, True):
    ours = CNN(chains=chains).apply({'params': params}, x, train, rngs=rngs)
    theirs = ReferenceCNN().apply({'params': params}, x, train, rngs=rngs)
    np.testing.assert_allclose(ours, theirs, atol=2e-6, rtol=1e-5)

  def loss(model, p):
    logits = model.apply({'params': p}, x, True, rngs=rngs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  ours = jax.grad(lambda p: loss(CNN(chains=chains), p))(params)
  theirs = jax.grad(lambda p: loss(ReferenceCNN(), p))(params)
  for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
    np.testing.assert_allclose(a, b, atol=1e-6 * float(np.abs(b).max()), rtol=1e-4)


@pytest.mark.parametrize('chains', [1, 2])
def test_twenty_adam_steps_reach_the_same_parameters_as_the_library_layers(params, chains):
  """The issue's bar for a faster CNN: the same parameters after N training steps (dropout on,
  new batch and dropout key at each step), within float tolerance."""
  tx = optax.adam(1e-3)

  def run(model):
    @jax.jit
    def step(p, opt_state, t):
      x, labels = _images(100 + t, 8), jax.random.randint(jax.random.key(t), (8,), 0, 10)

      def loss(p):
        logits = model.apply({'params': p}, x, True, rngs={'dropout': jax.random.key(t)})
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      grads = jax.grad(loss)(p)
      updates, opt_state = tx.update(grads, opt_state, p)
      return optax.apply_updates(p, updates), opt_state

    p, opt_state = params, tx.init(params)
    for t in range(20):
      p, opt_state = step(p, opt_state, t)
    return p

  ours, theirs = run(CNN(chains=chains)), run(ReferenceCNN())
  for a, b, start in zip(*(jax.tree_util.tree_leaves(t) for t in (ours, theirs, params))):
    assert float(np.abs(b - start).max()) > 1e-3  # Training moved every parameter array...
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)  # ...and both moved them alike.


def test_first_layer_maps_are_the_first_convolution(params):
  x = _images(3, 2)
  maps = CNN().apply({'params': params}, x, method=CNN.first_layer_maps)
  expected = nn.Conv(8, (5, 5), padding=2).apply({'params': params['conv1']}, x)
  np.testing.assert_allclose(maps, expected, atol=1e-6)


def test_max_of_4_has_reduce_max_gradient_also_at_ties():
  x = jnp.array([[[1.0, 0.0, 2.0]], [[3.0, 0.0, 2.0]], [[-1.0, 0.0, 0.5]], [[3.0, 0.0, 1.0]]])
  np.testing.assert_array_equal(max_of_4(x), x.max(axis=0))
  weights = jnp.array([[1.0, 2.0, 3.0]])
  ours = jax.grad(lambda x: (max_of_4(x) * weights).sum())(x)
  np.testing.assert_array_equal(ours, jax.grad(lambda x: (x.max(axis=0) * weights).sum())(x))
  np.testing.assert_array_equal(ours[:, 0, 1], [0.5, 0.5, 0.5, 0.5])  # A 4-way tie shares.


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


def test_two_chains_run_the_convolution_blocks_on_each_half_of_an_even_batch(params):
  def products(chains, batch):
    jaxpr = jax.make_jaxpr(lambda x: CNN(chains=chains).apply({'params': params}, x))(
        jnp.zeros((batch, 28, 28, 1)))
    return str(jaxpr).count('dot_general')
  # Two convolution products per chain, three dense products.
  assert (products(1, 8), products(2, 8), products(2, 7)) == (5, 7, 5)
