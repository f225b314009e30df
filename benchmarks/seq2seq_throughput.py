"""Translation speed beside the PyTorch baseline: training examples/s (batch 64, attention on),
greedy decoding of the 1,000 validation sentences, beam search (k=5) over the 1,000 test sentences.

  python benchmarks/seq2seq_throughput.py [--data data/spa-eng]

Each side is measured as the best of 3 epochs (training) and of 3 passes (decoding), compilation
excluded: ours trains 4 epochs (the first compiles) and decodes with the resulting parameters 4
times; the baseline trains 3 epochs and decodes the validation set sentence by sentence after
each, as its homework code does. Prints JSON lines with both sides and the ratios.
"""
import argparse

import jax

from common import SPA_ENG_DIR, emit, timed, torch_baseline
from configs import seq2seq
from hw2 import tasks
from hw2 import train


def build_task(data_dir, beam_size=1):
  config = seq2seq.get_config()
  config.data_dir, config.use_attention = data_dir, True
  config.decode.beam_size = beam_size
  return config, tasks.build(config, '/tmp/hw2_benchmark_s2s', 'train')


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--data', default=SPA_ENG_DIR)
  args = parser.parse_args()
  config, task = build_task(args.data)
  data = jax.device_put(task.train_arrays())
  n = len(data['source'])
  steps = n // config.batch_size
  holder = {'state': train.create_train_state(task, config, jax.random.key(0)), 'epoch': 0}
  multi_step = train.make_multi_step(task.loss)

  def run_epoch():
    holder['epoch'] += 1
    indices = train.epoch_batch_indices(jax.random.key(1), holder['epoch'], n, config.batch_size)
    holder['state'], metrics = multi_step(holder['state'], data, indices, jax.random.key(2))
    return metrics['loss']

  train_examples_per_s = steps * config.batch_size / timed(run_epoch)
  params = holder['state'].params

  validation = [s for s, _ in task.splits['validation']]
  test = [s for s, _ in task.splits['test']]
  greedy_seconds = timed(lambda: task.translate(params, validation) and 0)
  _, beam_task = build_task(args.data, beam_size=5)
  beam_seconds = timed(lambda: beam_task.translate(params, test) and 0)
  error = task.evaluate(params, 'validation')['error_rate']

  reference = torch_baseline('s2s', '--data', args.data, '--attention', '--epochs', '3')
  torch_train = max(r['examples_per_s'] for r in reference)
  torch_greedy = min(r['greedy_decode_seconds'] for r in reference)
  emit(benchmark='s2s_train_attention', batch_size=config.batch_size,
       jax_examples_per_s=round(train_examples_per_s, 1), torch_examples_per_s=torch_train,
       ratio=round(train_examples_per_s / torch_train, 2))
  emit(benchmark='s2s_greedy_decode_validation', sentences=len(validation),
       jax_seconds=round(greedy_seconds, 4),
       jax_sentences_per_s=round(len(validation) / greedy_seconds, 1),
       torch_seconds=torch_greedy, ratio=round(torch_greedy / greedy_seconds, 1),
       jax_val_error=round(error, 4))
  emit(benchmark='s2s_beam5_decode_test', sentences=len(test), jax_seconds=round(beam_seconds, 4),
       jax_sentences_per_s=round(len(test) / beam_seconds, 1))


if __name__ == '__main__':
  main()
