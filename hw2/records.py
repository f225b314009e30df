"""What a run writes down in its workdir: metrics.jsonl, results.json, config.json.

Files are replaced atomically (write to a temporary file, then rename), so an interrupted run or
a failed write (a full disk) never leaves a half-written file: the previous version stays.
"""
import json
import os
import tempfile

from hw2 import parallel
from hw2.errors import UserError

METRICS_FILE = 'metrics.jsonl'
RESULTS_FILE = 'results.json'
CONFIG_FILE = 'config.json'
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_atomic(path, text):
  """Replaces the file at `path` with `text` in one rename.

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
    os.replace(tmp, path)
  except OSError as e:
    if tmp and os.path.exists(tmp):
      os.remove(tmp)
    raise UserError(f'could not write {path}: {e.strerror or e}; the previous version is kept, '
                    'and a rerun resumes from the last complete epoch') from None


def write_json(path, obj):
  write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + '\n')


def read_json(path):
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def read_metrics(workdir):
  """The per-epoch records of metrics.jsonl, in order ([] if the file does not exist)."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path, encoding='utf-8') as f:
    return [json.loads(line) for line in f if line.strip()]


def write_metrics(workdir, records):
  """Replaces metrics.jsonl with `records`, one JSON object (epoch) a line.

  The loop rewrites the whole (small) file each epoch rather than appending, so a failed write
  never leaves a partial line.
  """
  write_atomic(os.path.join(workdir, METRICS_FILE),
               ''.join(json.dumps(r, sort_keys=True) + '\n' for r in records))
