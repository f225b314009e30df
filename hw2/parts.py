"""Experiments made of parts (configs/homework.py, configs/beyond.py): each part runs once for its
settings and resumes after an interruption.

WORKDIR/parts.json records for each finished part the settings it ran with and its wall time
(summed over the invocations that worked on it); a part whose settings changed runs again,
resuming its runs (more epochs, more beam sizes, ...), and a part cut short resumes its runs from
their checkpoints.
"""
import os
import time

from absl import logging

from hw2 import records
from hw2 import workdir as workdirs

PARTS_FILE = 'parts.json'


def settings(config, fields):
  """The config fields a part depends on, as JSON would store them."""
  return {f: workdirs.as_json(config[f]) for f in fields}


def run_parts(config, workdir, parts):
  """Runs, in order, each (name, run(config, workdir), fields) of `parts` not finished with
  these settings; returns the parts.json dict. The caller holds the workdir's lock."""
  workdirs.saved_config_file(workdir)  # Refuses a workdir of another format, writing nothing.
  workdirs.write_config(workdir, config)
  path = os.path.join(workdir, PARTS_FILE)
  done = records.read_json_or_none(path) or {}
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
