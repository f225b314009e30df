"""main.py on bad input: one 'error:' line on stderr, exit status 1, no traceback, nothing lost."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, write_idx_folder


def run_main(*args, stdin=None):
  return subprocess.run([sys.executable, os.path.join(ROOT, 'main.py'), *args], cwd=ROOT,
                        capture_output=True, text=True, input=stdin, timeout=300)


def assert_one_error_line(result, *fragments):
  assert result.returncode == 1, result.stderr[-2000:]
  assert 'Traceback' not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
  assert len(errors) == 1, result.stderr[-2000:]
  for fragment in fragments:
    assert fragment in errors[0]


@pytest.fixture(scope='module')
def corrupt_dir(tmp_path_factory):
  folder = write_idx_folder(str(tmp_path_factory.mktemp('corrupt')), np.zeros((20, 28, 28)),
                            np.zeros(20), np.zeros((5, 28, 28)), np.zeros(4))
  return folder


@pytest.mark.parametrize('args, fragments', [
    (['--config.data_dir=/nonexistent/idx'], ['data folder not found', '/nonexistent/idx']),
    (['--config.dataset=cifar10'], ["unknown dataset 'cifar10'"]),
    (['--config.no_such_key=1'], ["unknown config key 'no_such_key'"]),
    (['--config.learning_rate=fast'], ['--config.learning_rate=fast']),
    (['--mode=eval'], ['no trained run in --workdir']),
    (['--sweep=learning_rate'], ['malformed', 'KEY=V1,V2']),
])
def test_bad_input_gives_one_error_line(tmp_path, args, fragments):
  result = run_main('--config', 'configs/cnn.py', '--workdir', str(tmp_path / 'w'), *args)
  assert_one_error_line(result, *fragments)


def test_corrupt_data_folder_names_the_file_and_writes_nothing(tmp_path, corrupt_dir):
  workdir = tmp_path / 'w'
  result = run_main('--config', 'configs/cnn.py', '--workdir', str(workdir),
                    f'--config.data_dir={corrupt_dir}', '--config.validation_size=5')
  assert_one_error_line(result, 't10k-images-idx3-ubyte.gz', 'holds 5 images', 'holds 4 labels')
  assert not (workdir / 'checkpoints').exists() and not (workdir / 'results.json').exists()


def test_importing_hw2_changes_no_global_state():
  """What the CLI needs silenced or set is installed by main.py, not by importing a module: a
  notebook that imports hw2 keeps its unraisable hook, asyncio's log and matplotlib's backend."""
  program = '\n'.join([
      'import asyncio, logging, sys',
      'import matplotlib',
      'matplotlib.use("svg")',
      'before = (sys.unraisablehook, list(logging.getLogger("asyncio").filters),',
      '          matplotlib.get_backend())',
      'import hw2.train, hw2.checkpoint, hw2.translate, hw2.plots, hw2.homework, hw2.beyond',
      'after = (sys.unraisablehook, list(logging.getLogger("asyncio").filters),',
      '         matplotlib.get_backend())',
      'print(before == after, after[2])'])
  done = subprocess.run([sys.executable, '-c', program], cwd=ROOT, capture_output=True, text=True,
                        timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.split() == ['True', 'svg']


def test_a_compilation_cache_that_is_a_file_is_one_error_line(tmp_path):
  """HW2_COMPILATION_CACHE names a file: one error line before anything is written."""
  cache = tmp_path / 'cache'
  cache.write_text('not a folder')
  result = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'main.py'), '--config', 'configs/theory.py',
       '--workdir', str(tmp_path / 'w')], cwd=ROOT, capture_output=True, text=True, timeout=120,
      env={**os.environ, 'HW2_COMPILATION_CACHE': str(cache)})
  assert_one_error_line(result, f'HW2_COMPILATION_CACHE={cache} cannot hold the compilation '
                                'cache (a file, not a folder)')
  assert not (tmp_path / 'w').exists()


def test_the_compilation_cache_folder_and_its_switches():
  from hw2 import cli  # pylint: disable=g-import-not-at-top
  assert cli.compilation_cache_dir({'HOME': '/h'}) == os.path.join(
      os.path.expanduser('~'), '.cache', 'hw2', 'jax')
  assert cli.compilation_cache_dir({'XDG_CACHE_HOME': '/x'}) == '/x/hw2/jax'
  assert cli.compilation_cache_dir({'HW2_COMPILATION_CACHE': 'off'}) is None
  assert cli.compilation_cache_dir({'HW2_COMPILATION_CACHE': '/c'}) == '/c'


CACHE_PROBE = '''
import json
import sys
sys.path.insert(0, {root!r})
from hw2 import cli
cli.enable_compilation_cache()
import jax
import jax.numpy as jnp
import numpy as np
hits, seconds = [], []
jax.monitoring.register_event_listener(
    lambda event, **kwargs: hits.append(event) if event.endswith('/cache_hits') else None)
jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kwargs: seconds.append(duration)
    if event == '/jax/core/compile/backend_compile_duration' else None)

def slow(x):  # 40 matrix products, unrolled: well over CACHE_MIN_COMPILE_SECONDS to compile.
  for i in range(40):
    x = jnp.tanh(x @ x.T) + i
  return x

value = np.asarray(jax.jit(slow)(np.ones((8, 8), np.float32)))
tiny = [np.asarray(jax.jit(lambda x: x + 7)(np.ones(n, np.float32))).tolist() for n in range(1, 6)]
print(json.dumps({{'hits': len(hits), 'seconds': seconds, 'outputs': [value.tolist(), tiny]}}))
'''


@pytest.mark.slow
def test_the_cache_keeps_what_takes_time_to_compile_and_a_new_process_loads_it(tmp_path):
  """Two processes compile the same programs, one slow and five tiny: the first stores those that
  took CACHE_MIN_COMPILE_SECONDS or more to compile (compiling a tiny one again is cheaper than a
  store), the second loads every stored one and computes the same."""
  from hw2 import cli  # pylint: disable=g-import-not-at-top
  env = {**os.environ, 'HW2_COMPILATION_CACHE': str(tmp_path / 'cache')}
  runs, entries = [], []
  for _ in range(2):
    done = subprocess.run([sys.executable, '-c', CACHE_PROBE.format(root=ROOT)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    runs.append(json.loads(done.stdout))
    entries.append(len([f for f in os.listdir(tmp_path / 'cache') if f.endswith('-cache')]))
  # A program that compiles in about the threshold may fall either way on a busy machine (tiny
  # ones take 0.005-0.05 s): what the cache holds lies between what took twice the threshold and
  # what took half of it.
  threshold, seconds = cli.CACHE_MIN_COMPILE_SECONDS, runs[0]['seconds']
  assert seconds[0] >= 2 * threshold, seconds  # The slow program.
  assert 1 <= sum(s >= 2 * threshold for s in seconds) <= entries[0]
  assert entries[0] <= sum(s >= threshold / 2 for s in seconds), (entries[0], seconds)
  assert runs[0]['hits'] == 0 and runs[1]['hits'] == entries[0] == entries[1]
  assert runs[1]['outputs'] == runs[0]['outputs']
