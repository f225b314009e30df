"""Orbax checkpoints of a run: one per epoch, in one CheckpointManager.

Layout: WORKDIR/checkpoints/<epoch>/{state,meta}. `state` is the train state pytree
(StandardSave); `meta` is JSON: the epoch, the best epoch so far and its value, the history of
epoch records (metrics.jsonl up to this epoch), the config it was trained with, the task's workdir
files (the vocabulary), what produced it (packages, git commit) and a checksum of the state.

One save per epoch is one atomic step: orbax writes it into a temporary folder and renames it when
complete, so what the latest checkpoint records (the best epoch, the history) always describes
checkpoints that exist. The manager keeps the last two epochs (a damaged latest one falls back to
the one before) and every epoch that those two name as best (KeepLatestAndBest); the best is the
one `metrics.is_better` chose, never re-derived from the metric, so ties go to the earlier epoch.

Damage (a cut or garbage data file, a missing manifest, unreadable metadata, arrays that do not
match their checksum) raises `DamagedCheckpoint`; `restore_latest` then falls back to the newest
intact epoch, saying so.
"""
import dataclasses
import glob
import hashlib
import os
import re
import shutil

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from hw2 import workdir as workdirs
from hw2.errors import UserError

DIRECTORY = 'checkpoints'
KEEP_LATEST = 2


class DamagedCheckpoint(UserError):
  """A checkpoint step that exists but cannot be read back as it was written."""

  def __init__(self, path, epoch, reason):
    super().__init__(f'checkpoint {path} is damaged ({reason})')
    self.path, self.epoch, self.reason = path, epoch, reason


@dataclasses.dataclass
class KeepLatestAndBest:
  """Orbax preservation policy: the last `latest` steps and the best epoch each of them names
  (its metrics['best_epoch']). A step whose metrics cannot be read keeps everything."""
  latest: int = KEEP_LATEST

  def should_preserve(self, checkpoints, *, context):
    del context
    recent = checkpoints[-self.latest:]
    if any(c.metrics is None or 'best_epoch' not in c.metrics for c in recent):
      return [True] * len(checkpoints)
    best = {c.metrics['best_epoch'] for c in recent}
    return [c in recent or c.step in best for c in checkpoints]


def state_checksum(state):
  """sha256 over every array of `state` (shapes, dtypes and bytes), as hex."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    array = np.asarray(leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf)
    digest.update(f'{jax.tree_util.keystr(path)}:{array.dtype}:{array.shape};'.encode())
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()


def _short(error):
  text = ' '.join(str(error).split()).split(' See full TensorStore details')[0]
  text = text or type(error).__name__
  return text[:200] + ('...' if len(text) > 200 else '')


class Checkpoints:
  """The per-epoch checkpoints of one workdir."""

  def __init__(self, workdir):
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, DIRECTORY))
    options = ocp.CheckpointManagerOptions(
        create=False, enable_async_checkpointing=False, cleanup_tmp_directories=False,
        preservation_policy=KeepLatestAndBest())
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'meta': ocp.JsonCheckpointHandler()})

  def remove_unfinished_saves(self):
    """Deletes what saves cut short by a kill left: orbax writes each step into a temporary
    folder and renames it when complete. For the workdir's writer only (a reader could delete a
    save in progress); done here, not by orbax's own cleanup, which runs in a thread that may
    still be working when a refused run exits."""
    for path in glob.glob(os.path.join(self.directory, '*.orbax-checkpoint-tmp*')):
      shutil.rmtree(path, ignore_errors=True)

  def epochs(self):
    """The epochs that have a checkpoint, in increasing order."""
    return sorted(self._manager.all_steps())

  def path(self, epoch):
    return os.path.join(self.directory, str(epoch))

  def save(self, epoch, state, meta):
    """Saves `state` (pytree) and `meta` (JSON-able dict with 'best_epoch') as epoch `epoch`."""
    meta = {**meta, 'epoch': epoch, 'checksum': state_checksum(state),
            workdirs.FORMAT_KEY: workdirs.FORMAT_VERSION}
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    try:
      self._manager.save(epoch, args=args, metrics={'best_epoch': meta['best_epoch']},
                         force=True)
      self._manager.wait_until_finished()
    except OSError as e:  # A full disk, a lost mount, ...: the previous checkpoints stay.
      raise UserError(f'could not write the checkpoint of epoch {epoch} in {self.directory}: '
                      f'{e.strerror or e}; the previous checkpoint is kept, and a rerun resumes '
                      'from it') from None

  def read_meta(self, epoch):
    """The meta dict of epoch `epoch`. Raises DamagedCheckpoint if it cannot be read."""
    try:
      meta = self._manager.restore(
          epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']
    except Exception as e:  # pylint: disable=broad-except  # orbax, tensorstore raise many kinds.
      raise DamagedCheckpoint(self.path(epoch), epoch,
                              f'its meta cannot be read: {_short(e)}') from None
    if not isinstance(meta, dict) or not {'epoch', 'best_epoch', 'checksum'} <= set(meta):
      raise DamagedCheckpoint(self.path(epoch), epoch, 'its meta lacks the epoch fields')
    workdirs.check_format(meta.get(workdirs.FORMAT_KEY), self.workdir,
                          f'the checkpoint of epoch {epoch}')
    return meta

  def restore(self, epoch, abstract_state, check_meta=None):
    """Restores epoch `epoch` into the structure of `abstract_state`.

    Args:
      epoch: a step of `epochs()`.
      abstract_state: pytree of jax.ShapeDtypeStruct (with shardings) giving the target.
      check_meta: optional function of the meta dict that raises UserError when the checkpoint
        belongs to another experiment; called before any array is read.
    Returns:
      (state, meta).
    Raises:
      DamagedCheckpoint: the step cannot be read back as written.
      UserError: check_meta refused it, or it was written by a model of other shapes.
    """
    path = self.path(epoch)
    meta = self.read_meta(epoch)
    if check_meta is not None:
      check_meta(meta)
    try:
      stored = self._manager.item_metadata(epoch)['state']
    except Exception as e:  # pylint: disable=broad-except
      raise DamagedCheckpoint(path, epoch,
                              f'its array metadata cannot be read: {_short(e)}') from None
    _check_same_shapes(stored, abstract_state, path)
    try:
      state = self._manager.restore(
          epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    except Exception as e:  # pylint: disable=broad-except
      raise DamagedCheckpoint(path, epoch, f'its arrays cannot be read: {_short(e)}') from None
    state = state['state']
    if state_checksum(state) != meta['checksum']:
      raise DamagedCheckpoint(path, epoch, 'its arrays differ from the checksum saved with them')
    return state, meta

  def restore_latest(self, abstract_state, check_meta=None):
    """(state, meta) of the newest intact epoch, or None when there is no checkpoint.

    A damaged newer epoch is reported, removed (it is trained again) and skipped.

    Raises:
      UserError: every checkpoint is damaged, or check_meta / the shapes refuse one.
    """
    damaged = []
    for epoch in reversed(self.epochs()):
      try:
        state, meta = self.restore(epoch, abstract_state, check_meta)
      except DamagedCheckpoint as e:
        logging.warning('%s', e)
        damaged.append(e)
        continue
      if damaged:
        logging.warning('resuming from the intact checkpoint of epoch %d; the damaged '
                        'checkpoint(s) after it (epoch %s) are removed and trained again', epoch,
                        ', '.join(str(d.epoch) for d in damaged))
        for d in damaged:
          self._manager.delete(d.epoch)
      return state, meta
    if damaged:
      raise UserError(f'{damaged[0]}, and so is every older checkpoint of this run: move '
                      '--workdir aside and train anew')
    return None

  def latest_meta(self):
    """The meta of the newest epoch. Raises UserError if there is none or it is damaged."""
    epochs = self.epochs()
    if not epochs:
      raise UserError(f'no checkpoint in {self.directory}: train first (--mode train) or pass '
                      'the --workdir of a trained run')
    try:
      return self.read_meta(epochs[-1])
    except DamagedCheckpoint as e:
      raise UserError(f'{e}: rerun the training command, which resumes from the last intact '
                      'checkpoint and repairs it') from None

  def restore_best(self, abstract_state):
    """(state, meta of the best epoch) as the newest checkpoint names it.

    Raises:
      UserError: no checkpoint, a damaged one, or another model's.
    """
    best = self.latest_meta()['best_epoch']
    if best not in self.epochs():
      raise UserError(f'the best checkpoint {self.path(best)} is missing: train anew in another '
                      '--workdir')
    try:
      return self.restore(best, abstract_state)
    except DamagedCheckpoint as e:
      raise UserError(f'{e}: the best parameters of this run are lost; train anew in another '
                      '--workdir') from None

  def close(self):
    self._manager.close()


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
