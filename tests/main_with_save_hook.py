"""main.py with one more test-only stop point: HW2_KILL_AT=checkpoint-save:N kills the process
inside orbax's save of epoch N, after the step's meta is written into its temporary folder and
before orbax renames the folder into place (hw2/workdir.py lists the other points). Without that
setting it is main.py itself: nothing is imported first, so a config error still answers before
JAX is imported."""
import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # main.py's folder, as when main.py itself is the script.


def _install_save_hook():
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from hw2 import workdir  # pylint: disable=g-import-not-at-top

  write = ocp.JsonCheckpointHandler._save_fn  # pylint: disable=protected-access

  async def write_then_maybe_stop(self, item, directory):
    await write(self, item, directory)
    if isinstance(item, dict) and 'checksum' in item:  # The meta item, not orbax's own metrics.
      workdir.phase('checkpoint-save', item['epoch'])

  ocp.JsonCheckpointHandler._save_fn = write_then_maybe_stop  # pylint: disable=protected-access


if os.environ.get('HW2_KILL_AT', '').startswith('checkpoint-save'):
  _install_save_hook()
sys.argv = [os.path.join(ROOT, 'main.py'), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name='__main__')
