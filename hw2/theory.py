"""The homework's question 1 as code: convolution as a matrix, parameter counts, and self-attention
with identity projections, each with a numerical check against an independent implementation.

Conventions: images x are [H, W]; vec() is row-major (x[r, c] -> index r * W + c); "convolution" is
the deep-learning one (cross-correlation): y[i, j] = sum_{m, n} w[m, n] x[i*s + m - p, j*s + n - p].

`write_report` (run by `python main.py --config configs/theory.py --workdir runs/theory`) prints
the checks as a table, and writes them to WORKDIR/theory.json and A's sparsity pattern to a PNG.
"""
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.experimental import sparse
import numpy as np

from hw2 import plots
from hw2 import records
from hw2 import validation
from hw2 import workdir as workdirs
from hw2.models import count_params


def conv_output_size(size, kernel, stride=1, padding=0):
  """floor((size + 2 * padding - kernel) / stride) + 1."""
  return (size + 2 * padding - kernel) // stride + 1


def conv_matrix_entries(filter_shape, input_shape, stride=(1, 1), padding=(0, 0)):
  """Where each filter weight lands in the convolution matrix A.

  Output position (i, j) reads input (r, c) = (i*s_h + m - p_h, j*s_w + n - p_w) with weight
  w[m, n]; taps that fall on zero padding are dropped. Built from this index formula alone.

  Args:
    filter_shape: (M, N).
    input_shape: (H, W).
    stride: (s_h, s_w).
    padding: (p_h, p_w) zeros on each side.
  Returns:
    (rows, cols, taps, output_shape): 1-D int arrays of equal length with
    A[rows[e], cols[e]] = w.flat[taps[e]], and output_shape = (H', W').
  """
  (m_size, n_size), (h, w) = filter_shape, input_shape
  out_h = conv_output_size(h, m_size, stride[0], padding[0])
  out_w = conv_output_size(w, n_size, stride[1], padding[1])
  i, j, m, n = np.meshgrid(np.arange(out_h), np.arange(out_w), np.arange(m_size),
                           np.arange(n_size), indexing='ij')
  r = i * stride[0] + m - padding[0]
  c = j * stride[1] + n - padding[1]
  inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
  rows = (i * out_w + j)[inside]
  cols = (r * w + c)[inside]
  taps = (m * n_size + n)[inside]
  return rows, cols, taps, (out_h, out_w)


def conv_matrix(w, input_shape, stride=(1, 1), padding=(0, 0)):
  """Dense A [H'W', HW] with vec(conv(w, x)) = A vec(x) for every x of shape input_shape.

  w: filter [M, N]. Each row of A holds the M*N filter entries (fewer where taps hit padding).
  """
  rows, cols, taps, (out_h, out_w) = conv_matrix_entries(w.shape, input_shape, stride, padding)
  a = jnp.zeros((out_h * out_w, input_shape[0] * input_shape[1]), w.dtype)
  return a.at[rows, cols].set(jnp.ravel(w)[taps])


def conv_matrix_sparse(w, input_shape, stride=(1, 1), padding=(0, 0)):
  """The same A as `conv_matrix`, as a sparse BCOO array holding only its non-zero structure."""
  rows, cols, taps, (out_h, out_w) = conv_matrix_entries(w.shape, input_shape, stride, padding)
  indices = jnp.stack([rows, cols], axis=1)
  return sparse.BCOO((jnp.ravel(w)[taps], indices),
                     shape=(out_h * out_w, input_shape[0] * input_shape[1]))


def conv_reference(w, x, stride=(1, 1), padding=(0, 0)):
  """conv(w, x) [H', W'] by lax.conv_general_dilated, for checking A."""
  out = jax.lax.conv_general_dilated(x[None, None], w[None, None], stride,
                                     [(padding[0],) * 2, (padding[1],) * 2])
  return out[0, 0]


# --- Parameter counts ---------------------------------------------------------------------------


def _pooled_size(h, w, m, n):
  """Features after the M x N valid convolution and 2x2 max-pool (stride 2):
  floor((H - M + 1) / 2) * floor((W - N + 1) / 2)."""
  return ((h - m + 1) // 2) * ((w - n + 1) // 2)


def conv_net_param_count(h, w, m, n, num_classes=3):
  """One M x N filter (M*N weights) + a fully connected layer from the pooled map to the classes:
  M*N + num_classes * floor((H-M+1)/2) * floor((W-N+1)/2). Biases ignored."""
  return m * n + num_classes * _pooled_size(h, w, m, n)


def fc_net_param_count(h, w, m, n, num_classes=3):
  """First layer fully connected from HW inputs to the conv's H'W' outputs, then as the conv net:
  HW * (H-M+1)(W-N+1) + num_classes * floor((H-M+1)/2) * floor((W-N+1)/2). Biases ignored."""
  return h * w * (h - m + 1) * (w - n + 1) + num_classes * _pooled_size(h, w, m, n)


class QuestionConvNet(nn.Module):
  """Question 1's network: conv(1 filter, M x N, valid) -> ReLU -> maxpool 2 -> dense(classes)."""
  filter_shape: tuple
  num_classes: int = 3

  @nn.compact
  def __call__(self, x):
    """x [B, H, W, 1] -> logits [B, num_classes]."""
    x = nn.Conv(1, self.filter_shape, padding='VALID', use_bias=False)(x)
    x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2))
    return nn.Dense(self.num_classes, use_bias=False)(x.reshape(x.shape[0], -1))


class QuestionFullyConnectedNet(nn.Module):
  """The variant with a fully connected first layer of the conv's output size H' x W'."""
  output_shape: tuple
  num_classes: int = 3

  @nn.compact
  def __call__(self, x):
    """x [B, H, W, 1] -> logits [B, num_classes]."""
    out_h, out_w = self.output_shape
    x = nn.Dense(out_h * out_w, use_bias=False)(x.reshape(x.shape[0], -1))
    x = nn.max_pool(nn.relu(x.reshape(-1, out_h, out_w, 1)), (2, 2), strides=(2, 2))
    return nn.Dense(self.num_classes, use_bias=False)(x.reshape(x.shape[0], -1))


def module_param_counts(h, w, m, n, num_classes=3):
  """(conv net, fully connected net) parameter counts of the Flax modules (shapes only)."""
  x = jnp.zeros((1, h, w, 1))
  conv = QuestionConvNet((m, n), num_classes)
  fc = QuestionFullyConnectedNet((h - m + 1, w - n + 1), num_classes)
  shapes = [jax.eval_shape(model.init, jax.random.key(0), x) for model in (conv, fc)]
  return tuple(count_params(s) for s in shapes)


# --- Self-attention -----------------------------------------------------------------------------


def identity_self_attention(x):
  """Single-head self-attention over x' = vec(x) with W_Q = W_K = W_V = 1, d = 1, no positions.

  Args:
    x: image [H, W].
  Returns:
    (P [HW, HW], Z [HW]) with P = softmax_rows(x' x'^T / sqrt(d)) and Z = P x'.
  """
  flat = jnp.ravel(x)
  scores = jnp.outer(flat, flat) / math.sqrt(1.0)
  probabilities = jax.nn.softmax(scores, axis=-1)
  return probabilities, probabilities @ flat


def reference_self_attention(x):
  """The same with general attention code: (Flax attention weights, jax.nn.dot_product_attention)."""
  tokens = jnp.ravel(x)[None, :, None, None]  # [batch 1, length HW, heads 1, features 1]
  weights = nn.dot_product_attention_weights(tokens, tokens)[0, 0]
  outputs = jax.nn.dot_product_attention(tokens, tokens, tokens)[0, :, 0, 0]
  return weights, outputs


# --- The report ---------------------------------------------------------------------------------


def run_checks(config):
  """All question-1 checks for the cases in `config`; returns a JSON-able dict."""
  rng = np.random.RandomState(config.seed)
  conv_rows = []
  for h, w, m, n, s, p in config.conv_cases:
    filt = jnp.asarray(rng.randn(m, n), jnp.float32)
    x = jnp.asarray(rng.randn(h, w), jnp.float32)
    expected = jnp.ravel(conv_reference(filt, x, (s, s), (p, p)))
    dense = conv_matrix(filt, (h, w), (s, s), (p, p))
    sparse_a = conv_matrix_sparse(filt, (h, w), (s, s), (p, p))
    conv_rows.append({
        'input': f'{h}x{w}', 'filter': f'{m}x{n}', 'stride': s, 'padding': p,
        'A_shape': list(dense.shape),
        'dense_max_abs_error': float(jnp.max(jnp.abs(
            jnp.dot(dense, jnp.ravel(x), precision='highest') - expected))),
        'sparse_max_abs_error': float(jnp.max(jnp.abs(sparse_a @ jnp.ravel(x) - expected))),
        'nonzeros': int(sparse_a.nse)})
  count_rows = []
  for h, w, m, n in config.count_cases:
    conv_modules, fc_modules = module_param_counts(h, w, m, n, config.num_classes)
    count_rows.append({'input': f'{h}x{w}', 'filter': f'{m}x{n}',
                       'conv_formula': conv_net_param_count(h, w, m, n, config.num_classes),
                       'conv_module': conv_modules,
                       'fc_formula': fc_net_param_count(h, w, m, n, config.num_classes),
                       'fc_module': fc_modules})
  attention_rows = []
  for h, w in config.attention_cases:
    x = jnp.asarray(rng.rand(h, w), jnp.float32)
    probabilities, outputs = identity_self_attention(x)
    ref_probabilities, ref_outputs = reference_self_attention(x)
    attention_rows.append({
        'input': f'{h}x{w}',
        'P_max_abs_error': float(jnp.max(jnp.abs(probabilities - ref_probabilities))),
        'Z_max_abs_error': float(jnp.max(jnp.abs(outputs - ref_outputs))),
        'max_row_sum_error': float(jnp.max(jnp.abs(probabilities.sum(-1) - 1.0)))})
  return {'convolution_as_matrix': conv_rows, 'parameter_counts': count_rows,
          'self_attention': attention_rows}


def format_table(rows):
  """Plain-text table of a list of dicts with the same keys."""
  keys = list(rows[0])
  cells = [[f'{r[k]:.2e}' if isinstance(r[k], float) else str(r[k]) for k in keys] for r in rows]
  widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
  line = lambda values: '  '.join(v.rjust(width) for v, width in zip(values, widths))
  return '\n'.join([line(keys)] + [line(c) for c in cells])


def write_report(config, workdir):
  """Prints the checks, writes WORKDIR/theory.json and WORKDIR/conv_matrix_sparsity.png."""
  validation.validate(config)
  checks = run_checks(config)
  for title, rows in checks.items():
    print(f'\n{title}\n{format_table(rows)}')
  h, w, m, n = config.sparsity_case
  a = conv_matrix(jnp.ones((m, n)), (h, w))
  with workdirs.writer(workdir):
    records.write_json(os.path.join(workdir, 'theory.json'), checks)
    plots.plot_sparsity(a, os.path.join(workdir, 'conv_matrix_sparsity.png'),
                        f'A for a {m}x{n} filter on a {h}x{w} input ({a.shape[0]}x{a.shape[1]})')
  return checks
