"""configs/homework.py end to end through the CLI, shrunk: interrupted once and resumed, then the
report's tables, figures and its rebuild by --mode report."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, SPA_ENG_DIR
from hw2 import records
from test_cli import run_main

pytestmark = pytest.mark.slow  # Trains, or starts main.py processes that do.


def shrunk_flags(small_image_dir, text_dir):
  return ['--config', 'configs/homework.py',
          f'--config.cnn.data_dir={small_image_dir}', '--config.cnn.validation_size=200',
          '--config.cnn.batch_size=50', '--config.cnn.num_epochs=1',
          f'--config.translation.data_dir={text_dir}', '--config.translation.num_epochs=1',
          '--config.translation.model.hidden_size=32', '--config.translation.eval_batch_size=32',
          '--config.translation.num_attention_plots=2',
          '--config.beam_sizes=(1, 2)', '--config.length_penalties=(0.0,)']


def test_homework_runs_resumes_and_reports(tmp_path, small_image_dir):
  text_dir = tmp_path / 'pairs'
  text_dir.mkdir()
  for name, lines in (('train', 400), ('val', 64), ('test', 64)):
    with open(os.path.join(SPA_ENG_DIR, f'{name}-eng-spa.txt'), encoding='utf-8') as f:
      (text_dir / f'{name}-eng-spa.txt').write_text(''.join(f.readlines()[:lines]),
                                                    encoding='utf-8')
  workdir = tmp_path / 'homework'
  args = [*shrunk_flags(small_image_dir, text_dir), '--workdir', str(workdir)]

  # Interrupt it once the CNN part has finished (the translation part is then under way).
  first = subprocess.Popen([sys.executable, os.path.join(ROOT, 'main.py'), *args], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  parts = workdir / 'parts.json'
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline and first.poll() is None:
    if parts.exists() and 'cnn' in records.read_json(str(parts)):
      break
    time.sleep(0.1)
  first.send_signal(signal.SIGKILL)
  first.wait(timeout=30)
  assert set(records.read_json(str(parts))) == {'theory', 'cnn'}
  cnn_results = {d: (workdir / 'cnn' / d / 'results.json').read_bytes()
                 for d in os.listdir(workdir / 'cnn') if d.startswith('learning_rate=')}
  assert len(cnn_results) == 3

  resumed = run_main(*args)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'homework: cnn finished earlier' in resumed.stderr
  for d, content in cnn_results.items():  # Nothing finished was retrained.
    assert (workdir / 'cnn' / d / 'results.json').read_bytes() == content

  report = (workdir / 'report.md').read_text()
  for header in ('| learning rate | test accuracy (measured) | test accuracy (homework) |',
                 '| model | test error rate (measured) | test error rate (homework) |',
                 "homework eq. (12), HW x H''W'' |",
                 '| model | beam size | length penalty | validation error rate | exact match |',
                 '| model | beam size | length penalty | test error rate, greedy | test error rate, '
                 'chosen |',
                 '| part | training | evaluation and decoding | wall time |'):
    assert header in report, header
  assert '[../beyond/report.md](../beyond/report.md)' in report  # docs/homework -> docs/beyond.
  for number in ('89.38 %', '95.71 %', '10.00 %', '0.5002', '0.3808'):
    assert number in report, number
  # Each measured number stands in its table: one row per learning rate, per model, per beam.
  assert len(re.findall(r'^\| (1e-05|0\.0005|0\.01)( \(best\))? \| \d+\.\d\d % \|', report,
                        re.M)) == 3
  assert len(re.findall(r'^\| (no attention|bilinear attention) \| [12] \| 0 \| \d\.\d{4} \| '
                        r'\d\.\d{3} \|', report, re.M)) == 4  # The validation grid.
  # The test split is decoded once per model, at the setting of least validation error rate.
  grid = records.read_json(str(workdir / 'beam' / 'validation.json'), list)
  tested = records.read_json(str(workdir / 'beam' / 'test.json'), list)
  assert {r['split'] for r in grid} == {'validation'} and len(grid) == 4
  assert [r['model'] for r in tested] == ['no_attention', 'attention']
  for row in tested:
    candidates = [r for r in grid if r['model'] == row['model']]
    best = min(r['error_rate'] for r in candidates)
    assert row['split'] == 'test'
    assert (row['beam_size'], row['length_penalty']) == min(
        (r['beam_size'], r['length_penalty']) for r in candidates if r['error_rate'] == best)
  assert str(ROOT) + os.sep not in report  # Paths inside the repository are shown relative.
  links = re.findall(r'!\[[^\]]*\]\(([^)]+)\)', report)
  assert len(links) == 8  # Sparsity, 2 CNN curves, activation maps, 2 curves, 2 heat maps.
  for link in links:
    assert not os.path.isabs(link) and os.path.getsize(workdir / link) > 1000, link

  rebuilt = run_main('--config', 'configs/homework.py', '--workdir', str(workdir), '--mode',
                     'report')
  assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
  assert (workdir / 'report.md').read_text() == report
