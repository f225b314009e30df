"""Cross-entropy of both tasks, with optional label smoothing."""
import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits, labels, label_smoothing=0.0):
  """Per-position softmax cross-entropy: logits [..., V], integer labels [...] -> [...].

  With label_smoothing e the target is (1 - e) * one_hot(label) + e / V (optax.smooth_labels),
  so the loss is (1 - e) * CE(label) + e * mean over classes of -log p.
  """
  if not label_smoothing:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype),
                                label_smoothing)
  return optax.softmax_cross_entropy(logits, targets)


def masked_mean(losses, weights):
  """sum(losses * weights) / sum(weights) (0 when every weight is 0)."""
  return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1.0)
