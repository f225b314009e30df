"""What a workdir holds and who may write it.

- One writer at a time: `writer(workdir)` takes an exclusive OS file lock (flock through the
  `filelock` library) on WORKDIR/.lock before anything is written, so the kernel releases it when
  the process ends, `kill -9` included. The holder's pid, host and start time are in
  WORKDIR/.lock.owner, so a second writer can say who holds it. A workdir that the failed run
  created itself is removed again, so a refused run leaves nothing behind.
- config.json: the config a run was trained with; a resumed run must be the same experiment, and
  eval/translate take the model and data settings from it. Each checkpoint stores it too
  (hw2/checkpoint.py), and that copy decides: a lost or damaged config.json cannot let another
  experiment continue a run.

The order in which a training run (hw2/train.py) writes its workdir, so that a kill at any point
(SIGKILL included) is resumed by the same command to the files of an uninterrupted run:
1. Checks, writing nothing: the config (hw2/validation.py), every data file (long test sentences
   included), the newest intact checkpoint's config, task files (the vocabulary) and shapes.
2. The folders of saves cut short removed; config.json, the task's files (vocab.json),
   parameters.txt, and metrics.jsonl rewritten from the checkpoint's history (so records of
   epochs past the checkpoint are dropped).
3. Each epoch: metrics.jsonl gains its record (phase `recorded`), then one atomic checkpoint
   step holds the state, the history and the best epoch so far (phase `saved` after it). A kill
   before the step is complete (orbax renames its folder last) resumes from the previous epoch.
4. The end: test metrics of the best epoch (`tested`), the curves (`curves`), the task's outputs
   (`outputs`), TensorBoard images, and results.json last (`results`). results.json is the mark
   that a run is complete: a rerun that finds the last epoch's checkpoint without a results.json
   that matches it redoes step 4.
`phase(name, epoch)` marks each point; the fault-injection tests stop a run there.
"""
import contextlib
import datetime
import glob
import json
import os
import shutil
import signal
import socket

from absl import logging

import filelock
import ml_collections

from hw2 import parallel
from hw2 import records
from hw2.errors import UserError

LOCK_FILE = '.lock'
OWNER_FILE = '.lock.owner'
_held = {}  # Real path -> nesting depth of the locks this process holds.

# Config fields that may differ between the run that wrote a workdir and one that resumes or
# evaluates it; any other difference means a different experiment.
# (A cosine or linear schedule decays over num_epochs: hw2/train.py then refuses to change it.)
RUNTIME_FIELDS = ('num_epochs', 'decode', 'eval_batch_size', 'steps_per_call', 'model.impl',
                  'num_samples')
# The format of the files a run writes (config.json, each checkpoint's meta and arrays). A
# change that old workdirs cannot be read with bumps it; a workdir of another format is refused
# with one line, before anything in it is written. A workdir without the field is format 0.
FORMAT_VERSION = 1
FORMAT_KEY = 'format_version'
KILL_AT_VARIABLE = 'HW2_KILL_AT'


def phase(name, epoch=None):
  """Marks a point of the order above. Test hook: with HW2_KILL_AT=name (or name:epoch) in the
  environment, the process kills itself here with SIGKILL, as a crash or power cut would."""
  spec = os.environ.get(KILL_AT_VARIABLE)
  if spec and spec in (name, f'{name}:{epoch}'):
    os.kill(os.getpid(), signal.SIGKILL)


def check_not_a_file(workdir):
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UserError(f'--workdir={workdir} is a file, not a folder: give a folder (new or holding '
                    'a run)')


@contextlib.contextmanager
def writer(workdir):
  """Holds the workdir's exclusive lock for the duration of the block (creating the folder).

  Re-entrant within a process: main.py takes the lock before importing the model code (flax,
  orbax), and the loop it calls takes it again.

  Raises:
    UserError: `workdir` is a file, or another process holds the lock.
  """
  check_not_a_file(workdir)
  if not parallel.is_writer():  # Process 0 holds the lock for the whole multi-process run.
    yield
    return
  key = os.path.realpath(workdir)
  if _held.get(key):
    _held[key] += 1
    try:
      yield
    finally:
      _held[key] -= 1
    return
  created = not os.path.isdir(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create --workdir={workdir}: {e.strerror}') from None
  lock_files = [os.path.join(workdir, name) for name in (LOCK_FILE, OWNER_FILE)]
  new_lock_files = [path for path in lock_files if not os.path.exists(path)]
  lock = filelock.FileLock(lock_files[0], timeout=0)
  try:
    lock.acquire()
  except filelock.Timeout:
    raise UserError(f'--workdir={workdir} is in use by another run ({_owner(workdir)}); wait for '
                    'it to finish or use another --workdir') from None
  except OSError as e:  # A read-only file system or folder, an immutable folder, ...
    raise UserError(f'cannot write in --workdir={workdir} ({e.strerror or e}): this mode writes '
                    'there; give a writable --workdir') from None
  ok = False
  _held[key] = 1
  try:
    records.write_atomic(lock_files[1],
                         f'pid {os.getpid()} on {socket.gethostname()} since '
                         f'{datetime.datetime.now().isoformat(timespec="seconds")}\n')
    _remove_stale_temporaries(workdir)
    yield
    ok = True
  finally:
    _held[key] = 0
    lock.release()
    if not ok:  # A refused run leaves the workdir as it found it.
      if created and set(os.listdir(workdir)) <= {LOCK_FILE, OWNER_FILE}:
        shutil.rmtree(workdir, ignore_errors=True)
      for path in new_lock_files:
        if os.path.exists(path):
          os.remove(path)


def _remove_stale_temporaries(workdir):
  """Temporary files of atomic writes that a killed run left (hw2/records.py); the lock holder is
  the only writer, so none of them is being written."""
  for path in glob.glob(os.path.join(glob.escape(workdir), '**', '.tmp_*'), recursive=True):
    try:
      os.remove(path)
    except OSError:  # Gone already, or not ours to remove: a leftover, harmless.
      pass


def check_shared(workdir, name):
  """After process 0 wrote WORKDIR/name: every process must see it (a file system all hosts
  share); raises UserError in one that does not."""
  parallel.sync(f'wrote {name}')
  path = os.path.join(workdir, name)
  if not os.path.exists(path):
    raise UserError(f'process {parallel.process_index()} cannot see {path}, which process 0 '
                    'wrote: --workdir must be on a file system that every host shares')


def _owner(workdir):
  try:
    with open(os.path.join(workdir, OWNER_FILE), encoding='utf-8') as f:
      return f.read().strip()
  except OSError:
    return 'a process that has not said who it is yet'


def load_saved_config(workdir):
  """The config a workdir was trained with: its config.json, or where that is missing or damaged,
  the copy in its newest checkpoint (saying so)."""
  check_not_a_file(workdir)
  path = os.path.join(workdir, records.CONFIG_FILE)
  problem = f'{path} is missing'
  if os.path.exists(path):
    try:
      return ml_collections.ConfigDict(experiment_config(records.read_json(path), workdir))
    except records.DamagedFile as e:
      problem = str(e)
  from hw2 import checkpoint  # pylint: disable=g-import-not-at-top  # orbax only where needed.
  checkpoints = checkpoint.Checkpoints(workdir)
  try:
    if not checkpoints.epochs():
      raise UserError(f'no trained run in --workdir={workdir} ({problem}): train first')
    meta = checkpoints.latest_meta()
  finally:
    checkpoints.close()
  logging.warning('%s; using the config saved in checkpoint %d (a training rerun rewrites the '
                  'file)', problem, meta['epoch'])
  return ml_collections.ConfigDict(meta['config'])


def check_format(version, workdir, where):
  """Raises UserError unless `version` (of the file `where` in `workdir`; None: format 0) is the
  format this code reads."""
  version = version or 0
  if version == FORMAT_VERSION:
    return
  commit = _recorded_commit(workdir)
  raise UserError(
      f'--workdir={workdir} holds a run in workdir format {version} ({where}); this hw2 reads '
      f'format {FORMAT_VERSION}: train anew in another --workdir, or use the hw2 commit that '
      'wrote it' + (f' ({commit}, from its results.json)' if commit else
                    ' (its results.json or checkpoint meta names it: provenance.git.commit)'))


def _recorded_commit(workdir):
  """The git commit results.json's provenance names, or None."""
  path = os.path.join(workdir, records.RESULTS_FILE)
  try:
    return records.read_json(path)['provenance']['git']['commit'][:12]
  except (OSError, KeyError, TypeError, records.DamagedFile):
    return None


def experiment_config(saved, workdir):
  """The config dict of a workdir's config.json without its format field, after checking the
  format."""
  check_format(saved.get(FORMAT_KEY), workdir, records.CONFIG_FILE)
  return without_format(saved)


def without_format(saved):
  """A config.json dict without its format field (--mode report reads records of any format)."""
  return {k: v for k, v in saved.items() if k != FORMAT_KEY}


def write_config(workdir, config):
  """Writes WORKDIR/config.json: the config, and the format of the workdir's files."""
  records.write_json(os.path.join(workdir, records.CONFIG_FILE),
                     {**config.to_dict(), FORMAT_KEY: FORMAT_VERSION})


def config_for_evaluation(workdir, config):
  """The workdir's training config with the runtime fields (decoding, eval batch) of `config`."""
  saved = load_saved_config(workdir)
  for field in RUNTIME_FIELDS:
    *parents, leaf = field.split('.')
    source, target = config, saved
    for name in parents:
      source, target = source.get(name), target.get(name)
    if source is not None and target is not None and leaf in source:
      target[leaf] = source[leaf]
  return saved


def as_json(config):
  """A ConfigDict (or dict, or a field's value) as JSON would store it: tuples become lists."""
  return json.loads(json.dumps(config.to_dict() if hasattr(config, 'to_dict') else config))


def flatten(tree, prefix=''):
  """A nested dict as {dotted name: value} (an empty dict is a value)."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict) and value:
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[prefix + key] = value
  return flat


def config_differences(saved, current):
  """Dotted names of the fields outside RUNTIME_FIELDS whose values differ between two configs
  (dicts as JSON stores them); a field that one lacks differs."""
  saved, current = flatten(as_json(saved)), flatten(as_json(current))
  absent = object()
  return [name for name in sorted(set(saved) | set(current))
          if not any(name == f or name.startswith(f + '.') for f in RUNTIME_FIELDS)
          and saved.get(name, absent) != current.get(name, absent)]


def check_same_experiment(workdir, config, saved, source):
  """Raises UserError if `saved` (the config dict of a run in `workdir`, read from `source`)
  differs from `config` in a field that is not a runtime field."""
  differences = config_differences(saved, config)
  if differences:
    name = differences[0]
    saved_value = flatten(as_json(saved)).get(name, '(absent)')
    value = flatten(as_json(config)).get(name, '(absent)')
    raise UserError(f'--workdir={workdir} holds a run with {name}={saved_value!r} but this config '
                    f'has {name}={value!r} (the run\'s config from {source}); use another '
                    '--workdir to change it')


def check_workdir_format(workdir):
  """Refuses a workdir whose config.json is of another format before its lock is taken, so that
  nothing in it is written; a missing or damaged file is left to the mode, which repairs or
  reports it."""
  try:
    saved = records.read_json(os.path.join(workdir, records.CONFIG_FILE))
  except (OSError, records.DamagedFile):
    return
  check_format(saved.get(FORMAT_KEY), workdir, records.CONFIG_FILE)


def saved_config_file(workdir):
  """config.json of `workdir` as a config dict, or None if it is missing or damaged (saying so).

  Raises:
    UserError: it is of another workdir format.
  """
  saved = records.read_json_or_none(os.path.join(workdir, records.CONFIG_FILE),
                                    instead='it is written anew')
  return None if saved is None else experiment_config(saved, workdir)
