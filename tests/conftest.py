"""Shared fixtures: the repository's data, small IDX folders, small configs."""
import gzip
import os
import struct
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DATA = os.path.join(ROOT, 'data')
KMNIST_DIR = os.path.join(DATA, 'kmnist')  # The official KMNIST test images and labels.
SPA_ENG_DIR = os.path.join(DATA, 'spa-eng')  # The homework's translation files.


def pytest_configure(config):
  """Every test process (pytest-xdist's workers, the CLI tests' main.py subprocesses) shares the
  persistent compilation cache of user runs (hw2/cli.py: $HW2_COMPILATION_CACHE, default
  ~/.cache/hw2/jax), so a program compiled once, in any test or any earlier run, loads in the
  others. The in-process tests see the log as main.py's user does (cli.hide_library_chatter)."""
  del config
  from hw2 import cli  # pylint: disable=g-import-not-at-top
  cli.hide_library_chatter()
  folder = cli.enable_compilation_cache()
  os.environ[cli.CACHE_ENV] = folder or 'off'  # The subprocesses find the same folder.


def pytest_collection_modifyitems(items):
  """Modules that hold a slow test come first (in file order), the quick modules last, so that
  the full tier's workers (README: --dist loadscope --no-loadscope-reorder hands out whole
  modules in this order) end together, the quick modules filling the end, rather than one worker
  finishing a long module alone."""
  slow_modules = {item.module for item in items if item.get_closest_marker('slow')}
  items.sort(key=lambda item: item.module not in slow_modules)  # A stable sort.


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
  return small_cnn_config(small_image_dir)


def small_cnn_config(small_image_dir):
  """cnn_config's config, for fixtures of a wider scope."""
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
