"""What a run reports: TensorBoard events equal metrics.jsonl, the parameter overview."""
import os

import pytest
from tensorboard.backend.event_processing import event_accumulator

from hw2 import records
from hw2 import train
from hw2 import tracking


@pytest.mark.slow
def test_tensorboard_events_hold_the_metrics_of_each_epoch(cnn_config, tmp_path):
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(cnn_config, workdir)
  events = event_accumulator.EventAccumulator(
      os.path.join(workdir, tracking.EVENTS_DIR), size_guidance={'images': 0, 'scalars': 0})
  events.Reload()
  history = records.read_metrics(workdir)
  for name in ('train_loss', 'val_accuracy', 'examples_per_second'):
    scalars = events.Scalars(f'epoch/{name}')
    assert [s.step for s in scalars] == [r['epoch'] for r in history]
    for scalar, record in zip(scalars, history):
      assert abs(scalar.value - record[name]) <= 1e-6 * max(1.0, abs(record[name]))
  # Progress points: 20 steps an epoch in calls of 8 -> steps 8, 16, 20, 28, 36, 40.
  assert [s.step for s in events.Scalars('train/loss')] == [8, 16, 20, 28, 36, 40]
  assert all(abs(s.value - cnn_config.learning_rate) < 1e-9
             for s in events.Scalars('train/learning_rate'))
  tags = set(events.Tags()['images'])
  assert {'activation_maps', 'train_loss', 'val_accuracy'} <= tags
  image = events.Images('activation_maps')[-1]
  assert image.width > 100 and image.encoded_image_string.startswith(b'\x89PNG')


def test_parameter_overview_is_logged_and_written(cnn_config, tmp_path):
  cnn_config.num_epochs = 1
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(cnn_config, workdir)
  lines = open(os.path.join(workdir, train.PARAMETERS_FILE)).read().splitlines()
  assert lines[-1].split() == ['total', '420,906']
  assert any(l.split()[:2] == ['dense1/kernel', '(576,'] and l.split()[-1] == '345,600'
             for l in lines)
  assert len(lines) == 1 + 10 + 1  # Header, 10 arrays, total.
