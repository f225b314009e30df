"""The command's own faults end in one line and no traceback, and change nothing: a resume that
would change the vocabulary, a test sentence longer than the decoder takes, a read-only workdir,
eval of an empty folder, a config file that does not fit, a relative data folder seen from
elsewhere, and a signal in the middle of a whole-epoch call. Every run is a main.py subprocess on
small data, as a user runs it (tests/test_faults.py holds the faults of a run's files)."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from test_cli import assert_one_error_line
from test_faults import HOOKED_MAIN
from test_faults import TIMEOUT
from test_faults import assert_clean_exit
from test_faults import main_py
from test_faults import s2s_args  # pylint: disable=unused-import  # A fixture.

pytestmark = pytest.mark.slow  # Starts main.py processes, most of which train.


def _with_data(args, folder):
  return [a if not a.startswith('--config.data_dir=') else f'--config.data_dir={folder}'
          for a in args]


def test_refused_resume_leaves_the_vocabulary_and_the_run_as_they_were(s2s_args, tmp_path):
  data = tmp_path / 'data'
  shutil.copytree(s2s_args[2].split('=', 1)[1], data)
  args, workdir = _with_data(s2s_args, data), str(tmp_path / 'run')
  assert_clean_exit(main_py([*args, '--workdir', workdir, '--config.num_epochs=1']))
  with open(data / 'train-eng-spa.txt', 'a', encoding='utf-8') as f:
    f.write('zzz.\tjamas quiza.\t42\n')  # The sources gain characters.
  vocab = open(os.path.join(workdir, 'vocab.json'), encoding='utf-8').read()
  result = main_py([*args, '--workdir', workdir])
  assert_one_error_line(result, 'the training data gives another vocab.json than the one that '
                                f'--workdir={workdir} was trained with')
  assert open(os.path.join(workdir, 'vocab.json'), encoding='utf-8').read() == vocab
  translated = main_py([*args, '--workdir', workdir, '--mode', 'translate', '--text', 'hola .'])
  assert_clean_exit(translated)
  assert translated.stdout.count('\n') == 1


def test_test_sentence_longer_than_the_decoder_takes_is_refused_before_training(s2s_args,
                                                                               tmp_path):
  workdir = tmp_path / 'run'
  result = main_py([*s2s_args, '--workdir', str(workdir), '--config.decode.max_source_length=10'])
  assert_one_error_line(result, 'val-eng-spa.txt: pair 1 has a source of',
                        '--config.decode.max_source_length=10')
  assert not workdir.exists()


@pytest.fixture
def read_only_folder(tmp_path):
  """A read-only tmpfs mount (root can write anywhere else); skipped where mounting is denied."""
  folder = tmp_path / 'ro'
  folder.mkdir()
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', str(folder)],
                           capture_output=True, check=False)
  if mounted.returncode:
    pytest.skip(f'cannot mount a read-only file system here: {mounted.stderr!r}')
  yield folder
  subprocess.run(['umount', str(folder)], check=False)


@pytest.mark.parametrize('mode', ['train', 'eval'])
def test_read_only_workdir_is_one_error_line(s2s_args, read_only_folder, mode):
  result = main_py([*s2s_args, '--workdir', str(read_only_folder), '--mode', mode])
  assert_one_error_line(result, f'--workdir={read_only_folder}', 'Read-only file system')


def test_empty_folder_eval_leaves_no_lock_files(s2s_args, tmp_path):
  result = main_py([*s2s_args, '--workdir', str(tmp_path), '--mode', 'eval'])
  assert_one_error_line(result, 'no trained run in --workdir')
  assert os.listdir(tmp_path) == []


CONFIG_SOURCES = {
    'no_task': 'import ml_collections\ndef get_config():\n'
               '  return ml_collections.ConfigDict({"seed": 1})\n',
    'dict': 'def get_config():\n  return {"task": "classification"}\n',
    'syntax': 'import ml_collections\ndef get_config(:\n  pass\n',
    'raises': 'def get_config():\n  x = 1\n  raise ValueError("no such setting")\n',
}


@pytest.mark.parametrize('config, extra, fragment', [
    ('configs/cnn.py', ['--config.task=translation'],
     "--config.task='translation' needs the field(s) train_file"),
    ('configs/cnn.py', ['--sweep', 'task=classification,translation'], 'task cannot be swept'),
    ('configs/cnn.py', ['--sweep', 'learning_rate=1e-3,0.001'],
     'repeats a value (1e-3 and 0.001 are both 0.001)'),
    ('configs/cnn.py', ['--mode', 'eval', '--sweep', 'learning_rate=1e-3,1e-2'],
     "--sweep trains; for --mode eval give one member's --workdir"),
    ('configs/cnn.py', ['stray'], "unexpected argument 'stray'"),
    ('configs/cnn.py', ['--coordinator_address=127.0.0.1:abc', '--num_processes=2',
                        '--process_id=1'], 'must be HOST:PORT with a port in [1, 65535]'),
    ('no_task', [], 'the config has no field task'),
    ('dict', [], 'the config is a dict: get_config() must return an ml_collections.ConfigDict'),
    ('syntax', [], 'syntax.py, line 2: invalid syntax'),
    ('raises', [], 'raises.py, line 3: get_config() raised ValueError: no such setting'),
])
def test_config_that_does_not_fit_is_one_error_line(tmp_path, config, extra, fragment):
  if config in CONFIG_SOURCES:
    path = tmp_path / f'{config}.py'
    path.write_text(CONFIG_SOURCES[config])
    config = str(path)
  workdir = tmp_path / 'w'
  result = main_py(['--config', config, '--workdir', str(workdir), *extra])
  assert_one_error_line(result, fragment)
  assert not workdir.exists()


def test_relative_data_dir_is_the_same_experiment_from_anywhere(s2s_args, tmp_path):
  shutil.copytree(s2s_args[2].split('=', 1)[1], tmp_path / 'data')
  workdir = str(tmp_path / 'run')

  def run(cwd, data_dir, *extra):
    args = [os.path.join(ROOT, a) if a.startswith('configs/') else a
            for a in _with_data(s2s_args, data_dir)]
    return subprocess.run([sys.executable, HOOKED_MAIN, *args,
                           '--workdir', workdir, '--config.num_epochs=1', *extra], cwd=cwd,
                          capture_output=True, text=True, timeout=TIMEOUT)
  assert_clean_exit(run(str(tmp_path), 'data'))
  again = run(str(tmp_path), './data')
  assert_clean_exit(again)
  assert 'nothing to do' in again.stderr
  assert_clean_exit(run('/', 'unused', '--mode', 'eval'))  # From another folder.


def interrupt(command, signum, wait_for, env=None):
  """Starts `command`, sends `signum` 2 s after `wait_for` appears in its log; returns (process,
  seconds from the signal to the exit, its log)."""
  process = subprocess.Popen(command, cwd=ROOT, text=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=env)
  lines = []
  for line in process.stderr:
    lines.append(line)
    if wait_for in line:
      break
  time.sleep(2.0)
  start = time.monotonic()
  process.send_signal(signum)
  rest = process.communicate(timeout=60)[1]
  return process, time.monotonic() - start, ''.join(lines) + rest


@pytest.mark.parametrize('signum, status', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_ends_a_whole_epoch_call_at_once_with_one_line(tmp_path, signum, status):
  # The homework's translation data: one jitted call trains the whole epoch (steps_per_call=0).
  command = [sys.executable, HOOKED_MAIN, '--config', 'configs/seq2seq.py', '--workdir',
             str(tmp_path / 'run'), '--config.num_epochs=1', '--config.steps_per_call=0']
  process, seconds, log = interrupt(command, signum, 'Parameters of the')
  assert process.returncode == status, log[-2000:]
  assert seconds < 5.0
  assert 'Traceback' not in log and 'KeyboardInterrupt' not in log
  assert [l for l in log.splitlines() if 'interrupted' in l] == [
      'interrupted; rerun the same command to resume']
