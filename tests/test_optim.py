"""The training options (hw2/optim.py, hw2/losses.py, early stopping and validation loss in
hw2/train.py), each checked against a number computed here independently."""
import glob
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from tensorboard.backend.event_processing import event_file_loader

from hw2 import losses
from hw2 import optim
from hw2 import records
from hw2 import tasks
from hw2 import train
from hw2 import workdir as workdirs
from hw2.errors import UserError

STEPS = 20  # Steps per epoch of cnn_config: 1,000 images, batch 50.
TIMINGS = ('train_seconds', 'examples_per_second')


def expected_rate(config, step, total):
  """The schedules of hw2/optim.py written out with math, for 0-based `step`."""
  rate, warmup = config.learning_rate, config.warmup_steps
  final = config.final_learning_rate_fraction
  if step < warmup:
    return rate * step / warmup
  if config.schedule == 'cosine':
    progress = min((step - warmup) / (total - warmup), 1.0)
    return rate * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress)))
  if config.schedule == 'linear':
    progress = min((step - warmup) / (total - warmup), 1.0)
    return rate * (1 + (final - 1) * progress)
  if config.schedule == 'rsqrt':
    return rate * math.sqrt(max(warmup, 1) / max(step, warmup, 1))
  return rate


def logged_rates(workdir):
  """{step: learning rate} of the TensorBoard progress events."""
  rates = {}
  for path in glob.glob(os.path.join(workdir, 'tensorboard', '*')):
    for event in event_file_loader.LegacyEventFileLoader(path).Load():
      for value in event.summary.value:
        if value.tag == 'train/learning_rate':
          rates[event.step] = value.simple_value
  return rates


@pytest.mark.parametrize('schedule, warmup', [('cosine', 10), ('linear', 0), ('rsqrt', 5),
                                              ('constant', 7)])
@pytest.mark.slow
def test_the_loop_applies_and_records_the_schedule(cnn_config, tmp_path, schedule, warmup):
  cnn_config.update(schedule=schedule, warmup_steps=warmup, final_learning_rate_fraction=0.1,
                    steps_per_call=1)
  workdir = str(tmp_path)
  train.train_and_evaluate(cnn_config, workdir)
  total = cnn_config.num_epochs * STEPS
  rates = logged_rates(workdir)
  assert sorted(rates) == list(range(1, total + 1))  # After each step (steps_per_call 1).
  for step, rate in rates.items():
    assert rate == pytest.approx(expected_rate(cnn_config, step - 1, total), rel=1e-5, abs=1e-12)
  for record in records.read_metrics(workdir):
    last = record['epoch'] * STEPS - 1
    assert record['learning_rate'] == pytest.approx(expected_rate(cnn_config, last, total),
                                                    rel=1e-5, abs=1e-12)


def test_the_optimizer_steps_by_the_scheduled_rate(cnn_config):
  # Adam's update at step t is -rate(t) times the direction of Adam at rate 1.
  cnn_config.update(schedule='cosine', warmup_steps=3, final_learning_rate_fraction=0.2,
                    num_epochs=1)
  tx, unit = optim.make_optimizer(cnn_config, 10), optax.adam(1.0)
  params = {'w': jnp.arange(4.0)}
  state, unit_state = tx.init(params), unit.init(params)
  for step in range(10):
    grads = {'w': jnp.sin(params['w'] + step)}
    update, state = tx.update(grads, state, params)
    direction, unit_state = unit.update(grads, unit_state, params)
    np.testing.assert_allclose(update['w'], expected_rate(cnn_config, step, 10) * direction['w'],
                               rtol=1e-5, atol=1e-12)
    params = optax.apply_updates(params, update)


def test_homework_settings_are_plain_adam(cnn_config):
  # The homework's settings step as optax.adam at the homework's rate, update for update.
  params = {'w': jnp.array([1.0, -2.0, 3.0])}
  ours, adam = optim.make_optimizer(cnn_config, STEPS), optax.adam(cnn_config.learning_rate)
  ours_state, adam_state = ours.init(params), adam.init(params)
  for step in range(5):
    grads = {'w': jnp.array([0.5, -1.0, 2.0]) * (step + 1)}
    ours_update, ours_state = ours.update(grads, ours_state, params)
    adam_update, adam_state = adam.update(grads, adam_state, params)
    np.testing.assert_array_equal(ours_update['w'], adam_update['w'])


def test_clipping_bounds_the_update_norm(cnn_config):
  cnn_config.update(optimizer='sgd', learning_rate=1.0, grad_clip_norm=0.5)
  tx = optim.make_optimizer(cnn_config, STEPS)
  params = {'a': jnp.zeros(3), 'b': jnp.zeros(2)}
  big = {'a': jnp.array([3.0, 4.0, 0.0]), 'b': jnp.array([0.0, 12.0])}  # Global norm 13.
  update, _ = tx.update(big, tx.init(params), params)
  np.testing.assert_allclose(optax.global_norm(update), 0.5, rtol=1e-6)
  np.testing.assert_allclose(update['b'], -0.5 * np.array([0.0, 12.0]) / 13, rtol=1e-6)
  small = {'a': jnp.array([0.1, 0.0, 0.0]), 'b': jnp.zeros(2)}  # Below the bound: unchanged.
  update, _ = tx.update(small, tx.init(params), params)
  np.testing.assert_allclose(update['a'], [-0.1, 0.0, 0.0], rtol=1e-6)


def test_weight_decay_is_decoupled(cnn_config):
  # AdamW: the decay term is rate * weight_decay * params, outside Adam's normalisation.
  cnn_config.update(weight_decay=0.1, learning_rate=0.01)
  params, grads = {'w': jnp.array([2.0, -4.0])}, {'w': jnp.array([1.0, 1.0])}
  decayed, _ = optim.make_optimizer(cnn_config, STEPS).update(
      grads, optim.make_optimizer(cnn_config, STEPS).init(params), params)
  plain, _ = optax.adam(0.01).update(grads, optax.adam(0.01).init(params), params)
  np.testing.assert_allclose(decayed['w'] - plain['w'], -0.01 * 0.1 * params['w'], rtol=1e-5)


def test_label_smoothing_changes_the_loss_by_the_expected_amount():
  logits = jnp.array([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 3.0]])
  labels = jnp.array([0, 2])
  log_p = np.log(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))
  plain = -log_p[np.arange(2), labels]
  smoothed = (1 - 0.1) * plain + 0.1 * (-log_p.mean(-1))
  np.testing.assert_allclose(losses.cross_entropy(logits, labels), plain, rtol=1e-6)
  np.testing.assert_allclose(losses.cross_entropy(logits, labels, 0.1), smoothed, rtol=1e-6)


def test_the_moving_average_is_the_hand_computed_one():
  tx = optim.parameter_ema(0.9)
  params = {'w': jnp.array([1.0, 2.0])}
  state, expected = tx.init(params), np.array([1.0, 2.0])
  for step in range(5):
    updates = {'w': jnp.array([0.5, -1.0]) * (step + 1)}
    passed, state = tx.update(updates, state, params)
    np.testing.assert_array_equal(passed['w'], updates['w'])  # The updates pass unchanged.
    params = optax.apply_updates(params, updates)
    expected = 0.9 * expected + 0.1 * np.asarray(params['w'])
    np.testing.assert_allclose(state.ema['w'], expected, rtol=1e-6)


@pytest.mark.slow
def test_the_run_evaluates_the_moving_average(cnn_config, tmp_path):
  cnn_config.update(ema_decay=0.9, num_epochs=1)
  workdir = str(tmp_path)
  results = train.train_and_evaluate(cnn_config, workdir)
  task = tasks.build(cnn_config, workdir, 'eval')
  params, _ = train.restore_best_params(task, cnn_config, workdir)
  state, _ = _restore_latest(task, cnn_config, workdir)
  ema = optax.tree_utils.tree_get(state.opt_state, 'ema')
  for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(ema)):
    np.testing.assert_array_equal(a, b)
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(state.params),
                                                       jax.tree_util.tree_leaves(ema)))
  assert task.evaluate(params, 'test')['accuracy'] == results['test_accuracy']


def _restore_latest(task, config, workdir):
  from hw2.checkpoint import Checkpoints  # pylint: disable=g-import-not-at-top
  checkpoints = Checkpoints(workdir)
  try:
    return checkpoints.restore_latest(train.abstract_train_state(task, config, STEPS))
  finally:
    checkpoints.close()


def plateau_scales_by_hand(values, patience, factor):
  """Scale before each epoch 1..len(values)+1 for a metric to maximise."""
  scales, scale, best, since = [1.0], 1.0, -1.0, 0
  for value in values:
    if value > best:
      best, since = value, 0
    else:
      since += 1
      if since == patience:
        scale, since = scale * factor, 0
    scales.append(scale)
  return scales


def test_plateau_reduces_the_rate_after_patience_epochs_without_improvement(cnn_config):
  cnn_config.update(schedule='plateau', plateau_patience=2, plateau_factor=0.5)
  values = [0.5, 0.6, 0.6, 0.55, 0.7, 0.7, 0.7, 0.69, 0.8]
  history = [{'epoch': i + 1, 'val_accuracy': v} for i, v in enumerate(values)]
  expected = plateau_scales_by_hand(values, 2, 0.5)
  assert expected == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
  for epochs in range(len(values) + 1):
    assert optim.plateau_scale(cnn_config, history[:epochs], 'accuracy', 'max') == expected[epochs]
  # 'min' metrics (translation's error rate) improve downwards.
  flipped = [{'epoch': r['epoch'], 'val_error_rate': 1 - r['val_accuracy']} for r in history]
  assert optim.plateau_scale(cnn_config, flipped, 'error_rate', 'min') == expected[-1]


def test_a_stalled_metric_leaves_other_schedules_rates_as_they_are(cnn_config, tmp_path):
  # At a rate of 1e-12 the validation accuracy never changes: a plateau schedule would halve the
  # rate after each epoch; a constant one applies (and records) its rate throughout.
  cnn_config.update(learning_rate=1e-12, plateau_patience=1, num_epochs=3)
  train.train_and_evaluate(cnn_config, str(tmp_path))
  history = records.read_metrics(str(tmp_path))
  assert len({r['val_accuracy'] for r in history}) == 1
  assert [r['learning_rate'] for r in history] == [1e-12] * 3


def test_plateau_scale_reaches_the_optimizer(cnn_config):
  cnn_config.update(schedule='plateau', optimizer='sgd', learning_rate=1.0)
  tx = optim.make_optimizer(cnn_config, STEPS)
  params = {'w': jnp.ones(2)}
  state = optim.with_plateau_scale(tx.init(params), jnp.float32(0.25))
  update, _ = tx.update({'w': jnp.array([1.0, 2.0])}, state, params)
  np.testing.assert_allclose(update['w'], [-0.25, -0.5])


@pytest.mark.slow
def test_early_stopping_ends_a_run_that_cannot_improve(cnn_config, tmp_path):
  # At a rate of 1e-12 the parameters do not move enough to change one prediction.
  cnn_config.update(learning_rate=1e-12, early_stopping_patience=2, num_epochs=10)
  workdir = str(tmp_path)
  results = train.train_and_evaluate(cnn_config, workdir)
  history = records.read_metrics(workdir)
  assert [r['epoch'] for r in history] == [1, 2, 3]
  assert len({r['val_accuracy'] for r in history}) == 1
  assert results['stopped_early'] and results['epochs_trained'] == 3 and results['best_epoch'] == 1
  # A rerun of the stopped run trains nothing, even with more epochs allowed.
  cnn_config.num_epochs = 20
  assert train.train_and_evaluate(cnn_config, workdir) == results
  assert records.read_metrics(workdir) == history


@pytest.mark.slow
def test_validation_loss_is_the_mean_cross_entropy(cnn_config, tmp_path):
  cnn_config.num_epochs = 1
  workdir = str(tmp_path)
  train.train_and_evaluate(cnn_config, workdir)
  task = tasks.build(cnn_config, workdir, 'train')
  params, _ = train.restore_best_params(task, cnn_config, workdir)
  images, labels = task.data.split('validation')
  logits = task.model.apply({'params': params}, images)
  expected = float(optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean())
  assert records.read_metrics(workdir)[0]['val_loss'] == pytest.approx(expected, rel=1e-5)


class Stop(Exception):
  pass


@pytest.mark.parametrize('options', [
    {'schedule': 'cosine', 'warmup_steps': 15, 'grad_clip_norm': 0.5, 'weight_decay': 0.01,
     'ema_decay': 0.9},
    {'schedule': 'plateau', 'plateau_patience': 1, 'plateau_factor': 0.5, 'label_smoothing': 0.1,
     'learning_rate': 0.05},
], ids=['cosine', 'plateau'])
@pytest.mark.slow
def test_a_resumed_scheduled_run_equals_an_uninterrupted_one(cnn_config, tmp_path, monkeypatch,
                                                              options):
  cnn_config.update(num_epochs=3, **options)
  reference = train.train_and_evaluate(cnn_config, str(tmp_path / 'reference'))

  def stop_after_epoch_2(name, epoch=None):
    if (name, epoch) == ('saved', 2):
      raise Stop
  workdir = str(tmp_path / 'resumed')
  monkeypatch.setattr(workdirs, 'phase', stop_after_epoch_2)
  with pytest.raises(Stop):
    train.train_and_evaluate(cnn_config, workdir)
  monkeypatch.undo()
  resumed = train.train_and_evaluate(cnn_config, workdir)
  strip = lambda history: [{k: v for k, v in r.items() if k not in TIMINGS} for r in history]
  assert strip(records.read_metrics(workdir)) == strip(
      records.read_metrics(str(tmp_path / 'reference')))
  assert resumed['test_accuracy'] == reference['test_accuracy']
  if options['schedule'] == 'plateau':  # The run did reduce its rate.
    assert records.read_metrics(workdir)[-1]['learning_rate'] < options['learning_rate']


def test_a_warmup_longer_than_the_run_is_refused_before_any_file(cnn_config, tmp_path):
  cnn_config.warmup_steps = 2 * STEPS + 1
  with pytest.raises(UserError, match=r'--config.warmup_steps=41 is longer than the run: 2 '
                                      r'epochs of 20 steps are 40 steps'):
    train.train_and_evaluate(cnn_config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')


@pytest.mark.slow
def test_a_decaying_schedule_cannot_be_extended_on_resume(cnn_config, tmp_path):
  cnn_config.update(schedule='cosine', num_epochs=1)
  train.train_and_evaluate(cnn_config, str(tmp_path))
  cnn_config.num_epochs = 2
  with pytest.raises(UserError, match='cosine schedule .* decays over its 1 epochs'):
    train.train_and_evaluate(cnn_config, str(tmp_path))
