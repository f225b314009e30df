"""The translation model (hw2/models/seq2seq.py): LSTM maths, padding invariance, attention
masking, the masked loss."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hw2.models import count_params
from hw2.models import seq2seq as reference
from hw2.tasks.translation import masked_cross_entropy

IMPLEMENTATIONS = {'reference': reference}

V_SRC, V_TGT = 12, 9


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def impl(request):
  return IMPLEMENTATIONS[request.param]


def test_lstm_equals_a_plain_numpy_loop():
  lstm = reference.LSTM(input_size=3, hidden_size=4)
  x = np.random.RandomState(0).randn(2, 5, 3).astype(np.float32)
  params = lstm.init(jax.random.key(0), x)['params']
  outputs, state = lstm.apply({'params': params}, x)
  w_in, w_h, b = (np.asarray(params[k]) for k in ('w_input', 'w_hidden', 'bias'))
  c, h = np.zeros((2, 4)), np.zeros((2, 4))
  for t in range(5):
    i, f, g, o = np.split(x[:, t] @ w_in + b + h @ w_h, 4, axis=-1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    h = _sigmoid(o) * np.tanh(c)
    np.testing.assert_allclose(outputs[:, t], h, atol=1e-5)
  np.testing.assert_allclose(state.c, c, atol=1e-5)
  np.testing.assert_allclose(state.h, h, atol=1e-5)


def test_lstm_state_stops_at_each_length():
  lstm = reference.LSTM(input_size=3, hidden_size=4)
  x = np.random.RandomState(1).randn(2, 6, 3).astype(np.float32)
  params = lstm.init(jax.random.key(0), x)['params']
  outputs, state = lstm.apply({'params': params}, x, lengths=jnp.array([4, 6]))
  short_outputs, short_state = lstm.apply({'params': params}, x[:1, :4])
  np.testing.assert_allclose(outputs[0, :4], short_outputs[0], atol=1e-6)
  np.testing.assert_array_equal(outputs[0, 4:], 0.0)
  np.testing.assert_allclose(state.h[0], short_state.h[0], atol=1e-6)
  np.testing.assert_allclose(state.c[0], short_state.c[0], atol=1e-6)


@pytest.fixture(params=[False, True], ids=['plain', 'attention'])
def model_and_params(request, impl):
  model = impl.Seq2Seq(V_SRC, V_TGT, hidden_size=16, dropout_rate=0.3,
                       use_attention=request.param)
  source = jnp.ones((1, 3), jnp.int32)
  params = model.init(jax.random.key(0), source, jnp.array([3]), source)['params']
  return model, params


def test_homework_size_parameter_count(impl):
  model = impl.Seq2Seq(34, 34, use_attention=True)
  source = jnp.ones((1, 3), jnp.int32)
  params = model.init(jax.random.key(0), source, jnp.array([3]), source)['params']
  embeddings = 2 * 34 * 128
  encoder = 2 * (128 * 256 + 64 * 256 + 256)
  decoder = 128 * 512 + 128 * 512 + 512 + 34  # LSTM + output bias (weights tied).
  attention = 128 * 128 + (256 * 128 + 128)
  assert count_params(params) == embeddings + encoder + decoder + attention


@pytest.mark.slow
def test_padding_changes_nothing(model_and_params):
  model, params = model_and_params
  sentence = jnp.array([5, 7, 4, 9, 6])
  target = jnp.array([[1, 4, 6, 5, 2]])
  results = []
  for total in (5, 8, 13):
    source = jnp.zeros((1, total), jnp.int32).at[0, :5].set(sentence)
    memory, mask, state = model.apply({'params': params}, source, jnp.array([5]),
                                      method='encode')
    logits, _, _ = model.apply({'params': params}, target, state, memory, mask,
                               method='decode')
    np.testing.assert_array_equal(memory[0, 5:], 0.0)
    results.append((memory[0, :5], state, logits))
  for memory, state, logits in results[1:]:
    np.testing.assert_allclose(memory, results[0][0], atol=1e-6)
    np.testing.assert_allclose(state.c, results[0][1].c, atol=1e-6)
    np.testing.assert_allclose(state.h, results[0][1].h, atol=1e-6)
    np.testing.assert_allclose(logits, results[0][2], atol=1e-5)


@pytest.mark.slow
def test_attention_is_zero_on_padding_and_sums_to_one(impl):
  model = impl.Seq2Seq(V_SRC, V_TGT, hidden_size=16, use_attention=True)
  source = jnp.array([[5, 7, 4, 0, 0, 0], [4, 4, 5, 6, 7, 8]])
  lengths = jnp.array([3, 6])
  params = model.init(jax.random.key(1), source, lengths, source)['params']
  memory, mask, state = model.apply({'params': params}, source, lengths, method='encode')
  target = jnp.array([[1, 4, 5, 6], [1, 7, 7, 2]])
  _, _, weights = model.apply({'params': params}, target, state, memory, mask,
                              method='decode')
  assert weights.shape == (2, 4, 6)
  np.testing.assert_array_equal(weights[0, :, 3:], 0.0)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
  assert np.all(weights[1] > 0)


def test_loss_ignores_pad_positions():
  rng = np.random.RandomState(0)
  logits = rng.randn(2, 4, V_TGT).astype(np.float32)
  labels = np.array([[4, 5, 2, 0], [6, 2, 0, 0]])
  loss = masked_cross_entropy(logits, labels)
  # Other logits at PAD positions, and extra PAD columns, change nothing.
  changed = logits.copy()
  changed[0, 3] += 100.0
  changed[1, 2:] = rng.randn(2, V_TGT)
  extra_logits = np.concatenate([changed, rng.randn(2, 3, V_TGT).astype(np.float32)], axis=1)
  extra_labels = np.concatenate([labels, np.zeros((2, 3), int)], axis=1)
  np.testing.assert_allclose(masked_cross_entropy(extra_logits, extra_labels), loss, rtol=1e-6)
  # It is the mean over the 5 real positions.
  log_probs = jax.nn.log_softmax(logits)
  real = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
  expected = -np.mean([log_probs[b, t, labels[b, t]] for b, t in real])
  np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_decode_step_equals_teacher_forced_decoding(model_and_params):
  model, params = model_and_params
  source, lengths = jnp.array([[5, 7, 4, 0], [4, 8, 9, 6]]), jnp.array([3, 4])
  memory, mask, state = model.apply({'params': params}, source, lengths, method='encode')
  tokens = jnp.array([[1, 4, 6, 5], [1, 7, 7, 3]])
  logits, _, _ = model.apply({'params': params}, tokens, state, memory, mask,
                             method='decode')
  for t in range(4):
    step_logits, state = model.apply({'params': params}, tokens[:, t], state, memory, mask,
                                     method='decode_step')
    np.testing.assert_allclose(step_logits, logits[:, t], atol=1e-5)
