"""Data parallel runs: 4 forced CPU devices reproduce 1 device, two processes (jax.distributed on
127.0.0.1, 2 devices each) reproduce one process with 4, and checkpoints move between device
counts. Each multi-device run is a main.py subprocess bounded by a timeout (tests/test_processes.py
holds the edges of a multi-process run: bad cluster flags, interrupts, a silent coordinator)."""
import os
import socket
import subprocess
import sys

import pytest

from conftest import ROOT, homework_pairs_folder
from hw2 import records

pytestmark = pytest.mark.slow  # Trains, or starts main.py processes that do.

TIMEOUT = 300


def main_py(args, devices=1, process=None):
  """main.py in a subprocess seeing `devices` CPU devices; returns the CompletedProcess (or the
  Popen, when `process` is given, for several processes started together)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')
  command = [sys.executable, os.path.join(ROOT, 'main.py'), *args]
  if process is not None:
    return subprocess.Popen(command, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
  return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=TIMEOUT)


def trained(args, workdir, devices=1):
  result = main_py([*args, '--workdir', str(workdir)], devices)
  assert result.returncode == 0, result.stderr[-3000:]
  return str(workdir)


def assert_same_numbers(workdir, reference, metric, loss_tolerance=1e-4):
  got, want = records.read_metrics(workdir), records.read_metrics(reference)
  assert [r['epoch'] for r in got] == [r['epoch'] for r in want]
  for a, b in zip(got, want):
    # Float rounding only: the devices' products differ in shape and so round differently in the
    # last bits.
    assert abs(a['train_loss'] - b['train_loss']) <= loss_tolerance * abs(b['train_loss'])
    assert a[f'val_{metric}'] == pytest.approx(b[f'val_{metric}'], abs=0.006)
  got, want = (records.read_json(os.path.join(d, 'results.json')) for d in (workdir, reference))
  assert got[f'test_{metric}'] == pytest.approx(want[f'test_{metric}'], abs=0.006)


@pytest.fixture(scope='module')
def cnn_args(small_image_dir):
  """The cnn_config fixture's run as flags, with batches that divide by 4 devices."""
  return ['--config', 'configs/cnn.py', f'--config.data_dir={small_image_dir}',
          '--config.validation_size=200', '--config.batch_size=48', '--config.num_epochs=2',
          '--config.steps_per_call=8', '--config.eval_batch_size=128',
          '--config.learning_rate=1e-3']


@pytest.fixture(scope='module', params=['auto', 'reference'])
def impl(request):
  """config.model.impl: 'auto' (the fast CNN on CPU) and the reference."""
  return request.param


@pytest.fixture(scope='module')
def cnn_runs(cnn_args, impl, tmp_path_factory):
  folder = tmp_path_factory.mktemp(f'cnn_devices_{impl}')
  return {n: trained([*cnn_args, f'--config.model.impl={impl}'], folder / f'devices_{n}',
                     devices=n) for n in (1, 4)}


# The reference CNN's epoch-1 losses are equal on 4 devices and 1; its epoch-2 losses differ by
# 1.35e-4 relative on one CPU and 2.43e-4 on another (nn.Conv's kernel gradients, summed per
# device and then across devices, round differently from one sum over the batch, and how depends
# on the CPU's kernels), above the 1e-4 the fast CNN keeps. Open: BUILD.md.
LOSS_TOLERANCE = {'auto': 1e-4, 'reference': 5e-4}


def test_cnn_on_4_devices_equals_1_device(cnn_runs, impl):
  assert_same_numbers(cnn_runs[4], cnn_runs[1], 'accuracy', LOSS_TOLERANCE[impl])


@pytest.fixture(scope='module')
def s2s_args(tmp_path_factory):
  """Translation on 300 homework pairs, hidden 32, batches that divide by 4 devices."""
  folder = homework_pairs_folder(tmp_path_factory.mktemp('s2s_data'),
                                {'train': 300, 'val': 96, 'test': 96})
  return ['--config', 'configs/seq2seq_attention.py', f'--config.data_dir={folder}',
          '--config.model.hidden_size=32', '--config.batch_size=48', '--config.num_epochs=2',
          '--config.eval_batch_size=32', '--config.num_attention_plots=1']


def transformer_args(s2s_args):
  """s2s_args for a small Transformer (configs/transformer.py)."""
  args = ['configs/transformer.py' if a == 'configs/seq2seq_attention.py' else a
          for a in s2s_args if not a.startswith('--config.model.')]
  return [*args, '--config.model.hidden_size=32', '--config.model.num_layers=1',
          '--config.model.ff_size=64', '--config.warmup_steps=10']


@pytest.mark.parametrize('architecture', ['lstm', 'transformer'])
def test_translation_on_4_devices_equals_1_device_and_translates_on_1(s2s_args, tmp_path,
                                                                      architecture):
  args = s2s_args if architecture == 'lstm' else transformer_args(s2s_args)
  one = trained(args, tmp_path / 'devices_1', devices=1)
  four = trained(args, tmp_path / 'devices_4', devices=4)
  assert_same_numbers(four, one, 'error_rate')
  # The 4-device checkpoint translates on 1 device exactly as the 1-device one does.
  texts = ['--text', 'tengo hambre .', '--text', 'vine por ustedes .']
  outputs = [main_py(['--config', 'configs/seq2seq.py', '--workdir', w, '--mode', 'translate',
                      *texts]) for w in (one, four)]
  assert all(o.returncode == 0 for o in outputs), outputs[1].stderr[-2000:]
  assert outputs[0].stdout == outputs[1].stdout and len(outputs[0].stdout.splitlines()) == 2


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


# How a run splits over processes and devices (hw2/parallel.py, the loop, the checkpoints) is the
# same whatever computes the model, so the tests of processes and of moved checkpoints take one
# implementation each: the reference, which is what runs on a cluster of accelerators, and the
# fast CNN, which is what a CPU user resumes; both equal 1 device on 4 above.
@pytest.mark.parametrize('impl', ['reference'], indirect=True)
def test_two_processes_train_one_run_that_evaluates_on_one_device(cnn_args, impl, cnn_runs,
                                                                    tmp_path):
  workdir = str(tmp_path / 'two_processes')
  cluster = [f'--coordinator_address=127.0.0.1:{free_port()}', '--num_processes=2']
  processes = [main_py([*cnn_args, f'--config.model.impl={impl}', '--workdir', workdir, *cluster,
                        f'--process_id={i}'], devices=2, process=i) for i in (0, 1)]
  outputs = []
  for p in processes:
    try:
      outputs.append(p.communicate(timeout=TIMEOUT)[0])
    finally:
      p.kill()
  assert [p.returncode for p in processes] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
  # One writer: one line per epoch, and the numbers of one process with 4 devices.
  assert_same_numbers(workdir, cnn_runs[4], 'accuracy', LOSS_TOLERANCE[impl])
  assert 'Training on 4 device(s) in 2 process(es)' in outputs[0]
  evaluation = main_py(['--config', 'configs/cnn.py', '--workdir', workdir, '--mode', 'eval'])
  assert evaluation.returncode == 0, evaluation.stderr[-2000:]
  assert (records.read_json(os.path.join(workdir, 'eval_results.json'))['test_accuracy'] ==
          records.read_json(os.path.join(workdir, 'results.json'))['test_accuracy'])


@pytest.mark.parametrize('impl', ['auto'], indirect=True)
def test_run_started_on_4_devices_resumes_on_1(cnn_args, cnn_runs, impl, tmp_path):
  workdir = tmp_path / 'moved'
  trained([*cnn_args, '--config.num_epochs=1'], workdir, devices=4)
  trained(cnn_args, workdir, devices=1)
  assert_same_numbers(str(workdir), cnn_runs[1], 'accuracy', LOSS_TOLERANCE[impl])
