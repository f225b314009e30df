"""HashDropout: the masks behave like dropout masks."""
import jax
import jax.numpy as jnp
import numpy as np

from hw2.models.layers import HashDropout, hashed_bits


def _apply(rate, x, seed, deterministic=False):
  return HashDropout(rate).apply({}, x, deterministic, rngs={'dropout': jax.random.key(seed)})


def test_keeps_the_expected_fraction_and_scales_it():
  x = jnp.ones((1000, 1000))
  y = np.asarray(_apply(0.3, x, 0))
  kept = y != 0
  assert abs(kept.mean() - 0.7) < 0.002  # 1e6 Bernoulli(0.7) draws: std 0.00046.
  np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)
  assert abs(y.mean() - 1.0) < 0.005


def test_masks_differ_between_keys_and_look_independent():
  x = jnp.ones((256, 512))
  a, b = (np.asarray(_apply(0.5, x, seed)) != 0 for seed in (1, 2))
  assert abs((a == b).mean() - 0.5) < 0.01  # Two independent masks agree half the time.
  flat = a.reshape(-1).astype(float)
  lag1 = np.corrcoef(flat[:-1], flat[1:])[0, 1]
  row_lag = np.corrcoef(a[:-1].reshape(-1), a[1:].reshape(-1))[0, 1]
  assert abs(lag1) < 0.01 and abs(row_lag) < 0.01


def test_bits_are_uniform_over_the_high_byte():
  bits = np.asarray(hashed_bits(jax.random.key(3), (200_000,)))
  counts = np.bincount(bits >> 24, minlength=256)
  chi2 = ((counts - counts.mean()) ** 2 / counts.mean()).sum()
  assert chi2 < 350  # 255 degrees of freedom: the 0.9999 quantile is about 350.


def test_identity_when_deterministic_or_rate_zero():
  x = jax.random.normal(jax.random.key(4), (8, 16))
  np.testing.assert_array_equal(_apply(0.3, x, 0, deterministic=True), x)
  np.testing.assert_array_equal(_apply(0.0, x, 0), x)
