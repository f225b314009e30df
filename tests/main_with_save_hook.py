"""main.py with one more test-only stop point: HW2_KILL_AT=checkpoint-save:N kills the process
inside orbax's save of epoch N, after the step's meta is written into its temporary folder and
before orbax renames the folder into place (hw2/workdir.py lists the other points)."""
import os
import runpy
import sys

import orbax.checkpoint as ocp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from hw2 import workdir  # pylint: disable=g-import-not-at-top,wrong-import-position

_write = ocp.JsonCheckpointHandler._save_fn  # pylint: disable=protected-access


async def _write_then_maybe_stop(self, item, directory):
  await _write(self, item, directory)
  if isinstance(item, dict) and 'checksum' in item:  # The meta item, not orbax's own metrics.
    workdir.phase('checkpoint-save', item['epoch'])


ocp.JsonCheckpointHandler._save_fn = _write_then_maybe_stop  # pylint: disable=protected-access
sys.argv = [os.path.join(ROOT, 'main.py'), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name='__main__')
