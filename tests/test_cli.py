"""main.py on bad input: one 'error:' line on stderr, exit status 1, no traceback, nothing lost."""
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
