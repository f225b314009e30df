"""Flax Linen models, used through pure `init` / `apply`.

Each model has a definition written with Flax's layers (cnn.py, seq2seq.py, transformer.py); the
CNN also has a CPU implementation of the same function with the same parameters in fast/. `build`
is the one place that reads `config.model`: the model's name (the CNN, or the translation task's
`architecture`) picks the class, `impl` the CNN's implementation ('auto': fast on the CPU, else
the reference), and its other fields reach the constructor as keyword arguments.
"""
import jax
import numpy as np

from hw2.models import cnn
from hw2.models import seq2seq
from hw2.models import transformer
from hw2.models.fast import cnn as fast_cnn

IMPLS = ('auto', 'reference', 'fast')  # config.model.impl
ARCHITECTURES = ('lstm', 'transformer')  # config.model.architecture of the translation task


def resolve_impl(impl):
  """'reference' or 'fast' for config.model.impl; 'auto' is fast on the CPU backend only. Call it
  after jax.distributed has started (the backend is then that of the whole run)."""
  if impl == 'auto':
    return 'fast' if jax.default_backend() == 'cpu' else 'reference'
  return impl


def impl_of(model):
  """'fast' or 'reference': the implementation a built model is (recorded in results.json)."""
  return 'fast' if type(model).__module__.startswith('hw2.models.fast') else 'reference'


def build(name, model_config, **kwargs):
  """The model `name` ('cnn', or an architecture of ARCHITECTURES) in the implementation that
  config.model.impl chooses, built with config.model's other fields and `kwargs` (sizes that come
  from the data) as keyword arguments."""
  fast = resolve_impl(model_config.impl) == 'fast'
  if name == 'cnn':
    model_class = fast_cnn.CNN if fast else cnn.CNN
  elif name == 'lstm':  # The translators have one implementation (validation refuses 'fast').
    model_class = seq2seq.Seq2Seq
  elif name == 'transformer':
    model_class = transformer.Transformer
  else:
    raise ValueError(f'no model {name!r}')
  settings = {k: v for k, v in model_config.items() if k not in ('impl', 'architecture')}
  return model_class(**settings, **kwargs)


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
