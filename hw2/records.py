"""What a run writes down in its workdir: results.json, config.json; metrics.jsonl read back
(hw2/tracking.py writes it).

Files are replaced atomically and durably (write a temporary file, fsync it, rename it over the old
one, fsync the folder), so an interrupted run, a power cut or a failed write (a full disk) never
leaves a half-written file: the previous version stays. A file that is damaged all the same (cut
short by hand, garbage) is reported by `read_json` / `read_metrics` as `DamagedFile`, a UserError
naming the file, which callers either pass on or repair from the checkpoint.
"""
import datetime
import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata

from absl import logging
import jax

from hw2 import parallel
from hw2.errors import UserError

METRICS_FILE = 'metrics.jsonl'
RESULTS_FILE = 'results.json'
CONFIG_FILE = 'config.json'
_UMASK = os.umask(0)
os.umask(_UMASK)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy')


class DamagedFile(UserError):
  """A workdir file that exists but cannot be read as what it should hold."""

  def __init__(self, path, problem):
    super().__init__(f'{path} is damaged ({problem})')
    self.path, self.problem = path, problem


def write_atomic(path, text):
  """Replaces the file at `path` with `text` in one rename, after fsync.

  Only process 0 of a multi-process run writes (hw2/parallel.py); the others return at once.

  Raises:
    UserError: the write failed (no space, no permission, ...); `path` is left as it was.
  """
  if not parallel.is_writer():
    return
  directory = os.path.dirname(os.path.abspath(path))
  tmp = None
  try:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp_')
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are for everyone to read.
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_folder(directory)
  except OSError as e:
    if tmp and os.path.exists(tmp):
      os.remove(tmp)
    raise UserError(f'could not write {path}: {e.strerror or e}; the previous version is kept, '
                    'and a rerun resumes from the last complete epoch') from None


def _fsync_folder(directory):
  """Makes a rename in `directory` durable (where the OS lets a folder be opened)."""
  try:
    fd = os.open(directory, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:  # A file system that cannot sync folders: the rename stands as it is.
    pass
  finally:
    os.close(fd)


def write_json(path, obj):
  write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + '\n')


def read_json(path, kind=dict):
  """The JSON value of the file at `path`, which must be of type `kind`.

  Raises:
    DamagedFile: the file is not UTF-8 JSON of that type (cut short, garbage, a list for a dict).
    OSError: the file cannot be opened (missing: callers check for that first).
  """
  with open(path, 'rb') as f:
    raw = f.read()
  try:
    value = json.loads(raw.decode('utf-8'))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise DamagedFile(path, f'not valid JSON: {e}') from None
  if not isinstance(value, kind):
    raise DamagedFile(path, f'it holds a JSON {type(value).__name__}, not a JSON '
                            f'{"object" if kind is dict else kind.__name__}')
  return value


def read_json_or_none(path, kind=dict, instead='what it recorded is redone'):
  """read_json(path, kind), or None when the file is missing or damaged; a damaged one is logged
  with `instead`, what the caller does without it."""
  if not os.path.exists(path):
    return None
  try:
    return read_json(path, kind)
  except DamagedFile as e:
    logging.warning('%s; %s', e, instead)
    return None


def read_metrics(workdir):
  """The per-epoch records of metrics.jsonl, in order ([] if the file does not exist).

  Raises:
    DamagedFile: a line is not a JSON object with an 'epoch'.
  """
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path, 'rb') as f:
    lines = f.read().splitlines()
  history = []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line.decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise DamagedFile(path, f'line {number} is not valid JSON: {e}') from None
    if not isinstance(record, dict) or 'epoch' not in record:
      raise DamagedFile(path, f'line {number} is not an epoch record')
    history.append(record)
  return history


def markdown_table(header, rows):
  """A Markdown table: the header's names, then a line per row (cells shown with str)."""
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return '\n'.join(lines)


def provenance():
  """What produced a result: Python and package versions, the git commit of this checkout (None
  outside a git checkout; `dirty` when tracked files differ from it), the machine (processor,
  JAX's platform and device kind, device and process counts) and the date (UTC)."""
  versions = {}
  for package in PACKAGES:
    try:
      versions[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
      versions[package] = None
  return {'python': platform.python_version(), 'packages': versions, 'git': _git_commit(),
          'machine': machine(),
          'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d')}


def machine():
  """The processor and the devices this process computes on: {processor, cores, platform
  ('cpu', 'gpu', 'tpu'), device_kind, device_count, process_count}."""
  device = jax.devices()[0]
  return {'processor': _processor_name(), 'cores': os.cpu_count(), 'platform': device.platform,
          'device_kind': device.device_kind, 'device_count': jax.device_count(),
          'process_count': jax.process_count()}


def _processor_name():
  """The CPU's model name (/proc/cpuinfo on Linux), else what `platform` knows."""
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def describe_provenance(facts):
  """One line naming the machine, commit and date of a run's `provenance` record (missing parts
  are said to be unrecorded)."""
  machine_facts, git = facts.get('machine'), facts.get('git')
  if machine_facts:
    kind = machine_facts['device_kind']
    where = (f"{machine_facts['processor']} ({machine_facts['cores']} cores), "
             f"{machine_facts['device_count']} {machine_facts['platform'].upper()} device(s)"
             + (f' ({kind})' if machine_facts['platform'] != 'cpu' else ''))
  else:
    where = 'machine not recorded'
  commit = (f"commit {git['commit'][:7]}{' with uncommitted changes' if git['dirty'] else ''}"
            if git else 'commit not recorded')
  packages = facts.get('packages') or {}
  versions = ', '.join(f'{p} {packages[p]}' for p in ('jax', 'flax') if packages.get(p))
  return '; '.join([where, commit, f"{facts.get('date') or 'date not recorded'}",
                    f"Python {facts.get('python', '?')}" + (f', {versions}' if versions else '')])


def _git_commit():
  try:
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=_ROOT, capture_output=True,
                            text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=_ROOT,
                           capture_output=True, text=True, timeout=10, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return {'commit': commit, 'dirty': bool(dirty)}
