"""Translation speed beside the PyTorch baseline: training examples/s (batch 64, attention on),
greedy decoding of the 1,000 validation sentences, beam search (k=5) over the 1,000 test sentences.

  python benchmarks/seq2seq_throughput.py [--data data/spa-eng]

The LSTM translator (its one implementation, Flax's layers and a plain scan with autodiff) and
the Transformer of configs/transformer.py (field `model`) are measured. Each side is measured as
the best of 3 epochs (training) and of 3 passes (decoding), compilation excluded: ours trains 4
epochs (the first compiles) and decodes with the resulting parameters 4 times; the baseline trains
3 epochs and decodes the validation set sentence by sentence after each, as its homework code
does. Prints JSON lines with both sides and the ratios.
"""
import argparse

from common import (SPA_ENG_DIR, decoding_flops, emit, peak_gflops, s2s_task, timed,
                    torch_baseline, training_rate)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--data', default=SPA_ENG_DIR)
  args = parser.parse_args()
  peak = peak_gflops()
  emit(benchmark='peak_matmul_2048', gflop_per_s=round(peak, 1))
  reference = torch_baseline('s2s', '--data', args.data, '--attention', '--epochs', '3')
  torch_train = max(r['examples_per_s'] for r in reference)
  torch_greedy = min(r['greedy_decode_seconds'] for r in reference)
  variants = [('lstm', 'reference'), ('transformer', 'reference')]
  for model, impl in variants:
    config, task = s2s_task(args.data, impl=impl, architecture=model)
    train_examples_per_s, train_gflops, state = training_rate(config, task)
    params = state.params
    validation = [s for s, _ in task.splits['validation']]
    test = [s for s, _ in task.splits['test']]
    greedy_seconds = timed(lambda: task.translate(params, validation) and 0)  # pylint: disable=cell-var-from-loop
    _, beam_task = s2s_task(args.data, beam_size=5, impl=impl, architecture=model)
    beam_seconds = timed(lambda: beam_task.translate(params, test) and 0)  # pylint: disable=cell-var-from-loop
    error = task.evaluate(params, 'validation')['error_rate']
    greedy_gflops = decoding_flops(task, params, validation) / greedy_seconds / 1e9
    beam_gflops = decoding_flops(beam_task, params, test) / beam_seconds / 1e9
    emit(benchmark='s2s_train_attention', model=model, impl=impl, batch_size=config.batch_size,
         jax_examples_per_s=round(train_examples_per_s, 1),
         jax_gflop_per_s=round(train_gflops, 1), fraction_of_peak=round(train_gflops / peak, 3),
         torch_examples_per_s=torch_train, ratio=round(train_examples_per_s / torch_train, 2))
    emit(benchmark='s2s_greedy_decode_validation', model=model, impl=impl,
         sentences=len(validation),
         jax_seconds=round(greedy_seconds, 4),
         jax_sentences_per_s=round(len(validation) / greedy_seconds, 1),
         jax_gflop_per_s=round(greedy_gflops, 1), fraction_of_peak=round(greedy_gflops / peak, 3),
         torch_seconds=torch_greedy, ratio=round(torch_greedy / greedy_seconds, 1),
         jax_val_error=round(error, 4))
    emit(benchmark='s2s_beam5_decode_test', model=model, impl=impl, sentences=len(test),
         jax_seconds=round(beam_seconds, 4),
         jax_sentences_per_s=round(len(test) / beam_seconds, 1),
         jax_gflop_per_s=round(beam_gflops, 1), fraction_of_peak=round(beam_gflops / peak, 3))


if __name__ == '__main__':
  main()
