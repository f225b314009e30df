"""What the fast CNN's departure from Flax's library gains (hw2/models/fast/cnn.py: each convolution,
ReLU and 2x2 max-pooling as one channel-major matrix product), measured by alternating training
epochs of the fast and the reference implementation in one process (hw2/train.py's jitted
multi-step, the homework's batch size 8).

  python benchmarks/departures.py [--rounds 5] [--examples 4000] [--cnn_batch 8]

After one compiling epoch each, the implementations' epochs run in turn, `--rounds` times, and
each one's median examples/s is reported beside the fast one's, as `gain` = fast / variant - 1
(the share of the step the departure saves is gain / (1 + gain)). A departure stays only while
its gain is at least 10 % (docs/performance.md); to measure another one, add a variant whose
model replaces it with the library's way.
"""
import argparse
import statistics
import time

import jax

from common import KMNIST_DIR, cnn_task, emit

VARIANTS = {'fast': 'fast', 'reference': 'reference'}  # Label -> config.model.impl.


def prepare(make_task, impl):
  """A function that trains one epoch of the variant and returns its seconds (compiled here)."""
  from hw2 import parallel  # pylint: disable=g-import-not-at-top
  from hw2 import train  # pylint: disable=g-import-not-at-top
  config, task = make_task(impl)
  arrays = task.train_arrays()
  n = len(next(iter(arrays.values())))
  data = parallel.put_replicated(arrays)
  rng = parallel.put_replicated(jax.random.key(1))
  indices = parallel.put_batch(
      train.epoch_batch_indices(jax.random.key(2), 1, n, config.batch_size), axis=1)
  multi_step = train.make_multi_step(task.loss)
  holder = {'state': train.init_train_state(task, config, jax.random.key(0),
                                            n // config.batch_size)}
  holder['state'], metrics = multi_step(holder['state'], data, indices, rng)  # Compiles.
  jax.block_until_ready(metrics)

  def epoch():
    start = time.perf_counter()
    holder['state'], metrics = multi_step(holder['state'], data, indices, rng)
    jax.block_until_ready(metrics)
    return time.perf_counter() - start
  return epoch, indices.size


def measure(name, variants, make_task, rounds):
  epochs = {label: prepare(make_task, impl) for label, impl in variants.items()}
  rates = {label: [] for label in variants}
  for _ in range(rounds):
    for label, (epoch, examples) in epochs.items():
      rates[label].append(examples / epoch())
  fast = statistics.median(rates['fast'])
  for label, values in rates.items():
    rate = statistics.median(values)
    emit(benchmark=f'{name}_departures', variant=label, examples_per_s=round(rate, 1),
         gain=round(fast / rate - 1, 3), rounds=rounds)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--rounds', type=int, default=5)
  parser.add_argument('--examples', type=int, default=4000, help='CNN training images')
  parser.add_argument('--cnn_batch', type=int, default=8, help='the homework: 8')
  args = parser.parse_args()
  measure(f'cnn_batch{args.cnn_batch}', VARIANTS,
          lambda impl: cnn_task(KMNIST_DIR, args.cnn_batch, args.examples, impl), args.rounds)


if __name__ == '__main__':
  main()
