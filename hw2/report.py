"""The homework report: collects the finished parts of a configs/homework.py workdir and writes
WORKDIR/report.md with its figures in WORKDIR/figures/ (relative links, so it renders on GitHub
or in any Markdown viewer). Every measured number stands beside the number the homework report
gives; where the project's answer differs from the report's, both are shown with the reason.

`python main.py --config configs/homework.py --workdir W --mode report` rebuilds it from the
finished runs without training; the same runs give the same file.
"""
import os
import shutil

import ml_collections

from hw2 import parallel
from hw2 import plots
from hw2 import records
from hw2 import workdir as workdirs
from hw2.errors import UserError
from hw2.records import markdown_table as table
from hw2.validation import PATH_FIELDS

REPORT_FILE = 'report.md'
FIGURES = 'figures'
PARTS = ('theory', 'cnn', 'translation', 'beam_search')  # The order of hw2/homework.py.

# The homework report's numbers.
HOMEWORK_CNN_ACCURACY = {1e-5: 0.8938, 5e-4: 0.9571, 1e-2: 0.1000}
HOMEWORK_TRANSLATION_ERROR = {'no_attention': 0.5002, 'attention': 0.3808}
MODEL_NAMES = {'no_attention': 'no attention', 'attention': 'bilinear attention'}


def read(workdir, *path, kind=dict):
  """A JSON record of an experiment made of parts (configs/homework.py, configs/beyond.py);
  UserError if it is missing or damaged."""
  full = os.path.join(workdir, *path)
  if not os.path.exists(full):
    raise UserError(f'{full} is missing: run the experiment first (the same command without '
                    '--mode report)')
  try:
    return records.read_json(full, kind)
  except records.DamagedFile as e:
    raise UserError(f'{e}: rerun the experiment (the same command without --mode report), '
                    'which redoes what it cannot read') from None


def _count(n, noun):
  return f'{n} {noun}' + ('' if n == 1 else 's')


def minutes(seconds):
  return f'{seconds / 60:.1f} min' if seconds >= 60 else f'{seconds:.0f} s'


def overrides(config, default):
  """--config flags that turn the config `default` (configs/homework.py's) into `config`."""
  default, current = (workdirs.flatten(workdirs.as_json(c)) for c in (default, config))
  flags = []
  for key in sorted(current):
    value = current[key]
    if default.get(key, value) == value:
      continue
    if isinstance(value, (list, tuple)):
      value = "'(" + ', '.join(repr(v) for v in value) + (",)'" if len(value) == 1 else ")'")
    elif key.split('.')[-1] in PATH_FIELDS and value:
      value = shown(value)
    flags.append(f'--config.{key}={value}')
  return flags


def command(config_file, workdir, config, default):
  """The main.py command that trains `config` (whose defaults are `default`, the config file's)
  into `workdir`, with repository-relative paths."""
  return ' '.join([f'python main.py --config {config_file} --workdir', shown(workdir),
                   *overrides(config, default)])


def provenance_lines(results):
  """Markdown bullets naming the machines, commits and dates of the runs whose results.json
  dicts are `results` (one bullet per distinct description, with how many runs it covers)."""
  described = {}
  for r in results:
    line = records.describe_provenance(r.get('provenance') or {})
    described[line] = described.get(line, 0) + 1
  return '\n'.join(f'- {_count(n, "run")}: {line}' for line, n in sorted(described.items()))


def time_or_unrecorded(seconds):
  """minutes(seconds), or 'not recorded' for None (runs made before the field existed)."""
  return 'not recorded' if seconds is None else minutes(seconds)


def summed(results, field):
  """The sum of `field` over results dicts; None if any lacks it."""
  values = [r.get(field) for r in results]
  return None if any(v is None for v in values) else sum(values)


def shown(path):
  """A data path as a reader can use it: relative to the repository when it lies inside it."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  absolute = os.path.abspath(path)
  return os.path.relpath(absolute, root) if absolute.startswith(root + os.sep) else path


def copy_figure(workdir, source, name):
  """Copies a PNG of a part into WORKDIR/figures/; returns its link relative to the report."""
  if not os.path.exists(source):
    return None
  shutil.copyfile(source, os.path.join(workdir, FIGURES, name))
  return f'{FIGURES}/{name}'


def data_description(cnn):
  """What a CNN config trains on, in words (the data set, its source and its split)."""
  source = (f'IDX files in `{shown(cnn.data_dir)}`' if cnn.data_dir else 'TFDS (downloaded)')
  if cnn.split_test_images:
    source += (f', its test images only: {cnn.split_test_images} held out as the test split, '
               'the others divided into train and validation')
  return f'{cnn.dataset} from {source}'


def write_report(workdir):
  """Writes WORKDIR/report.md and WORKDIR/figures/*.png from the finished parts; returns the
  report's path."""
  from configs import homework  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(
      workdirs.without_format(read(workdir, records.CONFIG_FILE)))
  if config.get('task') != 'homework':
    raise UserError(f'--mode report needs the workdir of a configs/homework.py run; {workdir} '
                    f'holds a {config.get("task")!r} run')
  parts = read(workdir, 'parts.json')
  missing = [p for p in PARTS if p not in parts]
  if missing:
    raise UserError(f'{workdir} has not finished {", ".join(missing)}: rerun the homework '
                    '(it resumes) before --mode report')
  path = os.path.join(workdir, REPORT_FILE)
  if not parallel.is_writer():
    return path
  os.makedirs(os.path.join(workdir, FIGURES), exist_ok=True)
  runs = _runs(workdir)
  sections = [
      '# Homework 2, reproduced with hw2',
      'Made by\n\n```\n'
      + command('configs/homework.py', workdir, config, homework.get_config())
      + '\n```\n\n'
      'and `--mode report` added to it rebuilds this file from the finished runs. Each part is '
      'in its own subfolder of the workdir. Numbers in the "homework" columns are those of the '
      'homework report. The same translator over three seeds with the training options added '
      'one at a time, a Transformer, and the CNN at lr 1e-2 over seeds are in the report beyond '
      'the homework, [../beyond/report.md](../beyond/report.md) (`configs/beyond.py`).',
      'Where the runs were made (as each recorded it):\n\n'
      + provenance_lines([results for _, results in runs]),
      _time_table(workdir, parts, runs),
      _theory_section(workdir),
      _cnn_section(workdir, config),
      _translation_section(workdir, config),
      _beam_section(workdir, config),
  ]
  records.write_atomic(path, '\n\n'.join(sections) + '\n')
  return path


def _runs(workdir):
  """[(part, results.json dict), ...] of every training run of the homework, in part order."""
  sweep = read(workdir, 'cnn', 'sweep.json')
  runs = [('cnn', read(run['workdir'], records.RESULTS_FILE)) for run in sweep['runs']]
  return runs + [('translation', read(workdir, 'translation', name, records.RESULTS_FILE))
                 for name in MODEL_NAMES]


def _time_table(workdir, parts, runs):
  """Each part's training and test-decoding time, summed over its runs as each run recorded
  them (whichever invocation ran it), beside the part's wall time over its invocations."""
  beam = [r for file in ('validation.json', 'test.json')
          for r in read(workdir, 'beam', file, kind=list)]
  rows = []
  for name in PARTS:
    part_runs = [results for part, results in runs if part == name]
    training = time_or_unrecorded(summed(part_runs, 'train_seconds')) if part_runs else '-'
    testing = time_or_unrecorded(summed(part_runs, 'eval_seconds')) if part_runs else '-'
    if name == 'beam_search':
      testing = time_or_unrecorded(summed(beam, 'seconds'))
    rows.append([name, training, testing, minutes(parts[name]['seconds'])])
  rows.append(['**all**', '', '', minutes(sum(parts[name]['seconds'] for name in PARTS))])
  return ('Time: training and test evaluation (decoding, for the translators) as each run '
          'recorded them, summed over the runs of a part; the wall time of a part includes '
          'loading, compiling and writing.\n\n'
          + table(['part', 'training', 'evaluation and decoding', 'wall time'], rows))


def _theory_section(workdir):
  checks = read(workdir, 'theory', 'theory.json')
  conv = table(['input', 'filter', 'stride', 'padding', 'A shape', 'max abs error (dense A)',
                'max abs error (sparse A)', 'non-zeros'],
               [[r['input'], r['filter'], r['stride'], r['padding'],
                 'x'.join(map(str, r['A_shape'])), f"{r['dense_max_abs_error']:.1e}",
                 f"{r['sparse_max_abs_error']:.1e}", r['nonzeros']]
                for r in checks['convolution_as_matrix']])
  count_rows = []
  for r in checks['parameter_counts']:
    h, w = map(int, r['input'].split('x'))
    m, n = map(int, r['filter'].split('x'))
    pooled = ((h - m + 1) // 2) * ((w - n + 1) // 2)
    homework_fc = h * w * pooled + 3 * pooled  # Eq. (12): HW x H''W'', then the classes.
    count_rows.append([r['input'], r['filter'], r['conv_formula'], r['conv_module'],
                       r['fc_formula'], r['fc_module'], homework_fc])
  counts = table(['input', 'filter', 'conv net (formula)', 'conv net (Flax module)',
                  "fully connected, HW x H'W' (formula)", 'fully connected (Flax module)',
                  "homework eq. (12), HW x H''W''"], count_rows)
  attention = table(['input', 'max abs error of P', 'max abs error of Z',
                     'max row-sum error of P'],
                    [[r['input'], f"{r['P_max_abs_error']:.1e}", f"{r['Z_max_abs_error']:.1e}",
                      f"{r['max_row_sum_error']:.1e}"] for r in checks['self_attention']])
  sparsity = copy_figure(workdir, os.path.join(workdir, 'theory', 'conv_matrix_sparsity.png'),
                         'conv_matrix_sparsity.png')
  return '\n\n'.join([
      '## Question 1: theory, checked numerically',
      '### Convolution as a matrix product\n\nA vec(x) against `lax.conv_general_dilated` '
      '(float32); A built from the index formula, dense and sparse (BCOO).', conv,
      f'![The sparsity pattern of A]({sparsity})' if sparsity else '',
      '### Parameters: a convolution against a fully connected layer\n\nOne M x N filter, ReLU, '
      '2x2 max-pooling and a dense layer to 3 classes, against the same network whose first '
      "layer is fully connected, without biases. The homework asks for a fully connected layer "
      "with the convolution's output size H' x W' = (H-M+1) x (W-N+1), which gives the "
      "project's count (checked against Flax modules of those shapes). The homework report's "
      "eq. (12) sizes that layer HW x H''W'', with H'' x W'' the size after pooling, so its "
      'count (last column) is smaller; it describes a fully connected layer that maps the image '
      'straight to the pooled size, which is not the replacement of the convolution the '
      'question describes.', counts,
      '### Self-attention with identity projections\n\nP = softmax(x\' x\'^T / sqrt(d)) and '
      "Z = P x' for the pixels x' = vec(x) (W_Q = W_K = W_V = 1, d = 1), against Flax's and "
      "JAX's attention functions. The homework report's eq. (14) puts the 1/sqrt(d) outside "
      'the softmax, softmax(x\' x\'^T) x\' / sqrt(d); the scaling belongs inside it, where it '
      'tempers the scores before they are normalised (outside, it only rescales the output). '
      'With d = 1, as here, the two give the same numbers; for d > 1 they differ.', attention])


def _cnn_section(workdir, config):
  sweep = read(workdir, 'cnn', 'sweep.json')
  rows, train_loss, val_accuracy = [], {}, {}
  for learning_rate, run in zip(config.learning_rates, sweep['runs']):
    results = read(run['workdir'], records.RESULTS_FILE)
    history = records.read_metrics(run['workdir'])
    homework = HOMEWORK_CNN_ACCURACY.get(learning_rate)
    rows.append([f'{learning_rate:g}' + (' (best)' if run['is_best'] else ''),
                 f"{results['test_accuracy'] * 100:.2f} %",
                 f'{homework * 100:.2f} %' if homework is not None else '-',
                 results['best_epoch'], f"{results['val_accuracy']:.4f}",
                 f"{history[-1]['val_accuracy']:.4f}", minutes(results['train_seconds'])])
    epochs = [r['epoch'] for r in history]
    train_loss[f'lr {learning_rate:g}'] = (epochs, [r['train_loss'] for r in history])
    val_accuracy[f'lr {learning_rate:g}'] = (epochs, [r['val_accuracy'] for r in history])
  figures = os.path.join(workdir, FIGURES)
  plots.plot_curves(train_loss, 'training loss', os.path.join(figures, 'cnn_train_loss.png'),
                    'CNN training loss per learning rate', log_y=True)
  plots.plot_curves(val_accuracy, 'validation accuracy',
                    os.path.join(figures, 'cnn_val_accuracy.png'),
                    'CNN validation accuracy per learning rate')
  best = next(r for r in sweep['runs'] if r['is_best'])
  maps = copy_figure(workdir, os.path.join(best['workdir'], 'activation_maps.png'),
                     'cnn_activation_maps.png')
  sizes = read(best['workdir'], records.RESULTS_FILE).get('examples', {})
  cnn = config.cnn
  return '\n\n'.join([
      '## Question 2: CNN image classification',
      f"Data: {data_description(config.cnn)}; {sizes.get('train', '?')} training, "
      f"{sizes.get('validation', '?')} validation and {sizes.get('test', '?')} test images. "
      f'Settings: Adam, batch {cnn.batch_size}, dropout {cnn.model.dropout_rate}, '
      f'{_count(cnn.num_epochs, "epoch")}, seed {cnn.seed}. The measured test accuracy is that '
      'of the checkpoint with the best validation accuracy; the homework reports its final '
      'model, so a run that collapses late (final validation accuracy near 0.10, the '
      "homework's 10.00 % at 1e-2) shows its collapse in the final-validation column. "
      'The homework trained on the 60,000 KMNIST training images'
      + ('.' if cnn.dataset == 'kmnist' and not cnn.split_test_images and not cnn.data_dir else
         '; this run used the data above, so its numbers answer the same question on less or '
         'other data.'),
      table(['learning rate', 'test accuracy (measured)', 'test accuracy (homework)',
             'best epoch', 'best validation accuracy', 'final validation accuracy',
             'training time'], rows),
      '![CNN training loss](figures/cnn_train_loss.png)\n'
      '![CNN validation accuracy](figures/cnn_val_accuracy.png)',
      f'First-layer activation maps (before ReLU) of the best run ({best["value"]}) on a '
      f'training image:\n\n![activation maps]({maps})' if maps else ''])


def _translation_section(workdir, config):
  rows, train_loss, val_error = [], {}, {}
  for name, label in MODEL_NAMES.items():
    run = os.path.join(workdir, 'translation', name)
    results = read(run, records.RESULTS_FILE)
    history = records.read_metrics(run)
    rows.append([label, f"{results['test_error_rate']:.4f}",
                 f'{HOMEWORK_TRANSLATION_ERROR[name]:.4f}', f"{results['test_exact_match']:.3f}",
                 f"{results['test_chrf']:.1f}", f"{results['test_bleu']:.1f}",
                 results['best_epoch'], minutes(results['train_seconds'])])
    epochs = [r['epoch'] for r in history]
    train_loss[label] = (epochs, [r['train_loss'] for r in history])
    val_error[label] = (epochs, [r['val_error_rate'] for r in history])
  figures = os.path.join(workdir, FIGURES)
  plots.plot_curves(train_loss, 'training loss',
                    os.path.join(figures, 'translation_train_loss.png'),
                    'translation training loss')
  plots.plot_curves(val_error, 'validation error rate',
                    os.path.join(figures, 'translation_val_error_rate.png'),
                    'translation validation error rate')
  heat_maps = [copy_figure(workdir, os.path.join(workdir, 'translation', 'attention',
                                                 f'attention_{i}.png'), f'attention_{i}.png')
               for i in range(config.translation.num_attention_plots)]
  t = config.translation
  sizes = read(os.path.join(workdir, 'translation', 'attention'),
               records.RESULTS_FILE).get('examples', {})
  return '\n\n'.join([
      '## Question 3: character-level Spanish to English translation',
      f"Data: `{shown(t.data_dir)}` ({sizes.get('train', '?')} training pairs of at most "
      f"{t.max_length} characters, {sizes.get('validation', '?')} validation, "
      f"{sizes.get('test', '?')} test). Settings: Adam {t.learning_rate}, batch {t.batch_size}, "
      f'hidden size {t.model.hidden_size}, dropout {t.model.dropout_rate}, {_count(t.num_epochs, "epoch")}, '
      'greedy '
      'decoding. Error rate = mean Levenshtein(reference, prediction) / len(reference), the '
      "homework's selection metric; chrF and BLEU are sacrebleu's corpus scores (0-100).",
      table(['model', 'test error rate (measured)', 'test error rate (homework)',
             'exact match', 'chrF', 'BLEU', 'best epoch', 'training time'], rows),
      '![translation training loss](figures/translation_train_loss.png)\n'
      '![translation validation error rate](figures/translation_val_error_rate.png)',
      'Attention of the attention model over the source while it writes its (greedy) '
      'translation of the first test sentences:\n\n'
      + '\n'.join(f'![attention {i}]({link})' for i, link in enumerate(heat_maps) if link)])


def _beam_section(workdir, config):
  validation_rows = read(workdir, 'beam', 'validation.json', kind=list)
  test_rows = read(workdir, 'beam', 'test.json', kind=list)
  wanted = {(m, k, a) for m in MODEL_NAMES for k in config.beam_sizes
            for a in config.length_penalties}
  grid = table(['model', 'beam size', 'length penalty', 'validation error rate', 'exact match',
                'chrF', 'BLEU', 'decoding time'],
               [[MODEL_NAMES[r['model']], r['beam_size'], f"{r['length_penalty']:g}",
                 f"{r['error_rate']:.4f}", f"{r['exact_match']:.3f}", f"{r['chrf']:.1f}",
                 f"{r['bleu']:.1f}", minutes(r['seconds'])]
                for r in validation_rows
                if (r['model'], r['beam_size'], r['length_penalty']) in wanted])
  chosen_rows, summary = [], []
  for r in test_rows:
    greedy = read(workdir, 'translation', r['model'], records.RESULTS_FILE)['test_error_rate']
    chosen_rows.append([MODEL_NAMES[r['model']], r['beam_size'], f"{r['length_penalty']:g}",
                        f'{greedy:.4f}', f"{r['error_rate']:.4f}", f"{r['exact_match']:.3f}",
                        f"{r['chrf']:.1f}", f"{r['bleu']:.1f}"])
    summary.append(f"{MODEL_NAMES[r['model']]}: greedy {greedy:.4f} -> {r['error_rate']:.4f} "
                   f"(beam {r['beam_size']}, length penalty {r['length_penalty']:g})")
  return '\n\n'.join([
      '## Question 3 (c): beam search',
      'Each model\'s best checkpoint, decoded with every beam size and length penalty (GNMT\'s '
      'alpha) on the validation split; beam size 1 is greedy decoding. The setting of least '
      'validation error rate (ties to the cheaper one) is chosen per model, and only then is '
      'the test split decoded, once, at that setting. The homework report gives no beam table '
      'to compare with.', grid,
      f'Test error rate at the chosen settings: {"; ".join(summary)}.',
      table(['model', 'beam size', 'length penalty', 'test error rate, greedy',
             'test error rate, chosen', 'exact match', 'chrF', 'BLEU'], chosen_rows)])
