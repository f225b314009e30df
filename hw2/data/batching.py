"""Fixed-shape batching shared by the tasks, so jit compiles once per shape."""
import numpy as np


def padded_batches(arrays, batch_size):
  """Splits a dict of arrays (leading dim N) into batches of exactly `batch_size` rows.

  The last batch is padded by repeating row 0; yields (batch, num_valid) so callers drop the padding.
  """
  n = len(next(iter(arrays.values())))
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    batch = {}
    for key, value in arrays.items():
      chunk = value[start:stop]
      if stop - start < batch_size:
        fill = np.repeat(value[:1], batch_size - (stop - start), axis=0)
        chunk = np.concatenate([chunk, fill])
      batch[key] = chunk
    yield batch, stop - start
