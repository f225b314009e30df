"""28x28 grey image classification data: IDX-gzip files or TFDS -> numpy splits.

Every loader returns an `ImageSplits` of float32 images in [0, 1] with shape [N, 28, 28, 1] (NHWC)
and int32 labels with shape [N]. The homework's split is reproduced: the official training images
are divided with a fixed seed into train and validation; the official test images are the test split.
"""
import dataclasses
import gzip
import os
import struct
import zlib

import numpy as np

from hw2.errors import UserError

# dataset name (config.dataset) -> TFDS name. All are 28x28x1 with 10 classes.
DATASETS = {'kmnist': 'kmnist', 'fashion_mnist': 'fashion_mnist', 'mnist': 'mnist'}
NUM_CLASSES = 10

IDX_FILES = {
    'train_images': 'train-images-idx3-ubyte.gz',
    'train_labels': 'train-labels-idx1-ubyte.gz',
    'test_images': 't10k-images-idx3-ubyte.gz',
    'test_labels': 't10k-labels-idx1-ubyte.gz',
}
_IDX_UBYTE = 0x08  # IDX type code for unsigned bytes, the only one these data sets use.


@dataclasses.dataclass(frozen=True)
class ImageSplits:
  """Arrays of one data set: images [N, 28, 28, 1] float32 in [0, 1], labels [N] int32."""
  train_images: np.ndarray
  train_labels: np.ndarray
  validation_images: np.ndarray
  validation_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray

  def split(self, name):
    """Returns (images, labels) of split `name` in {'train', 'validation', 'test'}."""
    return getattr(self, f'{name}_images'), getattr(self, f'{name}_labels')


def read_idx(path, expected_ndim):
  """Reads a gzip-compressed IDX file of unsigned bytes.

  Args:
    path: the .gz file.
    expected_ndim: 3 for images ([N, rows, cols]), 1 for labels ([N]).
  Returns:
    uint8 array with the shape stored in the header.
  Raises:
    UserError: missing file, not gzip, wrong magic number or a body whose size disagrees with the header.
  """
  if not os.path.isfile(path):
    raise UserError(f'data file not found: {path}')
  try:
    with gzip.open(path, 'rb') as f:
      raw = f.read()
  except (OSError, EOFError, zlib.error) as e:
    raise UserError(f'{path}: not a readable gzip file ({e})') from None
  if len(raw) < 4:
    raise UserError(f'{path}: truncated IDX file ({len(raw)} bytes, no header)')
  zero, dtype_code, ndim = struct.unpack('>HBB', raw[:4])
  if zero != 0 or dtype_code != _IDX_UBYTE or ndim != expected_ndim:
    raise UserError(f'{path}: bad IDX magic number 0x{raw[:4].hex()} '
                    f'(expected 0x0000080{expected_ndim}: unsigned bytes, {expected_ndim}-d)')
  header_size = 4 + 4 * ndim
  if len(raw) < header_size:
    raise UserError(f'{path}: truncated IDX header')
  shape = struct.unpack('>' + 'I' * ndim, raw[4:header_size])
  expected = int(np.prod(shape))
  body = len(raw) - header_size
  if body != expected:
    raise UserError(f'{path}: header says shape {shape} ({expected} bytes) '
                    f'but the file holds {body} bytes of data')
  return np.frombuffer(raw, np.uint8, offset=header_size).reshape(shape)


def _read_images_and_labels(data_dir, images_key, labels_key):
  images_path = os.path.join(data_dir, IDX_FILES[images_key])
  labels_path = os.path.join(data_dir, IDX_FILES[labels_key])
  images = read_idx(images_path, 3)
  labels = read_idx(labels_path, 1)
  if len(images) != len(labels):
    raise UserError(f'{images_path} holds {len(images)} images but {labels_path} holds '
                    f'{len(labels)} labels')
  if images.shape[1:] != (28, 28):
    raise UserError(f'{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28')
  if labels.size and labels.max() >= NUM_CLASSES:
    raise UserError(f'{labels_path}: label {labels.max()} is outside 0..{NUM_CLASSES - 1}')
  return images, labels


def _existing_folder(data_dir):
  if not os.path.isdir(data_dir):
    what = 'is a file, not a folder' if os.path.exists(data_dir) else 'not found'
    raise UserError(f'data folder {what}: {data_dir} (--config.data_dir)')
  return data_dir


def load_idx_folder(data_dir):
  """Reads the four standard IDX gzip files of `data_dir`.

  Returns:
    (train_images [N, 28, 28] uint8, train_labels [N] uint8, test_images [M, 28, 28] uint8,
     test_labels [M] uint8).
  """
  data_dir = _existing_folder(data_dir)
  return (*_read_images_and_labels(data_dir, 'train_images', 'train_labels'),
          *_read_images_and_labels(data_dir, 'test_images', 'test_labels'))


# TFDS retries a failed download 10 times with exponential back-off (about 3.5 minutes without
# network); three retries still ride out a brief outage.
_TFDS_DOWNLOAD_RETRIES = 3


def _download_failure(dataset_name, error):
  """The one-line UserError for a TFDS download that failed (no network, server down, ...)."""
  reason = ' '.join(f'{type(error).__name__}: {error}'.split())
  if len(reason) > 500:
    reason = reason[:500] + '...'
  return UserError(
      f'could not download the {dataset_name} data set with TFDS ({reason}); without network, '
      'train from a folder of the four IDX files with --config.data_dir=DIR (' +
      ', '.join(IDX_FILES.values()) + '), or on the KMNIST test images shipped in data/kmnist: '
      '--config.data_dir=data/kmnist --config.split_test_images=2000 '
      '--config.validation_size=1000')


def load_tfds(dataset_name, tfds_data_dir=None):
  """Loads a whole data set with TFDS (downloading and preparing it if needed) as numpy arrays.

  TensorFlow is imported here only, and hidden from every accelerator so that it never takes GPU or
  TPU memory from JAX.

  Returns:
    (train_images [N, 28, 28] uint8, train_labels [N], test_images [M, 28, 28] uint8, test_labels [M]).
  Raises:
    UserError: the data set is not prepared and downloading it failed.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
  tf.config.set_visible_devices([], 'TPU')
  import requests  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.core.download import downloader  # pylint: disable=g-import-not-at-top

  builder = tfds.builder(DATASETS[dataset_name], data_dir=tfds_data_dir)
  if not builder.is_prepared():
    downloader.MAX_RETRIES = _TFDS_DOWNLOAD_RETRIES
    try:
      builder.download_and_prepare()
    except (requests.exceptions.RequestException, OSError) as e:
      raise _download_failure(dataset_name, e) from None
  out = []
  for split in ('train', 'test'):
    dataset = builder.as_dataset(split=split).batch(10_000)
    batches = list(tfds.as_numpy(dataset))
    out += [np.concatenate([b['image'][..., 0] for b in batches]),
            np.concatenate([b['label'] for b in batches])]
  return tuple(out)


def train_validation_split(num_examples, validation_size, seed, field='validation_size',
                           what='training images'):
  """Fixed-seed permutation of range(num_examples) -> (kept_indices, held_out_indices)."""
  if not 0 <= validation_size < num_examples:
    raise UserError(f'--config.{field}={validation_size} must lie in [0, {num_examples}) '
                    f'for {num_examples} {what}')
  perm = np.random.RandomState(seed).permutation(num_examples)
  return perm[validation_size:], perm[:validation_size]


def _to_float(images):
  """uint8 [N, 28, 28] -> float32 [N, 28, 28, 1] in [0, 1]."""
  return (images.astype(np.float32) / 255.0)[..., None]


def load_image_splits(config):
  """Loads `config.dataset` from `config.data_dir` (IDX files) or TFDS and splits it.

  Uses config fields: dataset, data_dir (None -> TFDS), tfds_data_dir, validation_size,
  max_train_examples (0 = all), split_seed, split_test_images. With split_test_images = K > 0 only
  the official test images are used: K of them (fixed seed) form the test split and the others
  are divided into train and validation, so the training images need not exist (data/kmnist).
  """
  if config.split_test_images:
    if not config.data_dir:
      raise UserError('--config.split_test_images needs --config.data_dir (a folder with '
                      f'{IDX_FILES["test_images"]} and {IDX_FILES["test_labels"]})')
    images, labels = _read_images_and_labels(_existing_folder(config.data_dir), 'test_images',
                                             'test_labels')
    pool, test = train_validation_split(len(images), config.split_test_images, config.split_seed,
                                        'split_test_images', 'test images')
    train_images, train_labels = images[pool], labels[pool]
    test_images, test_labels = images[test], labels[test]
  else:
    if config.data_dir:
      arrays = load_idx_folder(config.data_dir)
    else:
      arrays = load_tfds(config.dataset, config.get('tfds_data_dir'))
    train_images, train_labels, test_images, test_labels = arrays
  train_idx, val_idx = train_validation_split(len(train_images), config.validation_size,
                                              config.split_seed)
  if config.max_train_examples:
    train_idx = train_idx[:config.max_train_examples]
  return ImageSplits(
      train_images=_to_float(train_images[train_idx]),
      train_labels=train_labels[train_idx].astype(np.int32),
      validation_images=_to_float(train_images[val_idx]),
      validation_labels=train_labels[val_idx].astype(np.int32),
      test_images=_to_float(test_images),
      test_labels=test_labels.astype(np.int32))
