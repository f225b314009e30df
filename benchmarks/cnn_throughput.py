"""Training examples/s of the homework CNN at batch 8 and 64, beside the PyTorch baseline.

  python benchmarks/cnn_throughput.py [--data data/kmnist] [--examples 8000]

Both sides train with Adam on the same images, one after the other on this machine, each the best
of 3 epochs: the first `--examples` training images of DATA, or, where DATA has only test images
(the repository's data/kmnist), its test images. Ours: the jitted multi-step of hw2/train.py (the code the trainer runs),
compilation excluded.
Prints one JSON line per batch size with both rates and their ratio.
"""
import argparse
import os

import jax
import numpy as np

from common import KMNIST_DIR, emit, timed, torch_baseline
from configs import cnn
from hw2 import tasks
from hw2 import train
from hw2.data import images


def jax_examples_per_second(data_dir, batch_size, examples):
  config = cnn.get_config()
  config.data_dir, config.validation_size = data_dir, 0
  if not os.path.exists(os.path.join(data_dir, images.IDX_FILES['train_images'])):
    config.split_test_images = 1  # Train on the test images (all but one).
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
  parser.add_argument('--data', default=KMNIST_DIR, help='a folder of IDX gzip files')
  parser.add_argument('--examples', type=int, default=8000)
  args = parser.parse_args()
  for batch_size in (8, 64):
    ours = jax_examples_per_second(args.data, batch_size, args.examples)
    reference = max(r['examples_per_s'] for r in torch_baseline(
        'cnn', '--data', args.data, '--batch', str(batch_size), '--examples', str(args.examples),
        '--epochs', '3'))
    emit(benchmark='cnn_train', batch_size=batch_size, jax_examples_per_s=round(ours, 1),
         torch_examples_per_s=reference, ratio=round(ours / reference, 2))


if __name__ == '__main__':
  main()
