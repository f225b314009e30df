"""Real-data integration: the homework CNN and settings on Fashion-MNIST."""
import os

from conftest import FASHION_MNIST_DIR
from configs import cnn
from hw2 import records
from hw2 import train


def test_one_epoch_on_8000_fashion_mnist_images_reaches_70_percent(tmp_path):
  config = cnn.get_config()  # The homework's settings: Adam 5e-4, batch 8, dropout 0.3.
  config.dataset = 'fashion_mnist'
  config.data_dir = FASHION_MNIST_DIR
  config.max_train_examples = 8000
  config.num_epochs = 1
  results = train.train_and_evaluate(config, str(tmp_path))
  assert results['test_accuracy'] >= 0.70, results
  history = records.read_metrics(str(tmp_path))
  assert len(history) == 1 and history[0]['val_accuracy'] >= 0.70
  assert os.path.exists(tmp_path / 'activation_maps.png')
