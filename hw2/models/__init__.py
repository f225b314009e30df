"""Flax Linen models, used through pure `init` / `apply`."""
import jax
import numpy as np


def count_params(params):
  """Total number of scalars in a parameter pytree (arrays or ShapeDtypeStructs)."""
  return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))
