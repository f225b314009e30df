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
import optax

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
# config.optimizer (hw2/validation.py). hw2/optim.py's Adam is optax.adam with a cheaper step.
OPTIMIZERS = {'adam': optim.adam, 'sgd': optax.sgd}


def make_optimizer(config):
  """optax optimizer named by config.optimizer at config.learning_rate."""
  return OPTIMIZERS[config.optimizer](config.learning_rate)


def create_train_state(task, config, rng):
  """Fresh TrainState (step 0, initial params, optimizer state) for `task`."""
  state = train_state.TrainState.create(
      apply_fn=task.model.apply, params=task.init_params(rng), tx=make_optimizer(config))
  # A strongly typed step, as the jitted steps return it: otherwise the first call compiles twice.
  return state.replace(step=jnp.zeros((), jnp.int32))


def init_train_state(task, config, rng):
  """create_train_state, replicated on every device of the mesh."""
  create = jax.jit(functools.partial(create_train_state, task, config),
                   out_shardings=parallel.replicated())
  return create(parallel.put_replicated(rng))


def abstract_train_state(task, config):
  """Shapes, dtypes and (replicated) shardings of the train state: the checkpoint restore target."""
  return parallel.abstract_replicated(
      jax.eval_shape(functools.partial(create_train_state, task, config), jax.random.key(0)))


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
                 out_shardings=replicated, compiler_options=parallel.compiler_options())


def _is_better(value, best, mode):
  return best is None or (value > best if mode == 'max' else value < best)


def epoch_batch_indices(rng, epoch, num_examples, batch_size):
  """Shuffled example indices of one epoch as host int32 [steps, batch_size] (the remainder is
  dropped); the same in every process and for any device count."""
  steps = num_examples // batch_size
  perm = jax.random.permutation(jax.random.fold_in(rng, epoch), num_examples)
  return np.asarray(perm[:steps * batch_size].reshape(steps, batch_size), np.int32)


def _train_epoch(multi_step, state, data, batch_indices, rng, steps_per_call, epoch, tracker,
                 learning_rate):
  """Runs the steps of one epoch, `steps_per_call` (0: all) per jitted call; after each call,
  reports training loss, examples/s and learning rate (host sync once per call).

  Args:
    batch_indices: [steps, B] rows of `data` for each step.
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
    tracker.progress(int(state.step), {'loss': loss, 'examples_per_second': rate,
                                       'learning_rate': learning_rate})
    if done < steps:
      logging.info('epoch %d step %d/%d  loss %.4f  %.0f examples/s', epoch, done, steps, loss,
                   rate)
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
  workdirs.check_same_experiment(workdir, config)
  task = tasks.build(config, workdir, 'train')
  arrays = task.train_arrays()
  num_examples = len(next(iter(arrays.values())))
  if num_examples < config.batch_size:
    raise UserError(f'--config.batch_size={config.batch_size} exceeds the {num_examples} '
                    'training examples')
  data = parallel.put_replicated(arrays)
  init_rng, shuffle_rng, dropout_rng = jax.random.split(jax.random.key(config.seed), 3)
  state = init_train_state(task, config, init_rng)
  dropout_rng = parallel.put_replicated(dropout_rng)
  abstract_state = abstract_train_state(task, config)
  checkpoints = Checkpoints(workdir)
  records.write_json(os.path.join(workdir, records.CONFIG_FILE), config.to_dict())
  workdirs.check_shared(workdir, records.CONFIG_FILE)
  logging.info('Training on %d device(s) in %d process(es)', parallel.device_count(),
               jax.process_count())

  start_epoch, best_value = 0, None
  if checkpoints.epoch() is not None:
    state, meta = checkpoints.restore(abstract_state)
    start_epoch, best_value = meta['epoch'], meta['best_value']
    logging.info('Resuming %s from the checkpoint of epoch %d', workdir, start_epoch)
  results_path = os.path.join(workdir, records.RESULTS_FILE)
  if start_epoch >= config.num_epochs and os.path.exists(results_path):
    logging.info('%s already holds a finished run of %d epochs; nothing to do', workdir,
                 start_epoch)
    checkpoints.close()
    return records.read_json(results_path)
  # A resume drops the records of epochs past the checkpoint (written before a failed save).
  tracker = tracking.Tracker(
      workdir, [r for r in records.read_metrics(workdir) if r['epoch'] <= start_epoch])
  overview = models.parameter_overview(state.params)
  logging.info('Parameters of the %s model:\n%s', config.task, overview)
  records.write_atomic(os.path.join(workdir, PARAMETERS_FILE), overview + '\n')

  multi_step = make_multi_step(task.loss)
  metric, mode = task.selection_metric, task.selection_mode
  for epoch in range(start_epoch + 1, config.num_epochs + 1):
    batch_indices = epoch_batch_indices(shuffle_rng, epoch, num_examples, config.batch_size)
    state, train_loss, train_seconds = _train_epoch(multi_step, state, data, batch_indices,
                                                    dropout_rng, config.steps_per_call, epoch,
                                                    tracker, config.learning_rate)
    evaluation = task.evaluate(state.params, 'validation')
    record = {'epoch': epoch, 'train_loss': train_loss, 'train_seconds': round(train_seconds, 3),
              'examples_per_second': round(batch_indices.size / train_seconds, 1),
              **{f'val_{k}': v for k, v in evaluation.items()}}
    is_best = _is_better(evaluation[metric], best_value, mode)
    if is_best:
      best_value = evaluation[metric]
    tracker.epoch(record)  # Before the checkpoint: a resume drops the extra record.
    checkpoints.save(epoch, state, {'epoch': epoch, 'best_value': best_value, 'record': record},
                     is_best)
    logging.info('epoch %d  train_loss %.4f  val_%s %.4f%s  (%.1f s, %.0f examples/s)', epoch,
                 train_loss, metric, evaluation[metric], '  best' if is_best else '',
                 train_seconds, record['examples_per_second'])

  compilations = {'train_step': multi_step._cache_size(), **task.compilation_counts()}  # pylint: disable=protected-access
  logging.info('XLA compilations (one per distinct input shape): %s', compilations)
  best_state, best_meta = checkpoints.restore(abstract_state, 'best')
  checkpoints.close()
  results = {'best_epoch': best_meta['epoch'], f'val_{metric}': best_meta['best_value'],
             'selection_metric': metric, 'selection_mode': mode,
             'epochs_trained': config.num_epochs,
             'train_seconds': round(sum(r['train_seconds'] for r in tracker.history), 1),
             'compilations': compilations, 'examples': task.split_sizes(),
             'devices': parallel.device_count(),
             **{f'test_{k}': v for k, v in task.evaluate(best_state.params, 'test').items()}}
  records.write_json(results_path, results)
  logging.info('Best epoch %d; test %s', results['best_epoch'],
               {k: v for k, v in results.items() if k.startswith('test_')})
  _plot_history(tracker.history, metric, workdir)
  task.write_outputs(best_state.params, results)
  tracker.images(int(state.step), sorted(glob.glob(os.path.join(workdir, '*.png'))))
  tracker.close()
  return results


def _plot_history(history, metric, workdir):
  epochs = [r['epoch'] for r in history]
  plots.plot_curve(epochs, [r['train_loss'] for r in history], 'training loss',
                   os.path.join(workdir, 'train_loss.png'))
  plots.plot_curve(epochs, [r[f'val_{metric}'] for r in history], f'validation {metric}',
                   os.path.join(workdir, f'val_{metric}.png'))


def restore_best_params(task, config, workdir):
  """Parameters of the best checkpoint of `workdir` (written on any number of devices), on this
  run's mesh, for a task built from `config`."""
  abstract_state = abstract_train_state(task, config)
  checkpoints = Checkpoints(workdir)
  try:
    state, meta = checkpoints.restore(abstract_state, 'best')
  finally:
    checkpoints.close()
  return state.params, meta


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
