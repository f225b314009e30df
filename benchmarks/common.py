"""Helpers for the benchmark scripts: timing, the PyTorch baseline, JSON lines.

Both sides are measured the same way: the best of 3 (epochs or repeats), compilation excluded.
"""
import functools
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np

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


IMPLS = ('reference', 'fast')  # The CNN's config.model.impl: its benchmarks measure both.


def cnn_task(data_dir, batch_size, examples, impl='auto'):
  """(config, task) of the homework CNN (implementation `impl`) training on the first `examples`
  images of `data_dir` (its training images, or its test images where it has none, as
  data/kmnist)."""
  from configs import cnn  # pylint: disable=g-import-not-at-top
  from hw2 import tasks  # pylint: disable=g-import-not-at-top
  from hw2.data import images  # pylint: disable=g-import-not-at-top
  config = cnn.get_config()
  config.data_dir, config.validation_size = data_dir, 0
  if not os.path.exists(os.path.join(data_dir, images.IDX_FILES['train_images'])):
    config.split_test_images = 1  # Train on the test images (all but one).
  config.batch_size, config.max_train_examples = batch_size, examples
  config.model.impl = impl
  return config, tasks.build(config, '/tmp/hw2_benchmark_cnn', 'train')


def s2s_task(data_dir, beam_size=1, use_attention=True, impl='auto', architecture='lstm'):
  """(config, task) of the homework translation model (implementation `impl`) on `data_dir`, or
  with architecture 'transformer' of configs/transformer.py."""
  from configs import seq2seq  # pylint: disable=g-import-not-at-top
  from configs import transformer  # pylint: disable=g-import-not-at-top
  from hw2 import tasks  # pylint: disable=g-import-not-at-top
  if architecture == 'transformer':
    config = transformer.get_config()
  else:
    config = seq2seq.get_config()
    config.model.use_attention = use_attention
  config.data_dir = data_dir
  config.decode.beam_size = beam_size
  config.model.impl = impl
  return config, tasks.build(config, '/tmp/hw2_benchmark_s2s', 'train')


def training_rate(config, task, repeats=3):
  """Training examples/s of the jitted multi-step that hw2/train.py runs, over the task's whole
  training set on this process's device mesh (best of `repeats` epochs after one that compiles).

  Returns:
    (examples/s, GFLOP/s, the train state after the last epoch). The FLOPs of a step are XLA's
    own cost analysis of the compiled step (a scan of one step: XLA counts a loop body once).
  """
  from hw2 import parallel  # pylint: disable=g-import-not-at-top
  from hw2 import train  # pylint: disable=g-import-not-at-top
  arrays = task.train_arrays()
  n = len(next(iter(arrays.values())))
  data = parallel.put_replicated(arrays)
  rng = parallel.put_replicated(jax.random.key(1))
  multi_step = train.make_multi_step(task.loss)
  holder = {'state': train.init_train_state(task, config, jax.random.key(0),
                                            n // config.batch_size), 'epoch': 0}
  # Each epoch's shuffled batch rows, drawn and put on the device before any timing, as the
  # PyTorch baseline draws its permutation before it starts its clock.
  epoch_indices = [
      parallel.put_batch(train.epoch_batch_indices(jax.random.key(2), epoch, n, config.batch_size),
                         axis=1) for epoch in range(1, repeats + 2)]

  def run_epoch():
    holder['state'], metrics = multi_step(holder['state'], data, epoch_indices[holder['epoch']],
                                          rng)
    holder['epoch'] += 1
    return metrics['loss']

  seconds = timed(run_epoch, repeats=repeats)
  one_step = parallel.put_batch(np.zeros((1, config.batch_size), np.int32), axis=1)
  step_flops = _flops(multi_step.lower(holder['state'], data, one_step, rng))
  steps = n // config.batch_size
  return steps * config.batch_size / seconds, steps * step_flops / seconds / 1e9, holder['state']


def peak_gflops(size=2048):
  """This machine's practical float32 peak: GFLOP/s of a large matrix product (best of 3)."""
  a = jax.random.normal(jax.random.key(0), (size, size), jax.numpy.float32)
  product = jax.jit(lambda x: x @ x)
  return 2 * size**3 / timed(product, a) / 1e9


def torch_baseline(*args):
  """Runs benchmarks/torch_baseline.py with args; returns its JSON lines (one per epoch)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise SystemExit('PyTorch is missing: pip install -r benchmarks/requirements.txt') from None
  result = subprocess.run([sys.executable, TORCH_BASELINE, *args], capture_output=True,
                          text=True, check=True)
  return [json.loads(line) for line in result.stdout.strip().splitlines() if line.startswith('{')]


def counting(step, counts):
  """`step` (a decoding loop's model step), appending 1 to the host list `counts` each time a
  jitted program runs it: after the loop (and jax.effects_barrier), len(counts) is the number of
  steps it ran."""
  def counted(*args, **kwargs):
    jax.debug.callback(lambda: counts.append(1), ordered=True)
    return step(*args, **kwargs)
  return counted


def step_counter(decode):
  """args -> the decoder steps that `decode` (translation.make_decode_fn's) runs on them: its
  model's `decode_step` `counting` in a jitted copy (compiled once per shape); `decode` itself
  is left as it is."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  counts, jitted = [], jax.jit(lambda *args: decode(*args))  # Its own trace, not decode's.

  def count_decode_step(next_fun, args, kwargs, context):
    step = counting(next_fun, counts) if context.method_name == 'decode_step' else next_fun
    return step(*args, **kwargs)

  def steps(*args):
    counts.clear()
    with nn.intercept_methods(count_decode_step):
      jax.block_until_ready(jitted(*args))
    jax.effects_barrier()
    return len(counts)
  return steps


def decoding_flops(task, params, sources):
  """FLOPs of task.translate(params, sources), from XLA's cost analysis: per batch of
  task.source_batches (the batches translate decodes), the compiled search (its loop body
  counted once, as XLA counts loops) plus (steps run - 1) x the compiled decoder step, with the
  steps counted by `step_counter`."""
  from hw2.tasks import translation  # pylint: disable=g-import-not-at-top
  config, model = task.config, task.model
  k = config.decode.beam_size
  decode = translation.make_decode_fn(model, k, config.decode.max_length,
                                      config.decode.length_penalty)
  search, count_steps = jax.jit(decode), step_counter(decode)
  encode = functools.partial(model.apply, method='encode')

  def step(params, tokens, state, memory, mask):
    return model.apply({'params': params}, tokens, state, memory, mask,
                       method='decode_step')

  total = 0.0
  for _, batch in task.source_batches(sources):
    args = (params, batch['ids'], batch['lengths'])
    steps = count_steps(*args)
    memory, mask, state = jax.tree_util.tree_map(  # Beam search runs B * k rows.
        lambda x: jax.ShapeDtypeStruct((x.shape[0] * k, *x.shape[1:]), x.dtype),
        jax.eval_shape(encode, {'params': params}, *args[1:]))
    tokens = jax.ShapeDtypeStruct((memory.shape[0],), np.int32)
    step_flops = _flops(jax.jit(step).lower(params, tokens, state, memory, mask))
    total += _flops(search.lower(*args)) + max(steps - 1, 0) * step_flops
  return total


def _flops(lowered):
  return lowered.compile().cost_analysis()['flops']
