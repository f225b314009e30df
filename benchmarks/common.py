"""Helpers for the benchmark scripts: timing, the PyTorch reference, JSON lines."""
import json
import os
import subprocess
import sys
import time

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
TORCH_REFERENCE = os.path.join(os.path.dirname(ROOT), 'shared', 'bench', 'torch_reference.py')


def emit(**record):
  print(json.dumps(record), flush=True)


def timed(fn, *args, repeats=1):
  """Seconds per call of fn(*args), after one warm-up call (compilation) not counted."""
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(repeats):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / repeats


def torch_reference(*args):
  """Runs ../shared/bench/torch_reference.py with args; returns its last JSON line as a dict."""
  if not os.path.exists(TORCH_REFERENCE):
    raise SystemExit(f'{TORCH_REFERENCE} not found')
  result = subprocess.run([sys.executable, TORCH_REFERENCE, *args], capture_output=True,
                          text=True, check=True)
  return json.loads(result.stdout.strip().splitlines()[-1])
