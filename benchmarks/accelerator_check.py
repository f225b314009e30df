"""Checks hw2 on a GPU or TPU in one command: the right numbers there, and how fast.

Made for a machine lent for about 15 minutes with no network: at most 6 minutes of wall time on
one H100, compilation included (budget below), on the data shipped in data/ and the packages the
machine has, plus pure-Python wheels carried to it. Every model runs as config.model.impl=
'reference' (what 'auto' picks on a GPU or TPU; the fast implementations are CPU-only).

Carrying the wheels (hw2 imports ml_collections and filelock, which a GPU image may lack; both are
pure Python, and ml_collections' own dependencies absl-py and PyYAML come with flax and orbax). On
a machine with network, in the checkout:

  pip download ml_collections==1.1.0 filelock==3.20.0 --no-deps -d wheels/

Copy the checkout with wheels/ to the GPU machine. There, the script puts each wheel of --wheels
on the import path after the installed packages (a wheel is a zip archive that Python imports
from), so nothing is installed; `pip install --no-index --no-deps wheels/*.whl` works as well:

  python benchmarks/accelerator_check.py --wheels wheels --out accelerator_check
  python benchmarks/accelerator_check.py --wheels wheels --out accelerator_check --steps 1,2,3

On a machine with several GPUs, CUDA_VISIBLE_DEVICES=0 keeps it to one (hw2's loop would use them
all). `--cpu` is the tiny CPU mode of the test suite (tests/test_accelerator_check.py): 256
training examples, one epoch, the CPU standing in for the accelerator, so both sides of every
comparison are the CPU; there 'highest' is made the default precision (XLA's CPU backend computes
float32 products in float32 at any precision), so both precisions share one executable.

Steps (--steps / --skip pick them), each writing OUT/<n>_<name>.json as soon as it ends:
  1 environment: devices, versions, what the default float32 matmul precision does there (relative
    error of a product against precision='highest' and against float64).
  2 correctness: the CNN and the translator with attention, parameters after 150 training steps,
    on the accelerator against the CPU backend: logits (relative error by norm) at the default
    precision and at 'highest', greedy and beam-8 decoding of 128 test sentences (best tokens
    equal at 'highest', the agreement rate at the default), one training step's loss and update.
  3 throughput: training of the CNN at batch 8 and 64 and of the translator at batch 64 (the step
    time is the figure for the launch-bound CNN), greedy and beam-8 decoding of the 1,000 test
    sentences, and the compile time of each (first call less the best steady one).
  4 training: hw2's own loop (train.train_and_evaluate) for the homework's CNN (20 epochs on the
    7,000 re-split KMNIST test images of data/kmnist) and translator with attention (50 epochs,
    then beam 8 on the test split), beside the CPU numbers of docs/homework/report.md and the seed
    spread of docs/beyond/report.md (a final error rate agrees within 3 standard deviations).
Then OUT/summary.md, the table printed last. Exit status 0 when every step ran and every check
passed, 1 otherwise, 2 when the machine cannot run it (no accelerator, a missing package).

Compilation goes to an empty cache folder of the run's own (a temporary folder, removed at the
end with the run workdirs), so compile times are cold; a later step may reuse an executable an
earlier one cached (step 4's translator training step and test decoding are those of step 3).
The CPU mode, whose times are not figures, uses hw2's cache (HW2_COMPILATION_CACHE) instead, so
that the test suite run again loads what it compiled.

Budget on one H100, estimated (no GPU was available to measure it) from what each step computes:
a CNN step ~0.4 ms and a translator step ~7 ms (both launch-bound: the translator's step runs ~120
loop iterations of small kernels, 19 + 19 + 20 recurrent steps forward and as many back), a
compilation 1-6 s (~50 on the GPU, 6 on the CPU), and per translator epoch ~0.8 s of validation
(greedy decoding, then error rate, chrF and BLEU on the host: 0.5 s measured on the 2-core CPU)
and checkpoint. Slow ends of these ranges (10 ms a translator step, compilations twice as long)
give 6 minutes.
  step            what runs                                                        estimate
  start           imports, CUDA and CPU backends                                   15 s
  1 environment   1024 x 1024 products, on the GPU and the CPU                     5 s
  2 correctness   2 x 150 warm steps; 3 runs (CPU, default, highest) of 6 jitted   50 s
                  functions: 16 GPU and 6 CPU compilations
  3 throughput    CNN 4 x 875 steps (batch 8) and 4 x 109 (batch 64); translator   40 s
                  4 x 163 steps; 4 greedy and 4 beam-8 passes over 1,000
                  sentences (4 batches of 256); ~11 compilations
  4 training      CNN 20 x 875 = 17,500 steps, 20 validations and checkpoints:     30 s
                  translator 50 x 163 = 8,150 steps (~57 s), 50 validations and    125 s
                  checkpoints (~40 s), ~20 compilations, test and figures;
                  beam 8 on the 1,000 test sentences                               5 s
  total                                                                            ~4.5 min
"""
import argparse
import contextlib
import dataclasses
import functools
import glob
from importlib import metadata
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KMNIST_DIR = os.path.join(ROOT, 'data', 'kmnist')
SPA_ENG_DIR = os.path.join(ROOT, 'data', 'spa-eng')
HOMEWORK_REPORT = os.path.join('docs', 'homework', 'report.md')
BEYOND_REPORT = os.path.join('docs', 'beyond', 'report.md')
STEPS = {1: 'environment', 2: 'correctness', 3: 'throughput', 4: 'training'}
SUMMARY_FILE = 'summary.md'
WHEELS = 'ml_collections==1.1.0 filelock==3.20.0'
# Modules the hw2 code path imports: (module, distribution).
NEEDED = (('flax', 'flax'), ('optax', 'optax'), ('orbax.checkpoint', 'orbax-checkpoint'),
          ('ml_collections', 'ml_collections'), ('filelock', 'filelock'), ('yaml', 'PyYAML'),
          ('absl', 'absl-py'), ('matplotlib', 'matplotlib'), ('sacrebleu', 'sacrebleu'),
          ('tensorboard', 'tensorboard'))
VERSIONS = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy', 'ml_collections')
# Bounds of the checks: relative error by norm (logits, loss, update) of the accelerator against
# the CPU. At 'highest' both compute float32 products, so only the order of sums and the
# transcendental functions differ. The default may run TF32 (GPU) or one bfloat16 pass (TPU):
# its bounds catch only gross errors, which are of order 1.
BOUNDS = {'highest': {'logits': 1e-4, 'loss': 1e-4, 'update': 1e-3},
          'default': {'logits': 1e-1, 'loss': 1e-1, 'update': 5e-1}}
SPREAD_SIGMAS = 3  # A final metric agrees when within this many seed standard deviations.


@dataclasses.dataclass(frozen=True)
class Sizes:
  """What the steps compute; 0 for a count means all of it."""
  cnn_train_images: int  # Of the 7,000 re-split training images.
  s2s_train_pairs: int  # Of the 10,483 training pairs.
  s2s_eval_pairs: int  # Of the 1,000 validation and the 1,000 test pairs.
  s2s_eval_batch: int  # Sentences decoded together (config.eval_batch_size).
  warm_steps: int  # Training steps before the correctness checks.
  check_images: int  # Test images whose CNN logits are compared.
  check_sentences: int  # Test sentences whose logits and decodings are compared.
  beam_size: int
  matmul_size: int  # N of the N x N float32 product of step 1.
  repeats: int  # Timed passes after the one that compiles; the best counts.
  cnn_epochs: int
  s2s_epochs: int
  attention_plots: int  # config.num_attention_plots of the step-4 translator.


FULL = Sizes(cnn_train_images=0, s2s_train_pairs=0, s2s_eval_pairs=0, s2s_eval_batch=256,
             warm_steps=150, check_images=256, check_sentences=128, beam_size=8,
             matmul_size=1024, repeats=3, cnn_epochs=20, s2s_epochs=50, attention_plots=4)
# The CPU mode's warm-up is one epoch of step 3 at batch 64 (256 / 64 = 4 steps), so that step 3
# reuses its compiled training steps from the compilation cache.
CPU = Sizes(cnn_train_images=256, s2s_train_pairs=256, s2s_eval_pairs=24, s2s_eval_batch=24,
            warm_steps=4, check_images=32, check_sentences=12, beam_size=8, matmul_size=128,
            repeats=1, cnn_epochs=1, s2s_epochs=1, attention_plots=0)


# --- Setup ----------------------------------------------------------------------------------------

def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--out', required=True, help='folder for the JSON files and summary.md')
  parser.add_argument('--steps', default='1,2,3,4', help='steps to run, e.g. 1,2,3')
  parser.add_argument('--skip', default='', help='steps not to run, e.g. 4')
  parser.add_argument('--cpu', action='store_true',
                      help='tiny CPU mode (the test suite): the CPU stands in for the accelerator')
  parser.add_argument('--wheels', help='folder of pure-Python wheels to import from '
                      '(ml_collections, filelock) where the machine lacks them')
  parser.add_argument('--cnn-epochs', type=int, help='step 4: CNN epochs (default 20)')
  parser.add_argument('--s2s-epochs', type=int, help='step 4: translator epochs (default 50)')
  args = parser.parse_args(argv)
  try:
    chosen = {int(s) for s in args.steps.split(',') if s.strip()}
    skipped = {int(s) for s in args.skip.split(',') if s.strip()}
  except ValueError:
    parser.error('--steps and --skip take step numbers such as 1,2,3')
  if not chosen <= set(STEPS) or not skipped <= set(STEPS):
    parser.error(f'steps are {sorted(STEPS)}')
  args.step_numbers = sorted(chosen - skipped)
  return args


def unfit(message):
  """Ends the program: this machine cannot run the check (exit status 2)."""
  print(f'error: {message}', file=sys.stderr, flush=True)
  raise SystemExit(2)


def add_wheels(folder):
  """Appends every wheel of `folder` to sys.path: installed packages keep precedence."""
  wheels = sorted(glob.glob(os.path.join(folder, '*.whl')))
  if not wheels:
    unfit(f'no wheels (*.whl) in --wheels={folder}')
  sys.path.extend(os.path.abspath(w) for w in wheels)


def missing_modules():
  """Distributions of the NEEDED modules that cannot be imported."""
  missing = []
  for module, distribution in NEEDED:
    try:
      __import__(module)
    except ImportError:
      missing.append(distribution)
  return missing


def configure_jax(cpu_mode, cache_dir):
  """CPU alone (--cpu), or the accelerator with the CPU backend beside it; compilation into
  `cache_dir` (None: as configured already). Returns (the CPU device, the accelerator device)."""
  if cpu_mode:
    jax.config.update('jax_platforms', 'cpu')
    # XLA's CPU backend multiplies float32 in float32 at any precision: with 'highest' as the
    # default, the runs at both precisions share one executable (half the compilations).
    jax.config.update('jax_default_matmul_precision', 'highest')
  else:
    platforms = os.environ.get('JAX_PLATFORMS') or getattr(jax.config, 'jax_platforms', None)
    if platforms and 'cpu' not in platforms.split(','):
      jax.config.update('jax_platforms', platforms + ',cpu')
  if cache_dir is not None:
    jax.config.update('jax_compilation_cache_dir', cache_dir)
  accelerator = jax.devices()[0]
  if accelerator.platform == 'cpu' and not cpu_mode:
    unfit('JAX sees no GPU or TPU here (its default backend is the CPU); --cpu runs the CPU mode')
  return jax.devices('cpu')[0], accelerator


class Run:
  """What the steps share: sizes, devices, the temporary folder and the tasks built once."""

  def __init__(self, sizes, cpu, accelerator, tmp, cpu_mode):
    self.sizes, self.cpu, self.accelerator, self.tmp = sizes, cpu, accelerator, tmp
    self.cpu_mode = cpu_mode
    self.s2s_data = SPA_ENG_DIR
    if sizes.s2s_train_pairs:
      self.s2s_data = subset_pairs(os.path.join(tmp, 'spa-eng'), sizes.s2s_train_pairs,
                                   sizes.s2s_eval_pairs)
    self.results = {}  # Step name -> its results (what the JSON file holds).

  def cnn_config(self, batch_size):
    """configs/cnn.py on the homework report's data: the 7,000 / 1,000 / 2,000 re-split KMNIST
    test images, model.impl='reference'."""
    from configs import cnn  # pylint: disable=g-import-not-at-top
    config = cnn.get_config()
    config.data_dir, config.split_test_images, config.validation_size = KMNIST_DIR, 2000, 1000
    config.max_train_examples = self.sizes.cnn_train_images
    config.batch_size, config.num_epochs = batch_size, self.sizes.cnn_epochs
    config.model.impl = 'reference'
    return config

  def s2s_config(self, beam_size=1):
    """configs/seq2seq_attention.py (batch 64), model.impl='reference'."""
    from configs import seq2seq_attention  # pylint: disable=g-import-not-at-top
    config = seq2seq_attention.get_config()
    config.data_dir, config.num_epochs = self.s2s_data, self.sizes.s2s_epochs
    config.eval_batch_size = self.sizes.s2s_eval_batch
    config.num_attention_plots = self.sizes.attention_plots
    config.decode.beam_size = beam_size
    config.model.impl = 'reference'
    return config

  @functools.cache
  def task(self, name, size):
    """(config, task) of 'cnn' (size: the batch) or 's2s' (size: the beam), built once."""
    from hw2 import tasks  # pylint: disable=g-import-not-at-top
    config = self.cnn_config(size) if name == 'cnn' else self.s2s_config(size)
    return config, tasks.build(config, os.path.join(self.tmp, 'task'), 'train')


def subset_pairs(folder, train_pairs, eval_pairs):
  """`folder` with the first lines of data/spa-eng's files (the CPU mode's small data)."""
  os.makedirs(folder, exist_ok=True)
  for name, count in (('train', train_pairs), ('val', eval_pairs), ('test', eval_pairs)):
    with open(os.path.join(SPA_ENG_DIR, f'{name}-eng-spa.txt'), encoding='utf-8') as f:
      lines = f.readlines()[:count or None]
    with open(os.path.join(folder, f'{name}-eng-spa.txt'), 'w', encoding='utf-8') as f:
      f.writelines(lines)
  return folder


# --- Helpers --------------------------------------------------------------------------------------

def relative_error(value, reference):
  """||value - reference|| / ||reference|| over every leaf of two pytrees (float64)."""
  pairs = list(zip(jax.tree_util.tree_leaves(value), jax.tree_util.tree_leaves(reference)))
  difference = sum(np.sum((np.asarray(v, np.float64) - np.asarray(r, np.float64))**2)
                   for v, r in pairs)
  norm = sum(np.sum(np.asarray(r, np.float64)**2) for _, r in pairs)
  return float(np.sqrt(difference / norm)) if norm else float(np.sqrt(difference))


def precision_context(precision):
  if precision == 'default':
    return contextlib.nullcontext()
  return jax.default_matmul_precision(precision)


def three_runs(run, fn, args):
  """fn(*args) jitted: on the CPU at 'highest' (the reference), on the accelerator at the default
  precision and at 'highest'. Returns {'cpu' | 'default' | 'highest': host outputs}."""
  jitted = jax.jit(fn)
  outputs = {}
  for name, precision in (('cpu', 'highest'), ('default', 'default'), ('highest', 'highest')):
    placed = jax.device_put(args, run.cpu if name == 'cpu' else run.accelerator)
    with precision_context(precision):
      outputs[name] = jax.device_get(jitted(*placed))
  return outputs


def check(name, precision, value, bound, higher_is_better=False):
  """A check's record; bound None: reported, not judged."""
  passed = None if bound is None else bool(value >= bound if higher_is_better else value <= bound)
  return {'name': name, 'precision': precision, 'value': value, 'bound': bound, 'passed': passed}


def write_json(path, data):
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(data, f, indent=1, default=str)
    f.write('\n')


def seconds_of(fn):
  """Seconds of one call of fn() until its result is ready, and the result."""
  start = time.perf_counter()
  result = jax.block_until_ready(fn())
  return time.perf_counter() - start, result


# --- Step 1: environment --------------------------------------------------------------------------

def environment(run):
  versions = {}
  for name in VERSIONS:
    try:
      versions[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      versions[name] = None
  plugins = sorted(f'{d.metadata["Name"]}=={d.version}' for d in metadata.distributions()
                   if re.match(r'jax[-_](cuda|rocm)|libtpu', d.metadata['Name'] or ''))
  device = run.accelerator
  memory = (device.memory_stats() or {}).get('bytes_limit') if device.platform != 'cpu' else None
  return {
      'devices': [f'{d.platform}:{d.id} {d.device_kind}' for d in jax.devices()],
      'cpu_devices': len(jax.devices('cpu')),
      'accelerator': {'platform': device.platform, 'kind': device.device_kind,
                      'count': len(jax.devices()), 'memory_bytes': memory},
      'python': sys.version.split()[0], 'versions': versions, 'plugins': plugins,
      'cpu_pins': cpu_pins(),
      'jax_default_matmul_precision': getattr(jax.config, 'jax_default_matmul_precision', None),
      'matmul': {'size': run.sizes.matmul_size,
                 'accelerator': matmul_errors(device, run.sizes.matmul_size),
                 'cpu': matmul_errors(run.cpu, run.sizes.matmul_size)},
      'environment_info': jax.print_environment_info(return_string=True),
  }


def cpu_pins():
  """The jax / jaxlib / flax pins of requirements.txt, with which the CPU numbers were measured."""
  pins = {}
  with open(os.path.join(ROOT, 'requirements.txt'), encoding='utf-8') as f:
    for line in f:
      match = re.match(r'(jax|jaxlib|flax)==(\S+)', line.strip())
      if match:
        pins[match[1]] = match[2]
  return pins


def matmul_errors(device, n):
  """Relative errors by norm of an [n, n] float32 product on `device`: default precision against
  'highest', and each against the float64 product."""
  a, b = (np.random.RandomState(seed).standard_normal((n, n)).astype(np.float32) for seed in (0, 1))
  exact = a.astype(np.float64) @ b.astype(np.float64)
  x, y = jax.device_put((a, b), device)
  default = np.asarray(jax.jit(jnp.matmul)(x, y))
  highest = np.asarray(jax.jit(functools.partial(jnp.matmul, precision='highest'))(x, y))
  return {'default_vs_highest': relative_error(default, highest),
          'default_vs_float64': relative_error(default, exact),
          'highest_vs_float64': relative_error(highest, exact)}


# --- Step 2: correctness --------------------------------------------------------------------------

def warm_state(config, task, steps):
  """The train state after `steps` steps of hw2's jitted multi-step (on the accelerator), from the
  config's seed: parameters that are no longer near-uniform."""
  from hw2 import parallel  # pylint: disable=g-import-not-at-top
  from hw2 import train  # pylint: disable=g-import-not-at-top
  arrays = task.train_arrays()
  n = len(next(iter(arrays.values())))
  per_epoch = n // config.batch_size
  indices = np.concatenate([
      train.epoch_batch_indices(jax.random.key(config.seed), epoch, n, config.batch_size)
      for epoch in range(1, -(-steps // per_epoch) + 1)])[:steps]
  state = train.init_train_state(task, config, jax.random.key(config.seed), per_epoch)
  state, _ = train.make_multi_step(task.loss)(
      state, parallel.put_replicated(arrays), parallel.put_batch(indices, axis=1),
      parallel.put_replicated(jax.random.key(1)))
  return jax.device_get(state)


def compare_numbers(run, label, fn, args, kind):
  """Checks of fn(*args) (logits, or a training step's (loss, update)) on the accelerator against
  the CPU at both precisions."""
  outputs = three_runs(run, fn, args)
  checks = []
  for precision in ('default', 'highest'):
    if kind == 'logits':
      checks.append(check(f'{label} logits', precision,
                          relative_error(outputs[precision], outputs['cpu']),
                          BOUNDS[precision]['logits']))
    else:
      (loss, update), (cpu_loss, cpu_update) = outputs[precision], outputs['cpu']
      checks.append(check(f'{label} training step loss', precision,
                          abs(float(loss) - float(cpu_loss)) / abs(float(cpu_loss)),
                          BOUNDS[precision]['loss']))
      checks.append(check(f'{label} training step update', precision,
                          relative_error(update, cpu_update), BOUNDS[precision]['update']))
  return checks


def compare_decoding(run, label, fn, args):
  """Greedy or beam decoding on the accelerator against the CPU: the best hypotheses' tokens
  equal at 'highest' (every sentence), their agreement rate at the default; every hypothesis's
  agreement and the largest score difference are recorded."""
  outputs = three_runs(run, fn, args)
  cpu_sequences, cpu_scores = outputs['cpu']
  checks, details = [], {}
  for precision in ('default', 'highest'):
    sequences, scores = outputs[precision]
    equal = np.all(sequences[:, 0] == cpu_sequences[:, 0], axis=-1)  # [B]
    best = float(np.mean(equal))
    finite = np.isfinite(cpu_scores) & np.isfinite(scores)
    details[precision] = {
        'hypotheses_equal': float(np.mean(np.all(sequences == cpu_sequences, axis=-1))),
        'max_score_difference': float(np.max(np.abs(scores - cpu_scores)[finite], initial=0.0)),
        # Sentences whose best hypotheses differ (at most 10), with both scores: a near-tie
        # shows as scores that differ in the last digits.
        'differing': [{'sentence': int(i), 'cpu_score': float(cpu_scores[i, 0]),
                       'score': float(scores[i, 0])} for i in np.flatnonzero(~equal)[:10]]}
    checks.append(check(f'{label} best tokens equal', precision, best,
                        1.0 if precision == 'highest' else None, higher_is_better=True))
  lengths = np.argmax(np.concatenate([cpu_sequences[:, 0] == 2, np.ones_like(
      cpu_sequences[:, 0, :1], bool)], axis=-1), axis=-1)  # Up to EOS (id 2).
  details['mean_length'] = float(lengths.mean())
  return checks, details


def correctness(run):
  from hw2 import train  # pylint: disable=g-import-not-at-top
  from hw2.data import text  # pylint: disable=g-import-not-at-top
  from hw2.tasks import translation  # pylint: disable=g-import-not-at-top
  sizes = run.sizes
  rng = jax.random.key(3)
  checks, details = [], {'warm_steps': sizes.warm_steps}

  def step_fn(loss_fn):
    def step(state, batch, rng):
      new_state, metrics = train.train_step(state, batch, rng, loss_fn)
      return metrics['loss'], jax.tree_util.tree_map(jnp.subtract, new_state.params, state.params)
    return step

  def first_rows(arrays, rows):
    return {k: v[:rows] for k, v in arrays.items()}

  # The CNN (batch 64 for the warm steps and the training step).
  config, task = run.task('cnn', 64)
  state = warm_state(config, task, sizes.warm_steps)
  images = task.data.test_images[:sizes.check_images]
  checks += compare_numbers(
      run, 'CNN', lambda params, x: task.model.apply({'params': params}, x),
      (state.params, images), 'logits')
  checks += compare_numbers(run, 'CNN', step_fn(task.loss),
                            (state, first_rows(task.train_arrays(), 64), rng), 'step')

  # The translator with attention.
  config, task = run.task('s2s', 1)
  state = warm_state(config, task, sizes.warm_steps)
  sources, targets = zip(*task.splits['test'][:sizes.check_sentences])
  ids, lengths = task.encode_sources(list(sources))
  target = text.encode_targets(task.target_vocab, targets, max(map(len, targets)) + 2)
  checks += compare_numbers(
      run, 'translator',
      lambda params, s, n, t: task.model.apply({'params': params}, s, n, t),
      (state.params, ids, lengths, target[:, :-1]), 'logits')
  checks += compare_numbers(run, 'translator', step_fn(task.loss),
                            (state, first_rows(task.train_arrays(), 64), rng), 'step')
  for label, beam in (('greedy', 1), (f'beam {sizes.beam_size}', sizes.beam_size)):
    decode = translation.make_decode_fn(task.model, beam, config.decode.max_length,
                                        config.decode.length_penalty)
    decode_checks, details[label] = compare_decoding(run, label, decode,
                                                     (state.params, ids, lengths))
    checks += decode_checks
  details['check_images'], details['check_sentences'] = len(images), len(sources)
  return {'checks': checks, 'details': details}


# --- Step 3: throughput ---------------------------------------------------------------------------

def training_rate(config, task, repeats):
  """hw2's jitted multi-step over whole epochs of the task's training set: the first epoch
  (compiles) and the best of `repeats` more. Returns (figures, the final train state)."""
  from hw2 import parallel  # pylint: disable=g-import-not-at-top
  from hw2 import train  # pylint: disable=g-import-not-at-top
  arrays = task.train_arrays()
  n = len(next(iter(arrays.values())))
  steps = n // config.batch_size
  data = parallel.put_replicated(arrays)
  rng = parallel.put_replicated(jax.random.key(1))
  multi_step = train.make_multi_step(task.loss)
  holder = {'state': train.init_train_state(task, config, jax.random.key(0), steps)}
  # Each epoch's batch rows are on the device before the clock starts.
  epoch_indices = [parallel.put_batch(train.epoch_batch_indices(jax.random.key(2), epoch, n,
                                                                config.batch_size), axis=1)
                   for epoch in range(1, repeats + 2)]

  def epoch(indices):
    holder['state'], metrics = multi_step(holder['state'], data, indices, rng)
    return metrics['loss']

  seconds = []
  for indices in epoch_indices:
    elapsed, losses = seconds_of(lambda indices=indices: epoch(indices))
    seconds.append(elapsed)
  best = min(seconds[1:])
  return {'batch_size': config.batch_size, 'examples': n, 'steps_per_epoch': steps,
          'step_ms': 1e3 * best / steps, 'examples_per_s': steps * config.batch_size / best,
          'epoch_seconds': best, 'first_epoch_seconds': seconds[0],
          'compile_seconds': seconds[0] - best, 'final_loss': float(losses[-1])}, holder['state']


def decoding_rate(task, params, repeats):
  """task.translate of the test sentences: the first pass (compiles one search per batch shape)
  and the best of `repeats` more, with the error rate of the translations."""
  from hw2 import metrics  # pylint: disable=g-import-not-at-top
  sources, references = zip(*task.splits['test'])
  seconds = []
  for _ in range(repeats + 1):
    elapsed, hypotheses = seconds_of(lambda: task.translate(params, list(sources)))
    seconds.append(elapsed)
  best = min(seconds[1:])
  predictions = [h[0][0] for h in hypotheses]
  return {'beam_size': task.config.decode.beam_size, 'sentences': len(sources),
          'batch_size': task.config.eval_batch_size, 'seconds': best,
          'sentences_per_s': len(sources) / best, 'first_pass_seconds': seconds[0],
          'compile_seconds': seconds[0] - best,
          'test_error_rate': metrics.error_rate(references, predictions)}


def throughput(run):
  from hw2 import optim  # pylint: disable=g-import-not-at-top
  repeats = run.sizes.repeats
  results = {'repeats': repeats}
  for batch_size in (8, 64):
    results[f'cnn_batch_{batch_size}'], _ = training_rate(*run.task('cnn', batch_size), repeats)
  config, task = run.task('s2s', 1)
  results['translator_batch_64'], state = training_rate(config, task, repeats)
  params = optim.evaluation_params(state)  # After 1 + repeats epochs: realistic lengths.
  results['greedy'] = decoding_rate(task, params, repeats)
  results['beam'] = decoding_rate(run.task('s2s', run.sizes.beam_size)[1], params, repeats)
  return results


# --- Step 4: training -----------------------------------------------------------------------------

def markdown_tables(path):
  """Every table of a Markdown file, as lists of {header: cell} rows."""
  tables, block = [], []
  with open(path, encoding='utf-8') as f:
    for line in [*f, '']:
      if line.startswith('|'):
        block.append([cell.strip() for cell in line.strip().strip('|').split('|')])
      elif block:
        tables.append([dict(zip(block[0], row)) for row in block[2:]])
        block = []
  return tables


def find_row(tables, column, **cells):
  """The first row that has `column` and the given cells (keys with '_' for ' '), each equal to
  its text or that text followed by a note ('0.0005 (best)')."""
  cells = {k.replace('_', ' '): v for k, v in cells.items()}
  for table in tables:
    for row in table:
      if column in row and all(row.get(k) == v or row.get(k, '').startswith(v + ' ')
                               for k, v in cells.items()):
        return row
  raise LookupError(f'no row with {column!r} and {cells}')


def as_number(cell):
  """'95.65 %' -> 0.9565, '5.4 min' -> 324.0, '30 s' -> 30.0, '0.3539' -> 0.3539."""
  number = float(cell.split()[0])
  unit = cell.split()[1] if len(cell.split()) > 1 else ''
  return round(number * {'%': 0.01, 'min': 60.0, 'h': 3600.0}.get(unit, 1.0), 8)


def mean_and_std(cell):
  """'0.3646 +- 0.0054' -> [0.3646, 0.0054]."""
  mean, std = cell.split('+-')
  return [float(mean), float(std)]


def cpu_numbers(beam_size):
  """The CPU runs' numbers: the homework report (seed 42, impl auto = fast on the CPU) and the
  seed spread of the beyond report (seeds 1-3, the translator at the homework's settings)."""
  numbers = {'source': HOMEWORK_REPORT}
  try:
    tables = markdown_tables(os.path.join(ROOT, HOMEWORK_REPORT))
    cnn = find_row(tables, 'test accuracy (measured)', learning_rate='0.0005')
    s2s = find_row(tables, 'test error rate (measured)', model='bilinear attention')
    beam = find_row(tables, 'test error rate, chosen', model='bilinear attention',
                    beam_size=str(beam_size), length_penalty='0')
    numbers['cnn'] = {'test_accuracy': as_number(cnn['test accuracy (measured)']),
                      'train_seconds': as_number(cnn['training time'])}
    numbers['translator'] = {'test_error_rate': as_number(s2s['test error rate (measured)']),
                             'train_seconds': as_number(s2s['training time']),
                             'beam_test_error_rate': as_number(beam['test error rate, chosen'])}
    seeds = find_row(markdown_tables(os.path.join(ROOT, BEYOND_REPORT)),
                     f'error rate, beam {beam_size}', run='homework settings')
    numbers['translator_seeds'] = {
        'source': BEYOND_REPORT, 'test_error_rate': mean_and_std(seeds['error rate']),
        'beam_test_error_rate': mean_and_std(seeds[f'error rate, beam {beam_size}'])}
  except (OSError, LookupError, ValueError, KeyError) as e:
    numbers['problem'] = f'{type(e).__name__}: {e}'
  return numbers


def train_run(config, workdir):
  """hw2's loop on `config` in `workdir`: (its results, wall seconds)."""
  from hw2 import train  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  results = train.train_and_evaluate(config, workdir)
  return results, time.perf_counter() - start


def within_spread(value, seeds, judged=True):
  """Whether `value` lies within SPREAD_SIGMAS seed standard deviations of the seeds' mean
  (None: not judged, or no spread known)."""
  if not seeds or not judged:
    return None
  mean, std = seeds
  return bool(abs(value - mean) <= SPREAD_SIGMAS * std)


def training(run, cnn_epochs=None, s2s_epochs=None):
  """Both trainings; one that fails is recorded with its traceback and the other still runs."""
  cpu = cpu_numbers(run.sizes.beam_size)
  results = {'cpu': cpu, 'estimate_seconds': training_estimate(run, cnn_epochs, s2s_epochs)}
  if results['estimate_seconds'] is not None:
    print(f"  step 3's step times give {results['estimate_seconds']:.0f} s of training steps, "
          'before evaluations, checkpoints and compilation', flush=True)
  for name, part, epochs in (('cnn', cnn_training, cnn_epochs),
                             ('translator', translator_training, s2s_epochs)):
    try:
      results[name] = part(run, epochs, cpu)
    except Exception:  # pylint: disable=broad-except
      results[name] = {'error': traceback.format_exc()}
      print(results[name]['error'], file=sys.stderr, flush=True)
  return results


def cnn_training(run, epochs, cpu):
  """The homework's CNN (batch 8) trained by hw2's loop: its figures."""
  del cpu  # No seed spread is known for it.
  config = run.cnn_config(8)
  config.num_epochs = epochs or config.num_epochs
  cnn, wall = train_run(config, os.path.join(run.tmp, 'runs', 'cnn'))
  return {'epochs': cnn['epochs_trained'], 'wall_seconds': wall,
          'train_seconds': cnn['train_seconds'], 'best_epoch': cnn['best_epoch'],
          'val_accuracy': cnn['val_accuracy'], 'test_accuracy': cnn['test_accuracy'],
          'examples': cnn['examples'], 'model_impl': cnn['model_impl']}


def translator_training(run, epochs, cpu):
  """The translator with attention trained by hw2's loop, then its best checkpoint decoded with
  beam search on the test split (as the homework's beam table does): its figures, judged against
  the seeds' spread (not in the CPU mode, whose tiny runs are not comparable)."""
  from hw2 import translate  # pylint: disable=g-import-not-at-top
  config = run.s2s_config()
  config.num_epochs = epochs or config.num_epochs
  workdir = os.path.join(run.tmp, 'runs', 'translator')
  s2s, wall = train_run(config, workdir)
  start = time.perf_counter()
  beam = translate.decoding_metrics(workdir, run.sizes.beam_size, 0.0)
  seeds = cpu.get('translator_seeds', {})
  judged = not run.cpu_mode
  return {
      'epochs': s2s['epochs_trained'], 'wall_seconds': wall, 'train_seconds': s2s['train_seconds'],
      'best_epoch': s2s['best_epoch'], 'val_error_rate': s2s['val_error_rate'],
      'test_error_rate': s2s['test_error_rate'], 'test_chrf': s2s['test_chrf'],
      'test_bleu': s2s['test_bleu'], 'beam_size': run.sizes.beam_size,
      'beam_test_error_rate': beam['error_rate'], 'beam_seconds': time.perf_counter() - start,
      'examples': s2s['examples'], 'model_impl': s2s['model_impl'],
      'within_seed_spread': within_spread(s2s['test_error_rate'], seeds.get('test_error_rate'),
                                          judged),
      'beam_within_seed_spread': within_spread(beam['error_rate'],
                                               seeds.get('beam_test_error_rate'), judged)}


def training_estimate(run, cnn_epochs, s2s_epochs):
  """Seconds of training alone that step 3's step times predict for step 4 (None without them)."""
  rates = run.results.get('throughput')
  if not rates or 'cnn_batch_8' not in rates:
    return None
  cnn, s2s = rates['cnn_batch_8'], rates['translator_batch_64']
  return ((cnn_epochs or run.sizes.cnn_epochs) * cnn['epoch_seconds']
          + (s2s_epochs or run.sizes.s2s_epochs) * s2s['epoch_seconds'])


# --- Summary --------------------------------------------------------------------------------------

def fmt(value, digits=3):
  if value is None:
    return '-'
  if isinstance(value, float):
    return f'{value:.{digits}g}' if abs(value) < 1e-2 or abs(value) >= 1e4 else f'{value:.4g}'
  return str(value)


def ok(passed):
  return {True: 'yes', False: '**NO**', None: ''}[passed]


def summary_rows(name, result):
  """(step, what, value, CPU or bound, ok) rows of one step's results."""
  try:
    return step_rows(name, result)
  except (KeyError, TypeError, ValueError) as e:  # A step that recorded less than expected.
    return [(result.get('step'), name, f'no summary: {type(e).__name__}: {e}', '', ok(False))]


def step_rows(name, result):
  number = {v: k for k, v in STEPS.items()}[name]
  if 'error' in result:
    return [(number, name, 'failed: ' + result['error'].strip().splitlines()[-1], '', ok(False))]
  rows = []
  if name == 'environment':
    versions, pins = result['versions'], result['cpu_pins']
    rows.append((number, 'devices', '; '.join(result['devices']),
                 f"CPU backend beside them: {result['cpu_devices']} device(s)", ''))
    rows.append((number, 'jax / jaxlib / flax', ' / '.join(str(versions[k]) for k in
                                                           ('jax', 'jaxlib', 'flax')),
                 'CPU numbers: ' + ' / '.join(pins.get(k, '?') for k in ('jax', 'jaxlib', 'flax')),
                 ''))
    for side in ('accelerator', 'cpu'):
      errors = result['matmul'][side]
      rows.append((number, f'float32 matmul {result["matmul"]["size"]}^2 on the {side}: default '
                   "vs 'highest'", fmt(errors['default_vs_highest']),
                   f"vs float64: default {fmt(errors['default_vs_float64'])}, highest "
                   f"{fmt(errors['highest_vs_float64'])}", ''))
  elif name == 'correctness':
    for c in result['checks']:
      bound = '' if c['bound'] is None else ('>= ' if 'equal' in c['name'] else '<= ') + fmt(
          c['bound'])
      rows.append((number, f"{c['name']}, {c['precision']}", fmt(c['value']), bound,
                   ok(c['passed'])))
  elif name == 'throughput':
    for key, label in (('cnn_batch_8', 'CNN training, batch 8'),
                       ('cnn_batch_64', 'CNN training, batch 64'),
                       ('translator_batch_64', 'translator training, batch 64')):
      r = result[key]
      rows.append((number, label, f"{r['step_ms']:.3g} ms/step, {r['examples_per_s']:,.0f} "
                   f"examples/s", f"compile {r['compile_seconds']:.1f} s", ''))
    for key in ('greedy', 'beam'):
      r = result[key]
      label = 'greedy' if r['beam_size'] == 1 else f"beam {r['beam_size']}"
      rows.append((number, f"{label} decoding, {r['sentences']} test sentences",
                   f"{r['seconds']:.3g} s, {r['sentences_per_s']:,.0f} sentences/s",
                   f"compile {r['compile_seconds']:.1f} s", ''))
  elif name == 'training':
    rows = training_rows(number, result)
  return rows


def training_rows(number, result):
  """Rows of step 4: each training beside the CPU's numbers, or the error that ended it."""
  rows, cpu = [], result['cpu']
  for part in ('cnn', 'translator'):
    if 'error' in result[part]:
      rows.append((number, f'{part} training', 'failed: '
                   + result[part]['error'].strip().splitlines()[-1], '', ok(False)))
  if 'error' not in result['cnn']:
    cnn, cpu_cnn = result['cnn'], cpu.get('cnn', {})
    rows.append((number, f"CNN, {epoch_count(cnn['epochs'])}: test accuracy",
                 f"{100 * cnn['test_accuracy']:.2f} %",
                 f"CPU {100 * cpu_cnn['test_accuracy']:.2f} %" if cpu_cnn else '', ''))
    rows.append((number, 'CNN: training / wall time',
                 f"{cnn['train_seconds']:.0f} s / {cnn['wall_seconds']:.0f} s",
                 f"CPU training {cpu_cnn['train_seconds']:.0f} s" if cpu_cnn else '', ''))
  if 'error' not in result['translator']:
    s2s, cpu_s2s = result['translator'], cpu.get('translator', {})
    seeds = cpu.get('translator_seeds', {})
    for key, label, spread, verdict in (
        ('test_error_rate', 'test error rate, greedy', 'test_error_rate', 'within_seed_spread'),
        ('beam_test_error_rate', f"test error rate, beam {s2s['beam_size']}",
         'beam_test_error_rate', 'beam_within_seed_spread')):
      reference = ''
      if cpu_s2s:
        reference = f'CPU {cpu_s2s[key]:.4f}'
      if spread in seeds:
        mean, std = seeds[spread]
        reference += f'; seeds 1-3: {mean:.4f} +- {std:.4f}'
      rows.append((number, f"translator, {epoch_count(s2s['epochs'])}: {label}", f'{s2s[key]:.4f}',
                   reference, ok(s2s[verdict])))
    rows.append((number, 'translator: training / wall time',
                 f"{s2s['train_seconds']:.0f} s / {s2s['wall_seconds']:.0f} s",
                 f"CPU training {cpu_s2s['train_seconds']:.0f} s" if cpu_s2s else '', ''))
  return rows


def epoch_count(count):
  return f'{count} epoch' + ('s' if count != 1 else '')


def summary(run, seconds):
  env = run.results.get('environment', {})
  device = run.accelerator
  lines = [f'# hw2 accelerator check: {device.device_kind} ({device.platform})', '',
           f'JAX {jax_version()} here'
           + (f"; the CPU numbers come from JAX {env['cpu_pins'].get('jax')} "
              '(requirements.txt) on the project\'s 2-core CPU, impl auto (fast there)'
              if 'cpu_pins' in env else '')
           + ('. CPU mode: tiny sizes, both sides on the CPU; not comparable with the reports.'
              if run.cpu_mode else '.') + f' Wall time {seconds:.0f} s.', '',
           '| step | what | value | CPU / bound | ok |', '|---|---|---|---|---|']
  for name, result in run.results.items():
    lines += ['| ' + ' | '.join(str(cell).replace('|', '\\|') for cell in row) + ' |'
              for row in summary_rows(name, result)]
  return '\n'.join(lines) + '\n'


def jax_version():
  return jax.__version__


def failed(results):
  """Whether a step or training failed, a check did not pass or a final metric left the seeds'
  spread."""
  trainings = results.get('training', {})
  translator = trainings.get('translator', {})
  return (any('error' in r or any(c['passed'] is False for c in r.get('checks', []))
              for r in results.values())
          or any('error' in trainings.get(part, {}) for part in ('cnn', 'translator'))
          or False in (translator.get('within_seed_spread'),
                       translator.get('beam_within_seed_spread')))


# --- Main -----------------------------------------------------------------------------------------

def main(argv=None):
  args = parse_args(argv)
  if args.wheels:
    add_wheels(args.wheels)
  missing = missing_modules()
  if missing:
    unfit(f'missing packages: {", ".join(missing)}. Carry pure-Python wheels: on a machine with '
          f'network `pip download {WHEELS} --no-deps -d wheels/`, then --wheels wheels')
  sys.path.insert(0, ROOT)
  if args.cpu:  # hw2's cache; checked before anything is written.
    from hw2 import cli  # pylint: disable=g-import-not-at-top
    from hw2.errors import UserError  # pylint: disable=g-import-not-at-top
    try:
      cache = cli.enable_compilation_cache()
    except UserError as e:
      unfit(str(e))
  os.makedirs(args.out, exist_ok=True)
  start = time.perf_counter()
  tmp = tempfile.mkdtemp(prefix='hw2_accelerator_check_')
  try:
    if not args.cpu:
      cache = os.path.join(tmp, 'jax_cache')
    cpu, accelerator = configure_jax(args.cpu, cache)
    run = Run(CPU if args.cpu else FULL, cpu, accelerator, tmp, args.cpu)
    functions = {'environment': environment, 'correctness': correctness, 'throughput': throughput,
                 'training': functools.partial(training, cnn_epochs=args.cnn_epochs,
                                               s2s_epochs=args.s2s_epochs)}
    for number in args.step_numbers:
      name = STEPS[number]
      print(f'step {number} ({name}) ...', flush=True)
      step_start = time.perf_counter()
      try:
        result = functions[name](run)
      except Exception:  # pylint: disable=broad-except  # The next steps still run.
        result = {'error': traceback.format_exc()}
        print(result['error'], file=sys.stderr, flush=True)
      result = {'step': number, 'name': name, 'seconds': time.perf_counter() - step_start,
                'cpu_mode': args.cpu, **result}
      run.results[name] = result
      write_json(os.path.join(args.out, f'{number}_{name}.json'), result)
      print(f'step {number} ({name}) done in {result["seconds"]:.1f} s '
            f'({time.perf_counter() - start:.0f} s since the start)', flush=True)
      for row in summary_rows(name, result):  # At once: a run cut short keeps them in its log.
        print('  ' + ' | '.join(str(cell) for cell in row[1:] if cell != ''), flush=True)
    table = summary(run, time.perf_counter() - start)
    with open(os.path.join(args.out, SUMMARY_FILE), 'w', encoding='utf-8') as f:
      f.write(table)
    print(table, end='', flush=True)
    return 1 if failed(run.results) else 0
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
  sys.exit(main())
