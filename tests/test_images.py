"""IDX and TFDS readers, the train/validation split, and their error messages."""
import gzip
import os

import numpy as np
import pytest

from conftest import KMNIST_DIR, write_idx, write_idx_folder
from hw2.data import images
from hw2.errors import UserError


def test_reads_real_kmnist_test_files():
  x = images.read_idx(os.path.join(KMNIST_DIR, 't10k-images-idx3-ubyte.gz'), 3)
  y = images.read_idx(os.path.join(KMNIST_DIR, 't10k-labels-idx1-ubyte.gz'), 1)
  assert x.shape == (10_000, 28, 28) and x.dtype == np.uint8
  assert y.shape == (10_000,)
  np.testing.assert_array_equal(np.bincount(y), np.full(10, 1000))
  assert 0 < x.mean() < 255 and x.max() == 255


def test_reads_real_kmnist_train_labels():
  y = images.read_idx(os.path.join(KMNIST_DIR, 'train-labels-idx1-ubyte.gz'), 1)
  np.testing.assert_array_equal(np.bincount(y), np.full(10, 6000))


def test_round_trip_of_written_file(tmp_path):
  array = np.random.RandomState(0).randint(0, 256, (7, 28, 28))
  write_idx(tmp_path / 'x.gz', array)
  np.testing.assert_array_equal(images.read_idx(str(tmp_path / 'x.gz'), 3), array)


def _raw_idx(path, raw):
  with gzip.open(path, 'wb') as f:
    f.write(raw)
  return str(path)


@pytest.mark.parametrize('raw, message', [
    (b'\x00\x00\x08\x01' + (3).to_bytes(4, 'big') + b'\x01\x02\x03', 'bad IDX magic'),
    (b'\x00\x00\x09\x03' + b'\x00' * 12, 'bad IDX magic'),
    (b'\x00\x00\x08\x03' + (2).to_bytes(4, 'big') + (28).to_bytes(4, 'big') * 2 + b'\x00' * 100,
     'but the file holds 100 bytes'),
    (b'\x00\x00', 'truncated'),
])
def test_corrupt_files_raise_one_clear_error(tmp_path, raw, message):
  path = _raw_idx(tmp_path / 'bad.gz', raw)
  with pytest.raises(UserError, match=message) as e:
    images.read_idx(path, 3)
  assert path in str(e.value)


def test_not_gzip_and_missing_file(tmp_path):
  (tmp_path / 'plain.gz').write_bytes(b'not gzip at all')
  with pytest.raises(UserError, match='not a readable gzip file'):
    images.read_idx(str(tmp_path / 'plain.gz'), 3)
  with pytest.raises(UserError, match='data file not found: .*missing.gz'):
    images.read_idx(str(tmp_path / 'missing.gz'), 3)


def test_truncated_gzip_stream(tmp_path):
  path = tmp_path / 'x.gz'
  write_idx(path, np.zeros((50, 28, 28)))
  path.write_bytes(path.read_bytes()[:-30])
  with pytest.raises(UserError, match='x.gz'):
    images.read_idx(str(path), 3)


def test_image_and_label_counts_must_agree(tmp_path):
  folder = write_idx_folder(str(tmp_path), np.zeros((5, 28, 28)), np.zeros(4), np.zeros((2, 28, 28)),
                            np.zeros(2))
  with pytest.raises(UserError, match='holds 5 images but .* holds 4 labels'):
    images.load_idx_folder(folder)


def test_missing_folder_is_named(tmp_path):
  with pytest.raises(UserError, match='data folder not found: .*nowhere'):
    images.load_idx_folder(str(tmp_path / 'nowhere'))


def test_split_is_fixed_disjoint_and_complete():
  train, val = images.train_validation_split(60_000, 10_000, seed=42)
  assert len(train) == 50_000 and len(val) == 10_000
  assert len(np.union1d(train, val)) == 60_000
  train2, _ = images.train_validation_split(60_000, 10_000, seed=42)
  np.testing.assert_array_equal(train, train2)


def test_load_image_splits_from_idx_folder(cnn_config):
  cnn_config.max_train_examples = 300
  splits = images.load_image_splits(cnn_config)
  assert splits.train_images.shape == (300, 28, 28, 1)
  assert splits.validation_images.shape == (200, 28, 28, 1)
  assert splits.test_images.shape == (300, 28, 28, 1)
  assert splits.train_images.dtype == np.float32
  assert 0.0 <= splits.train_images.min() and splits.train_images.max() == 1.0
  assert splits.train_labels.dtype == np.int32


def test_unknown_dataset(cnn_config):
  from hw2 import validation
  cnn_config.dataset = 'cifar10'
  with pytest.raises(UserError, match="unknown dataset 'cifar10'"):
    validation.validate(cnn_config)


def _write_raw_idx(path, array):
  """An uncompressed IDX file, as TFDS's download_and_extract leaves it."""
  array = np.asarray(array, np.uint8)
  header = bytes([0, 0, 8, array.ndim]) + b''.join(n.to_bytes(4, 'big') for n in array.shape)
  path.write_bytes(header + array.tobytes())
  return str(path)


@pytest.mark.slow
@pytest.mark.parametrize('dataset', ['kmnist', 'mnist'])
def test_tfds_download_and_prepare_with_only_the_network_replaced(dataset, tmp_path,
                                                                  monkeypatch):
  """The first-run path of the main command: TFDS downloads, prepares and loads the data set.

  Only DownloadManager.download_and_extract is replaced (it returns IDX files written here), and
  the builder's example counts are shrunk so that preparing takes seconds.
  """
  import tensorflow_datasets as tfds
  from tensorflow_datasets.image_classification import mnist
  rng = np.random.RandomState(0)
  arrays = {'train_data': rng.randint(0, 256, (30, 28, 28)), 'train_labels': np.arange(30) % 10,
            'test_data': rng.randint(0, 256, (20, 28, 28)), 'test_labels': np.arange(20) % 10}
  files = {key: _write_raw_idx(tmp_path / key, a) for key, a in arrays.items()}
  asked = []

  def download_and_extract(self, urls):
    asked.extend(urls.values())
    return {key: files[key] for key in urls}

  monkeypatch.setattr(tfds.download.DownloadManager, 'download_and_extract',
                      download_and_extract)
  monkeypatch.setattr(mnist, '_TRAIN_EXAMPLES', 30)
  monkeypatch.setattr(mnist, '_TEST_EXAMPLES', 20)
  train_x, train_y, test_x, test_y = images.load_tfds(dataset, str(tmp_path / 'tfds'))
  assert sorted(os.path.basename(u) for u in asked) == sorted(images.IDX_FILES.values())
  assert train_x.shape == (30, 28, 28) and train_x.dtype == np.uint8
  assert test_x.shape == (20, 28, 28) and test_y.shape == (20,)
  # TFDS may reorder examples: compare them as sets of (image, label).
  def as_set(x, y):
    return {(bytes(a), int(b)) for a, b in zip(x.astype(np.uint8), y)}
  assert as_set(train_x, train_y) == as_set(arrays['train_data'], arrays['train_labels'])
  assert as_set(test_x, test_y) == as_set(arrays['test_data'], arrays['test_labels'])
  assert os.path.isdir(tmp_path / 'tfds' / dataset)
  # Prepared once: the second load reads TFDS's files without downloading again.
  asked.clear()
  images.load_tfds(dataset, str(tmp_path / 'tfds'))
  assert not asked


def test_failed_tfds_download_is_one_clear_error(tmp_path, monkeypatch):
  import requests
  import tensorflow_datasets as tfds

  def offline(self, urls):
    raise requests.exceptions.ConnectionError("Failed to resolve 'codh.rois.ac.jp'\n(offline)")

  monkeypatch.setattr(tfds.download.DownloadManager, 'download_and_extract', offline)
  with pytest.raises(UserError) as e:
    images.load_tfds('kmnist', str(tmp_path / 'tfds'))
  message = str(e.value)
  assert '\n' not in message
  for fragment in ('could not download the kmnist data set', 'ConnectionError',
                   "Failed to resolve 'codh.rois.ac.jp'", '--config.data_dir=DIR',
                   'train-images-idx3-ubyte.gz'):
    assert fragment in message


def test_resplit_test_images_needs_no_training_images(tmp_path, kmnist_test_images):
  from configs import cnn
  x, y = kmnist_test_images
  folder = tmp_path / 'only_test'
  folder.mkdir()
  write_idx(folder / 't10k-images-idx3-ubyte.gz', x[:500])
  write_idx(folder / 't10k-labels-idx1-ubyte.gz', y[:500])
  config = cnn.get_config()
  config.data_dir, config.split_test_images, config.validation_size = str(folder), 100, 50
  splits = images.load_image_splits(config)
  assert (len(splits.train_images), len(splits.validation_images), len(splits.test_images)) == (
      350, 50, 100)
  # The three splits are disjoint and together are the 500 images.
  rows = [bytes(a) for part in (splits.train_images, splits.validation_images,
                                splits.test_images) for a in (part * 255).round().astype(np.uint8)]
  assert len(rows) == 500 and sorted(rows) == sorted(bytes(a) for a in x[:500])
  config.split_test_images = 500
  with pytest.raises(UserError, match=r'--config.split_test_images=500 must lie in \[0, 500\)'):
    images.load_image_splits(config)


def test_tfds_path_under_mock_data(cnn_config):
  import tensorflow_datasets as tfds
  cnn_config.data_dir = None
  cnn_config.validation_size = 8
  with tfds.testing.mock_data(num_examples=24):
    splits = images.load_image_splits(cnn_config)
  assert splits.train_images.shape == (16, 28, 28, 1)
  assert splits.validation_images.shape == (8, 28, 28, 1)
  assert splits.test_images.shape[1:] == (28, 28, 1) and len(splits.test_labels) == len(splits.test_images)
  assert splits.train_images.dtype == np.float32 and splits.train_images.max() <= 1.0
  assert set(np.unique(splits.train_labels)) <= set(range(10))
