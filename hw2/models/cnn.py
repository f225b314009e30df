"""The homework's small CNN for 28x28 grey images (420,906 parameters with 10 classes).

Written for speed at the homework's tiny batch (8) on CPU, computing what the library ops compute
(tests/test_cnn.py checks both the layers and whole training steps against `nn.Conv` +
`nn.max_pool`):
- each convolution, its ReLU and the 2x2 max-pooling after it are one matrix product
  (`conv_relu_pool`): the product yields, for every pooled position, the four convolution outputs
  that the pool takes the maximum of. Its shape ([B*H/2*W/2, 36] x [36, 32] for the first layer)
  suits a matrix-product kernel far better than a convolution with 1 input and 8 output channels
  ([B*H*W, 25] x [25, 8]), and the pooling and its gradient become a max over a short axis;
- the first-layer activation maps (for the figure) use the plain im2col product (`im2col_conv`).
"""
import flax.linen as nn
import jax.numpy as jnp


def im2col_conv(inputs, kernel, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                dimension_numbers=None, feature_group_count=1, **unused_kwargs):
  """Stride-1 NHWC convolution (cross-correlation) as a matrix product (fits `nn.Conv`'s
  conv_general_dilated argument).

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


def conv_relu_pool(x, kernel, bias, padding):
  """relu(conv(x) + bias), then 2x2 max-pooling with stride 2, as one matrix product.

  Args:
    x: [B, H, W, C_in].
    kernel: [KH, KW, C_in, F] (HWIO), stride 1.
    bias: [F].
    padding: ((top, bottom), (left, right)); the convolution's output (H', W') must be even.
  Returns:
    [B, H' / 2, W' / 2, F]. Pooled output (p, q) takes the maximum of the conv outputs at
    (2p + dy, 2q + dx), dy, dx in {0, 1}, which all read the (KH+1) x (KW+1) input patch at
    (2p, 2q); with the kernel placed at the four offsets of that patch the four outputs are the
    columns of one product [B * H'/2 * W'/2, (KH+1)(KW+1) C_in] x [(KH+1)(KW+1) C_in, 4F].
  """
  kh, kw, c_in, features = kernel.shape
  x = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  conv_h, conv_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  if conv_h % 2 or conv_w % 2:
    raise ValueError(f'conv_relu_pool needs an even convolution output, not {conv_h}x{conv_w}')
  out_h, out_w = conv_h // 2, conv_w // 2
  # columns[b, p, q, (r * (KW+1) + s) * C_in + c] = x[b, 2p + r, 2q + s, c]
  columns = jnp.concatenate([x[:, r:r + 2 * out_h - 1:2, s:s + 2 * out_w - 1:2, :]
                             for r in range(kh + 1) for s in range(kw + 1)], axis=-1)
  # placed[r, s, c, (dy, dx), f] = kernel[r - dy, s - dx, c, f] (0 outside the kernel)
  placed = jnp.stack([jnp.pad(kernel, ((dy, 1 - dy), (dx, 1 - dx), (0, 0), (0, 0)))
                      for dy in (0, 1) for dx in (0, 1)], axis=-2)
  outputs = columns @ placed.reshape((kh + 1) * (kw + 1) * c_in, 4 * features)
  outputs = outputs.reshape(x.shape[0], out_h, out_w, 4, features) + bias
  return nn.relu(outputs).max(axis=-2)


class ConvReluPool(nn.Module):
  """conv (stride 1) -> ReLU -> 2x2 max-pool, with nn.Conv's parameters (`kernel` HWIO, `bias`)
  and initialisers, so parameters and checkpoints are those of an nn.Conv layer."""
  in_features: int
  features: int
  kernel_size: tuple
  padding: tuple  # ((top, bottom), (left, right))

  def setup(self):
    self.kernel = self.param('kernel', nn.initializers.lecun_normal(),
                             (*self.kernel_size, self.in_features, self.features))
    self.bias = self.param('bias', nn.initializers.zeros_init(), (self.features,))

  def conv(self, x):
    """The convolution alone, before ReLU and pooling: [B, H, W, C_in] -> [B, H', W', F]."""
    return im2col_conv(x, self.kernel, (1, 1), self.padding) + self.bias

  def __call__(self, x):
    return conv_relu_pool(x, self.kernel, self.bias, self.padding)


class CNN(nn.Module):
  """conv(8, 5x5, pad 2) -> ReLU -> maxpool 2 -> conv(16, 3x3) -> ReLU -> maxpool 2 -> 576 ->
  dense 600 -> ReLU -> dropout -> dense 120 -> ReLU -> dense num_classes (logits).

  Inputs are NHWC images [B, 28, 28, 1]; outputs are logits [B, num_classes].
  """
  num_classes: int = 10
  dropout_rate: float = 0.3

  def setup(self):
    self.conv1 = ConvReluPool(1, 8, (5, 5), ((2, 2), (2, 2)))
    self.conv2 = ConvReluPool(8, 16, (3, 3), ((0, 0), (0, 0)))
    self.dense1 = nn.Dense(600)
    self.dense2 = nn.Dense(120)
    self.dense3 = nn.Dense(self.num_classes)
    self.dropout = nn.Dropout(self.dropout_rate)

  def first_layer_maps(self, images):
    """Activation maps of the first convolution, before its ReLU: [B, 28, 28, 8]."""
    return self.conv1.conv(images)

  def __call__(self, images, train=False):
    """images [B, 28, 28, 1] float32 -> logits [B, num_classes]. `train` enables dropout."""
    x = self.conv1(images)  # [B, 14, 14, 8]
    x = self.conv2(x)  # [B, 6, 6, 16]
    x = x.reshape(x.shape[0], -1)  # [B, 576]
    x = nn.relu(self.dense1(x))
    x = self.dropout(x, deterministic=not train)
    x = nn.relu(self.dense2(x))
    return self.dense3(x)
