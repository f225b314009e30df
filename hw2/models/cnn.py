"""The homework's small CNN for 28x28 grey images (420,906 parameters with 10 classes).

The two convolutions and poolings are written for speed at the homework's tiny batch (8): a
convolution as one matrix product over shifted slices of the input (im2col), and 2x2 max-pooling as
a reshape + max. Both compute exactly what `lax.conv_general_dilated` and `nn.max_pool` compute
(tests/test_cnn.py checks it); on CPU they train about 3x faster than the library ops because
their gradients avoid XLA's slow small-convolution and select-and-scatter kernels.
"""
import flax.linen as nn
import jax.numpy as jnp


def im2col_conv(inputs, kernel, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                dimension_numbers=None, feature_group_count=1, **unused_kwargs):
  """Stride-1 NHWC convolution (cross-correlation) as a matrix product; fits `nn.Conv`.

  Args:
    inputs: [B, H, W, C_in].
    kernel: [KH, KW, C_in, C_out] (HWIO).
    window_strides: must be all 1.
    padding: 'VALID' or ((top, bottom), (left, right)).
  Returns:
    [B, H + top + bottom - KH + 1, W + left + right - KW + 1, C_out], where
    out[b, i, j, o] = sum_{m, n, c} x_pad[b, i + m, j + n, c] * kernel[m, n, c, o].
  """
  del dimension_numbers  # nn.Conv always passes NHWC / HWIO here.
  if (tuple(window_strides) != (1, 1) or feature_group_count != 1
      or any(d not in (None, 1, (1, 1)) for d in (lhs_dilation, rhs_dilation))):
    raise ValueError('im2col_conv supports stride 1, no dilation, one feature group')
  kh, kw, c_in, c_out = kernel.shape
  if isinstance(padding, str):
    if padding != 'VALID':
      raise ValueError(f'im2col_conv takes explicit or VALID padding, not {padding!r}')
    padding = ((0, 0), (0, 0))
  x = jnp.pad(inputs, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  # columns[b, i, j, (m * KW + n) * C_in + c] = x[b, i + m, j + n, c]
  columns = jnp.concatenate(
      [x[:, m:m + out_h, n:n + out_w, :] for m in range(kh) for n in range(kw)], axis=-1)
  return columns @ kernel.reshape(kh * kw * c_in, c_out)


def max_pool_2x2(x):
  """2x2 max-pooling with stride 2 (odd trailing rows/columns dropped): [B, H, W, C] ->
  [B, H // 2, W // 2, C]."""
  b, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class CNN(nn.Module):
  """conv(8, 5x5, pad 2) -> ReLU -> maxpool 2 -> conv(16, 3x3) -> ReLU -> maxpool 2 -> 576 ->
  dense 600 -> ReLU -> dropout -> dense 120 -> ReLU -> dense num_classes (logits).

  Inputs are NHWC images [B, 28, 28, 1]; outputs are logits [B, num_classes].
  """
  num_classes: int = 10
  dropout_rate: float = 0.3

  def setup(self):
    self.conv1 = nn.Conv(8, (5, 5), padding=2, conv_general_dilated=im2col_conv)
    self.conv2 = nn.Conv(16, (3, 3), padding='VALID', conv_general_dilated=im2col_conv)
    self.dense1 = nn.Dense(600)
    self.dense2 = nn.Dense(120)
    self.dense3 = nn.Dense(self.num_classes)
    self.dropout = nn.Dropout(self.dropout_rate)

  def first_layer_maps(self, images):
    """Activation maps of the first convolution, before its ReLU: [B, 28, 28, 8]."""
    return self.conv1(images)

  def __call__(self, images, train=False):
    """images [B, 28, 28, 1] float32 -> logits [B, num_classes]. `train` enables dropout."""
    x = max_pool_2x2(nn.relu(self.conv1(images)))  # [B, 14, 14, 8]
    x = max_pool_2x2(nn.relu(self.conv2(x)))  # [B, 6, 6, 16]
    x = x.reshape(x.shape[0], -1)  # [B, 576]
    x = nn.relu(self.dense1(x))
    x = self.dropout(x, deterministic=not train)
    x = nn.relu(self.dense2(x))
    return self.dense3(x)
