"""configs/beyond.py: the translator's training options one at a time, the Transformer, and the
CNN at lr 1e-2, each over several seeds, then a report.

WORKDIR/ablation/<row>/seed=<s>/      translation with attention: row 0 the homework's settings,
                                      each next row one option group more, the last the tuned one
WORKDIR/transformer/seed=<s>/         configs/transformer.py
WORKDIR/beam.json                     beam-search test metrics of every translation run
WORKDIR/cnn/{homework,stabilised}/seed=<s>/   the CNN at lr 1e-2, without and with warmup + clipping
WORKDIR/report.md                     the report (docs/beyond/report.md is a full run's)

Every part resumes like the homework's (hw2/parts.py); the seeds of a row are one sweep
(hw2/sweeps.py), so an interrupted row retrains nothing finished.
"""
import os
import time

from absl import logging
import ml_collections
import numpy as np

from hw2 import parallel
from hw2 import parts
from hw2 import records
from hw2 import report
from hw2 import sweeps
from hw2 import translate
from hw2 import validation
from hw2 import workdir as workdirs
from hw2.errors import UserError

BEAM_FILE = 'beam.json'
COLLAPSED_BELOW = 0.2  # Test accuracy of a CNN run that collapsed (chance is 0.1).
DIGITS = (('error_rate', 4), ('chrf', 1), ('bleu', 1))  # As the homework report shows them.


def _seed_sweep(config):
  return 'seed=' + ','.join(str(s) for s in config.seeds)


def ablation_rows(config):
  """[(label, translation config), ...]: the homework's settings, then each group of
  config.ablation set to the tuned translator's values, cumulatively; a last row with the tuned
  config itself if the groups do not reach it."""
  current = config.translation.copy_and_resolve_references()
  rows = [('homework settings', current)]
  for group in config.ablation:
    current = current.copy_and_resolve_references()
    changes = []
    for field in group.split(','):
      value = validation.lookup(config.tuned, field)[1]
      current.update_from_flattened_dict({field: value})
      changes.append(f'{field}={value}')
    rows.append(('+ ' + ', '.join(changes), current))
  tuned = workdirs.as_json(config.tuned)
  if workdirs.as_json(current) != tuned:
    rows.append(('tuned (the rest of configs/seq2seq_tuned.py)', config.tuned))
  else:
    rows[-1] = (rows[-1][0] + ' (= configs/seq2seq_tuned.py)', current)
  return rows


def translation_runs(config):
  """[(label, sweep folder relative to the workdir, config), ...] of every translation row."""
  runs = [(label, os.path.join('ablation', str(i)), row)
          for i, (label, row) in enumerate(ablation_rows(config))]
  return runs + [('Transformer (configs/transformer.py)', 'transformer', config.transformer)]


def run_translation(config, workdir):
  for _, folder, run_config in translation_runs(config):
    sweeps.run_sweep(run_config, os.path.join(workdir, folder), _seed_sweep(config))


def run_beam(config, workdir):
  path = os.path.join(workdir, BEAM_FILE)
  key = f'{config.beam_size}/{config.length_penalty}'
  done = records.read_json_or_none(path) or {}
  for _, folder, _ in translation_runs(config):
    for seed in config.seeds:
      member = os.path.join(folder, f'seed={seed}')
      if key not in done.get(member, {}):
        start = time.perf_counter()
        metrics = translate.decoding_metrics(os.path.join(workdir, member), config.beam_size,
                                             config.length_penalty)
        metrics['seconds'] = round(time.perf_counter() - start, 1)
        done.setdefault(member, {})[key] = metrics
        logging.info('beyond: beam %s of %s: %s', key, member, metrics)
        records.write_json(path, done)  # After each run: an interruption keeps those done.


def cnn_variants(config):
  stabilised = config.cnn.copy_and_resolve_references()
  stabilised.update(config.cnn_stabilised.to_dict())
  return [('homework', config.cnn), ('stabilised', stabilised)]


def run_cnn(config, workdir):
  for name, cnn_config in cnn_variants(config):
    sweeps.run_sweep(cnn_config, os.path.join(workdir, 'cnn', name), _seed_sweep(config))


PARTS = (('translation', run_translation, ('translation', 'tuned', 'ablation', 'transformer',
                                           'seeds')),
         ('beam', run_beam, ('translation', 'tuned', 'ablation', 'transformer', 'seeds',
                             'beam_size', 'length_penalty')),
         ('cnn', run_cnn, ('cnn', 'cnn_stabilised', 'seeds')))


def run(config, workdir):
  """Runs the parts not finished with these settings, then writes the report; returns its path."""
  validation.validate(config)
  for part in ('translation', 'tuned', 'transformer', 'cnn'):
    parallel.check_batch_sizes(config[part])
  with workdirs.writer(workdir):
    parts.run_parts(config, workdir, PARTS)
    return write_report(workdir)


# --- The report ---------------------------------------------------------------------------------

def _stats(values, digits=4):
  """'mean +- std' (sample std) of numbers, '-' for none, the value alone for one."""
  values = [v for v in values if v is not None]
  return sweeps.mean_std_text(sweeps.mean_std(values), digits) if values else '-'


def _parameters(member):
  with open(os.path.join(member, 'parameters.txt'), encoding='utf-8') as f:
    return f.read().split()[-1]


# How each translation row's settings were chosen: the validation runs behind them (BUILD.md,
# "Where the tuned settings come from"). Rows differ in this budget as well as in epochs.
TUNING = {'homework': "none: the homework's settings",
          'ablation': "the tuned translator's values, one group at a time",
          'tuned': '13 validation runs (seed 42)',
          'transformer': '13 validation runs (seed 42)'}


def _tuning(index, rows):
  """The TUNING entry of translation row `index` of `rows` (translation_runs)."""
  if index == 0:
    return TUNING['homework']
  if rows[index][1] == 'transformer':
    return TUNING['transformer']
  return TUNING['tuned'] if index == len(rows) - 2 else TUNING['ablation']


def _translation_table(workdir, config):
  beam = records.read_json_or_none(os.path.join(workdir, BEAM_FILE)) or {}
  key = f'{config.beam_size}/{config.length_penalty}'
  rows, runs = [], translation_runs(config)
  for index, (label, folder, run_config) in enumerate(runs):
    members = [os.path.join(folder, f'seed={s}') for s in config.seeds]
    results = [report.read(workdir, m, records.RESULTS_FILE) for m in members]
    beams = [beam.get(m, {}).get(key, {}) for m in members]
    rows.append([
        label, _parameters(os.path.join(workdir, members[0])), run_config.num_epochs,
        _tuning(index, runs),
        report.minutes(np.mean([r['train_seconds'] for r in results])),
        *(_stats([r[f'test_{k}'] for r in results], digits) for k, digits in DIGITS),
        *(_stats([b.get(k) for b in beams], digits) for k, digits in DIGITS)])
  k = config.beam_size
  header = ['run', 'parameters', 'epochs', 'settings tuned by', 'training time (mean)',
            'error rate', 'chrF', 'BLEU', f'error rate, beam {k}', f'chrF, beam {k}', f'BLEU, beam {k}']
  return report.table(header, rows)


def _cnn_table(workdir, config):
  rows = []
  for name, cnn_config in cnn_variants(config):
    accuracies = [report.read(workdir, 'cnn', name, f'seed={s}', records.RESULTS_FILE)[
        'test_accuracy'] for s in config.seeds]
    collapsed = sum(a < COLLAPSED_BELOW for a in accuracies)
    rows.append([name, cnn_config.warmup_steps, cnn_config.grad_clip_norm or 'none',
                 ' / '.join(f'{a * 100:.2f}' for a in accuracies),
                 _stats([a * 100 for a in accuracies], digits=2),
                 f'{collapsed} of {len(accuracies)}'])
  return report.table(['CNN', 'warmup steps', 'clipping', 'test accuracy per seed (%)',
                       'mean +- std (%)', f'collapsed (< {COLLAPSED_BELOW * 100:.0f} %)'], rows)


def _attention_figures(workdir, config):
  """Markdown of the first test sentence's attention, seed config.seeds[0], of the tuned LSTM
  and of the Transformer (copied into WORKDIR/figures/); '' where the runs drew none."""
  os.makedirs(os.path.join(workdir, report.FIGURES), exist_ok=True)
  seed = config.seeds[0]
  links = []
  tuned = os.path.join('ablation', str(len(ablation_rows(config)) - 1))
  for label, folder, name in (('the tuned LSTM translator', tuned, 'lstm'),
                              ('the Transformer', 'transformer', 'transformer')):
    link = report.copy_figure(workdir, os.path.join(workdir, folder, f'seed={seed}',
                                                    'attention_0.png'), f'attention_{name}.png')
    if link:
      links.append(f'![attention of {label}]({link})')
  if not links:
    return ''
  return ('Attention over the source of the first test sentence while each model writes its '
          f'greedy translation (seed {seed}): the LSTM\'s bilinear attention, and the '
          'Transformer\'s cross-attention of its last decoder layer averaged over heads.\n\n'
          + '\n'.join(links))


def _all_results(workdir, config):
  """[(part, results.json dict), ...] of every training run, in part order."""
  runs = [('translation', report.read(workdir, folder, f'seed={s}', records.RESULTS_FILE))
          for _, folder, _ in translation_runs(config) for s in config.seeds]
  return runs + [('cnn', report.read(workdir, 'cnn', name, f'seed={s}', records.RESULTS_FILE))
                 for name, _ in cnn_variants(config) for s in config.seeds]


def _time_table(workdir, config, done):
  """Training, test evaluation and beam decoding time of each part, summed over its runs as each
  run recorded them, beside the part's wall time over its invocations (parts.json)."""
  results = _all_results(workdir, config)
  beam = records.read_json_or_none(os.path.join(workdir, BEAM_FILE)) or {}
  key = f'{config.beam_size}/{config.length_penalty}'
  decoded = [metrics.get(key, {}) for metrics in beam.values()]
  rows = []
  for name, _, _ in PARTS:
    part = [r for p, r in results if p == name]
    rows.append([name,
                 report.time_or_unrecorded(report.summed(part, 'train_seconds')) if part else '-',
                 report.time_or_unrecorded(report.summed(part, 'eval_seconds')) if part else '-',
                 report.time_or_unrecorded(report.summed(decoded, 'seconds'))
                 if name == 'beam' else '-',
                 report.minutes(done[name]['seconds'])])
  return ('Time as each run recorded it, summed over the runs of a part ("not recorded": runs '
          'made before the field existed); the wall time of a part covers the invocations that '
          'worked on it here, and misses runs trained elsewhere.\n\n'
          + report.table(['part', 'training', 'test evaluation', 'beam decoding', 'wall time'],
                         rows))


def write_report(workdir):
  """WORKDIR/report.md from the finished parts; returns its path."""
  from configs import beyond  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(
      workdirs.without_format(report.read(workdir, records.CONFIG_FILE)))
  if config.get('task') != 'beyond':
    raise UserError(f'--mode report with configs/beyond.py needs the workdir of a '
                    f'configs/beyond.py run; {workdir} holds a {config.get("task")!r} run')
  done = report.read(workdir, parts.PARTS_FILE)
  missing = [name for name, _, _ in PARTS if name not in done]
  if missing:
    raise UserError(f'{workdir} has not finished {", ".join(missing)}: rerun it (it resumes) '
                    'before --mode report')
  path = os.path.join(workdir, 'report.md')
  if not parallel.is_writer():
    return path
  seeds = ', '.join(str(s) for s in config.seeds)
  sections = [
      '# Beyond the homework',
      'The experiment of\n\n```\n'
      + report.command('configs/beyond.py', workdir, config, beyond.get_config())
      + '\n```\n\n'
      'Each run was trained with the settings this command gives it; a run found finished in '
      'the workdir (trained by an earlier invocation, or by a `--sweep` with the same settings) '
      'is used as it is, so the time table sums what each run recorded. '
      f'Each number is the mean +- sample standard deviation over seeds {seeds} of the test '
      'split, each run evaluated at its best epoch by the validation metric. The homework '
      'report is [../homework/report.md](../homework/report.md).',
      'Where the runs were made (as each recorded it):\n\n'
      + report.provenance_lines([r for _, r in _all_results(workdir, config)]),
      _time_table(workdir, config, done),
      '## Translation: one training option at a time, and a Transformer',
      'Character-level Spanish to English on the homework\'s data, greedy decoding and beam '
      f'search (beam {config.beam_size}, length penalty {config.length_penalty}); the first '
      'row is the homework\'s translator with attention at its settings.',
      _translation_table(workdir, config),
      'The Transformer\'s settings come from the validation sweep in BUILD.md ("A Transformer '
      'translator"); its parameter count is at most that of the LSTM translator with attention.',
      _attention_figures(workdir, config),
      '## The CNN at learning rate 1e-2',
      'The homework\'s run at this rate collapsed to 10 % test accuracy (60,000 KMNIST training '
      f'images, 20 epochs). Here: {report.data_description(config.cnn)}; '
      f'{config.cnn.num_epochs} epochs at the homework\'s settings, and with a linear warmup and '
      'gradient clipping.',
      _cnn_table(workdir, config),
  ]
  records.write_atomic(path, '\n\n'.join(section for section in sections if section) + '\n')
  return path
