"""Shared fixtures: real data locations, small IDX folders, small configs."""
import gzip
import os
import struct
import sys
import tempfile

import jax
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
SHARED_DATA = os.path.join(os.path.dirname(ROOT), 'shared', 'data')
KMNIST_DIR = os.path.join(SHARED_DATA, 'kmnist')
SPA_ENG_DIR = os.path.join(SHARED_DATA, 'spa-eng')
FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'


def pytest_configure(config):
  # Many tests build the same jitted functions anew (one trainer per run); JAX's persistent
  # compilation cache lets them reuse each other's XLA executables within the session.
  del config
  jax.config.update('jax_compilation_cache_dir', tempfile.mkdtemp(prefix='hw2_jax_cache_'))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)


def write_idx(path, array):
  """Writes a uint8 array as a gzip IDX file (magic 0x0000080<ndim>)."""
  array = np.asarray(array, np.uint8)
  header = struct.pack('>HBB', 0, 8, array.ndim) + struct.pack('>' + 'I' * array.ndim, *array.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + array.tobytes())


def write_idx_folder(folder, train_images, train_labels, test_images, test_labels):
  os.makedirs(folder, exist_ok=True)
  write_idx(os.path.join(folder, 'train-images-idx3-ubyte.gz'), train_images)
  write_idx(os.path.join(folder, 'train-labels-idx1-ubyte.gz'), train_labels)
  write_idx(os.path.join(folder, 't10k-images-idx3-ubyte.gz'), test_images)
  write_idx(os.path.join(folder, 't10k-labels-idx1-ubyte.gz'), test_labels)
  return folder


@pytest.fixture(scope='session')
def fashion_mnist():
  """The real Fashion-MNIST arrays (apt-get install dataset-fashion-mnist)."""
  from hw2.data import images
  if not os.path.isdir(FASHION_MNIST_DIR):
    pytest.fail(f'{FASHION_MNIST_DIR} is missing: apt-get install dataset-fashion-mnist')
  return images.load_idx_folder(FASHION_MNIST_DIR)


@pytest.fixture(scope='session')
def small_image_dir(tmp_path_factory, fashion_mnist):
  """An IDX folder of 1,200 real Fashion-MNIST training and 300 test images."""
  train_x, train_y, test_x, test_y = fashion_mnist
  return write_idx_folder(str(tmp_path_factory.mktemp('fmnist_small')), train_x[:1200],
                          train_y[:1200], test_x[:300], test_y[:300])


@pytest.fixture
def cnn_config(small_image_dir):
  """The homework CNN config shrunk to seconds: 1,000 train / 200 validation / 300 test images."""
  from configs import cnn
  config = cnn.get_config()
  config.dataset = 'fashion_mnist'
  config.data_dir = small_image_dir
  config.validation_size = 200
  config.batch_size = 50
  config.num_epochs = 2
  config.steps_per_call = 8
  config.eval_batch_size = 128
  config.learning_rate = 1e-3
  return config
