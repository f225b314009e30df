"""The one training loop, shared by every task.

Data flow: config -> task (data, model, loss, evaluator) -> jitted multi-step training over an epoch
-> per-epoch record in metrics.jsonl -> latest/best checkpoints -> test metrics of the best
checkpoint in results.json -> figures.

The whole training set lives on every device; each call of the jitted `multi_step` runs
`config.steps_per_call` optimizer steps in a `lax.scan`, gathering its batches on the device from a
per-epoch permutation, so the host neither copies batches nor syncs per step. With several devices
(hw2/parallel.py) each step is data parallel: every device gathers and differentiates its B / D
rows of the batch, and XLA sums the gradients across devices. Data order and dropout masks are
drawn for the whole global batch, so a run gives the same numbers on any number of devices.
"""
import functools
import glob
import os
import time

from absl import logging
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
from hw2 import metrics
from hw2 import models
from hw2 import optim
from hw2 import parallel
from hw2 import plots
from hw2 import records
from hw2 import tasks
from hw2 import tracking
from hw2 import validation
from hw2 import workdir as workdirs
from hw2.checkpoint import Checkpoints
from hw2.errors import UserError

PARAMETERS_FILE = 'parameters.txt'


def create_train_state(task, config, rng, steps_per_epoch):
  """Fresh TrainState (step 0, initial params, optimizer state) for `task`; the optimizer's
  schedule counts `steps_per_epoch` steps an epoch."""
  state = train_state.TrainState.create(
      apply_fn=task.model.apply, params=task.init_params(rng),
      tx=optim.make_optimizer(config, steps_per_epoch))
  # A strongly typed step, as the jitted steps return it: otherwise the first call compiles twice.
  return state.replace(step=jnp.zeros((), jnp.int32))


def init_train_state(task, config, rng, steps_per_epoch):
  """create_train_state, replicated on every device of the mesh."""
  create = jax.jit(functools.partial(create_train_state, task, config,
                                     steps_per_epoch=steps_per_epoch),
                   out_shardings=parallel.replicated())
  return create(parallel.put_replicated(rng))


def abstract_train_state(task, config, steps_per_epoch):
  """Shapes, dtypes and (replicated) shardings of the train state: the checkpoint restore target.
  A restored state takes its optimizer (and so its schedule) from here."""
  return parallel.abstract_replicated(jax.eval_shape(
      functools.partial(create_train_state, task, config, steps_per_epoch=steps_per_epoch),
      jax.random.key(0)))


def train_step(state, batch, rng, loss_fn):
  """One optimizer step: a pure function (state, batch, rng) -> (state, metrics)."""
  loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, rng)
  return state.apply_gradients(grads=grads), {'loss': loss}


def make_multi_step(loss_fn):
  """Jitted (state, data, batch_indices [S, B], rng) -> (state, metrics with leading dim S).

  Runs S steps in a scan; step t uses rows batch_indices[t] of `data` and rng folded with the
  global step, so a resumed run draws the same dropout masks as an uninterrupted one. State,
  data and rng are replicated; batch_indices is split over the devices along B.
  """
  def multi_step(state, data, batch_indices, rng):
    def body(state, indices):
      batch = jax.tree_util.tree_map(lambda a: a[indices], data)
      return train_step(state, batch, jax.random.fold_in(rng, state.step), loss_fn)
    return jax.lax.scan(body, state, batch_indices)
  replicated = parallel.replicated()
  return jax.jit(multi_step, donate_argnums=0,
                 in_shardings=(replicated, replicated, parallel.batch_split(axis=1), replicated),
                 out_shardings=replicated)


def epoch_batch_indices(rng, epoch, num_examples, batch_size):
  """Shuffled example indices of one epoch as host int32 [steps, batch_size] (the remainder is
  dropped); the same in every process and for any device count."""
  steps = num_examples // batch_size
  perm = jax.random.permutation(jax.random.fold_in(rng, epoch), num_examples)
  return np.asarray(perm[:steps * batch_size].reshape(steps, batch_size), np.int32)


def _train_epoch(multi_step, state, data, batch_indices, rng, steps_per_call, epoch, tracker,
                 rate_at):
  """Runs the steps of one epoch, `steps_per_call` (0: all) per jitted call; after each call,
  reports training loss, examples/s and the learning rate of its last step (host sync once per
  call).

  Args:
    batch_indices: [steps, B] rows of `data` for each step.
    rate_at: optimizer step (0-based) -> the learning rate applied at it.
  Returns:
    (state, mean training loss over the epoch's steps, seconds).
  """
  start = time.perf_counter()
  steps, batch_size = batch_indices.shape
  steps_per_call = steps_per_call or steps
  loss_sum = jnp.zeros(())
  for first in range(0, steps, steps_per_call):
    indices = parallel.put_batch(batch_indices[first:first + steps_per_call], axis=1)
    state, step_metrics = multi_step(state, data, indices, rng)
    loss_sum += step_metrics['loss'].sum()
    done = min(first + steps_per_call, steps)
    loss, rate = float(loss_sum) / done, done * batch_size / (time.perf_counter() - start)
    step = int(state.step)
    tracker.progress(step, {'loss': loss, 'examples_per_second': rate,
                            'learning_rate': rate_at(step - 1)})
    if done < steps:
      logging.info('epoch %d step %d/%d  loss %.4f  lr %.3g  %.0f examples/s', epoch, done, steps,
                   loss, rate_at(step - 1), rate)
  train_loss = float(loss_sum) / steps
  return state, train_loss, time.perf_counter() - start


def train_and_evaluate(config, workdir):
  """Trains `config` into `workdir` (resuming from its latest checkpoint), then tests the best.

  Validates the config first and holds the workdir's lock throughout.

  Returns:
    the results dict also written to WORKDIR/results.json.
  """
  validation.validate(config)
  parallel.check_batch_sizes(config)
  with workdirs.writer(workdir):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config, workdir):
  """The loop, in the order hw2/workdir.py's docstring gives."""
  # 1. Checks, writing nothing.
  task = tasks.build(config, workdir, 'train')
  arrays = task.train_arrays()
  num_examples = len(next(iter(arrays.values())))
  if num_examples < config.batch_size:
    raise UserError(f'--config.batch_size={config.batch_size} exceeds the {num_examples} '
                    'training examples')
  total_steps = config.num_epochs * (num_examples // config.batch_size)
  if config.warmup_steps > total_steps:
    raise UserError(f'--config.warmup_steps={config.warmup_steps} is longer than the run: '
                    f'{config.num_epochs} epochs of {num_examples // config.batch_size} steps are '
                    f'{total_steps} steps')
  abstract_state = abstract_train_state(task, config, num_examples // config.batch_size)
  checkpoints = Checkpoints(workdir)
  try:
    return _train_checked(config, workdir, task, arrays, num_examples, abstract_state,
                          checkpoints)
  finally:
    checkpoints.close()


def _check_resume(config, workdir, task, meta):
  """Raises UserError unless the checkpoint `meta` can be continued by `config` and `task`."""
  if meta['epoch'] > config.num_epochs:
    raise UserError(f'--config.num_epochs={config.num_epochs} but --workdir={workdir} already '
                    f'holds {meta["epoch"]} trained epochs: give at least {meta["epoch"]}, or '
                    'test it with --mode eval')
  trained_epochs = meta['config'].get('num_epochs')
  if config.schedule in ('cosine', 'linear') and config.num_epochs != trained_epochs:
    raise UserError(f'--config.num_epochs={config.num_epochs} but the {config.schedule} schedule '
                    f'of --workdir={workdir} decays over its {trained_epochs} epochs: keep '
                    f'num_epochs={trained_epochs}, or train anew in another --workdir')
  for name, text in task.workdir_files().items():
    if meta['files'].get(name) != text:
      raise UserError(f'the training data gives another {name} than the one that --workdir='
                      f'{workdir} was trained with (checkpoint of epoch {meta["epoch"]}): a data '
                      'file or the normalisation changed; use another --workdir')


def stopped_early(config, history, best_epoch):
  """Whether early stopping ends the run after the epochs of `history`: early_stopping_patience
  epochs have passed without a better validation metric than that of `best_epoch`."""
  patience = config.early_stopping_patience
  return bool(patience and history and history[-1]['epoch'] - best_epoch >= patience)


def _train_checked(config, workdir, task, arrays, num_examples, abstract_state, checkpoints):
  def check_meta(meta):
    workdirs.check_same_experiment(workdir, config, meta['config'],
                                   f'its checkpoint of epoch {meta["epoch"]}')
    _check_resume(config, workdir, task, meta)

  resumed = checkpoints.restore_latest(abstract_state, check_meta)
  if resumed is None:
    saved = workdirs.saved_config_file(workdir)
    if saved is not None:
      workdirs.check_same_experiment(workdir, config, saved, records.CONFIG_FILE)
  init_rng, shuffle_rng, dropout_rng = jax.random.split(jax.random.key(config.seed), 3)
  steps_per_epoch = num_examples // config.batch_size
  if resumed is None:
    state = init_train_state(task, config, init_rng, steps_per_epoch)
    start_epoch, history = 0, []
    best_epoch, best_value = None, None
  else:
    state, meta = resumed
    start_epoch, history = meta['epoch'], meta['history']
    best_epoch, best_value = meta['best_epoch'], meta['best_value']
    logging.info('Resuming %s from the checkpoint of epoch %d', workdir, start_epoch)

  # 2. Every check passed: the run's files.
  checkpoints.remove_unfinished_saves()
  workdirs.write_config(workdir, config)
  workdirs.check_shared(workdir, records.CONFIG_FILE)
  _write_task_files(workdir, task, resumed)
  tracking.repair_metrics(workdir, history)
  results_path = os.path.join(workdir, records.RESULTS_FILE)
  if start_epoch == config.num_epochs or stopped_early(config, history, best_epoch):
    results = _finished_results(results_path, meta)
    if results is not None:
      logging.info('%s already holds a finished run of %d epochs; nothing to do', workdir,
                   start_epoch)
      return results
  logging.info('Training on %d device(s) in %d process(es)', parallel.device_count(),
               jax.process_count())
  tracker = tracking.Tracker(workdir, history)
  overview = models.parameter_overview(state.params)
  logging.info('Parameters of the %s model:\n%s', config.task, overview)
  records.write_atomic(os.path.join(workdir, PARAMETERS_FILE), overview + '\n')

  # 3. The epochs.
  data = parallel.put_replicated(arrays)
  dropout_rng = parallel.put_replicated(dropout_rng)
  multi_step = make_multi_step(task.loss)
  metric, mode = task.selection_metric, task.selection_mode
  run_facts = {'config': workdirs.as_json(config), 'files': task.workdir_files(),
               'provenance': records.provenance(),
               'model_impl': models.impl_of(task.model)}
  schedule = optim.learning_rate_schedule(config, steps_per_epoch)
  for epoch in range(start_epoch + 1, config.num_epochs + 1):
    if stopped_early(config, tracker.history, best_epoch):
      break
    scale = optim.plateau_scale(config, tracker.history, metric, mode)
    state = state.replace(opt_state=optim.with_plateau_scale(
        state.opt_state, parallel.put_replicated(np.float32(scale))))
    rate_at = lambda step, scale=scale: optim.applied_rate(schedule, step, scale)
    batch_indices = epoch_batch_indices(shuffle_rng, epoch, num_examples, config.batch_size)
    state, train_loss, train_seconds = _train_epoch(multi_step, state, data, batch_indices,
                                                    dropout_rng, config.steps_per_call, epoch,
                                                    tracker, rate_at)
    params = optim.evaluation_params(state)
    evaluation = task.evaluate(params, 'validation')
    record = {'epoch': epoch, 'train_loss': train_loss, 'train_seconds': round(train_seconds, 3),
              'examples_per_second': round(batch_indices.size / train_seconds, 1),
              'learning_rate': rate_at(int(state.step) - 1),
              **{f'val_{k}': v for k, v in evaluation.items()}}
    is_best = metrics.is_better(evaluation[metric], best_value, mode)
    if is_best:
      best_epoch, best_value = epoch, evaluation[metric]
    tracker.epoch(record)  # Before the checkpoint: a resume drops the extra record.
    workdirs.phase('recorded', epoch)
    checkpoints.save(epoch, state, {'best_epoch': best_epoch, 'best_value': best_value,
                                    'history': tracker.history, **run_facts})
    workdirs.phase('saved', epoch)
    logging.info('epoch %d  train_loss %.4f  val_%s %.4f%s  (%.1f s, %.0f examples/s)', epoch,
                 train_loss, metric, evaluation[metric], '  best' if is_best else '',
                 train_seconds, record['examples_per_second'])
    samples = task.samples()
    if samples:
      logging.info('validation samples of epoch %d:\n%s', epoch, samples)
      tracker.text(int(state.step), 'samples', samples)
  last_epoch = tracker.history[-1]['epoch']
  stopped = stopped_early(config, tracker.history, best_epoch)
  if stopped:
    logging.info('early stopping: no better validation %s in the %d epochs after epoch %d',
                 metric, config.early_stopping_patience, best_epoch)

  # 4. The end, results.json last.
  compilations = {'train_step': multi_step._cache_size(), **task.compilation_counts()}  # pylint: disable=protected-access
  logging.info('XLA compilations (one per distinct input shape): %s', compilations)
  best_state, best_meta = checkpoints.restore_best(abstract_state)
  best_params = optim.evaluation_params(best_state)
  test_start = time.perf_counter()
  test_metrics = task.evaluate(best_params, 'test')
  results = {'best_epoch': best_meta['epoch'], f'val_{metric}': best_meta['best_value'],
             'selection_metric': metric, 'selection_mode': mode,
             'epochs_trained': last_epoch, 'stopped_early': stopped,
             'train_seconds': round(sum(r['train_seconds'] for r in tracker.history), 1),
             'compilations': compilations, 'examples': task.split_sizes(),
             'devices': parallel.device_count(), 'provenance': run_facts['provenance'],
             'model_impl': run_facts['model_impl'],
             'eval_seconds': round(time.perf_counter() - test_start, 1),
             **{f'test_{k}': v for k, v in test_metrics.items()}}
  workdirs.phase('tested')
  _plot_history(tracker.history, metric, workdir)
  workdirs.phase('curves')
  task.write_outputs(best_params, results)
  workdirs.phase('outputs')
  tracker.images(int(state.step), sorted(glob.glob(os.path.join(workdir, '*.png'))))
  tracker.close()
  records.write_json(results_path, results)
  workdirs.phase('results')
  logging.info('Best epoch %d; test %s', results['best_epoch'],
               {k: v for k, v in results.items() if k.startswith('test_')})
  return results


def _write_task_files(workdir, task, resumed):
  """The task's workdir files (vocab.json); a resumed run has checked that they equal the
  checkpoint's copies, so a damaged or missing one is rewritten from them."""
  for name, text in task.workdir_files().items():
    path = os.path.join(workdir, name)
    if resumed is not None and os.path.exists(path):
      with open(path, 'rb') as f:
        if f.read() != text.encode('utf-8'):
          logging.warning('%s differs from the copy in the checkpoint (damaged?); rewritten from '
                          'it', path)
    records.write_atomic(path, text)


def _finished_results(path, meta):
  """results.json if it is intact and belongs to the checkpoint `meta` (its best and last
  epoch); None when the end of the run has to be redone."""
  results = records.read_json_or_none(path, instead='the end of the run is redone')
  if results is None or (results.get('best_epoch'), results.get('epochs_trained')) != (
      meta['best_epoch'], meta['epoch']):
    return None
  return results


def _plot_history(history, metric, workdir):
  """train_loss.png (training and validation loss) and the validation metric's curve."""
  epochs = [r['epoch'] for r in history]
  losses = {'training': (epochs, [r['train_loss'] for r in history]),
            'validation': (epochs, [r['val_loss'] for r in history])}
  plots.plot_curves(losses, 'loss', os.path.join(workdir, 'train_loss.png'),
                    title='training and validation loss')
  plots.plot_curve(epochs, [r[f'val_{metric}'] for r in history], f'validation {metric}',
                   os.path.join(workdir, f'val_{metric}.png'))


def restore_best_params(task, config, workdir):
  """Parameters to evaluate (optim.evaluation_params) of the best checkpoint of `workdir`
  (written on any number of devices), on this run's mesh, for a task built from `config`; and that
  checkpoint's meta."""
  # Parameters only: the optimizer's schedule length does not matter here.
  abstract_state = abstract_train_state(task, config, steps_per_epoch=1)
  checkpoints = Checkpoints(workdir)
  try:
    state, meta = checkpoints.restore_best(abstract_state)
  finally:
    checkpoints.close()
  return optim.evaluation_params(state), meta


def evaluate(config, workdir):
  """--mode eval: test metrics of the best checkpoint, written to WORKDIR/eval_results.json."""
  config = validation.validate(workdirs.config_for_evaluation(workdir, config))
  parallel.check_batch_sizes(config)
  with workdirs.writer(workdir):
    return _evaluate(config, workdir)


def _evaluate(config, workdir):
  task = tasks.build(config, workdir, 'eval')
  params, meta = restore_best_params(task, config, workdir)
  results = {'best_epoch': meta['epoch'],
             **{f'test_{k}': v for k, v in task.evaluate(params, 'test').items()}}
  records.write_json(os.path.join(workdir, 'eval_results.json'), results)
  logging.info('Test of the best checkpoint (epoch %d): %s', meta['epoch'], results)
  return results
