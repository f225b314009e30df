"""Orbax checkpoints of a run: the latest epoch (to resume) and the best by validation metric.

Layout: WORKDIR/checkpoints/{latest,best}/<epoch>/{state,meta}. Each manager keeps one step.
`state` is the train state pytree (StandardSave); `meta` is JSON (epoch, metrics, config).
Orbax writes each step into a temporary folder and renames it when complete, so an interrupted
save never leaves a half-written checkpoint behind.
"""
import os
import re

import jax
import orbax.checkpoint as ocp

from hw2.errors import UserError

KINDS = ('latest', 'best')


def _manager(directory):
  options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                         enable_async_checkpointing=False)
  handlers = {'state': ocp.StandardCheckpointHandler(), 'meta': ocp.JsonCheckpointHandler()}
  return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


class Checkpoints:
  """The 'latest' and 'best' checkpoints of one workdir."""

  def __init__(self, workdir):
    self.directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
    self._managers = {kind: _manager(os.path.join(self.directory, kind)) for kind in KINDS}

  def epoch(self, kind='latest'):
    """The epoch of the `kind` checkpoint, or None if there is none."""
    return self._managers[kind].latest_step()

  def save(self, epoch, state, meta, is_best):
    """Saves `state` (pytree) and `meta` (JSON-able dict) as latest, and as best if `is_best`."""
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    kinds = KINDS if is_best else KINDS[:1]
    for kind in kinds:
      try:
        self._managers[kind].save(epoch, args=args, force=True)
        self._managers[kind].wait_until_finished()
      except OSError as e:  # A full disk, a lost mount, ...: the previous checkpoint stays.
        raise UserError(f'could not write the {kind} checkpoint of epoch {epoch} in '
                        f'{os.path.join(self.directory, kind)}: {e.strerror or e}; the previous '
                        'checkpoint is kept, and a rerun resumes from it') from None

  def restore(self, abstract_state, kind='latest'):
    """Restores the `kind` checkpoint into the structure of `abstract_state`.

    Args:
      abstract_state: pytree of jax.ShapeDtypeStruct (e.g. from jax.eval_shape) giving the target.
      kind: 'latest' or 'best'.
    Returns:
      (state, meta).
    Raises:
      UserError: no such checkpoint, or one written by a model of other shapes.
    """
    manager = self._managers[kind]
    step = manager.latest_step()
    if step is None:
      raise UserError(f'no {kind} checkpoint in {self.directory}: train first '
                      '(--mode train) or pass the --workdir of a trained run')
    path = os.path.join(self.directory, kind, str(step))
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
    stored = manager.item_metadata(step)['state']
    _check_same_shapes(stored, abstract_state, path)
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    return restored['state'], meta

  def close(self):
    for manager in self._managers.values():
      manager.close()


def _shapes_by_name(tree):
  """{'params/dense1/kernel': (576, 600), ...} for a pytree of arrays or array metadata."""
  return {'/'.join(re.findall(r'\w+', jax.tree_util.keystr(path))): tuple(getattr(leaf, 'shape', ()))
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _check_same_shapes(stored_metadata, abstract_state, path):
  """Raises UserError naming the first array whose stored shape differs from the model's."""
  stored, wanted = _shapes_by_name(stored_metadata), _shapes_by_name(abstract_state)
  hint = '(use the config it was trained with, or another --workdir)'
  for name in sorted(set(stored) | set(wanted)):
    if name not in stored or name not in wanted:
      where = 'this config' if name not in stored else 'the checkpoint'
      raise UserError(f'checkpoint {path} was written by a different model: only {where} '
                      f'has {name} {hint}')
    if stored[name] != wanted[name]:
      raise UserError(f'checkpoint {path} was written by a different model: {name} has shape '
                      f'{stored[name]} there but {wanted[name]} in this config {hint}')
