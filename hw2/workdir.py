"""What a workdir holds and who may write it.

- One writer at a time: `writer(workdir)` takes an exclusive OS file lock (flock through the
  `filelock` library) on WORKDIR/.lock before anything is written, so the kernel releases it when
  the process ends, `kill -9` included. The holder's pid, host and start time are in
  WORKDIR/.lock.owner, so a second writer can say who holds it. A workdir that the failed run
  created itself is removed again, so a refused run leaves nothing behind.
- config.json: the config a run was trained with; a resumed run must be the same experiment, and
  eval/translate take the model and data settings from it.
"""
import contextlib
import datetime
import os
import shutil
import socket

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
RUNTIME_FIELDS = ('num_epochs', 'decode', 'eval_batch_size', 'steps_per_call', 'conv_chains')


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
  lock = filelock.FileLock(os.path.join(workdir, LOCK_FILE), timeout=0)
  try:
    lock.acquire()
  except filelock.Timeout:
    raise UserError(f'--workdir={workdir} is in use by another run ({_owner(workdir)}); wait for '
                    'it to finish or use another --workdir') from None
  ok = False
  _held[key] = 1
  try:
    records.write_atomic(os.path.join(workdir, OWNER_FILE),
                         f'pid {os.getpid()} on {socket.gethostname()} since '
                         f'{datetime.datetime.now().isoformat(timespec="seconds")}\n')
    yield
    ok = True
  finally:
    _held[key] = 0
    lock.release()
    if created and not ok and set(os.listdir(workdir)) <= {LOCK_FILE, OWNER_FILE}:
      shutil.rmtree(workdir, ignore_errors=True)


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
  """The config a workdir was trained with (its config.json)."""
  check_not_a_file(workdir)
  path = os.path.join(workdir, records.CONFIG_FILE)
  if not os.path.exists(path):
    raise UserError(f'no trained run in --workdir={workdir} ({path} is missing): train first')
  return ml_collections.ConfigDict(records.read_json(path))


def config_for_evaluation(workdir, config):
  """The workdir's training config with the runtime fields (decoding, eval batch) of `config`."""
  saved = load_saved_config(workdir)
  for field in RUNTIME_FIELDS:
    if field in config:
      saved[field] = config[field]
  return saved


def _config_differences(saved, current):
  """Dotted names of fields (outside RUNTIME_FIELDS) whose values differ between two configs."""
  saved, current = saved.to_dict(), current.to_dict()
  return sorted(k for k in set(saved) | set(current)
                if k not in RUNTIME_FIELDS and saved.get(k) != current.get(k))


def check_same_experiment(workdir, config):
  """Raises UserError if the workdir holds a run of a config that differs from `config`."""
  path = os.path.join(workdir, records.CONFIG_FILE)
  if not os.path.exists(path):
    return
  saved = ml_collections.ConfigDict(records.read_json(path))
  differences = _config_differences(saved, config)
  if differences:
    name = differences[0]
    raise UserError(f'--workdir={workdir} holds a run with {name}={saved.get(name)!r} but this '
                    f'config has {name}={config.get(name)!r}; use another --workdir to change it')
