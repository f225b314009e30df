"""Real-data integration: the homework CNN and settings on the KMNIST images shipped in data/."""
import os

import pytest

from conftest import KMNIST_DIR
from configs import cnn
from hw2 import records
from hw2 import train

pytestmark = pytest.mark.slow  # Trains, or starts main.py processes that do.


def test_homework_settings_on_resplit_kmnist_test_images(tmp_path):
  config = cnn.get_config()  # The homework's settings: Adam 5e-4, batch 8, dropout 0.3.
  config.data_dir = KMNIST_DIR
  config.split_test_images = 2000  # 8,000 images for train (7,000) + validation (1,000).
  config.validation_size = 1000
  config.num_epochs = 3
  results = train.train_and_evaluate(config, str(tmp_path))
  history = records.read_metrics(str(tmp_path))
  assert [r['epoch'] for r in history] == [1, 2, 3]
  assert history[-1]['train_loss'] < history[0]['train_loss']
  assert results['test_accuracy'] >= 0.88, results
  assert os.path.exists(tmp_path / 'activation_maps.png')
