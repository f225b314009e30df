"""A workdir has one writer (an OS lock, freed when its process dies), and a failed write (a full
disk) loses nothing: a rerun resumes and reproduces an uninterrupted run."""
import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import orbax.checkpoint as ocp
import pytest

from conftest import ROOT, small_cnn_config
from hw2 import records
from hw2 import train
from hw2 import workdir as workdirs
from hw2.errors import UserError
from test_cli import assert_one_error_line


def cli_args(config, workdir):
  """main.py arguments that reproduce the cnn_config fixture's run."""
  return [sys.executable, os.path.join(ROOT, 'main.py'), '--config', 'configs/cnn.py',
          '--workdir', str(workdir), f'--config.data_dir={config.data_dir}',
          f'--config.validation_size={config.validation_size}',
          f'--config.batch_size={config.batch_size}', f'--config.num_epochs={config.num_epochs}',
          f'--config.steps_per_call={config.steps_per_call}',
          f'--config.eval_batch_size={config.eval_batch_size}',
          f'--config.learning_rate={config.learning_rate}']


def assert_same_run(workdir, reference):
  got, want = records.read_metrics(str(workdir)), records.read_metrics(str(reference))
  assert [r['epoch'] for r in got] == [r['epoch'] for r in want]
  for a, b in zip(got, want):
    assert a['train_loss'] == pytest.approx(b['train_loss'], rel=1e-5)
    assert a['val_accuracy'] == b['val_accuracy']
  got, want = (records.read_json(os.path.join(d, 'results.json')) for d in (workdir, reference))
  assert got['test_accuracy'] == want['test_accuracy']
  assert got['best_epoch'] == want['best_epoch']


@pytest.fixture(scope='module')
def reference_run(small_image_dir, tmp_path_factory):
  """The cnn_config run (2 epochs) trained alone, once for the module's tests (which only read
  it)."""
  workdir = str(tmp_path_factory.mktemp('reference') / 'alone')
  train.train_and_evaluate(small_cnn_config(small_image_dir), workdir)
  return workdir


@pytest.mark.slow
def test_two_writers_started_together_one_trains_the_other_exits(cnn_config, tmp_path,
                                                                 reference_run):
  workdir = tmp_path / 'shared_workdir'
  starts, processes = [], []
  for _ in range(2):
    starts.append(time.monotonic())
    processes.append(subprocess.Popen(cli_args(cnn_config, workdir), cwd=ROOT, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
  ends = [None, None]
  while any(e is None for e in ends):
    for i, p in enumerate(processes):
      if ends[i] is None and p.poll() is not None:
        ends[i] = time.monotonic()
    time.sleep(0.05)
  outputs = [p.communicate(timeout=300) for p in processes]
  codes = [p.returncode for p in processes]
  assert sorted(codes) == [0, 1], outputs
  loser = codes.index(1)
  errors = [l for l in outputs[loser][1].splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and 'Traceback' not in outputs[loser][1]
  assert f'--workdir={workdir} is in use by another run (pid {processes[1 - loser].pid}' in errors[0]
  assert ends[loser] - starts[loser] < 5.0
  assert_same_run(workdir, reference_run)


@pytest.mark.slow
def test_kill_9_frees_the_lock_and_the_rerun_resumes(cnn_config, tmp_path, reference_run):
  workdir = tmp_path / 'killed'
  cnn_config.num_epochs = 2
  holder = subprocess.Popen(cli_args(cnn_config, workdir), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 240
  while not records.read_metrics(str(workdir)) and time.monotonic() < deadline:
    time.sleep(0.05)
  holder.send_signal(signal.SIGKILL)
  holder.wait(timeout=30)
  assert os.path.exists(workdir / workdirs.LOCK_FILE)  # Left behind, but no longer locked.
  rerun = subprocess.run(cli_args(cnn_config, workdir), cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert_same_run(workdir, reference_run)


def test_lock_is_refused_in_process_while_held_elsewhere(tmp_path):
  workdir = str(tmp_path / 'w')
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; sys.path.insert(0, sys.argv[1]);'
       'from hw2 import workdir as w\nwith w.writer(sys.argv[2]):\n print("held", flush=True);'
       ' time.sleep(60)', ROOT, workdir], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'held'
    with pytest.raises(UserError, match=rf'in use by another run \(pid {holder.pid} on '):
      with workdirs.writer(workdir):
        pass
  finally:
    holder.kill()
    holder.wait()
  with workdirs.writer(workdir):  # Free again once the holder is gone.
    with workdirs.writer(workdir):  # Re-entrant within one process.
      pass


def _no_space(*args):
  raise OSError(errno.ENOSPC, 'No space left on device')


def test_full_disk_while_writing_metrics(cnn_config, tmp_path, reference_run, monkeypatch):
  workdir = str(tmp_path / 'full')
  real_replace = os.replace

  def replace(src, dst):
    if str(dst).endswith(records.METRICS_FILE) and len(records.read_metrics(workdir)) == 1:
      _no_space()  # The write of epoch 2's line fails.
    real_replace(src, dst)

  monkeypatch.setattr(os, 'replace', replace)
  with pytest.raises(UserError, match=f'could not write {workdir}/metrics.jsonl: No space left'):
    train.train_and_evaluate(cnn_config, workdir)
  monkeypatch.undo()
  assert [r['epoch'] for r in records.read_metrics(workdir)] == [1]
  assert not [f for f in os.listdir(workdir) if f.startswith('.tmp_')]
  train.train_and_evaluate(cnn_config, workdir)  # Space is back: resumes from epoch 1.
  assert_same_run(workdir, reference_run)


@pytest.mark.slow
def test_full_disk_while_saving_a_checkpoint(cnn_config, tmp_path, reference_run, monkeypatch):
  workdir = str(tmp_path / 'full')
  real_save = ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step == 2:
      _no_space()
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)
  with pytest.raises(UserError, match='could not write the checkpoint of epoch 2 .*'
                                      'No space left on device'):
    train.train_and_evaluate(cnn_config, workdir)
  monkeypatch.undo()
  assert [r['epoch'] for r in records.read_metrics(workdir)] == [1, 2]  # Valid, one line extra.
  train.train_and_evaluate(cnn_config, workdir)
  assert_same_run(workdir, reference_run)


def test_a_changed_or_missing_field_is_another_experiment():
  saved = {'task': 'classification', 'learning_rate': 0.001, 'decode': {'beam_size': 1}}
  assert workdirs.config_differences(saved, {**saved, 'new_option': 0.0}) == ['new_option']
  assert workdirs.config_differences(saved, {**saved, 'learning_rate': 0.01}) == ['learning_rate']
  # Runtime fields may change; tuples and lists (as JSON stores them) are the same value.
  assert workdirs.config_differences({**saved, 'sizes': [1, 2]},
                                     {**saved, 'sizes': (1, 2), 'decode': {'beam_size': 8}}) == []


def _contents(folder):
  """{relative path: bytes} of every file under `folder` but the lock's own (whoever takes the
  lock writes its name there)."""
  files = {}
  for root, _, names in os.walk(folder):
    for name in set(names) - {workdirs.LOCK_FILE, workdirs.OWNER_FILE}:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        files[os.path.relpath(path, folder)] = f.read()
  return files


def test_a_workdir_of_another_format_is_refused_and_left_as_it_was(small_image_dir, tmp_path,
                                                                    reference_run, monkeypatch):
  """A run written in format 1, met by code that reads format 2: training and evaluation refuse
  it with one error naming both formats and the commit that wrote it, and change nothing."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference_run, workdir)
  before = _contents(workdir)
  commit = records.read_json(os.path.join(workdir, 'results.json'))['provenance']['git']['commit']
  monkeypatch.setattr(workdirs, 'FORMAT_VERSION', 2)
  config = small_cnn_config(small_image_dir)
  for run in (train.train_and_evaluate, train.evaluate):
    with pytest.raises(UserError) as error:
      run(config, workdir)
    assert 'holds a run in workdir format 1' in str(error.value)
    assert 'this hw2 reads format 2' in str(error.value) and commit[:12] in str(error.value)
    assert '\n' not in str(error.value)
    assert _contents(workdir) == before


def test_a_workdir_without_a_format_is_format_0(small_image_dir, tmp_path, reference_run):
  """config.json without the field (as hw2 wrote it before the field existed) is refused for
  evaluation before any checkpoint is read; a config file that cannot be read stays damaged."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference_run, workdir)
  path = os.path.join(workdir, records.CONFIG_FILE)
  saved = records.read_json(path)
  assert saved.pop(workdirs.FORMAT_KEY) == workdirs.FORMAT_VERSION
  records.write_json(path, saved)
  with pytest.raises(UserError, match='holds a run in workdir format 0 \\(config.json\\)'):
    train.evaluate(small_cnn_config(small_image_dir), workdir)
  # Through main.py: one error line, before the lock is taken, so not a byte changes.
  before = {name: open(os.path.join(workdir, name), 'rb').read() for name in os.listdir(workdir)
            if os.path.isfile(os.path.join(workdir, name))}
  for mode in ('train', 'eval'):
    result = subprocess.run(cli_args(small_cnn_config(small_image_dir), workdir)[:6]
                            + ['--mode', mode], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert_one_error_line(result, 'workdir format 0 (config.json)', 'reads format 1')
  assert before == {name: open(os.path.join(workdir, name), 'rb').read()
                    for name in os.listdir(workdir) if os.path.isfile(os.path.join(workdir, name))}


def test_atomic_writes_are_fsynced_before_the_rename(tmp_path, monkeypatch):
  calls = []
  real_fsync, real_replace = os.fsync, os.replace
  monkeypatch.setattr(os, 'fsync', lambda fd: (calls.append('fsync'), real_fsync(fd))[1])
  monkeypatch.setattr(os, 'replace', lambda a, b: (calls.append('replace'), real_replace(a, b))[1])
  records.write_json(str(tmp_path / 'results.json'), {'a': 1})
  assert calls[:2] == ['fsync', 'replace']
  assert records.read_json(str(tmp_path / 'results.json')) == {'a': 1}


def test_results_and_checkpoints_record_what_produced_them(cnn_config, tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  from hw2.checkpoint import Checkpoints  # pylint: disable=g-import-not-at-top
  cnn_config.num_epochs = 1
  results = train.train_and_evaluate(cnn_config, str(tmp_path))
  assert results['provenance']['packages']['jax'] == jax.__version__
  assert len(results['provenance']['git']['commit']) == 40  # The tests run in a git checkout.
  machine = results['provenance']['machine']
  assert (machine['platform'], machine['device_count']) == ('cpu', jax.device_count())
  assert machine['processor'] and machine['cores'] == os.cpu_count()
  assert re.fullmatch(r'\d{4}-\d\d-\d\d', results['provenance']['date'])
  assert records.read_json(str(tmp_path / 'config.json'))[workdirs.FORMAT_KEY] == (
      workdirs.FORMAT_VERSION)
  checkpoints = Checkpoints(str(tmp_path))
  meta = checkpoints.latest_meta()
  checkpoints.close()
  assert meta['provenance'] == results['provenance']
  assert meta['config'] == workdirs.as_json(cnn_config)
  assert meta[workdirs.FORMAT_KEY] == workdirs.FORMAT_VERSION
  assert [r['epoch'] for r in meta['history']] == [1]
