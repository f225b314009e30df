"""The homework's CNN experiment (question 2): KMNIST, Adam lr 5e-4, batch 8, 20 epochs.

  python main.py --config configs/cnn.py --workdir runs/cnn
  python main.py --config configs/cnn.py --workdir runs/cnn --mode eval
  python main.py --config configs/cnn.py --workdir runs/lr --sweep learning_rate=1e-5,5e-4,1e-2

Offline, point it at a folder of the four IDX gzip files, e.g. Fashion-MNIST (Debian's
dataset-fashion-mnist package), or train on the KMNIST test images that ship in data/kmnist,
2,000 of them held out as the test split:
  python main.py --config configs/cnn.py --workdir runs/fmnist \
      --config.dataset=fashion_mnist --config.data_dir=/usr/share/datasets/fashion-mnist
  python main.py --config configs/cnn.py --workdir runs/kmnist_small \
      --config.data_dir=data/kmnist --config.split_test_images=2000 --config.validation_size=1000
"""
import os

import ml_collections
from ml_collections import config_dict

from configs import training

# The KMNIST test images shipped with the repository (data/README.md); found from any directory.
KMNIST_TEST_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               'data', 'kmnist')


def get_config():
  config = ml_collections.ConfigDict()
  config.task = 'classification'
  # Data: 'kmnist', 'fashion_mnist' or 'mnist'. data_dir unset -> TFDS; set -> a folder with
  # train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,
  # t10k-labels-idx1-ubyte.gz.
  config.dataset = 'kmnist'
  config.data_dir = config_dict.placeholder(str)
  config.tfds_data_dir = config_dict.placeholder(str)
  config.validation_size = 10_000
  config.max_train_examples = 0  # 0 = all of the train split.
  config.split_seed = 42
  # > 0: use only the official test images (e.g. data/kmnist): this many (fixed seed) are the test
  # split and the others are divided into train and validation as above.
  config.split_test_images = 0

  # The model (hw2/models): config.model reaches its constructor as keyword arguments. impl:
  # 'reference' (hw2/models/cnn.py, Flax's layers), 'fast' (hw2/models/fast/, for CPUs) or 'auto'
  # (fast on CPU, reference on GPU/TPU); a runtime setting, free to change on resume or eval.
  config.model = ml_collections.ConfigDict()
  config.model.impl = 'auto'
  config.model.dropout_rate = 0.3

  config.optimizer = 'adam'
  config.learning_rate = 5e-4
  config.batch_size = 8
  config.num_epochs = 20
  config.seed = 42
  training.add_training_options(config)  # Schedules, clipping, decay, ...: off.

  config.steps_per_call = 500  # Optimizer steps per jitted call (progress is logged after each).
  config.eval_batch_size = 1000
  return config
