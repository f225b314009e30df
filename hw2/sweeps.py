"""--sweep KEY=V1,V2,...: one training run per value, then a summary table.

`--sweep` given several times sweeps the grid of every combination (`--sweep learning_rate=1e-3,3e-3
--sweep seed=1,2,3`). Each run trains into WORKDIR/KEY=V (WORKDIR/K1=V1,K2=V2 for a grid),
resuming like any run, so an interrupted sweep picks up where it stopped. The summary lists per
run the final and best validation metric and the test metrics of the best checkpoint, in
WORKDIR/sweep.json and WORKDIR/sweep.md, the best run marked. Where `seed` is swept, the runs of
each setting of the other keys are also summarised as mean and sample standard deviation over
the seeds, and the best setting (by mean validation metric) is marked.
"""
import itertools
import os

import numpy as np

from hw2 import metrics
from hw2 import records
from hw2 import train
from hw2 import validation
from hw2 import workdir as workdirs
from hw2.errors import UserError

_TRUE, _FALSE = ('true', '1', 'yes'), ('false', '0', 'no')


def _field_type(config, key):
  parent, _, leaf = key.rpartition('.')
  present, node = validation.lookup(config, parent) if parent else (True, config)
  if not present or not hasattr(node, 'get_type') or leaf not in node:
    raise UserError(f'--sweep: unknown config key {key!r}')
  return node.get_type(leaf)


def _parse_value(raw, field_type, key):
  try:
    if field_type is bool:
      if raw.lower() not in _TRUE + _FALSE:
        raise ValueError
      return raw.lower() in _TRUE
    return field_type(raw)
  except ValueError:
    raise UserError(f'--sweep: {raw!r} is not a valid {field_type.__name__} for {key}') from None


def parse_sweep(spec, config):
  """'learning_rate=1e-5,5e-4' -> ('learning_rate', [('1e-5', 1e-05), ('5e-4', 0.0005)])."""
  key, sep, values = spec.partition('=')
  key = key.strip()
  raw_values = [v.strip() for v in values.split(',')]
  if not sep or not key or not values.strip() or any(not v for v in raw_values):
    raise UserError(f'--sweep={spec!r} is malformed: expected KEY=V1,V2,... '
                    'e.g. --sweep learning_rate=1e-5,5e-4,1e-2')
  if key == 'task':
    raise UserError(f'--sweep={spec!r}: the task cannot be swept (each task has its own config '
                    'file); sweep one of its settings')
  field_type = _field_type(config, key)
  values = [(raw, _parse_value(raw, field_type, key)) for raw in raw_values]
  for i, (raw, value) in enumerate(values):
    twin = next((r for r, v in values[:i] if v == value), None)
    if twin is not None:
      raise UserError(f'--sweep={spec!r} repeats a value ({twin} and {raw} are both {value!r})')
  return key, values


def parse_sweeps(specs, config):
  """The --sweep specs (a string or a list of them) -> [(key, [(raw, value), ...]), ...]."""
  parsed = [parse_sweep(spec, config) for spec in ([specs] if isinstance(specs, str) else specs)]
  keys = [key for key, _ in parsed]
  twin = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
  if twin is not None:
    raise UserError(f'--sweep names {twin} twice: give all its values in one --sweep')
  return parsed


def grid(parsed):
  """[(member name, {key: raw}, {key: value}), ...]: every combination of the swept values, the
  first key varying slowest."""
  members = []
  for combination in itertools.product(*(values for _, values in parsed)):
    raws = {key: raw for (key, _), (raw, _) in zip(parsed, combination)}
    values = {key: value for (key, _), (_, value) in zip(parsed, combination)}
    members.append((','.join(f'{k}={r}' for k, r in raws.items()), raws, values))
  return members


def _group_name(setting):
  """The setting {key: raw} without its seed, as a name ('all' when only seeds are swept)."""
  return ','.join(f'{k}={r}' for k, r in setting.items() if k != 'seed') or 'all'


def mean_std(values):
  """{'mean', 'std'} of numbers: the mean and the sample standard deviation (None for one)."""
  return {'mean': float(np.mean(values)),
          'std': float(np.std(values, ddof=1)) if len(values) > 1 else None}


def mean_std_text(stats, digits=4):
  """'mean +- std' of mean_std's dict (the mean alone without a std)."""
  if stats['std'] is None:
    return f"{stats['mean']:.{digits}f}"
  return f"{stats['mean']:.{digits}f} +- {stats['std']:.{digits}f}"


def seed_groups(rows, metric_keys, mode):
  """Rows grouped by their setting without `seed`: per group the number of seeds and per metric
  the mean and sample standard deviation; the group with the best mean `best_val` is marked."""
  groups = {}
  for row in rows:
    groups.setdefault(_group_name(row['setting']), []).append(row)
  summary, best = [], None
  for setting, members in groups.items():
    entry = {'setting': setting, 'seeds': [m['setting']['seed'] for m in members]}
    for key in ('best_val', *metric_keys):
      entry[key] = mean_std([m[key] for m in members])
    summary.append(entry)
    if metrics.is_better(entry['best_val']['mean'], best and best['best_val']['mean'], mode):
      best = entry
  for entry in summary:
    entry['is_best'] = entry is best
  return summary


def summary_table(key, rows, metric, mode, groups=None):
  """Markdown table of the sweep rows, the row with the best validation metric marked; with
  `groups` (seed_groups), a second table of means and standard deviations over the seeds."""
  test_keys = sorted({k for row in rows for k in row if k.startswith('test_')})
  header = [key, f'final val_{metric}', f'best val_{metric}', 'best epoch', *test_keys, 'best']
  cells = [[row['value'], f"{row['final_val']:.4f}", f"{row['best_val']:.4f}", row['best_epoch'],
            *(f'{row[k]:.4f}' for k in test_keys), '**best**' if row['is_best'] else '']
           for row in rows]
  text = (f'# Sweep over {key} (best by validation {metric}, {mode})\n\n'
          + records.markdown_table(header, cells) + '\n')
  if groups:
    header = ['setting', 'seeds', f'best val_{metric}', *test_keys, 'best']
    cells = [[group['setting'], ','.join(group['seeds']),
              *(mean_std_text(group[k]) for k in ('best_val', *test_keys)),
              '**best**' if group['is_best'] else ''] for group in groups]
    text += ('\n## Mean +- sample standard deviation over the seeds (best by mean validation '
             f'{metric})\n\n' + records.markdown_table(header, cells) + '\n')
  return text


def run_sweep(config, workdir, specs):
  """Trains once per member of the grid of the swept keys; returns the summary rows.

  Every member's config is validated before the first trains; the sweep's workdir is locked
  throughout, and each member's workdir while it trains.
  """
  parsed = parse_sweeps(specs, config)
  members = []
  for name, raws, values in grid(parsed):
    run_config = config.copy_and_resolve_references()
    run_config.update_from_flattened_dict(values)
    members.append((name, raws, validation.validate(run_config)))
  with workdirs.writer(workdir):
    return _run_members([key for key, _ in parsed], members, workdir)


def _run_members(keys, members, workdir):
  rows, best = [], None
  for name, raws, run_config in members:
    run_dir = os.path.join(workdir, name)
    results = train.train_and_evaluate(run_config, run_dir)
    metric, mode = results['selection_metric'], results['selection_mode']
    history = records.read_metrics(run_dir)
    rows.append({'value': name if len(keys) > 1 else raws[keys[0]], 'setting': raws,
                 'workdir': run_dir, 'final_val': history[-1][f'val_{metric}'],
                 'best_val': results[f'val_{metric}'], 'best_epoch': results['best_epoch'],
                 **{k: v for k, v in results.items() if k.startswith('test_')}})
    if metrics.is_better(rows[-1]['best_val'], best and best['best_val'], mode):
      best = rows[-1]
  for row in rows:
    row['is_best'] = row is best
  groups = None
  if 'seed' in keys:
    test_keys = sorted({k for row in rows for k in row if k.startswith('test_')})
    groups = seed_groups(rows, test_keys, mode)
  key = ', '.join(keys)
  records.write_json(os.path.join(workdir, 'sweep.json'),
                     {'key': key, 'keys': keys, 'metric': f'val_{metric}', 'mode': mode,
                      'runs': rows, **({'seed_groups': groups} if groups else {})})
  records.write_atomic(os.path.join(workdir, 'sweep.md'),
                       summary_table(key, rows, metric, mode, groups))
  return rows
