"""Experiments made of parts (configs/homework.py, configs/beyond.py): each part runs once for its
settings and resumes after an interruption.

WORKDIR/parts.json records for each finished part the settings it ran with and its wall time
(summed over the invocations that worked on it); a part whose settings changed runs again,
resuming its runs (more epochs, more beam sizes, ...), and a part cut short resumes its runs from
their checkpoints.
"""
import json
import os
import time

from absl import logging

from hw2 import records

PARTS_FILE = 'parts.json'


def read_or_redo(path, kind):
  """The JSON of a record file of a part, or None when it is missing or damaged (so it is
  redone)."""
  if not os.path.exists(path):
    return None
  try:
    return records.read_json(path, kind)
  except records.DamagedFile as e:
    logging.warning('%s; what it recorded is redone', e)
    return None


def settings(config, fields):
  """The config fields a part depends on, as JSON would store them."""
  return json.loads(json.dumps({f: config[f].to_dict() if hasattr(config[f], 'to_dict')
                                else config[f] for f in fields}))


def run_parts(config, workdir, parts):
  """Runs, in order, each (name, run(config, workdir), fields) of `parts` not finished with
  these settings; returns the parts.json dict. The caller holds the workdir's lock."""
  records.write_json(os.path.join(workdir, records.CONFIG_FILE), config.to_dict())
  path = os.path.join(workdir, PARTS_FILE)
  done = read_or_redo(path, dict) or {}
  for name, run_part, fields in parts:
    current = settings(config, fields)
    previous = done.get(name, {})
    if previous.get('settings') == current:
      logging.info('%s: %s finished earlier (%.0f s); skipped', config.task, name,
                   previous['seconds'])
      continue
    logging.info('%s: %s', config.task, name)
    start = time.time()
    run_part(config, workdir)
    done[name] = {'settings': current,
                  'seconds': round(previous.get('seconds', 0.0) + time.time() - start, 1)}
    records.write_json(path, done)
  return done
