"""A crash, a signal or a damaged file never makes a rerun lie, never loses a trained run, and never
ends in a traceback. Every run here is a main.py subprocess on small data, as a user runs it."""
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, homework_pairs_folder
from hw2 import records
from test_cli import assert_one_error_line

pytestmark = pytest.mark.slow  # Trains, or starts main.py processes that do.

TIMEOUT = 300
HOOKED_MAIN = os.path.join(ROOT, 'tests', 'main_with_save_hook.py')
TIMINGS = ('train_seconds', 'examples_per_second')


def main_py(args, env=None, stdin=None, main=HOOKED_MAIN):
  return subprocess.run([sys.executable, main, *args], cwd=ROOT, capture_output=True, text=True,
                        input=stdin, timeout=TIMEOUT, env=dict(os.environ, **(env or {})))


def warnings_of(result):
  return [line for line in result.stderr.splitlines() if line.startswith('W')]


def assert_clean_exit(result, code=0):
  assert result.returncode == code, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr, result.stderr[-3000:]


@pytest.fixture(scope='module')
def s2s_args(tmp_path_factory):
  """Translation with attention on 300 homework pairs, hidden 32: seconds per run."""
  folder = homework_pairs_folder(tmp_path_factory.mktemp('fault_data'),
                                {'train': 300, 'val': 64, 'test': 64})
  return ['--config', 'configs/seq2seq_attention.py', f'--config.data_dir={folder}',
          '--config.model.hidden_size=32', '--config.batch_size=32', '--config.num_epochs=2',
          '--config.num_attention_plots=1']


@pytest.fixture(scope='module')
def reference(s2s_args, tmp_path_factory):
  """The uninterrupted run."""
  workdir = str(tmp_path_factory.mktemp('reference') / 'run')
  assert_clean_exit(main_py([*s2s_args, '--workdir', workdir]))
  return workdir


def output_files(workdir):
  """The run's own files (figures, translations, records), without the event log, lock files
  and checkpoints."""
  return sorted(f for f in os.listdir(workdir)
                if not f.startswith('.') and f not in ('tensorboard', 'checkpoints'))


def checkpoint_epochs(workdir):
  return sorted(int(f) for f in os.listdir(os.path.join(workdir, 'checkpoints')) if f.isdigit())


def assert_same_end_state(workdir, reference_dir):
  """metrics.jsonl (every field but timings), results.json (best epoch, validation and test
  metrics), the output files and the translations equal those of the reference run."""
  strip = lambda history: [{k: v for k, v in r.items() if k not in TIMINGS} for r in history]
  assert strip(records.read_metrics(workdir)) == strip(records.read_metrics(reference_dir))
  got, want = (records.read_json(os.path.join(d, 'results.json')) for d in (workdir, reference_dir))
  for key in want:
    if key in ('best_epoch', 'epochs_trained', 'val_error_rate') or key.startswith('test_'):
      assert got[key] == want[key], key
  assert output_files(workdir) == output_files(reference_dir)
  for name in ('test_translations.tsv', 'config.json', 'vocab.json'):
    with open(os.path.join(workdir, name), encoding='utf-8') as a, \
         open(os.path.join(reference_dir, name), encoding='utf-8') as b:
      assert a.read() == b.read(), name
  assert checkpoint_epochs(workdir) == checkpoint_epochs(reference_dir)
  assert not glob.glob(os.path.join(workdir, 'checkpoints', '*tmp*'))


# The points of the last (second) epoch's end, in the order hw2/workdir.py gives.
PHASES = ['recorded:2', 'checkpoint-save:2', 'saved:2', 'tested', 'curves', 'outputs', 'results']


@pytest.mark.parametrize('phase', PHASES)
def test_killed_at_any_point_of_the_end_the_rerun_gives_the_uninterrupted_files(
    s2s_args, reference, tmp_path, phase):
  workdir = str(tmp_path / 'run')
  killed = main_py([*s2s_args, '--workdir', workdir], env={'HW2_KILL_AT': phase})
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  if phase == 'checkpoint-save:2':  # Killed inside the save: its temporary folder is left.
    assert glob.glob(os.path.join(workdir, 'checkpoints', '2.orbax-checkpoint-tmp*'))
  if phase != 'results':
    assert not os.path.exists(os.path.join(workdir, 'results.json'))
  rerun = main_py([*s2s_args, '--workdir', workdir])
  assert_clean_exit(rerun)
  assert_same_end_state(workdir, reference)
  finished = 'nothing to do' in rerun.stderr
  assert finished == (phase == 'results')


def _largest_data_file(workdir, epoch):
  return max(glob.glob(os.path.join(workdir, 'checkpoints', str(epoch), 'state', '**', 'd', '*'),
                       recursive=True), key=os.path.getsize)


def _truncate(path, size=None):
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2 if size is None else size)


def _garbage(path):
  with open(path, 'wb') as f:
    f.write(os.urandom(max(os.path.getsize(path), 64)))


def _flip_a_byte(path):
  with open(path, 'rb') as f:
    data = bytearray(f.read())
  data[len(data) // 2] ^= 0xFF
  with open(path, 'wb') as f:
    f.write(bytes(data))


def _ckpt(*parts):
  return lambda w: os.path.join(w, 'checkpoints', *parts)


# Damage to the latest checkpoint (epoch 2): training falls back to epoch 1, says so, and ends
# with the reference's files.
LATEST_DAMAGE = {
    'data file cut short': lambda w: _truncate(_largest_data_file(w, 2), 100),
    'data file garbage': lambda w: _garbage(_largest_data_file(w, 2)),
    'data file with one byte flipped': lambda w: _flip_a_byte(_largest_data_file(w, 2)),
    'manifest deleted': lambda w: os.remove(_ckpt('2', 'state', 'manifest.ocdbt')(w)),
    'state folder deleted': lambda w: shutil.rmtree(_ckpt('2', 'state')(w)),
    'array metadata garbage': lambda w: _garbage(_ckpt('2', 'state', '_METADATA')(w)),
    'meta garbage': lambda w: _garbage(_ckpt('2', 'meta', 'metadata')(w)),
}


@pytest.mark.parametrize('kind', sorted(LATEST_DAMAGE))
def test_damaged_latest_checkpoint_resumes_from_the_one_before(s2s_args, reference, tmp_path,
                                                              kind):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  LATEST_DAMAGE[kind](workdir)
  rerun = main_py([*s2s_args, '--workdir', workdir])
  assert_clean_exit(rerun)
  said = '\n'.join(warnings_of(rerun))
  assert f'checkpoint {workdir}/checkpoints/2 is damaged' in said
  assert 'resuming from the intact checkpoint of epoch 1' in said
  assert_same_end_state(workdir, reference)


def test_damaged_best_checkpoint_is_one_error_line_for_eval(s2s_args, reference, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  best = records.read_json(os.path.join(workdir, 'results.json'))['best_epoch']
  _flip_a_byte(_largest_data_file(workdir, best))
  result = main_py([*s2s_args, '--workdir', workdir, '--mode', 'eval'])
  assert_one_error_line(result, f'checkpoint {workdir}/checkpoints/{best} is damaged',
                        'differ from the checksum')


def test_every_checkpoint_damaged_is_one_error_line(s2s_args, reference, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  for epoch in checkpoint_epochs(workdir):
    _truncate(_largest_data_file(workdir, epoch), 10)
  before = records.read_json(os.path.join(workdir, 'results.json'))
  result = main_py([*s2s_args, '--workdir', workdir, '--config.num_epochs=3'])
  assert_one_error_line(result, f'checkpoint {workdir}/checkpoints/2 is damaged',
                        'every older checkpoint', 'train anew')
  assert records.read_json(os.path.join(workdir, 'results.json')) == before


@pytest.mark.parametrize('name', ['metrics.jsonl', 'config.json', 'results.json', 'vocab.json'])
@pytest.mark.parametrize('damage', ['cut short', 'a JSON list'])
def test_damaged_json_file_is_repaired_by_the_training_rerun(s2s_args, reference, tmp_path, name,
                                                            damage):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  path = os.path.join(workdir, name)
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2] if damage == 'cut short' else b'[1, 2]\n')
  rerun = main_py([*s2s_args, '--workdir', workdir])
  assert_clean_exit(rerun)
  if name != 'config.json':  # config.json is rewritten by every run, after its checks.
    assert any(path in line for line in warnings_of(rerun)), rerun.stderr[-2000:]
  assert_same_end_state(workdir, reference)


@pytest.mark.parametrize('mode', ['eval', 'translate'])
def test_damaged_config_json_is_read_from_the_checkpoint(s2s_args, reference, tmp_path, mode):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  with open(os.path.join(workdir, 'config.json'), 'w', encoding='utf-8') as f:
    f.write('{"task": "transl')
  result = main_py([*s2s_args, '--workdir', workdir, '--mode', mode, '--text', 'hola .'])
  assert_clean_exit(result)
  assert any('config.json is damaged' in line and 'using the config saved in checkpoint 2' in line
             for line in warnings_of(result))


def test_damaged_vocabulary_is_one_error_line_for_translate(s2s_args, reference, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  _truncate(os.path.join(workdir, 'vocab.json'))
  result = main_py([*s2s_args, '--workdir', workdir, '--mode', 'translate', '--text', 'hola .'])
  assert_one_error_line(result, f'{workdir}/vocab.json is damaged', 'rerun the training command')


# --- Every other case ends without a traceback --------------------------------------------------


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


def test_lost_config_json_cannot_let_another_experiment_continue(s2s_args, reference, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  os.remove(os.path.join(workdir, 'config.json'))
  result = main_py([*s2s_args, '--workdir', workdir, '--config.num_epochs=3',
                    '--config.learning_rate=0.01'])
  assert_one_error_line(result, 'learning_rate=0.003 but this config has learning_rate=0.01',
                        'its checkpoint of epoch 2')
  assert not os.path.exists(os.path.join(workdir, 'config.json'))
  assert checkpoint_epochs(workdir) == checkpoint_epochs(reference)


def test_fewer_epochs_than_trained_is_refused_and_changes_nothing(s2s_args, reference, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  config = open(os.path.join(workdir, 'config.json'), encoding='utf-8').read()
  result = main_py([*s2s_args, '--workdir', workdir, '--config.num_epochs=1'])
  assert_one_error_line(result, '--config.num_epochs=1 but', 'already holds 2 trained epochs')
  assert open(os.path.join(workdir, 'config.json'), encoding='utf-8').read() == config


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


def test_translate_is_a_unix_filter(s2s_args, reference):
  args = [*s2s_args, '--workdir', reference, '--mode', 'translate']
  command = ' '.join([sys.executable, HOOKED_MAIN, *args])
  shell = lambda line: subprocess.run(line, shell=True, cwd=ROOT, capture_output=True, text=True,
                                      timeout=TIMEOUT, executable='/bin/bash')
  # A reader that stops early (EPIPE, also at the final flush): quiet, status 0.
  piped = shell(f'yes "hola ." | head -3000 | {command} | head -1; '
                'echo "status ${PIPESTATUS[2]}"')
  assert piped.stdout.count('\n') == 2 and piped.stdout.endswith('status 0\n'), piped.stderr
  assert 'Traceback' not in piped.stderr and 'Exception ignored' not in piped.stderr
  # A full disk.
  assert_one_error_line(shell(f'{command} --text "hola ." > /dev/full'),
                        'could not write the translations to standard output',
                        'No space left on device')
  # Closed standard input.
  assert_one_error_line(shell(f'{command} 0<&-'), 'nothing to translate', 'closed')
  # Input that is not UTF-8, under a strict UTF-8 locale.
  bad = subprocess.run([sys.executable, HOOKED_MAIN, *args], cwd=ROOT, capture_output=True,
                       input=b'hola .\nadi\xf3s .\n', timeout=TIMEOUT,
                       env=dict(os.environ, PYTHONIOENCODING='utf-8'))
  bad.stderr = bad.stderr.decode()
  assert_one_error_line(bad, 'standard input line 2 is not UTF-8 text (byte 0xf3 at column 4)')
  # An empty line gives an empty line: output stays aligned with input.
  aligned = main_py(args, stdin='hola .\n\nadios .\n')
  assert_clean_exit(aligned)
  lines = aligned.stdout.split('\n')
  assert len(lines) == 4 and lines[1] == '' and lines[3] == ''
  # An empty --text is refused.
  assert_one_error_line(main_py([*args, '--text', ' ']), '--text is empty')


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
