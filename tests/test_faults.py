"""A crash or a damaged file never makes a rerun lie, never loses a trained run, and never ends in
a traceback; a trained run refuses what would change it, and translates as a Unix filter. Every
run here is a main.py subprocess on small data, as a user runs it (tests/test_faults_commands.py
holds the command's own faults and the signals)."""
import glob
import os
import shutil
import signal
import subprocess
import sys

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


# --- A trained run that the command may not change, and translate as a filter ---------------


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
