"""Training examples/s of both homework models on 1, 2, 4, ... devices (data parallel).

  python benchmarks/scaling.py [--devices 1,2,4] [--cnn_batch 64] [--s2s_batch 64]

Each device count runs in its own process (the device count of a JAX process is fixed when it
starts). On a CPU-only machine the devices are forced host devices
(XLA_FLAGS=--xla_force_host_platform_device_count=N) that share the same cores, so the table
shows the overhead of splitting a batch, not a speed-up; on an accelerator machine the processes
see its real devices (the first N of them, via --real). The global batch stays the same for
every device count, as in training. Prints one JSON line per model and device count, then a
markdown table.
"""
import argparse
import json
import os
import subprocess
import sys

from common import KMNIST_DIR, SPA_ENG_DIR, cnn_task, emit, s2s_task, training_rate


def measure(args):
  """In the child process: both models' rates on this process's devices."""
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.device_count()
  config, task = cnn_task(args.cnn_data, args.cnn_batch, args.cnn_examples)
  rate, _, _ = training_rate(config, task)
  emit(benchmark='scaling', model='cnn', devices=devices, batch_size=args.cnn_batch,
       examples_per_s=round(rate, 1), platform=jax.devices()[0].platform)
  config, task = s2s_task(args.s2s_data)
  config.batch_size = args.s2s_batch
  rate, _, _ = training_rate(config, task)
  emit(benchmark='scaling', model='s2s_attention', devices=devices, batch_size=args.s2s_batch,
       examples_per_s=round(rate, 1), platform=jax.devices()[0].platform)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--devices', default='1,2,4')
  parser.add_argument('--cnn_data', default=KMNIST_DIR)
  parser.add_argument('--cnn_examples', type=int, default=8000)
  parser.add_argument('--cnn_batch', type=int, default=64)
  parser.add_argument('--s2s_data', default=SPA_ENG_DIR)
  parser.add_argument('--s2s_batch', type=int, default=64)
  parser.add_argument('--real', action='store_true',
                      help='use the first N real accelerator devices instead of forced CPU ones')
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    return measure(args)
  rows = []
  for n in map(int, args.devices.split(',')):
    env = dict(os.environ)
    if args.real:
      env['CUDA_VISIBLE_DEVICES'] = env['TPU_VISIBLE_CHIPS'] = ','.join(map(str, range(n)))
    else:
      env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={n}'
      env['JAX_PLATFORMS'] = 'cpu'
    child = [a for a in sys.argv[1:] if not a.startswith('--devices')]
    result = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', *child],
                            env=env, capture_output=True, text=True, check=True)
    for line in result.stdout.splitlines():
      if line.startswith('{'):
        print(line, flush=True)
        rows.append(json.loads(line))
  print('\n| model | batch | ' + ' | '.join(f"{r['devices']} device(s)" for r in rows
                                           if r['model'] == 'cnn') + ' |')
  print('|---|---|' + '---|' * sum(r['model'] == 'cnn' for r in rows))
  for model in ('cnn', 's2s_attention'):
    cells = [f"{r['examples_per_s']:,.0f}" for r in rows if r['model'] == model]
    batch = next(r['batch_size'] for r in rows if r['model'] == model)
    print(f'| {model} | {batch} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
  main()
