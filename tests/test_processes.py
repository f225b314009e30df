"""The edges of a multi-process run: incomplete cluster flags, a batch that does not divide by
the devices, an interrupt of one process (every process ends with one line), a coordinator that
nobody answers, and its default wait. Each run is a main.py subprocess (or two), bounded by a
timeout (tests/test_parallel.py holds the runs that must equal each other)."""
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from hw2 import parallel
from test_cli import assert_one_error_line
from test_parallel import free_port
from test_parallel import cnn_args  # pylint: disable=unused-import  # A fixture.
from test_parallel import main_py

pytestmark = pytest.mark.slow  # Starts main.py processes, most of which train.


@pytest.mark.parametrize('flags, fragment', [
    (['--num_processes=2'], '--coordinator_address, --num_processes and --process_id go together'),
    (['--coordinator_address=127.0.0.1:1', '--num_processes=2', '--process_id=2'],
     '--process_id=2 must lie in [0, 2)'),
])
def test_incomplete_cluster_flags(cnn_args, tmp_path, flags, fragment):
  result = main_py([*cnn_args, '--workdir', str(tmp_path / 'w'), *flags])
  assert_one_error_line(result, fragment)
  assert not (tmp_path / 'w').exists()


def test_batch_that_does_not_divide_by_the_devices(cnn_args, tmp_path):
  workdir = tmp_path / 'w'
  result = main_py([*cnn_args, '--config.batch_size=50', '--workdir', str(workdir)], devices=4)
  assert_one_error_line(result, '--config.batch_size=50 does not divide by the 4 devices')
  assert not workdir.exists()


def without_stacks(log):
  """A log without the thread stacks that an abort prints, so that the runtime's own reason
  shows."""
  return '\n'.join(line for line in log.splitlines()
                   if not line.startswith(('  File ', 'Thread 0x')))[-3000:]


@pytest.mark.parametrize('interrupted', [0, 1])
def test_interrupting_one_process_ends_the_others(cnn_args, tmp_path, interrupted):
  cluster = [f'--coordinator_address=127.0.0.1:{free_port()}', '--num_processes=2']
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='--xla_force_host_platform_device_count=2')
  # Enough epochs that the run is still training when the signal comes.
  args = [*cnn_args, '--config.num_epochs=50', '--workdir', str(tmp_path / 'w'), *cluster]
  processes = [subprocess.Popen([sys.executable, os.path.join(ROOT, 'main.py'), *args,
                                 f'--process_id={i}'], cwd=ROOT, env=env, text=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for i in (0, 1)]
  try:
    for line in processes[0].stderr:  # Process 0 logs the epochs.
      if ' epoch 1 ' in line:
        break
    start = time.monotonic()
    processes[interrupted].send_signal(signal.SIGINT)
    logs = [p.communicate(timeout=60)[1] for p in processes]
    seconds = time.monotonic() - start
  finally:
    for p in processes:
      p.kill()
  assert [p.returncode for p in processes] == [130, 130], '\n'.join(map(without_stacks, logs))
  assert seconds < 10.0
  for log in logs:
    assert 'Traceback' not in log
    assert log.count('interrupted; rerun the same command to resume') == 1


def test_coordinator_that_nobody_answers_is_one_error_line_after_the_timeout(cnn_args,
                                                                           tmp_path):
  start = time.monotonic()
  result = main_py([*cnn_args, '--workdir', str(tmp_path / 'w'),
                    f'--coordinator_address=127.0.0.1:{free_port()}', '--num_processes=2',
                    '--process_id=1', '--coordinator_timeout=3'])
  assert time.monotonic() - start < 3 + 15  # The time-out, then one line (not JAX's abort).
  assert_one_error_line(result, 'could not start the multi-process run at --coordinator_address='
                                '127.0.0.1:', 'not every process joined within 3 s')
  assert not (tmp_path / 'w').exists()


def test_the_coordinator_waits_60_s_by_default():
  """The default of --coordinator_timeout is the 60 s that docs/usage.md promises."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  import main  # pylint: disable=g-import-not-at-top
  flag_values = flags.FlagValues()
  main.define_flags(flag_values, ['main.py'])
  assert flag_values['coordinator_timeout'].default == parallel.DEFAULT_TIMEOUT == 60
