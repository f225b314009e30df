"""Training examples/s of the homework CNN at batch 8 and 64, beside the PyTorch baseline.

  python benchmarks/cnn_throughput.py [--data data/kmnist] [--examples 8000]

Both sides train with Adam on the same images, one after the other on this machine, each the best
of 3 epochs: the first `--examples` training images of DATA, or, where DATA has only test images
(the repository's data/kmnist), its test images. Ours: the jitted multi-step of hw2/train.py (the
code the trainer runs), compilation excluded.
Both implementations of the model are measured (config.model.impl: 'reference', Flax's layers,
and 'fast', what 'auto' picks on CPU). Prints the peak (a 2048 x 2048 float32 matrix product,
measured in the same run), then one JSON line per batch size and implementation with its rate,
the baseline's, their ratio, and its GFLOP/s (FLOPs from XLA's cost analysis of the compiled
step) with its fraction of the peak.
"""
import argparse

from common import IMPLS, KMNIST_DIR, cnn_task, emit, peak_gflops, torch_baseline, training_rate


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--data', default=KMNIST_DIR, help='a folder of IDX gzip files')
  parser.add_argument('--examples', type=int, default=8000)
  args = parser.parse_args()
  peak = peak_gflops()
  emit(benchmark='peak_matmul_2048', gflop_per_s=round(peak, 1))
  for batch_size in (8, 64):
    reference = max(r['examples_per_s'] for r in torch_baseline(
        'cnn', '--data', args.data, '--batch', str(batch_size), '--examples', str(args.examples),
        '--epochs', '3'))
    for impl in IMPLS:
      ours, gflops, _ = training_rate(*cnn_task(args.data, batch_size, args.examples, impl))
      emit(benchmark='cnn_train', impl=impl, batch_size=batch_size,
           jax_examples_per_s=round(ours, 1), jax_gflop_per_s=round(gflops, 1),
           fraction_of_peak=round(gflops / peak, 3), torch_examples_per_s=reference,
           ratio=round(ours / reference, 2))


if __name__ == '__main__':
  main()
