"""--sweep KEY=V1,V2,...: one training run per value, then a summary table.

Each run trains into WORKDIR/KEY=V (resuming like any run), so an interrupted sweep picks up where
it stopped. The summary lists per value the final and best validation metric and the test metrics
of the best checkpoint, in WORKDIR/sweep.json and WORKDIR/sweep.md; the best value is marked.
"""
import os

from hw2 import records
from hw2 import train
from hw2 import validation
from hw2 import workdir as workdirs
from hw2.errors import UserError

_TRUE, _FALSE = ('true', '1', 'yes'), ('false', '0', 'no')


def _field_type(config, key):
  *parents, leaf = key.split('.')
  node = config
  for name in parents:
    if name not in node:
      raise UserError(f'--sweep: unknown config key {key!r}')
    node = node[name]
  if not hasattr(node, 'get_type') or leaf not in node:
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


def _is_better(a, b, mode):
  return b is None or (a > b if mode == 'max' else a < b)


def summary_table(key, rows, metric, mode):
  """Markdown table of the sweep rows; the row with the best validation metric is marked."""
  test_keys = sorted({k for row in rows for k in row if k.startswith('test_')})
  header = [key, f'final val_{metric}', f'best val_{metric}', 'best epoch', *test_keys, 'best']
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for row in rows:
    cells = [row['value'], f"{row['final_val']:.4f}", f"{row['best_val']:.4f}",
             str(row['best_epoch']), *(f'{row[k]:.4f}' for k in test_keys),
             '**best**' if row['is_best'] else '']
    lines.append('| ' + ' | '.join(str(c) for c in cells) + ' |')
  return (f'# Sweep over {key} (best by validation {metric}, {mode})\n\n'
          + '\n'.join(lines) + '\n')


def run_sweep(config, workdir, spec):
  """Trains once per value of the swept key; returns the summary rows.

  Every member's config is validated before the first trains; the sweep's workdir is locked
  throughout, and each member's workdir while it trains.
  """
  key, values = parse_sweep(spec, config)
  members = []
  for raw, value in values:
    run_config = config.copy_and_resolve_references()
    run_config.update_from_flattened_dict({key: value})
    members.append((raw, validation.validate(run_config)))
  with workdirs.writer(workdir):
    return _run_members(key, members, workdir)


def _run_members(key, members, workdir):
  rows, best = [], None
  for raw, run_config in members:
    run_dir = os.path.join(workdir, f'{key}={raw}')
    results = train.train_and_evaluate(run_config, run_dir)
    metric, mode = results['selection_metric'], results['selection_mode']
    history = records.read_metrics(run_dir)
    rows.append({'value': raw, 'workdir': run_dir, 'final_val': history[-1][f'val_{metric}'],
                 'best_val': results[f'val_{metric}'], 'best_epoch': results['best_epoch'],
                 **{k: v for k, v in results.items() if k.startswith('test_')}})
    if _is_better(rows[-1]['best_val'], best and best['best_val'], mode):
      best = rows[-1]
  for row in rows:
    row['is_best'] = row is best
  records.write_json(os.path.join(workdir, 'sweep.json'),
                     {'key': key, 'metric': f'val_{metric}', 'mode': mode, 'runs': rows})
  records.write_atomic(os.path.join(workdir, 'sweep.md'), summary_table(key, rows, metric, mode))
  return rows
