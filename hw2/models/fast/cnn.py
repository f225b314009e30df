"""The CNN of hw2/models/cnn.py (its function, parameters and dropout masks), written for speed on
CPU; docs/performance.md gives what it gains:

- Each convolution + ReLU + 2x2 max-pooling is one matrix product. For a pooled output position,
  the (KH + 1) x (KW + 1) input window under its 2x2 pooling window holds everything its four
  convolution outputs read; a [4 * O, (KH+1)(KW+1)C] matrix built from the kernel (`pooled_kernel`)
  gives those four outputs from the window's pixels, and the pooled value is their max (then bias
  and ReLU, which commute with the max). No pooling or scatter kernels remain in the gradient.
- Activations are channel-major ([C, batch * positions]) so that every product has a long,
  contiguous last dimension that a batch split over devices splits, and the first block's output
  is kept in space-to-depth order (batch, row parity, column parity, 7, 7), so that the second
  block's stride-2 windows are four unit-stride slices whose gradient is four plain pads.
- XLA's CPU loop kernels are fast over an array's own n-d shape and slow over a flat 2-d view of
  it, where each element's n-d index is rebuilt: the first block's max and ReLU run on its 6-d
  view.
The dense layers and dropout are Flax's own.
"""
import flax.linen as nn
from jax import lax
import jax.numpy as jnp



class ConvParameters(nn.Module):
  """The parameters of nn.Conv(features=O, kernel_size=(KH, KW)): kernel [KH, KW, C, O] and bias
  [O], initialised as nn.Conv initialises them."""
  kernel_shape: tuple

  @nn.compact
  def __call__(self):
    kernel = self.param('kernel', nn.initializers.lecun_normal(), self.kernel_shape, jnp.float32)
    bias = self.param('bias', nn.initializers.zeros_init(), self.kernel_shape[-1:], jnp.float32)
    return kernel, bias


def pooled_kernel(kernel):
  """[KH, KW, C, O] -> [4 * O, KH + 1, KW + 1, C]: entry [(di, dj, o), p, q, c] is
  kernel[p - di, q - dj, c, o] (0 outside the kernel), so that its product with the (KH + 1) x
  (KW + 1) window under a 2x2 pooling window gives the convolution at the four offsets (di, dj)."""
  kh, kw, c, o = kernel.shape
  shifted = jnp.stack([jnp.pad(kernel, ((di, 1 - di), (dj, 1 - dj), (0, 0), (0, 0)))
                       for di in (0, 1) for dj in (0, 1)])  # [4, KH+1, KW+1, C, O]
  return shifted.transpose(0, 4, 1, 2, 3).reshape(4 * o, kh + 1, kw + 1, c)


def conv1_windows(images):
  """[B, 28, 28, 1] -> [36, B * 196]: the 6x6 window (of the image padded by 2) under each 2x2
  pooling window of the first convolution's 28x28 output. Row (p, q) is the window pixel; column
  (b, r, s, I, J) is the pooled position (2 I + r, 2 J + s), I, J < 7, of image b (the batch
  leads, so that a batch split over devices splits the columns)."""
  b = images.shape[0]
  x = jnp.pad(images[..., 0], ((0, 0), (2, 2), (2, 2)))  # [B, 32, 32]
  x = x.reshape(b, 8, 4, 8, 4).transpose(0, 2, 4, 1, 3)  # [B, t, u, 8, 8]: row 4 i + t, col 4 j + u
  rows = []
  for p in range(6):
    for q in range(6):
      parities = []
      for r in range(2):
        for s in range(2):  # Pixel row 2 (2 I + r) + p = 4 (I + k) + t.
          (k, t), (l, u) = divmod(2 * r + p, 4), divmod(2 * s + q, 4)
          parities.append(x[:, t, u, k:k + 7, l:l + 7])
      rows.append(jnp.stack(parities, axis=1))  # [B, 4, 7, 7]
  return jnp.stack(rows).reshape(36, b * 196)


def conv2_windows(pooled):
  """[8, B, 2, 2, 7, 7] (channel c, b, row parity r, column parity s, I, J: the first block's
  output in space-to-depth order) -> [128, B * 36]: the 4x4 window under each 2x2 pooling window of
  the second convolution's 12x12 output, as four unit-stride slices. Row (a, e, c, r, s) is window
  pixel (2 a + r, 2 e + s); column (b, i, j) the pooled position, i, j < 6."""
  b = pooled.shape[1]
  x = pooled.transpose(0, 2, 3, 1, 4, 5).reshape(32, b, 7, 7)
  return jnp.stack([x[..., a:a + 6, e:e + 6] for a in (0, 1) for e in (0, 1)]).reshape(128, b * 36)


def _pooled_relu(products, bias, positions):
  """[4 * O, N] products -> ReLU(max over the 4 offsets + bias): [O, *positions] (N = the product
  of `positions`)."""
  o = bias.shape[0]
  x = products.reshape(4, o, *positions).max(axis=0)
  return nn.relu(x + bias.reshape(o, *(1,) * len(positions)))


class CNN(nn.Module):
  """Images [B, 28, 28, 1] -> logits [B, num_classes], as hw2/models/cnn.py."""
  num_classes: int = 10
  dropout_rate: float = 0.3

  def setup(self):
    self.conv1 = ConvParameters((5, 5, 1, 8))
    self.conv2 = ConvParameters((3, 3, 8, 16))
    self.dense1 = nn.Dense(600)
    self.dropout = nn.Dropout(self.dropout_rate)
    self.dense2 = nn.Dense(120)
    self.dense3 = nn.Dense(self.num_classes)

  def first_layer_maps(self, images):
    """Activation maps of the first convolution, before its ReLU: [B, 28, 28, 8]."""
    kernel, bias = self.conv1()
    return lax.conv_general_dilated(images, kernel, (1, 1), ((2, 2), (2, 2)),
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + bias

  def features(self, images):
    """images [B, 28, 28, 1] -> both convolution blocks' output [B, 576], in nn.Dense's (h, w, c)
    order."""
    b = images.shape[0]
    kernel, bias = self.conv1()
    x = _pooled_relu(pooled_kernel(kernel).reshape(32, 36) @ conv1_windows(images), bias,
                     (b, 2, 2, 7, 7))  # [8, B, 2, 2, 7, 7]: (c, b, r, s, I, J), as conv2_windows.
    kernel, bias = self.conv2()  # Window rows (a, e, c, r, s) for kernel rows p = 2 a + r.
    matrix = pooled_kernel(kernel).reshape(64, 2, 2, 2, 2, 8).transpose(0, 1, 3, 5, 2, 4)
    x = _pooled_relu(matrix.reshape(64, 128) @ conv2_windows(x), bias, (b * 36,))
    return x.reshape(16, b, 36).transpose(1, 2, 0).reshape(b, 576)  # From [16, B * 36].

  def __call__(self, images, train=False):
    """`train` enables dropout (RNG collection 'dropout')."""
    x = nn.relu(self.dense1(self.features(images)))
    x = self.dropout(x, deterministic=not train)
    x = nn.relu(self.dense2(x))
    return self.dense3(x)
