"""Entry point: train, evaluate, translate or sweep the experiment that a config file describes.

  python main.py --config configs/cnn.py --workdir runs/cnn [--config.learning_rate=0.01 ...]
  python main.py --config configs/cnn.py --workdir runs/cnn --mode eval
  python main.py --config configs/cnn.py --workdir runs/lr --sweep learning_rate=1e-5,5e-4,1e-2
  python main.py --config configs/seq2seq.py --workdir runs/s2s --mode translate --text "hola ."
  python main.py --config configs/theory.py --workdir runs/theory
"""
import logging as std_logging
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
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'translate'],
                  'train (resumes if the workdir has checkpoints), eval (test the best checkpoint) '
                  'or translate (--text or standard input with the best checkpoint).')
flags.DEFINE_string('sweep', None, 'KEY=V1,V2,...: train once per value, each in WORKDIR/KEY=V.')
flags.DEFINE_multi_string('text', None, 'Sentence to translate in --mode translate (repeatable); '
                          'without it, one sentence per line is read from standard input.')
flags.mark_flags_as_required(['config', 'workdir'])


def run(config, workdir, mode, sweep, texts):
  """Dispatches to the module that does the work."""
  # Imported here so that `--help` and flag errors do not wait for JAX.
  from hw2 import sweeps, theory, train, translate  # pylint: disable=g-import-not-at-top
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


def parse_flags(argv):
  """absl flag parsing, with a mistyped or unknown --config.key reported in one line."""
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    message = str(e)
    if isinstance(e, (AttributeError, KeyError)):
      key = message.strip('"\'')
      message = f'unknown config key {key!r} in {" ".join(a for a in argv if key in a)}'
    print(f'error: bad command line: {message}', file=sys.stderr)
    sys.exit(1)


def main(argv):
  _hide_library_chatter()
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    run(FLAGS.config, FLAGS.workdir, FLAGS.mode, FLAGS.sweep, FLAGS.text)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
