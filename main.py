"""Entry point: train, evaluate, translate or sweep the experiment that a config file describes.

  python main.py --config configs/cnn.py --workdir runs/cnn --config.learning_rate=0.001
  python main.py --config configs/cnn.py --workdir runs/cnn --mode eval
  python main.py --config configs/cnn.py --workdir runs/lr --sweep learning_rate=1e-5,5e-4,1e-2
  python main.py --config configs/cnn.py --workdir runs/grid --sweep learning_rate=1e-3,3e-3 \
      --sweep seed=1,2,3
  python main.py --config configs/seq2seq.py --workdir runs/s2s --mode translate --text "hola ."
  python main.py --config configs/theory.py --workdir runs/theory
  python main.py --config configs/homework.py --workdir runs/homework
  python main.py --config configs/homework.py --workdir runs/homework --mode report
  python main.py --config configs/seq2seq.py --workdir runs/s2s \
      --coordinator_address=127.0.0.1:12345 --num_processes=2 --process_id=0  # and 1: each host

Every setting of the config is a flag (--config.KEY=VALUE); docs/usage.md lists the modes, flags
and files. Bad input ends with one `error:` line and exit status 1; Ctrl-C or SIGTERM with one
line and 130 / 143 (hw2/cli.py). Rerunning a command resumes it.
"""
from absl import app
from absl import flags
from ml_collections import config_flags

from hw2 import cli
from hw2.errors import UserError

FLAGS = flags.FLAGS


def define_flags(flag_values, argv=None):
  """Defines main.py's flags on `flag_values` (absl's FlagValues) for the command line `argv`
  (None: sys.argv), which names the config's overrides; the documented-commands test parses each
  command with a fresh FlagValues."""
  on = {'flag_values': flag_values}
  config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py).',
                                  lock_config=True, sys_argv=argv, **on)
  flags.DEFINE_string('workdir', None, 'Folder for checkpoints, metrics, results and figures.',
                      **on)
  flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'translate', 'report'],
                    'train (resumes if the workdir has checkpoints), eval (test the best '
                    'checkpoint), translate (--text or standard input with the best checkpoint) '
                    'or report (configs/homework.py, configs/beyond.py: rebuild report.md from '
                    'the finished runs).', **on)
  flags.DEFINE_multi_string('sweep', None, 'KEY=V1,V2,...: train once per value, each in '
                            'WORKDIR/KEY=V; repeated, once per combination (a grid).', **on)
  flags.DEFINE_multi_string('text', None, 'Sentence to translate in --mode translate '
                            '(repeatable); without it, each line of standard input is '
                            'translated.', **on)
  flags.DEFINE_string('coordinator_address', None, 'Several processes: HOST:PORT of process 0, '
                      'passed to jax.distributed.initialize with --num_processes, --process_id.',
                      **on)
  flags.DEFINE_integer('num_processes', None, 'Several processes: how many take part.', **on)
  flags.DEFINE_integer('process_id', None, 'Several processes: this one, in '
                       '[0, --num_processes).', **on)
  flags.DEFINE_integer('coordinator_timeout', 60, 'Several processes: seconds to wait for every '
                       'process to join before giving up.', **on)
  flags.DEFINE_bool('distributed', False, 'Let jax.distributed.initialize detect the cluster '
                    '(TPU pod slice, SLURM, ...).', **on)
  flags.mark_flags_as_required(['config', 'workdir'], **on)


define_flags(FLAGS)


def run(config, workdir, mode, sweep, texts, cluster=None):
  """Validates the config, joins the other processes (if any), locks the workdir if the mode
  writes there (process 0), then dispatches."""
  # hw2.validation imports no JAX: a bad value is reported at once. JAX and the model code are
  # imported only after the checks.
  from hw2 import validation  # pylint: disable=g-import-not-at-top
  validation.validate(config)
  if sweep and mode != 'train':
    raise UserError(f'--sweep trains; for --mode {mode} give one member\'s --workdir (e.g. '
                    f'{workdir}/{sweep[0].split(",")[0]})')
  cli.enable_compilation_cache()
  from hw2 import parallel  # pylint: disable=g-import-not-at-top
  from hw2 import workdir as workdirs  # pylint: disable=g-import-not-at-top
  parallel.initialize(**(cluster or {}), on_peer_interrupt=cli.peer_interrupted)
  if not parallel.is_writer():
    from absl import logging  # pylint: disable=g-import-not-at-top
    logging.set_verbosity(logging.WARNING)  # Process 0 logs the run's progress.
  if mode != 'report':
    workdirs.check_workdir_format(workdir)
  if mode == 'translate' and config.task != 'theory':
    return _dispatch(config, workdir, mode, sweep, texts)  # Reads the workdir only.
  with workdirs.writer(workdir):
    return _dispatch(config, workdir, mode, sweep, texts)


def _dispatch(config, workdir, mode, sweep, texts):
  """Runs the mode; each imports only its own modules."""
  # pylint: disable=g-import-not-at-top
  if config.task == 'homework':
    from hw2 import homework, report
    return report.write_report(workdir) if mode == 'report' else homework.run(config, workdir)
  if config.task == 'beyond':
    from hw2 import beyond
    return beyond.write_report(workdir) if mode == 'report' else beyond.run(config, workdir)
  if mode == 'report':
    raise UserError('--mode report rebuilds the report of configs/homework.py or '
                    f'configs/beyond.py; this config has task {config.task!r}')
  if config.task == 'theory':
    from hw2 import theory
    return theory.write_report(config, workdir)
  if sweep:
    from hw2 import sweeps
    return sweeps.run_sweep(config, workdir, sweep)
  if mode in ('train', 'eval'):
    from hw2 import train
    return train.train_and_evaluate(config, workdir) if mode == 'train' else train.evaluate(
        config, workdir)
  from hw2 import translate
  return translate.translate_cli(config, workdir, texts)


def main(argv):
  del argv  # cli.parse_flags refuses positional arguments.
  cli.hide_library_chatter()
  cli.install_interrupt_handlers()
  try:
    run(FLAGS.config, FLAGS.workdir, FLAGS.mode, FLAGS.sweep, FLAGS.text,
        cluster={'coordinator_address': FLAGS.coordinator_address,
                 'num_processes': FLAGS.num_processes, 'process_id': FLAGS.process_id,
                 'detect': FLAGS.distributed, 'timeout': FLAGS.coordinator_timeout})
  except UserError as e:
    cli.exit_with_error(str(e))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
