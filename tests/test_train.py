"""The shared loop on the CNN task: outputs, resume, checkpoints, eval, sweeps, bad input."""
import asyncio
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hw2 import records
from hw2 import sweeps
from hw2 import tasks
from hw2 import tracking
from hw2 import train
from hw2.checkpoint import Checkpoints
from hw2.errors import UserError
from hw2.models.cnn import CNN


def test_run_writes_metrics_results_and_figures(cnn_config, tmp_path):
  workdir = str(tmp_path / 'run')
  results = train.train_and_evaluate(cnn_config, workdir)
  history = records.read_metrics(workdir)
  assert [r['epoch'] for r in history] == [1, 2]
  assert all(r['train_loss'] > 0 and 0 <= r['val_accuracy'] <= 1 for r in history)
  # The best epoch is the one with the highest validation accuracy.
  best = max(history, key=lambda r: r['val_accuracy'])
  assert results['best_epoch'] == best['epoch']
  assert results['val_accuracy'] == best['val_accuracy']
  assert 0.3 < results['test_accuracy'] <= 1.0
  # 20 steps an epoch in calls of 8: two shapes (8 and 4 steps); one evaluation batch shape.
  assert results['compilations'] == {'train_step': 2, 'predict': 1}
  assert records.read_json(os.path.join(workdir, 'results.json')) == results
  for name in ('train_loss.png', 'val_accuracy.png', 'activation_maps.png'):
    assert os.path.getsize(os.path.join(workdir, name)) > 1000

  # --mode eval restores the best checkpoint and reproduces the test accuracy exactly.
  evaluated = train.evaluate(cnn_config, workdir)
  assert evaluated['test_accuracy'] == results['test_accuracy']
  # A completed run rerun into the same workdir resumes, trains nothing and keeps the results.
  again = train.train_and_evaluate(cnn_config, workdir)
  assert again == results
  assert len(records.read_metrics(workdir)) == 2


@pytest.mark.slow
def test_interrupted_run_resumes_at_the_saved_epoch(cnn_config, tmp_path):
  cnn_config.num_epochs = 3
  straight = str(tmp_path / 'straight')
  train.train_and_evaluate(cnn_config, straight)

  interrupted = str(tmp_path / 'interrupted')
  cnn_config.num_epochs = 1
  train.train_and_evaluate(cnn_config, interrupted)
  # Simulate a crash after epoch 2's record was written but before its checkpoint.
  tracking.write_metrics(interrupted, records.read_metrics(interrupted) + [
      {'epoch': 2, 'train_loss': 123.0, 'val_accuracy': 0.0}])
  cnn_config.num_epochs = 3
  train.train_and_evaluate(cnn_config, interrupted)

  resumed, reference = records.read_metrics(interrupted), records.read_metrics(straight)
  assert [r['epoch'] for r in resumed] == [1, 2, 3]
  for a, b in zip(resumed, reference):
    assert a['train_loss'] == pytest.approx(b['train_loss'], rel=1e-5)
    assert a['val_accuracy'] == pytest.approx(b['val_accuracy'], abs=1e-9)


def _state(num_classes, seed=0):
  task = type('T', (), {})()
  task.model = CNN(num_classes=num_classes)
  task.init_params = lambda rng: task.model.init(rng, jnp.zeros((1, 28, 28, 1)))['params']
  from configs import cnn  # pylint: disable=g-import-not-at-top
  return train.create_train_state(task, cnn.get_config(), jax.random.key(seed), steps_per_epoch=1)


@pytest.mark.slow
def test_save_then_restore_gives_identical_predictions(tmp_path):
  state = _state(10, seed=3)
  checkpoints = Checkpoints(str(tmp_path))
  checkpoints.save(4, state, {'best_epoch': 4, 'best_value': 0.5})
  restored, meta = checkpoints.restore_best(jax.eval_shape(lambda: _state(10)))
  assert meta['epoch'] == 4 and checkpoints.epochs() == [4]
  x = jax.random.uniform(jax.random.key(7), (5, 28, 28, 1))
  np.testing.assert_array_equal(CNN().apply({'params': restored.params}, x),
                                CNN().apply({'params': state.params}, x))


def test_checkpoints_kept_are_the_last_two_and_the_best_they_name(tmp_path):
  state, checkpoints = _state(10), Checkpoints(str(tmp_path))
  kept = []
  for epoch, best in enumerate([1, 2, 2, 2, 5, 5], 1):
    checkpoints.save(epoch, state, {'best_epoch': best, 'best_value': 0.0})
    kept.append(checkpoints.epochs())
  # Epoch 4 still names 2 as best: kept while 4 is one of the last two (its fallback).
  assert kept == [[1], [1, 2], [2, 3], [2, 3, 4], [2, 4, 5], [5, 6]]
  restored, meta = checkpoints.restore_best(jax.eval_shape(lambda: _state(10)))
  assert meta['epoch'] == 5
  checkpoints.close()


def test_checkpoint_of_a_different_model_shape_is_refused(tmp_path):
  Checkpoints(str(tmp_path)).save(1, _state(10), {'best_epoch': 1, 'best_value': 0.5})
  with pytest.raises(UserError, match=r'different model: .*dense3.* shape \(10,\).*\(5,\)'):
    Checkpoints(str(tmp_path)).restore_latest(jax.eval_shape(lambda: _state(5)))


def test_leftovers_of_a_failed_checkpoint_read_are_not_logged(caplog):
  # asyncio logs a never-retrieved task's error whenever the garbage collector reaches it, which
  # may be long after the restore that failed and reported the damage in one line.
  loop = asyncio.new_event_loop()
  leftover = Exception('Encountered error while reading array index: (slice(0, 32, 1),)')
  other = ValueError('an unrelated failure')
  for error in (leftover, other):
    loop.call_exception_handler({'message': 'Task exception was never retrieved',
                                 'exception': error})
  loop.close()
  logged = [r.exc_info[1] for r in caplog.records if r.name == 'asyncio' and r.exc_info]
  assert logged == [other]


def test_eval_without_checkpoint_is_a_clear_error(cnn_config, tmp_path):
  with pytest.raises(UserError, match='no trained run in --workdir'):
    train.evaluate(cnn_config, str(tmp_path))


def test_changed_config_in_same_workdir_is_refused(cnn_config, tmp_path):
  cnn_config.num_epochs = 1
  workdir = str(tmp_path)
  train.train_and_evaluate(cnn_config, workdir)
  before = open(os.path.join(workdir, 'results.json')).read()
  cnn_config.learning_rate = 0.01
  with pytest.raises(UserError, match='learning_rate=0.001 but this config has learning_rate=0.01'):
    train.train_and_evaluate(cnn_config, workdir)
  assert open(os.path.join(workdir, 'results.json')).read() == before


@pytest.mark.slow
def test_sweep_writes_a_table_with_the_best_value_marked(cnn_config, tmp_path):
  cnn_config.num_epochs = 1
  rows = sweeps.run_sweep(cnn_config, str(tmp_path), 'learning_rate=1e-3,1e-9')
  summary = json.load(open(tmp_path / 'sweep.json'))
  assert [r['value'] for r in summary['runs']] == ['1e-3', '1e-9']
  assert summary['runs'] == json.loads(json.dumps(rows))
  best = [r for r in summary['runs'] if r['is_best']]
  assert len(best) == 1 and best[0]['value'] == '1e-3'  # lr 1e-9 cannot learn in one epoch.
  for row in summary['runs']:
    run_results = records.read_json(os.path.join(row['workdir'], 'results.json'))
    assert row['test_accuracy'] == run_results['test_accuracy']
    assert records.read_json(os.path.join(row['workdir'], 'config.json'))['learning_rate'] == float(row['value'])
  table = (tmp_path / 'sweep.md').read_text()
  assert '| 1e-3 |' in table and '**best**' in table.splitlines()[4]


@pytest.mark.parametrize('spec, message', [
    ('learning_rate', 'malformed'),
    ('learning_rate=', 'malformed'),
    ('learning_rate=1e-3,,1e-2', 'malformed'),
    ('learning_rate=fast', "'fast' is not a valid float"),
    ('no_such_key=1,2', "unknown config key 'no_such_key'"),
    ('learning_rate=1e-3,1e-3', 'repeats'),
    ('learning_rate=1e-3,0.001', r'repeats a value \(1e-3 and 0.001 are both 0.001\)'),
])
def test_malformed_sweep_values(cnn_config, spec, message):
  with pytest.raises(UserError, match=message):
    sweeps.parse_sweep(spec, cnn_config)


def test_sweep_parses_each_type(cnn_config):
  assert sweeps.parse_sweep('batch_size=8,64', cnn_config) == ('batch_size', [('8', 8), ('64', 64)])
  assert sweeps.parse_sweep('dataset=mnist', cnn_config)[1] == [('mnist', 'mnist')]


def test_unknown_task(cnn_config, tmp_path):
  cnn_config.task = 'regression'
  with pytest.raises(UserError, match="unknown task 'regression'"):
    train.train_and_evaluate(cnn_config, str(tmp_path / 'w'))
  assert not (tmp_path / 'w').exists()
