"""Training examples/s of the homework CNN at batch 8 and 64, beside the PyTorch reference.

  python benchmarks/cnn_throughput.py [--data /usr/share/datasets/fashion-mnist] [--examples 16000]

Both sides train with Adam on the same Fashion-MNIST images, one after the other on this machine,
each the best of 3 epochs. Ours: the jitted multi-step of hw2/train.py (the code the trainer runs),
compilation excluded.
Prints one JSON line per batch size with both rates and their ratio.
"""
import argparse

import jax
import numpy as np

from common import emit, timed, torch_reference
from configs import cnn
from hw2 import tasks
from hw2 import train


def jax_examples_per_second(data_dir, batch_size, examples):
  config = cnn.get_config()
  config.dataset, config.data_dir = 'fashion_mnist', data_dir
  config.batch_size, config.max_train_examples = batch_size, examples
  task = tasks.build(config, '/tmp/hw2_benchmark', 'train')
  state = train.create_train_state(task, config, jax.random.key(0))
  data = jax.device_put(task.train_arrays())
  steps = examples // batch_size
  indices = jax.numpy.asarray(np.random.RandomState(0).permutation(examples)[:steps * batch_size]
                              .reshape(steps, batch_size))
  multi_step = train.make_multi_step(task.loss)
  holder = {'state': state}

  def run_epoch():
    holder['state'], metrics = multi_step(holder['state'], data, indices, jax.random.key(1))
    return metrics['loss']

  return steps * batch_size / timed(run_epoch)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--data', default='/usr/share/datasets/fashion-mnist')
  parser.add_argument('--examples', type=int, default=16_000)
  args = parser.parse_args()
  for batch_size in (8, 64):
    ours = jax_examples_per_second(args.data, batch_size, args.examples)
    reference = max(r['ex_per_s'] for r in torch_reference(
        'cnn', '--data', args.data, '--batch', str(batch_size), '--limit', str(args.examples),
        '--epochs', '3'))
    emit(benchmark='cnn_train', batch_size=batch_size, jax_examples_per_s=round(ours, 1),
         torch_examples_per_s=reference, ratio=round(ours / reference, 2))


if __name__ == '__main__':
  main()
