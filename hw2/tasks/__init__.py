"""Experiments the shared loop can run, chosen by name with `config.task`."""
def _classification():
  from hw2.tasks.classification import Classification  # pylint: disable=g-import-not-at-top
  return Classification


def _translation():
  from hw2.tasks.translation import Translation  # pylint: disable=g-import-not-at-top
  return Translation


TASKS = {'classification': _classification, 'translation': _translation}


def build(config, workdir, mode):
  """Instantiates the task named by `config.task` (checked by hw2/validation.py) for `mode`."""
  return TASKS[config.task]()(config, workdir, mode)
