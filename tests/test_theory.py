"""Question 1 as property tests: A vec(x) is the convolution, parameter counts match the modules,
identity self-attention matches general attention code."""
from hypothesis import given, settings, strategies as st
import jax.numpy as jnp
import numpy as np
import pytest

from configs import theory as theory_config
from hw2 import theory

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)
FEW = settings(max_examples=12, deadline=None, derandomize=True)  # Each new shape compiles.


@st.composite
def conv_cases(draw):
  h, w = draw(st.integers(1, 10)), draw(st.integers(1, 10))
  p_h, p_w = draw(st.integers(0, 2)), draw(st.integers(0, 2))
  m, n = draw(st.integers(1, h + 2 * p_h)), draw(st.integers(1, w + 2 * p_w))
  stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
  seed = draw(st.integers(0, 2**16))
  return (h, w), (m, n), stride, (p_h, p_w), seed


@pytest.mark.slow
@SETTINGS
@given(conv_cases())
def test_matrix_times_vec_x_is_the_convolution(case):
  (h, w), (m, n), stride, padding, seed = case
  rng = np.random.RandomState(seed)
  filt, x = jnp.asarray(rng.randn(m, n), jnp.float32), jnp.asarray(rng.randn(h, w), jnp.float32)
  expected = np.ravel(theory.conv_reference(filt, x, stride, padding))
  dense = theory.conv_matrix(filt, (h, w), stride, padding)
  out_h = theory.conv_output_size(h, m, stride[0], padding[0])
  out_w = theory.conv_output_size(w, n, stride[1], padding[1])
  assert dense.shape == (out_h * out_w, h * w)
  np.testing.assert_allclose(jnp.dot(dense, jnp.ravel(x), precision='highest'), expected,
                             atol=1e-5, rtol=1e-5)
  sparse_a = theory.conv_matrix_sparse(filt, (h, w), stride, padding)
  np.testing.assert_allclose(sparse_a.todense(), dense)
  np.testing.assert_allclose(sparse_a @ jnp.ravel(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@SETTINGS
@given(st.integers(1, 12), st.integers(1, 12), st.data())
def test_without_padding_every_row_holds_the_whole_filter(h, w, data):
  m, n = data.draw(st.integers(1, h)), data.draw(st.integers(1, w))
  filt = jnp.arange(1.0, m * n + 1).reshape(m, n)  # All entries distinct and non-zero.
  dense = np.asarray(theory.conv_matrix(filt, (h, w)))
  assert dense.shape == ((h - m + 1) * (w - n + 1), h * w)
  for row in dense:
    assert np.count_nonzero(row) == m * n
    np.testing.assert_array_equal(np.sort(row[row != 0]), np.arange(1.0, m * n + 1))


def test_the_questions_small_case_by_hand():
  # 3x3 input, 2x2 filter [[a, b], [c, d]]: the first row of A is [a b 0 c d 0 0 0 0].
  a = theory.conv_matrix(jnp.array([[1.0, 2.0], [3.0, 4.0]]), (3, 3))
  np.testing.assert_array_equal(a, [[1, 2, 0, 3, 4, 0, 0, 0, 0], [0, 1, 2, 0, 3, 4, 0, 0, 0],
                                    [0, 0, 0, 1, 2, 0, 3, 4, 0], [0, 0, 0, 0, 1, 2, 0, 3, 4]])


@pytest.mark.slow
@SETTINGS
@given(st.integers(2, 40), st.integers(2, 40), st.data())
def test_parameter_counts_match_the_flax_modules(h, w, data):
  m, n = data.draw(st.integers(1, h - 1)), data.draw(st.integers(1, w - 1))
  if (h - m + 1) < 2 or (w - n + 1) < 2:  # The pooled map must not be empty.
    m, n = h - 1, w - 1
  conv_count, fc_count = theory.module_param_counts(h, w, m, n)
  assert conv_count == theory.conv_net_param_count(h, w, m, n)
  assert fc_count == theory.fc_net_param_count(h, w, m, n)


def test_counts_for_the_homeworks_28x28_5x5_case():
  # conv 25 + 3 * 12 * 12; fully connected 784 * 576 + 3 * 12 * 12.
  assert theory.conv_net_param_count(28, 28, 5, 5) == 25 + 432
  assert theory.fc_net_param_count(28, 28, 5, 5) == 784 * 576 + 432
  assert theory.conv_net_param_count(9, 7, 2, 4) == 8 + 3 * 4 * 2  # floor(8/2) * floor(4/2)


@pytest.mark.slow
@FEW
@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**16), st.floats(0.1, 3.0))
def test_identity_self_attention_matches_general_attention(h, w, seed, scale):
  x = jnp.asarray(np.random.RandomState(seed).rand(h, w) * scale, jnp.float32)
  probabilities, outputs = theory.identity_self_attention(x)
  ref_probabilities, ref_outputs = theory.reference_self_attention(x)
  assert probabilities.shape == (h * w, h * w) and outputs.shape == (h * w,)
  np.testing.assert_allclose(probabilities, ref_probabilities, atol=1e-6)
  np.testing.assert_allclose(outputs, ref_outputs, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
  # Z_i = sum_j softmax_j(x_i x_j) x_j, written out for one i.
  flat = np.ravel(np.asarray(x, np.float64))
  e = np.exp(flat[0] * flat - np.max(flat[0] * flat))
  np.testing.assert_allclose(outputs[0], (e / e.sum()) @ flat, rtol=1e-4, atol=1e-5)


def test_report_writes_table_json_and_sparsity_png(tmp_path, capsys):
  checks = theory.write_report(theory_config.get_config(), str(tmp_path))
  assert all(r['dense_max_abs_error'] < 1e-4 for r in checks['convolution_as_matrix'])
  assert all(r['conv_formula'] == r['conv_module'] and r['fc_formula'] == r['fc_module']
             for r in checks['parameter_counts'])
  assert all(r['Z_max_abs_error'] < 1e-4 for r in checks['self_attention'])
  assert '452016' in capsys.readouterr().out
  assert (tmp_path / 'theory.json').exists()
  assert (tmp_path / 'conv_matrix_sparsity.png').stat().st_size > 1000
