"""The command line around main.py: flag parsing with every mistake in one `error:` line, and
what a signal does.

- `parse_flags` is absl's flag parser (main.py hands it to `app.run`), with a missing config file,
  a config without get_config(), a syntax error in it, an unknown or mistyped --config.key, a
  value of the wrong type, or a stray positional argument reported as one line and exit status 1.
- `install_interrupt_handlers`: SIGINT (Ctrl-C) and SIGTERM end the process at once, even while
  one jitted call runs a whole epoch, with one line and exit status 130 / 143. That is as safe
  as a kill -9, which the workdir's write order already survives (hw2/workdir.py): the rerun of
  the same command resumes. In a multi-process run every process ends the same way, all of them
  together 1 s after the signal (hw2/parallel.py).
"""
import logging as std_logging
import os
import re
import signal
import sys
import threading
import time

from absl import flags
from absl import logging

from hw2.errors import UserError

INTERRUPTED = 'interrupted; rerun the same command to resume'
# JAX's persistent compilation cache: a folder (HW2_COMPILATION_CACHE, default
# ~/.cache/hw2/jax or $XDG_CACHE_HOME/hw2/jax), or 'off'.
CACHE_ENV = 'HW2_COMPILATION_CACHE'
# With a maximum size, JAX writes and evicts entries under a file lock, so processes that compile
# at once (the tests' workers, a sweep beside an eval) never read a half-written entry.
CACHE_MAX_BYTES = 4 << 30
# A program that compiles faster than this is compiled again rather than stored: loading it saves
# next to nothing, and JAX's eviction scans the whole folder under the lock at every store, so
# the thousands of eager operations a test or notebook compiles would slow every later store.
CACHE_MIN_COMPILE_SECONDS = 0.05
_ending = threading.Lock()  # Held by the one thread that ends the process after a signal,
_ending_thread = [None]  # which is this one.


def exit_with_error(message):
  """Prints `error: message` on stderr and exits with status 1."""
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)


def hide_library_chatter():
  """Keeps the log to the run's own lines: orbax logs every checkpoint step at INFO, and the
  leftovers of a failed checkpoint read (hw2/checkpoint.py reports the failure that matters)
  would print tracebacks. Installed by the entry point (and the tests' conftest), not at import."""
  logging.get_absl_logger().addFilter(
      lambda record: record.levelno >= std_logging.WARNING or '/orbax/' not in record.pathname)
  previous = sys.unraisablehook

  def drop_failed_read_leftovers(unraisable):
    # Python reports each leftover as an unraisable exception, with a traceback.
    if not _is_failed_read_leftover(unraisable.exc_value):
      previous(unraisable)
  sys.unraisablehook = drop_failed_read_leftovers
  std_logging.getLogger('asyncio').addFilter(_FailedReadLeftovers())


def _is_failed_read_leftover(error):
  """Whether `error` is what the other reads of a failed orbax restore end with: tensorstore
  still completes them after `restore` has raised, and their callbacks may reach the asyncio loop
  that orbax has closed by then."""
  closed_loop = isinstance(error, RuntimeError) and str(error) == 'Event loop is closed'
  return closed_loop or str(error).startswith('Encountered error while reading array')


class _FailedReadLeftovers(std_logging.Filter):
  """asyncio logs 'Task exception was never retrieved', traceback and all, for each leftover
  read task whenever the garbage collector reaches it, which may be long after the restore."""

  def filter(self, record):
    error = record.exc_info[1] if record.exc_info else None
    return error is None or not _is_failed_read_leftover(error)


def compilation_cache_dir(environ=None):
  """The folder of the persistent compilation cache, or None when $HW2_COMPILATION_CACHE is
  'off'."""
  environ = os.environ if environ is None else environ
  value = environ.get(CACHE_ENV)
  if value is not None:
    return None if value.strip().lower() in ('', 'off') else os.path.abspath(
        os.path.expanduser(value))
  base = environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'hw2', 'jax')


def enable_compilation_cache(environ=None):
  """Points JAX's persistent compilation cache at compilation_cache_dir(): every program of a
  run that takes CACHE_MIN_COMPILE_SECONDS or more to compile is stored there, and a later run,
  eval or test process that compiles the same program on the same backend loads it instead. A
  cached executable is the one XLA would compile, so results do not change. Returns the folder
  (None: off)."""
  folder = compilation_cache_dir(environ)
  if folder is None:
    return None
  if os.path.exists(folder) and not os.path.isdir(folder):
    writable, reason = False, 'a file, not a folder'
  else:
    try:
      os.makedirs(folder, exist_ok=True)
      writable, reason = os.access(folder, os.W_OK), 'not writable'
    except OSError as e:
      writable, reason = False, e.strerror or str(e)
  if not writable:
    raise UserError(f'{CACHE_ENV}={folder} cannot hold the compilation cache ({reason}): give a '
                    f'writable folder, or {CACHE_ENV}=off')
  import jax  # pylint: disable=g-import-not-at-top  # Only once the flags are checked.
  jax.config.update('jax_compilation_cache_dir', folder)
  jax.config.update('jax_persistent_cache_min_compile_time_secs',
                    CACHE_MIN_COMPILE_SECONDS)
  jax.config.update('jax_compilation_cache_max_size', CACHE_MAX_BYTES)
  return folder


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
  if isinstance(error, SyntaxError):
    return (f'config file {error.filename or config_file}, line {error.lineno}: '
            f'{error.msg}')
  message = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
  if 'Error whilst parsing config file' in message:  # The file's own code raised.
    raised = [line.strip() for line in message.splitlines() if line.strip()][-1]
    if "has no attribute 'get_config'" in raised:
      return f'config file {config_file} does not define get_config()'
    lines = [line for path, line in re.findall(r'File "([^"]+)", line (\d+)', message)
             if config_file and os.path.realpath(path) == os.path.realpath(config_file)]
    where = f', line {lines[-1]}' if lines else ''
    return f'config file {config_file}{where}: get_config() raised {raised}'
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
  in_file = config_file and _raised_in(error, config_file)
  where = f' (in config file {config_file})' if in_file else ''
  return ' '.join(message.split()) + where


def _raised_in(error, path):
  """True if the traceback of `error` passes through the file at `path`."""
  target, tb = os.path.realpath(path), error.__traceback__
  while tb is not None:
    if os.path.realpath(tb.tb_frame.f_code.co_filename) == target:
      return True
    tb = tb.tb_next
  return False


def parse_flags(argv, flag_values=None):
  """absl flag parsing into `flag_values` (default: absl's global FLAGS), with every mistake
  reported in one line (see the module docstring)."""
  flag_values = flags.FLAGS if flag_values is None else flag_values
  config_file = _config_file(argv[1:])
  if config_file is not None and not os.path.isfile(config_file):
    what = 'is a folder' if os.path.isdir(config_file) else 'does not exist'
    exit_with_error(f'bad command line: config file {config_file} {what} (--config)')
  try:
    rest = flag_values(argv)
    if config_file is not None:
      flag_values.config  # pylint: disable=pointless-statement  # Loads the file: errors surface here.
  except Exception as e:  # pylint: disable=broad-except  # A user's config file may raise anything.
    exit_with_error(f'bad command line: {_flag_error_message(e, config_file, argv)}')
  if len(rest) > 1:
    exit_with_error(f'bad command line: unexpected argument {rest[1]!r}: every setting is a '
                    'flag (--workdir=..., --config.key=value; see --help)')
  return rest


def _interrupted(signum, announce=True, deadline=None):
  """Ends the process after a signal: one line, exit status 128 + signum, no cleanup (see the
  module docstring). `announce` tells the other processes of a multi-process run, and every
  process ends at the same `deadline` (parallel.announce_interrupt)."""
  if not _ending.acquire(blocking=False):  # The process is ending already.
    if _ending_thread[0] is threading.current_thread():
      return  # A second signal inside the first one's handler: that handler ends the process.
    while True:
      time.sleep(60)
  _ending_thread[0] = threading.current_thread()
  try:
    os.write(2, f'\n{INTERRUPTED}\n'.encode())
  except OSError:  # Standard error is closed: end all the same.
    pass
  from hw2 import parallel  # pylint: disable=g-import-not-at-top
  if announce:
    deadline = parallel.announce_interrupt(signum)
  parallel.wait_until(deadline)
  os._exit(128 + signum)  # pylint: disable=protected-access


def install_interrupt_handlers():
  """SIGINT and SIGTERM end the process within moments, wherever the main thread is.

  A Python signal handler runs only between bytecodes of the main thread, which may be waiting
  minutes for one jitted call; the C-level handler also writes the signal number to a pipe that a
  watcher thread reads, and whichever sees it first ends the process.
  """
  read_fd, write_fd = os.pipe()
  os.set_blocking(write_fd, False)
  signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda signum, frame: _interrupted(signum))

  def watch():
    data = os.read(read_fd, 1)
    if data:
      _interrupted(data[0])
  threading.Thread(target=watch, name='hw2-interrupts', daemon=True).start()


def peer_interrupted(signum, deadline):
  """Another process of this multi-process run was interrupted: end this one the same way, at
  the same time (`deadline`, from time.time())."""
  _interrupted(signum, announce=False, deadline=deadline)
