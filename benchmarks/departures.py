"""What each departure of the fast CNN from Flax's library gains, measured by alternating
training epochs with and without it in one process (hw2/train.py's jitted multi-step, the
homework's batch size 8).

  python benchmarks/departures.py [--rounds 5] [--examples 4000] [--cnn_batch 8]

Each variant is the fast implementation with one departure replaced by the library's way (or the
reference model itself); after one compiling epoch each, the variants' epochs run in turn,
`--rounds` times, and each variant's median examples/s is reported beside the fast one's, as
`gain` = fast / variant - 1 (the share of the step the departure saves is gain / (1 + gain)).
"""
import argparse
import contextlib
import statistics
import time

import jax

from common import KMNIST_DIR, cnn_task, emit


@contextlib.contextmanager
def patched(module, **values):
  """Replaces names of `module` for the duration of the block (the variant is traced there)."""
  old = {name: getattr(module, name) for name in values}
  for name, value in values.items():
    setattr(module, name, value)
  try:
    yield
  finally:
    for name, value in old.items():
      setattr(module, name, value)


def cnn_variants():
  """The fast CNN against its definition: the fused convolution, ReLU and pooling, with its
  channel-major layout (hw2/models/fast/cnn.py), is what remains of the departures."""
  return {
      'fast': ('fast', {}, None),
      'reference': ('reference', {}, None),
  }


def prepare(make_task, impl, model_fields, patch):
  """A function that trains one epoch of the variant and returns its seconds (compiled here)."""
  from hw2 import parallel  # pylint: disable=g-import-not-at-top
  from hw2 import train  # pylint: disable=g-import-not-at-top
  config, task = make_task(impl)
  if model_fields:
    task.model = task.model.clone(**model_fields)
  arrays = task.train_arrays()
  n = len(next(iter(arrays.values())))
  data = parallel.put_replicated(arrays)
  rng = parallel.put_replicated(jax.random.key(1))
  indices = parallel.put_batch(
      train.epoch_batch_indices(jax.random.key(2), 1, n, config.batch_size), axis=1)
  module, values = patch or (None, {})
  with patched(module, **values) if module else contextlib.nullcontext():
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
  epochs = {label: prepare(make_task, *spec) for label, spec in variants.items()}
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
  measure(f'cnn_batch{args.cnn_batch}', cnn_variants(),
          lambda impl: cnn_task(KMNIST_DIR, args.cnn_batch, args.examples, impl), args.rounds)


if __name__ == '__main__':
  main()
