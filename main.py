"""Entry point: train, evaluate, translate or sweep the experiment that a config file describes.

  python main.py --config configs/cnn.py --workdir runs/cnn [--config.learning_rate=0.01 ...]
  python main.py --config configs/cnn.py --workdir runs/cnn --mode eval
  python main.py --config configs/cnn.py --workdir runs/lr --sweep learning_rate=1e-5,5e-4,1e-2
  python main.py --config configs/seq2seq.py --workdir runs/s2s --mode translate --text "hola ."
  python main.py --config configs/theory.py --workdir runs/theory
  python main.py --config configs/homework.py --workdir runs/homework [--mode report]
  python main.py ... --coordinator_address=HOST:PORT --num_processes=N --process_id=I  (each host)
"""
import logging as std_logging
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from hw2.errors import UserError

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Folder for checkpoints, metrics, results and figures.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'translate', 'report'],
                  'train (resumes if the workdir has checkpoints), eval (test the best checkpoint), '
                  'translate (--text or standard input with the best checkpoint) or report '
                  '(configs/homework.py: rebuild report.md from the finished runs).')
flags.DEFINE_string('sweep', None, 'KEY=V1,V2,...: train once per value, each in WORKDIR/KEY=V.')
flags.DEFINE_multi_string('text', None, 'Sentence to translate in --mode translate (repeatable); '
                          'without it, one sentence per line is read from standard input.')
flags.DEFINE_string('coordinator_address', None, 'Several processes: HOST:PORT of process 0, '
                    'passed to jax.distributed.initialize with --num_processes, --process_id.')
flags.DEFINE_integer('num_processes', None, 'Several processes: how many take part.')
flags.DEFINE_integer('process_id', None, 'Several processes: this one, in [0, --num_processes).')
flags.DEFINE_bool('distributed', False, 'Let jax.distributed.initialize detect the cluster '
                  '(TPU pod slice, SLURM, ...).')
flags.mark_flags_as_required(['config', 'workdir'])


def run(config, workdir, mode, sweep, texts, cluster=None):
  """Validates the config, joins the other processes (if any), locks the workdir if the mode
  writes there (process 0), then dispatches."""
  # The model code is imported only after the checks, so bad values and a busy workdir are
  # reported at once.
  from hw2 import parallel  # pylint: disable=g-import-not-at-top
  from hw2 import validation  # pylint: disable=g-import-not-at-top
  from hw2 import workdir as workdirs  # pylint: disable=g-import-not-at-top
  validation.validate(config)
  parallel.initialize(**(cluster or {}))
  if not parallel.is_writer():
    logging.set_verbosity(logging.WARNING)  # Process 0 logs the run's progress.
  if mode == 'translate' and config.task != 'theory' and not sweep:
    return _dispatch(config, workdir, mode, sweep, texts)  # Reads the workdir only.
  with workdirs.writer(workdir):
    return _dispatch(config, workdir, mode, sweep, texts)


def _dispatch(config, workdir, mode, sweep, texts):
  from hw2 import homework, report, sweeps, theory, train, translate  # pylint: disable=g-import-not-at-top
  if config.task == 'homework':
    return report.write_report(workdir) if mode == 'report' else homework.run(config, workdir)
  if mode == 'report':
    raise UserError('--mode report rebuilds the report of configs/homework.py; this config has '
                    f'task {config.task!r}')
  if config.task == 'theory':
    return theory.write_report(config, workdir)
  if sweep:
    return sweeps.run_sweep(config, workdir, sweep)
  if mode == 'train':
    return train.train_and_evaluate(config, workdir)
  if mode == 'eval':
    return train.evaluate(config, workdir)
  return translate.translate_cli(config, workdir, texts)


def _hide_library_chatter():
  """Keeps the log to the run's own lines: orbax logs every checkpoint step at INFO."""
  logging.get_absl_logger().addFilter(
      lambda record: record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname)


def _config_file(argv):
  """The value of --config in argv (None if absent)."""
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      return arg.split('=', 1)[1]
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _flag_error_message(error, config_file, argv):
  """One line for an exception raised while parsing flags or loading the config file."""
  message = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
  if 'get_config' in message:
    return f'config file {config_file} does not define get_config()'
  if isinstance(error, (AttributeError, KeyError)):
    key = re.search(r"""['"]?([\w.]+)""", message)
    suggestion = re.search(r'Did you mean "([\w.]+)"', message)
    if not key:
      return f'unknown config key ({" ".join(message.split())})'
    name = key.group(1)
    for arg in argv:  # Name it as typed: --config.decode.beam rather than beam.
      flag = arg[len('--config.'):].split('=', 1)[0] if arg.startswith('--config.') else ''
      if flag.split('.')[-1] == name or flag.startswith(name + '.'):
        name = flag
        break
    line = f'unknown config key {name!r}'
    return line + (f' (did you mean {suggestion.group(1)!r}?)' if suggestion else '')
  return ' '.join(message.split())


def parse_flags(argv):
  """absl flag parsing, with every mistake (a missing config file, a config without get_config,
  an unknown or mistyped --config.key, a value of the wrong type) reported in one line."""
  config_file = _config_file(argv[1:])
  if config_file is not None and not os.path.isfile(config_file):
    what = 'is a folder' if os.path.isdir(config_file) else 'does not exist'
    _exit_with_error(f'bad command line: config file {config_file} {what} (--config)')
  try:
    rest = FLAGS(argv)
    if config_file is not None:
      FLAGS.config  # pylint: disable=pointless-statement  # Loads the file: surface its errors here.
    return rest
  except Exception as e:  # pylint: disable=broad-except  # A user's config file may raise anything.
    _exit_with_error(f'bad command line: {_flag_error_message(e, config_file, argv)}')


def _exit_with_error(message):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)


def main(argv):
  _hide_library_chatter()
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    run(FLAGS.config, FLAGS.workdir, FLAGS.mode, FLAGS.sweep, FLAGS.text,
        cluster={'coordinator_address': FLAGS.coordinator_address,
                 'num_processes': FLAGS.num_processes, 'process_id': FLAGS.process_id,
                 'detect': FLAGS.distributed})
  except UserError as e:
    _exit_with_error(str(e))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
