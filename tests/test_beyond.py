"""configs/beyond.py end to end, shrunk: its ablation rows, the Transformer, the beam column and
the CNN at lr 1e-2 over two seeds, and the report's tables against the runs' own results."""
import os

import numpy as np
import pytest

from configs import beyond as beyond_config
from conftest import homework_pairs_folder
from hw2 import beyond
from hw2 import records

pytestmark = pytest.mark.slow  # Trains, or starts main.py processes that do.


def shrunk(small_image_dir, text_dir):
  config = beyond_config.get_config()
  config.seeds = (1, 2)
  config.beam_size = 2
  for part in ('translation', 'tuned', 'transformer'):
    config[part].update(data_dir=text_dir, eval_batch_size=32, num_attention_plots=0,
                        num_epochs=1)
    config[part].model.hidden_size = 16
  config.transformer.warmup_steps = 3
  config.transformer.num_attention_plots = 1  # The report's figure (the LSTM rows draw none).
  config.tuned.grad_clip_norm = 1.0  # Not in the ablation groups: a last row of its own.
  config.transformer.model.update(num_layers=1, ff_size=32)
  config.cnn.update(data_dir=small_image_dir, validation_size=200, batch_size=50, num_epochs=1,
                    split_test_images=0)
  config.cnn_stabilised.warmup_steps = 5
  return config


def test_beyond_runs_every_part_and_reports_means_over_seeds(tmp_path, small_image_dir):
  (tmp_path / 'pairs').mkdir()
  text_dir = homework_pairs_folder(tmp_path / 'pairs', {'train': 200, 'val': 32, 'test': 32})
  config = shrunk(small_image_dir, text_dir)
  workdir = str(tmp_path / 'beyond')
  path = beyond.run(config, workdir)
  rows = beyond.translation_runs(config)
  # The homework's settings, one row per ablation group, the tuned config (it clips, which no
  # group sets), and the Transformer.
  assert [folder for _, folder, _ in rows] == [f'ablation/{i}' for i in range(7)] + [
      'transformer']
  assert rows[1][2].ema_decay == config.tuned.ema_decay and rows[0][2].ema_decay == 0
  assert rows[2][2].weight_decay == config.tuned.weight_decay and rows[1][2].weight_decay == 0
  dropout = [row.model.dropout_rate for _, _, row in rows[4:6]]
  assert dropout == [rows[0][2].model.dropout_rate, config.tuned.model.dropout_rate]
  assert rows[5][2].grad_clip_norm == 0 and rows[6][2] is config.tuned
  text = open(path, encoding='utf-8').read()
  errors = [records.read_json(os.path.join(workdir, 'transformer', f'seed={s}', 'results.json'))[
      'test_error_rate'] for s in (1, 2)]
  line = next(l for l in text.splitlines() if l.startswith('| Transformer'))
  assert f'| {np.mean(errors):.4f} +- {np.std(errors, ddof=1):.4f} |' in line
  chrf = [records.read_json(os.path.join(workdir, 'transformer', f'seed={s}', 'results.json'))[
      'test_chrf'] for s in (1, 2)]
  assert f'| {np.mean(chrf):.1f} +- {np.std(chrf, ddof=1):.1f} |' in line
  assert '![attention of the Transformer](figures/attention_transformer.png)' in text
  assert 'attention of the tuned LSTM' not in text
  assert (tmp_path / 'beyond' / 'figures' / 'attention_transformer.png').exists()
  beam = records.read_json(os.path.join(workdir, 'beam.json'))
  assert set(beam) == {f'{folder}/seed={s}' for _, folder, _ in rows for s in (1, 2)}
  for name in ('homework', 'stabilised'):
    accuracies = [records.read_json(os.path.join(workdir, 'cnn', name, f'seed={s}',
                                                 'results.json'))['test_accuracy']
                  for s in (1, 2)]
    line = next(l for l in text.splitlines() if l.startswith(f'| {name} |'))
    assert ' / '.join(f'{a * 100:.2f}' for a in accuracies) in line
  # A rerun trains nothing and writes the same report.
  assert beyond.run(config, workdir) == path
  assert open(path, encoding='utf-8').read() == text
