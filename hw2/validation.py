"""Every config value checked in one place, before any file is written or anything compiled.

`validate(config)` applies the rules below to the fields a config has (each task's config has its
own subset) and raises one UserError naming the flag, the value and what is allowed. Checks that
need the data (a batch larger than the training set, a validation split larger than the images)
are made where the data is read, still before anything is written.
"""
import math
import numbers
import os

import ml_collections

from hw2.errors import UserError

INT32_MAX = 2**31 - 1  # Sizes and counts index int32 arrays on the device.
SEED_MAX = 2**32 - 1  # jax.random.key and numpy's RandomState take 32-bit seeds.

# Names that a field may take: the keys of the registries that use them, written here so that a
# config is checked before JAX is imported (tests/test_validation.py keeps them equal).
CHOICES = {
    'task': ('classification', 'translation', 'theory', 'homework', 'beyond'),  # hw2/tasks
    'optimizer': ('adam', 'sgd'),  # hw2/optim.py
    'schedule': ('constant', 'cosine', 'linear', 'rsqrt', 'plateau'),  # hw2/optim.py
    'dataset': ('kmnist', 'fashion_mnist', 'mnist'),  # hw2/data/images.py
    'normalize': ('homework', 'none'),  # hw2/data/text.py
    'model.impl': ('auto', 'reference', 'fast'),  # hw2/models
    'model.architecture': ('lstm', 'transformer'),  # hw2/models
}


def _integer(low, high=INT32_MAX):
  def check(value):
    integer = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return None if integer and low <= value <= high else f'an integer in [{low}, {high}]'
  return check


def _real(low, low_open=False, high=None):
  """A finite number in [low, high) ((low, high) with low_open; no upper bound if high is None)."""
  interval = f'{"(" if low_open else "["}{low:g}, {"inf" if high is None else f"{high:g}"})'

  def check(value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
      return f'a finite number in {interval}'
    above = value > low if low_open else value >= low
    return None if above and (high is None or value < high) else f'a number in {interval}'
  return check


def _even(low, high):
  base = _integer(low, high)

  def check(value):
    problem = base(value)
    if problem is None and value % 2:
      return (f'an even integer in [{low}, {high}] (the BiLSTM encoder gives each direction '
              'half; the Transformer\'s positions are half sines, half cosines)')
    return problem
  return check


# Upper bounds on what allocates device memory: past them a run would fail for lack of memory
# long after it started, instead of at once with a message.
MAX_BATCH = 1 << 20
MAX_HIDDEN = 1 << 14
MAX_DECODE_LENGTH = 1 << 12

# The fields each task reads (configs/<task>.py): a config without one of them was written for
# another task (e.g. --config.task=translation on configs/cnn.py).
TRAINING_FIELDS = ('optimizer', 'learning_rate', 'batch_size', 'num_epochs', 'seed',
                   'steps_per_call', 'eval_batch_size', 'schedule', 'warmup_steps',
                   'final_learning_rate_fraction', 'plateau_patience', 'plateau_factor',
                   'grad_clip_norm', 'weight_decay', 'label_smoothing', 'early_stopping_patience',
                   'ema_decay')  # configs/training.py
TASK_FIELDS = {
    'classification': ('dataset', 'data_dir', 'validation_size', 'max_train_examples',
                       'split_seed', 'split_test_images', 'model.impl', 'model.dropout_rate',
                       *TRAINING_FIELDS),
    'translation': ('data_dir', 'train_file', 'validation_file', 'test_file', 'source_column',
                    'target_column', 'normalize', 'max_length', 'model.impl',
                    'model.architecture', *TRAINING_FIELDS,
                    'num_attention_plots', 'num_samples', 'decode.beam_size',
                    'decode.length_penalty', 'decode.max_length', 'decode.max_source_length',
                    'decode.n_best'),
    'theory': ('seed', 'num_classes', 'conv_cases', 'count_cases', 'attention_cases',
               'sparsity_case'),
    'homework': ('theory', 'cnn', 'translation', 'learning_rates', 'beam_sizes',
                 'length_penalties'),
    'beyond': ('seeds', 'beam_size', 'length_penalty', 'translation', 'tuned', 'ablation',
               'transformer', 'cnn', 'cnn_stabilised'),
}
# config.model of each translation architecture: exactly these fields (the constructor's).
MODEL_FIELDS = {
    'lstm': ('impl', 'architecture', 'hidden_size', 'dropout_rate', 'use_attention'),
    'transformer': ('impl', 'architecture', 'hidden_size', 'num_layers', 'num_heads', 'ff_size',
                    'dropout_rate'),
}
# Folders stored as absolute paths, so that a workdir is the same experiment whichever directory
# it is run from (./data/kmnist and data/kmnist alike) and evaluates from anywhere.
PATH_FIELDS = ('data_dir', 'tfds_data_dir')

# Dotted field -> check(value) returning None or what the value should be.
RULES = {
    'batch_size': _integer(1, MAX_BATCH),
    'eval_batch_size': _integer(1, MAX_BATCH),
    'num_epochs': _integer(1),
    'steps_per_call': _integer(0),
    'learning_rate': _real(0, low_open=True),
    'model.dropout_rate': _real(0, high=1),
    'max_train_examples': _integer(0),
    'validation_size': _integer(0),
    'split_test_images': _integer(0),
    'seed': _integer(0, SEED_MAX),
    'split_seed': _integer(0, SEED_MAX),
    'model.hidden_size': _even(2, MAX_HIDDEN),
    'model.num_layers': _integer(1, 64),
    'model.num_heads': _integer(1, 256),
    'model.ff_size': _integer(1, MAX_HIDDEN),
    'max_length': _integer(1, MAX_DECODE_LENGTH),
    'source_column': _integer(0, 1000),
    'target_column': _integer(0, 1000),
    'num_attention_plots': _integer(0, 100),
    'decode.beam_size': _integer(1, 1024),
    'beam_size': _integer(1, 1024),
    'length_penalty': _real(0),
    'decode.length_penalty': _real(0),
    'decode.max_length': _integer(1, MAX_DECODE_LENGTH),
    'decode.max_source_length': _integer(1, MAX_DECODE_LENGTH),
    'decode.n_best': _integer(1, 1024),
    'num_classes': _integer(1, 1000),
    'warmup_steps': _integer(0),
    'final_learning_rate_fraction': _real(0, high=1),
    'plateau_patience': _integer(1, 10_000),
    'plateau_factor': _real(0, low_open=True, high=1),
    'grad_clip_norm': _real(0),
    'weight_decay': _real(0),
    'label_smoothing': _real(0, high=1),
    'early_stopping_patience': _integer(0),
    'ema_decay': _real(0, high=1),
    'num_samples': _integer(0, 100),
}


def lookup(config, dotted):
  """(present, value) of the dotted field `dotted` ('model.hidden_size') of a config."""
  node = config
  for name in dotted.split('.'):
    if not hasattr(node, 'keys') or name not in node:
      return False, None
    node = node[name]
  return True, node


# Experiments made of parts (configs/homework.py, configs/beyond.py): their nested configs (each
# validated as a config of its own, with its task) and their lists (each value checked).
PART_TASKS = {
    'homework': {'theory': 'theory', 'cnn': 'classification', 'translation': 'translation'},
    'beyond': {'translation': 'translation', 'tuned': 'translation',
               'transformer': 'translation', 'cnn': 'classification'},
}
PART_LISTS = {
    'homework': {'learning_rates': _real(0, low_open=True), 'beam_sizes': _integer(1, 1024),
                 'length_penalties': _real(0)},
    'beyond': {'seeds': _integer(0, SEED_MAX)},
}


def validate(config, prefix=''):
  """Raises UserError for the first field of `config` that breaks a rule; returns `config`.

  `prefix` names a nested config in the messages (--config.cnn.batch_size). Path fields are made
  absolute in place.
  """
  if not isinstance(config, ml_collections.ConfigDict):
    raise UserError(f'the config is a {type(config).__name__}: get_config() must return an '
                    'ml_collections.ConfigDict')
  if 'task' not in config:
    raise UserError(f'the config has no field {prefix}task: set it to one of '
                    f'{list(CHOICES["task"])}')
  for field, allowed in CHOICES.items():
    present, value = lookup(config, field)
    if present and value not in allowed:
      raise UserError(f'unknown {field} {value!r} (--config.{prefix}{field}); choose one of '
                      f'{list(allowed)}')
  for field, check in RULES.items():
    present, value = lookup(config, field)
    if present:
      problem = check(value)
      if problem:
        raise UserError(f'--config.{prefix}{field}={value!r} is out of range: it must be '
                        f'{problem}')
  missing = [f for f in TASK_FIELDS[config.task] if not lookup(config, f)[0]]
  if missing:
    raise UserError(f'--config.{prefix}task={config.task!r} needs the field(s) '
                    f'{", ".join(missing[:4])}{", ..." if len(missing) > 4 else ""} that this config '
                    f'lacks: it was written for another task; start from the config of that task')
  for field in PATH_FIELDS:
    if isinstance(config.get(field), str) and config[field]:
      config[field] = os.path.abspath(os.path.expanduser(config[field]))
  _check_relations(config, prefix)
  if config.task in PART_TASKS:
    _check_parts(config)
  if config.task == 'beyond':
    _check_beyond(config)
  return config


def _check_relations(config, prefix):
  """Rules between fields."""
  if 'source_column' in config and config.source_column == config.target_column:
    raise UserError(f'--config.{prefix}source_column and --config.{prefix}target_column are '
                    f'both {config.source_column}: source and target must be different columns')
  if config.task == 'translation':
    _check_model_fields(config.model, prefix)
  if 'decode' in config and config.decode.n_best > config.decode.beam_size:
    raise UserError(f'--config.{prefix}decode.n_best={config.decode.n_best} exceeds '
                    f'--config.{prefix}decode.beam_size={config.decode.beam_size}: beam search '
                    'keeps beam_size hypotheses')


def _check_model_fields(model, prefix):
  """config.model holds exactly the settings of its architecture's model."""
  architecture = model.architecture
  fields = MODEL_FIELDS[architecture]
  missing = [f for f in fields if f not in model]
  extra = [f for f in model if f not in fields]
  if missing or extra:
    problem = (f'lacks {", ".join(missing)}' if missing else
               f'has {", ".join(extra)}, which the {architecture} model does not take')
    raise UserError(f'--config.{prefix}model {problem}: the {architecture} model takes '
                    f'{", ".join(fields)}')
  if model.impl == 'fast':
    raise UserError(f'--config.{prefix}model.impl=fast: the {architecture} translator has one '
                    'implementation, its definition; use auto or reference')
  if architecture == 'transformer':
    if model.hidden_size % model.num_heads:
      raise UserError(f'--config.{prefix}model.hidden_size={model.hidden_size} does not divide '
                      f'into --config.{prefix}model.num_heads={model.num_heads} heads')


def _check_parts(config):
  for part, task in PART_TASKS[config.task].items():
    if config[part].get('task') != task:
      raise UserError(f'--config.{part}.task must be {task!r}, got {config[part].get("task")!r}')
    validate(config[part], prefix=f'{part}.')
  for field, check in PART_LISTS[config.task].items():
    values = config[field]
    if not isinstance(values, (tuple, list)) or not values:
      raise UserError(f'--config.{field}={values!r} must be a non-empty tuple, e.g. '
                      f"--config.{field}='(1, 2)'")
    for value in values:
      problem = check(value)
      if problem:
        raise UserError(f'--config.{field}={values!r} holds {value!r}: each must be {problem}')
    if len(set(values)) != len(values):
      raise UserError(f'--config.{field}={values!r} repeats a value')


def _check_beyond(config):
  """Each ablation group names fields of the translation configs; cnn_stabilised, of the CNN's."""
  for group in config.ablation:
    for field in str(group).split(','):
      if not (lookup(config.tuned, field)[0] and lookup(config.translation, field)[0]):
        raise UserError(f'--config.ablation={tuple(config.ablation)!r} names {field!r}, which '
                        'is not a field of the translation configs')
  for field in config.cnn_stabilised:
    if field not in config.cnn:
      raise UserError(f'--config.cnn_stabilised.{field} is not a field of the CNN config')
