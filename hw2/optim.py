"""Adam: optax's moments and state, with its update written with one division per weight.

optax.adam turns the moments m, v of each weight into the step

    -lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

which costs three divisions and a square root per weight. On CPU XLA's kernel for that step is
bound by the divider: for the CNN's 576 x 600 dense kernel it was the slowest kernel of a batch-8
training step. The same step is

    -(lr / (1 - b1^t)) * m / (sqrt(v) * (1 / sqrt(1 - b2^t)) + eps)

with the bias corrections folded into two scalars per step: one division and one square root per
weight. The moments and the state are optax.adam's own (optax.scale_by_adam computes them; its
step, left unused, is dropped by XLA), so checkpoints of either load into the other, and the
parameters agree with optax.adam's to float rounding (tests/test_optim.py).
"""
import jax
import jax.numpy as jnp
import optax


def adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8):
  """optax.adam(learning_rate, b1, b2, eps) with the step above; a constant learning rate."""
  moments = optax.scale_by_adam(b1, b2, eps)

  def init(params):
    return moments.init(params), optax.EmptyState()  # optax.adam's state: (Adam's, the scale's).

  def update(grads, state, params=None):
    del params
    _, adam_state = moments.update(grads, state[0])
    count = adam_state.count
    scale = -learning_rate / (1 - b1**count)
    root = jax.lax.rsqrt(1 - b2**count)
    steps = jax.tree.map(lambda m, v: scale * m / (jnp.sqrt(v) * root + eps),
                         adam_state.mu, adam_state.nu)
    return steps, (adam_state, state[1])

  return optax.GradientTransformation(init, update)
