"""configs/homework.py: every part of the homework in order, each in its own subfolder, then the
report (hw2/report.py).

WORKDIR/theory/                    question 1 (hw2/theory.py)
WORKDIR/cnn/learning_rate=<lr>/    question 2: one CNN run per learning rate (hw2/sweeps.py)
WORKDIR/translation/{no_attention,attention}/   question 3
WORKDIR/beam/validation.json       question 3 (c): validation metrics per model, beam size, penalty
WORKDIR/beam/test.json             test metrics of each model at the setting chosen on validation
WORKDIR/parts.json                 which parts finished, with their wall times
WORKDIR/report.md                  the report, with its figures in WORKDIR/figures/

Every part resumes: a rerun after an interruption continues the run it stopped in (from its last
checkpoint) and retrains nothing that finished; finished beam-table rows are kept.

Beam size and length penalty are chosen per model on the validation split (least error rate;
ties go to the cheaper setting); the test split is decoded once, at the chosen setting.
"""
import os
import time

from absl import logging

from hw2 import parallel
from hw2 import parts
from hw2 import records
from hw2 import report
from hw2 import sweeps
from hw2 import theory
from hw2 import train
from hw2 import translate
from hw2 import validation
from hw2 import workdir as workdirs

BEAM_VALIDATION_FILE = os.path.join('beam', 'validation.json')
BEAM_TEST_FILE = os.path.join('beam', 'test.json')
TRANSLATION_MODELS = (('no_attention', False), ('attention', True))


def sweep_spec(config):
  """The --sweep spec of question 2, e.g. 'learning_rate=1e-05,0.0005,0.01'."""
  return 'learning_rate=' + ','.join(f'{lr:g}' for lr in config.learning_rates)


def translation_config(config, use_attention):
  run_config = config.translation.copy_and_resolve_references()
  run_config.model.use_attention = use_attention
  return run_config


def run_theory(config, workdir):
  theory.write_report(config.theory, os.path.join(workdir, 'theory'))


def run_cnn(config, workdir):
  sweeps.run_sweep(config.cnn, os.path.join(workdir, 'cnn'), sweep_spec(config))


def run_translation(config, workdir):
  for name, use_attention in TRANSLATION_MODELS:
    train.train_and_evaluate(translation_config(config, use_attention),
                             os.path.join(workdir, 'translation', name))


def beam_rows(config):
  """(model, beam size, length penalty) of every row of the beam table, in order."""
  return [(name, k, alpha) for name, _ in TRANSLATION_MODELS for k in config.beam_sizes
          for alpha in config.length_penalties if k > 1 or alpha == config.length_penalties[0]]


def choose_beam(rows):
  """The row of least error rate among `rows` (one model's validation rows); ties go to the
  smaller beam, then the smaller penalty (the cheaper decoding)."""
  return min(rows, key=lambda r: (r['error_rate'], r['beam_size'], r['length_penalty']))


def _checkpoint_of(workdir, name):
  """(best epoch, epochs trained) of a translation model: which checkpoint a row decoded."""
  results = records.read_json(os.path.join(workdir, 'translation', name, records.RESULTS_FILE))
  return [results['best_epoch'], results['epochs_trained']]


def _decode_rows(workdir, file, settings, split):
  """Metrics on `split` of each (model, beam size, penalty) of `settings`, kept in WORKDIR/file
  row by row (an interruption keeps the rows done; a rerun decodes only the others, and anew
  those of a model trained further since)."""
  path = os.path.join(workdir, file)
  done = {(r['model'], r['beam_size'], r['length_penalty']): r
          for r in records.read_json_or_none(path, list) or []}
  rows = []
  for name, k, alpha in settings:
    row = done.get((name, k, alpha))
    if row is None or row.get('checkpoint') != _checkpoint_of(workdir, name):
      start = time.perf_counter()
      metrics = translate.decoding_metrics(os.path.join(workdir, 'translation', name), k, alpha,
                                           split)
      row = {'model': name, 'beam_size': k, 'length_penalty': alpha, 'split': split, **metrics,
             'checkpoint': _checkpoint_of(workdir, name),
             'seconds': round(time.perf_counter() - start, 1)}
      logging.info('beam search, %s: %s', split, row)
    rows.append(row)
    records.write_json(path, rows)
  return rows


def run_beam_search(config, workdir):
  """Question 3 (c): the beam grid on the validation split, then each model on the test split at
  the setting chosen there."""
  validation_rows = _decode_rows(workdir, BEAM_VALIDATION_FILE, beam_rows(config), 'validation')
  chosen = [choose_beam([r for r in validation_rows if r['model'] == name])
            for name, _ in TRANSLATION_MODELS]
  _decode_rows(workdir, BEAM_TEST_FILE,
               [(r['model'], r['beam_size'], r['length_penalty']) for r in chosen], 'test')


PARTS = (('theory', run_theory, ('theory',)),
         ('cnn', run_cnn, ('cnn', 'learning_rates')),
         ('translation', run_translation, ('translation',)),
         ('beam_search', run_beam_search, ('translation', 'beam_sizes', 'length_penalties')))


def run(config, workdir):
  """Runs the parts not finished with these settings (hw2/parts.py), then writes the report;
  returns its path."""
  validation.validate(config)
  for part in ('cnn', 'translation'):
    parallel.check_batch_sizes(config[part])
  with workdirs.writer(workdir):
    parts.run_parts(config, workdir, PARTS)
    return report.write_report(workdir)
