"""benchmarks/accelerator_check.py in its CPU mode, so that the GPU/TPU check cannot rot while no
accelerator is lent: every step runs at tiny sizes with the CPU standing in for the accelerator."""
import json
import os
import subprocess
import sys

import jax
import pytest

from conftest import ROOT

SCRIPT = os.path.join(ROOT, 'benchmarks', 'accelerator_check.py')
STEP_KEYS = {
    '1_environment.json': ('devices', 'versions', 'cpu_pins', 'jax_default_matmul_precision',
                           'matmul'),
    '2_correctness.json': ('checks', 'details'),
    '3_throughput.json': ('cnn_batch_8', 'cnn_batch_64', 'translator_batch_64', 'greedy', 'beam'),
    '4_training.json': ('cpu', 'estimate_seconds', 'cnn', 'translator'),
}


@pytest.mark.slow
def test_cpu_mode(tmp_path):
  out = tmp_path / 'check'
  result = subprocess.run([sys.executable, SCRIPT, '--cpu', '--out', str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  files = sorted(os.listdir(out))
  assert files == sorted([*STEP_KEYS, 'summary.md'])  # At most 8 files: these 5.
  steps = {}
  for name, keys in STEP_KEYS.items():
    steps[name] = json.loads((out / name).read_text(encoding='utf-8'))
    assert 'error' not in steps[name], steps[name].get('error')
    assert steps[name]['cpu_mode'] is True
    for key in keys:
      assert key in steps[name], (name, key)

  environment = steps['1_environment.json']
  assert environment['accelerator']['platform'] == 'cpu'
  assert environment['versions']['jax'] and environment['cpu_pins']['jax']
  for side in ('accelerator', 'cpu'):
    assert environment['matmul'][side]['highest_vs_float64'] < 1e-5

  checks = steps['2_correctness.json']['checks']
  names = {(c['name'], c['precision']) for c in checks}
  for model in ('CNN', 'translator'):
    for precision in ('default', 'highest'):
      assert (f'{model} logits', precision) in names
      assert (f'{model} training step loss', precision) in names
  for c in checks:
    if c['name'].endswith('tokens equal'):  # The CPU against itself: the same tokens.
      assert c['value'] == 1.0, c
    else:
      assert c['value'] <= 1e-6, c
    assert c['passed'] is not False, c
  assert {c['name'] for c in checks} >= {'greedy best tokens equal', 'beam 8 best tokens equal'}

  throughput = steps['3_throughput.json']
  for key in ('cnn_batch_8', 'cnn_batch_64', 'translator_batch_64'):
    assert throughput[key]['step_ms'] > 0 and throughput[key]['steps_per_epoch'] > 0
  assert throughput['greedy']['beam_size'] == 1 and throughput['beam']['beam_size'] == 8
  assert throughput['greedy']['sentences'] == throughput['beam']['sentences'] > 0

  training = steps['4_training.json']
  cpu = training['cpu']
  assert 'problem' not in cpu, cpu  # The reports' tables were read.
  assert 0.5 < cpu['cnn']['test_accuracy'] < 1 and 0 < cpu['translator']['test_error_rate'] < 1
  assert training['cnn']['model_impl'] == training['translator']['model_impl'] == 'reference'
  assert training['cnn']['epochs'] == training['translator']['epochs'] == 1
  assert 0 <= training['cnn']['test_accuracy'] <= 1
  assert training['translator']['within_seed_spread'] is None  # Tiny runs are not judged.

  # The table is written, and printed last.
  table = (out / 'summary.md').read_text(encoding='utf-8')
  assert result.stdout.endswith(table)
  assert '| step | what | value | CPU / bound | ok |' in table
  assert '**NO**' not in table
  assert {line.split('|')[1].strip() for line in table.splitlines()
          if line.startswith('| ') and not line.startswith('| step')} == {'1', '2', '3', '4'}


@pytest.mark.slow
def test_skipped_steps_and_bad_flags(tmp_path):
  result = subprocess.run([sys.executable, SCRIPT, '--cpu', '--out', str(tmp_path),
                           '--steps', '1,2', '--skip', '2'], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(os.listdir(tmp_path)) == ['1_environment.json', 'summary.md']
  result = subprocess.run([sys.executable, SCRIPT, '--cpu', '--out', str(tmp_path),
                           '--steps', '5'], cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert result.returncode == 2 and 'steps are [1, 2, 3, 4]' in result.stderr
  cache = tmp_path / 'cache_file'
  cache.write_text('not a folder')
  result = subprocess.run([sys.executable, SCRIPT, '--cpu', '--out', str(tmp_path / 'bad')],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, 'HW2_COMPILATION_CACHE': str(cache)})
  assert result.returncode == 2, result.stderr[-2000:]
  assert [l for l in result.stderr.splitlines() if l.startswith('error:')] == [
      f'error: HW2_COMPILATION_CACHE={cache} cannot hold the compilation cache (a file, not a '
      'folder): give a writable folder, or HW2_COMPILATION_CACHE=off']
  assert 'Traceback' not in result.stderr and not (tmp_path / 'bad').exists()
  if jax.default_backend() == 'cpu':  # Without --cpu, a machine without an accelerator is unfit.
    result = subprocess.run([sys.executable, SCRIPT, '--out', str(tmp_path / 'gpu')], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and 'JAX sees no GPU or TPU' in result.stderr
