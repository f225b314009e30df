"""What a run writes down in its workdir: metrics.jsonl, results.json, config.json.

Files are replaced atomically (write to a temporary file, then rename), so an interrupted run never
leaves a half-written results file.
"""
import json
import os
import tempfile

METRICS_FILE = 'metrics.jsonl'
RESULTS_FILE = 'results.json'
CONFIG_FILE = 'config.json'


def write_atomic(path, text):
  """Replaces the file at `path` with `text` in one rename."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp_')
  with os.fdopen(fd, 'w', encoding='utf-8') as f:
    f.write(text)
  os.replace(tmp, path)


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
  """Replaces metrics.jsonl with `records` (used to drop epochs past a resumed checkpoint)."""
  write_atomic(os.path.join(workdir, METRICS_FILE),
               ''.join(json.dumps(r, sort_keys=True) + '\n' for r in records))


def append_metrics(workdir, record):
  """Appends one JSON object (one epoch) to metrics.jsonl."""
  with open(os.path.join(workdir, METRICS_FILE), 'a', encoding='utf-8') as f:
    f.write(json.dumps(record, sort_keys=True) + '\n')
