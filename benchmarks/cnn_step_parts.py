"""Where a CNN training step goes: microseconds per step of its parts, each timed as the trainer
runs a step (jitted, a scan over the epoch's steps, best of 3 epochs, compilation excluded).

  python benchmarks/cnn_step_parts.py [--data data/kmnist] [--examples 8000] [--batch_sizes 8,64]

For each batch size, one JSON line with:
- adam_step: the trainer's step (forward, backward, Adam), what cnn_throughput.py measures;
- sgd_step: the same step with plain SGD's update (config.optimizer=sgd);
- forward: the training loss alone (forward pass with dropout, softmax cross-entropy);
- adam_update / sgd_update: the optimizer's update of the CNN's 420,906 parameters alone, from
  fixed gradients;
- backward: sgd_step - forward - sgd_update (the gradient computation);
- budget_10k: the microseconds a step may take for 10,000 training examples/s.
"""
import argparse

import jax
import numpy as np
import optax

from common import KMNIST_DIR, cnn_task, emit, timed, training_rate


def _per_step(fn, steps):
  """Microseconds per step of fn() running `steps` steps: best of 3 after a warm-up."""
  return 1e6 * timed(fn) / steps


def measure(data_dir, batch_size, examples):
  from hw2 import optim  # pylint: disable=g-import-not-at-top
  from hw2 import parallel  # pylint: disable=g-import-not-at-top
  from hw2 import train  # pylint: disable=g-import-not-at-top
  config, task = cnn_task(data_dir, batch_size, examples)
  arrays = task.train_arrays()
  n = len(next(iter(arrays.values())))
  steps = n // batch_size
  parts = {}
  for name in ('adam', 'sgd'):
    config.optimizer = name
    rate, _, state = training_rate(config, task)
    parts[f'{name}_step'] = 1e6 * batch_size / rate

  data = parallel.put_replicated(arrays)
  rng = parallel.put_replicated(jax.random.key(1))
  indices = parallel.put_batch(train.epoch_batch_indices(jax.random.key(2), 1, n, batch_size), 1)

  @jax.jit
  def losses(params, data, batch_indices, rng):
    def body(carry, rows):
      batch = jax.tree_util.tree_map(lambda a: a[rows], data)
      return carry, task.loss(params, batch, jax.random.fold_in(rng, rows[0]))
    return jax.lax.scan(body, 0, batch_indices)[1]

  parts['forward'] = _per_step(lambda: losses(state.params, data, indices, rng), steps)

  grads = jax.tree_util.tree_map(lambda p: 1e-3 * np.ones(p.shape, p.dtype), state.params)
  for name in ('adam', 'sgd'):
    config.optimizer = name
    tx = optim.make_optimizer(config, n // batch_size)

    @jax.jit
    def updates(params, opt_state, grads, tx=tx):
      def body(carry, _):
        params, opt_state = carry
        delta, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, delta), opt_state), None
      return jax.lax.scan(body, (params, opt_state), None, length=steps)[0]

    opt_state = tx.init(state.params)
    parts[f'{name}_update'] = _per_step(lambda: updates(state.params, opt_state, grads), steps)
  parts['backward'] = parts['sgd_step'] - parts['forward'] - parts['sgd_update']
  emit(benchmark='cnn_step_parts', batch_size=batch_size, unit='us_per_step',
       budget_10k=round(1e6 * batch_size / 10_000, 1),
       **{k: round(v, 1) for k, v in parts.items()})


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--data', default=KMNIST_DIR, help='a folder of IDX gzip files')
  parser.add_argument('--examples', type=int, default=8000)
  parser.add_argument('--batch_sizes', default='8,64')
  args = parser.parse_args()
  for batch_size in (int(b) for b in args.batch_sizes.split(',')):
    measure(args.data, batch_size, args.examples)


if __name__ == '__main__':
  main()
