"""The experiments made of parts (hw2/parts.py, hw2/homework.py, hw2/beyond.py), their reports
(hw2/report.py) and sweeps (hw2/sweeps.py), on tiny made-up records: the quick tier's check of
what tests/test_homework.py and tests/test_beyond.py run end to end."""
import os

import ml_collections
import numpy as np
import pytest

from configs import beyond as beyond_config
from configs import cnn
from configs import homework as homework_config
from conftest import ROOT
from hw2 import beyond
from hw2 import homework
from hw2 import parts
from hw2 import records
from hw2 import report
from hw2 import sweeps
from hw2 import workdir as workdirs


def _row(model, k, alpha, error):
  return {'model': model, 'beam_size': k, 'length_penalty': alpha, 'error_rate': error}


def test_the_beam_setting_is_chosen_by_least_error_then_the_cheaper():
  rows = [_row('a', 1, 0.0, 0.40), _row('a', 4, 0.6, 0.30), _row('a', 2, 0.0, 0.30),
          _row('a', 2, 1.0, 0.30), _row('a', 8, 0.0, 0.31)]
  assert homework.choose_beam(rows) == rows[2]


def test_the_beam_grid_has_greedy_once_per_model():
  config = homework_config.get_config()
  config.beam_sizes, config.length_penalties = (1, 4), (0.0, 1.0)
  assert homework.beam_rows(config) == [
      ('no_attention', 1, 0.0), ('no_attention', 4, 0.0), ('no_attention', 4, 1.0),
      ('attention', 1, 0.0), ('attention', 4, 0.0), ('attention', 4, 1.0)]


def test_parts_run_once_per_settings_and_again_when_they_change(tmp_path):
  config = ml_collections.ConfigDict({'task': 'homework', 'a': 1, 'b': (1, 2)})
  ran = []
  part_list = (('first', lambda c, w: ran.append('first'), ('a',)),
               ('second', lambda c, w: ran.append('second'), ('b',)))
  workdir = str(tmp_path)
  done = parts.run_parts(config, workdir, part_list)
  assert ran == ['first', 'second'] and done['second']['settings'] == {'b': [1, 2]}
  parts.run_parts(config, workdir, part_list)
  assert ran == ['first', 'second']  # Finished with these settings: skipped.
  config.b = (1, 2, 3)
  parts.run_parts(config, workdir, part_list)
  assert ran == ['first', 'second', 'second']
  saved = records.read_json(os.path.join(workdir, records.CONFIG_FILE))
  assert saved[workdirs.FORMAT_KEY] == workdirs.FORMAT_VERSION


def test_the_report_command_shows_overrides_with_repository_relative_paths():
  default = homework_config.get_config()
  config = default.copy_and_resolve_references()
  config.cnn.data_dir = os.path.join(ROOT, 'data', 'kmnist')
  config.beam_sizes = (1, 8)
  config.cnn.num_epochs = 3
  assert report.command('configs/homework.py', os.path.join(ROOT, 'runs', 'h'), config,
                        default) == (
      "python main.py --config configs/homework.py --workdir runs/h --config.beam_sizes='(1, 8)' "
      '--config.cnn.data_dir=data/kmnist --config.cnn.num_epochs=3')


def test_provenance_lines_count_the_runs_of_each_machine_and_commit():
  machine = {'processor': 'CPU X', 'cores': 2, 'platform': 'cpu', 'device_kind': 'cpu',
             'device_count': 1, 'process_count': 1}
  facts = {'python': '3.11.7', 'packages': {'jax': '0.10.2', 'flax': '0.12.8'},
           'git': {'commit': 'abcdef0123', 'dirty': False}, 'machine': machine,
           'date': '2026-12-05'}
  lines = report.provenance_lines([{'provenance': facts}, {'provenance': facts}, {}])
  assert lines.splitlines() == [
      '- 2 runs: CPU X (2 cores), 1 CPU device(s); commit abcdef0; 2026-12-05; Python 3.11.7, '
      'jax 0.10.2, flax 0.12.8',
      '- 1 run: machine not recorded; commit not recorded; date not recorded; Python ?']


def test_time_sums_say_when_a_run_did_not_record_the_field():
  assert report.summed([{'t': 1.5}, {'t': 2.0}], 't') == 3.5
  assert report.time_or_unrecorded(report.summed([{'t': 1.5}, {}], 't')) == 'not recorded'
  assert report.time_or_unrecorded(90) == '1.5 min'
  assert records.markdown_table(['a', 'b'], [[1, 'x']]) == '| a | b |\n|---|---|\n| 1 | x |'


def test_the_cnn_data_is_named_as_trained_on():
  config = cnn.get_config()
  assert report.data_description(config) == 'kmnist from TFDS (downloaded)'
  config.data_dir, config.split_test_images = os.path.join(ROOT, 'data', 'kmnist'), 2000
  assert report.data_description(config).startswith(
      'kmnist from IDX files in `data/kmnist`, its test images only: 2000 held out')


def test_beyond_rows_add_one_option_group_each_and_name_their_tuning():
  config = beyond_config.get_config()
  rows = beyond.translation_runs(config)
  assert [label for label, _, _ in rows][:2] == ['homework settings', '+ ema_decay=0.999']
  assert rows[-1][1] == 'transformer'
  assert [beyond._tuning(i, rows) for i in (0, 1, len(rows) - 2, len(rows) - 1)] == [  # pylint: disable=protected-access
      beyond.TUNING['homework'], beyond.TUNING['ablation'], beyond.TUNING['tuned'],
      beyond.TUNING['transformer']]


@pytest.mark.parametrize('values', [[0.1], [0.1, 0.3], [0.2, 0.25, 0.4]])
def test_mean_and_sample_std_over_seeds(values):
  stats = sweeps.mean_std(values)
  assert stats['mean'] == pytest.approx(np.mean(values))
  assert stats['std'] == (None if len(values) == 1 else pytest.approx(np.std(values, ddof=1)))
  assert beyond._stats([*values, None], 2) == sweeps.mean_std_text(stats, 2)  # pylint: disable=protected-access


def test_a_sweep_grid_varies_the_first_key_slowest():
  parsed = sweeps.parse_sweeps(['learning_rate=1e-3,3e-3', 'seed=1,2'], cnn.get_config())
  assert [name for name, _, _ in sweeps.grid(parsed)] == [
      'learning_rate=1e-3,seed=1', 'learning_rate=1e-3,seed=2', 'learning_rate=3e-3,seed=1',
      'learning_rate=3e-3,seed=2']
