"""Experiments the shared loop can run, chosen by name with `config.task`."""
from hw2.errors import UserError


def _classification():
  from hw2.tasks.classification import Classification  # pylint: disable=g-import-not-at-top
  return Classification


def _translation():
  from hw2.tasks.translation import Translation  # pylint: disable=g-import-not-at-top
  return Translation


TASKS = {'classification': _classification, 'translation': _translation}


def build(config, workdir, mode):
  """Instantiates the task named by `config.task` for `mode`."""
  if config.task not in TASKS:
    raise UserError(f'unknown task {config.task!r} (--config.task); choose one of {sorted(TASKS)}')
  return TASKS[config.task]()(config, workdir, mode)
