"""Flax Linen models, used through pure `init` / `apply`."""
import jax
import numpy as np


def count_params(params):
  """Total number of scalars in a parameter pytree (arrays or ShapeDtypeStructs)."""
  return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def parameter_overview(params):
  """A table of every parameter array (path, shape, count) and the total, as text."""
  rows = [('/'.join(str(getattr(k, 'key', k)) for k in path), str(tuple(leaf.shape)),
           int(np.prod(leaf.shape)))
          for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]]
  width = max([len('parameter')] + [len(name) for name, _, _ in rows])
  shape_width = max([len('shape')] + [len(shape) for _, shape, _ in rows])
  lines = [f'{"parameter":<{width}}  {"shape":<{shape_width}}  {"count":>10}']
  lines += [f'{name:<{width}}  {shape:<{shape_width}}  {count:>10,}' for name, shape, count in rows]
  lines.append(f'{"total":<{width}}  {"":<{shape_width}}  {count_params(params):>10,}')
  return '\n'.join(lines)
