"""Shared fixtures: the repository's data, small IDX folders, small configs."""
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
DATA = os.path.join(ROOT, 'data')
KMNIST_DIR = os.path.join(DATA, 'kmnist')  # The official KMNIST test images and labels.
SPA_ENG_DIR = os.path.join(DATA, 'spa-eng')  # The homework's translation files.


def pytest_configure(config):
  # Many tests build the same jitted functions anew (one trainer per run); JAX's persistent
  # compilation cache lets them reuse each other's XLA executables within the session.
  del config
  cache = tempfile.mkdtemp(prefix='hw2_jax_cache_')
  jax.config.update('jax_compilation_cache_dir', cache)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  # The CLI tests' subprocesses share it.
  os.environ['JAX_COMPILATION_CACHE_DIR'] = cache
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'


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


def homework_pairs_folder(folder, lines):
  """`folder` (a pathlib.Path) with the first lines[split] lines of the homework's
  {train,val,test}-eng-spa.txt; returns it as a string."""
  for name, count in lines.items():
    with open(os.path.join(SPA_ENG_DIR, f'{name}-eng-spa.txt'), encoding='utf-8') as f:
      (folder / f'{name}-eng-spa.txt').write_text(''.join(f.readlines()[:count]),
                                                  encoding='utf-8')
  return str(folder)


@pytest.fixture(scope='session')
def kmnist_test_images():
  """The 10,000 real KMNIST test images [N, 28, 28] uint8 and labels [N] shipped in data/kmnist."""
  from hw2.data import images
  return (images.read_idx(os.path.join(KMNIST_DIR, 't10k-images-idx3-ubyte.gz'), 3),
          images.read_idx(os.path.join(KMNIST_DIR, 't10k-labels-idx1-ubyte.gz'), 1))


@pytest.fixture(scope='session')
def small_image_dir(tmp_path_factory, kmnist_test_images):
  """An IDX folder of real KMNIST images: 1,200 as training and 300 others as test images."""
  x, y = kmnist_test_images
  return write_idx_folder(str(tmp_path_factory.mktemp('kmnist_small')), x[:1200], y[:1200],
                          x[1200:1500], y[1200:1500])


@pytest.fixture
def cnn_config(small_image_dir):
  """The homework CNN config shrunk to seconds: 1,000 train / 200 validation / 300 test images."""
  from configs import cnn
  config = cnn.get_config()
  config.data_dir = small_image_dir
  config.validation_size = 200
  config.batch_size = 50
  config.num_epochs = 2
  config.steps_per_call = 8
  config.eval_batch_size = 128
  config.learning_rate = 1e-3
  return config
