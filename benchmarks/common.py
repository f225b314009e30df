"""Helpers for the benchmark scripts: timing, the PyTorch baseline, JSON lines.

Both sides are measured the same way: the best of 3 (epochs or repeats), compilation excluded.
"""
import json
import os
import subprocess
import sys
import time

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
TORCH_BASELINE = os.path.join(ROOT, 'benchmarks', 'torch_baseline.py')
KMNIST_DIR = os.path.join(ROOT, 'data', 'kmnist')
SPA_ENG_DIR = os.path.join(ROOT, 'data', 'spa-eng')


def emit(**record):
  print(json.dumps(record), flush=True)


def timed(fn, *args, repeats=3):
  """Best (least) seconds of `repeats` calls of fn(*args), after one warm-up call (compilation)
  that is not counted. The best of several is the least disturbed by other load on the machine."""
  jax.block_until_ready(fn(*args))
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best


def torch_baseline(*args):
  """Runs benchmarks/torch_baseline.py with args; returns its JSON lines (one per epoch)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise SystemExit('PyTorch is missing: pip install -r benchmarks/requirements.txt') from None
  result = subprocess.run([sys.executable, TORCH_BASELINE, *args], capture_output=True,
                          text=True, check=True)
  return [json.loads(line) for line in result.stdout.strip().splitlines() if line.startswith('{')]
