"""Beam size and length penalty of trained translation workdirs, chosen on the validation split,
then the test split decoded once at the chosen setting; and beam-search speed (k=5) over the
test set.

  python benchmarks/beam_search_table.py runs/s2s runs/s2s_attn [--beam_sizes 1,2,4,8]
      [--length_penalties 0,1] [--json results.json]

Prints a markdown table of the validation grid (one row per workdir, beam size and penalty), then
each workdir's chosen setting with its greedy and chosen test error rates, and one JSON line for
the k=5 timing. Decoding settings only change; each workdir's trained best checkpoint is used.
"""
import argparse
import json

from common import emit, timed
from configs import seq2seq
from hw2 import homework
from hw2 import tasks
from hw2 import train
from hw2 import translate
from hw2 import workdir as workdirs


def beam_task(workdir, beam_size):
  """(task, best params) of a translation workdir, decoding with `beam_size`."""
  config = seq2seq.get_config()
  config.decode.beam_size = beam_size
  config = workdirs.config_for_evaluation(workdir, config)
  task = tasks.build(config, workdir, 'eval')
  params, _ = train.restore_best_params(task, config, workdir)
  return task, params


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('workdirs', nargs='+')
  parser.add_argument('--beam_sizes', default='1,2,4,8')
  parser.add_argument('--length_penalties', default='0,1')
  parser.add_argument('--json', default=None, help='also write the rows to this file')
  args = parser.parse_args()
  rows = []
  print('| model | beam size | length penalty | validation error rate | validation exact match |')
  print('|---|---|---|---|---|')
  for workdir in args.workdirs:
    for beam_size in map(int, args.beam_sizes.split(',')):
      for alpha in map(float, args.length_penalties.split(',')):
        if beam_size == 1 and alpha != 0.0:
          continue  # Greedy decoding has no length penalty.
        result = translate.decoding_metrics(workdir, beam_size, alpha, 'validation')
        rows.append({'workdir': workdir, 'split': 'validation', 'beam_size': beam_size,
                     'length_penalty': alpha, **result})
        print(f"| {workdir} | {beam_size} | {alpha:g} | {result['error_rate']:.4f} | "
              f"{result['exact_match']:.3f} |", flush=True)
  print('\n| model | chosen beam size | length penalty | test error rate, greedy | '
        'test error rate, chosen |')
  print('|---|---|---|---|---|')
  for workdir in args.workdirs:
    chosen = homework.choose_beam([r for r in rows if r['workdir'] == workdir])
    greedy = translate.decoding_metrics(workdir, 1, 0.0, 'test')
    tested = translate.decoding_metrics(workdir, chosen['beam_size'], chosen['length_penalty'],
                                        'test')
    rows.append({'workdir': workdir, 'split': 'test', 'beam_size': chosen['beam_size'],
                 'length_penalty': chosen['length_penalty'], **tested})
    print(f"| {workdir} | {chosen['beam_size']} | {chosen['length_penalty']:g} | "
          f"{greedy['error_rate']:.4f} | {tested['error_rate']:.4f} |", flush=True)
  if args.json:
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(rows, f, indent=2)
  task, params = beam_task(args.workdirs[-1], 5)
  sources = [s for s, _ in task.splits['test']]
  seconds = timed(lambda: task.translate(params, sources) and 0)
  emit(benchmark='beam5_test_set', workdir=args.workdirs[-1], sentences=len(sources),
       seconds=round(seconds, 4), sentences_per_s=round(len(sources) / seconds, 1))


if __name__ == '__main__':
  main()
