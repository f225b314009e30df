"""The interface between the shared training loop (hw2/train.py) and an experiment."""
import abc


class Task(abc.ABC):
  """An experiment the loop can train, evaluate and report on.

  The loop knows nothing else of a task: to add one, subclass this in a module of hw2/tasks/,
  register it in hw2/tasks/__init__.py and write a config.

  Attributes:
    model: the Flax module.
    selection_metric: key of `evaluate`'s dict that picks the best checkpoint.
    selection_mode: 'max' or 'min' for that metric.
  """
  model = None
  selection_metric: str = ''
  selection_mode: str = 'max'

  def __init__(self, config, workdir, mode):
    """Reads the data the `mode` ('train', 'eval', 'translate', ...) needs."""
    self.config = config
    self.workdir = workdir
    self.mode = mode

  @abc.abstractmethod
  def train_arrays(self):
    """Training set as a dict of numpy arrays, each with leading dimension N (examples)."""

  @abc.abstractmethod
  def init_params(self, rng):
    """Fresh model parameters (a pytree)."""

  @abc.abstractmethod
  def loss(self, params, batch, rng):
    """Scalar training loss of one batch (a dict like train_arrays with leading dim B); pure and
    traced under jit. `rng` feeds dropout."""

  @abc.abstractmethod
  def evaluate(self, params, split):
    """Metrics of `params` on split 'validation' or 'test': a dict of Python floats."""

  @abc.abstractmethod
  def split_sizes(self):
    """{split name: number of examples} of the splits this mode read (recorded in results)."""

  def workdir_files(self):
    """{file name: text} that training writes into the workdir and that every later use of it
    needs unchanged (a vocabulary). The checkpoints keep a copy; a resume must produce the same."""
    return {}

  def compilation_counts(self):
    """{name: number of XLA compilations} of the task's jitted evaluation functions."""
    return {}

  def samples(self):
    """Text logged after each epoch (markdown), from the evaluation of the validation split just
    made (e.g. a few of its translations); '' for none."""
    return ''

  def write_outputs(self, params, results):
    """Task-specific files and figures for the final (best) parameters. Optional."""
