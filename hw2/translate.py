"""Using a trained translation workdir: --mode translate (sentences in, translations out), and
its test metrics under other decoding settings (the beam-search table)."""
import os
import sys

from hw2 import parallel
from hw2 import tasks
from hw2 import train
from hw2 import validation
from hw2 import workdir as workdirs
from hw2.errors import UserError


def translate_cli(config, workdir, texts, stdin=None):
  """Prints one translation per input (or the n best with their scores, --config.decode.n_best).

  Inputs are the --text flags, or else every line of standard input (an empty line gives an
  empty line, so output lines stay aligned with input lines). Behaves like a Unix filter: a
  closed pipe ends it quietly, a failed write or unreadable input with one error line.
  """
  config = validation.validate(workdirs.config_for_evaluation(workdir, config))
  parallel.check_batch_sizes(config)
  if config.task != 'translation':
    raise UserError(f'--mode translate needs a translation run; {workdir} holds a {config.task} '
                    'run')
  texts = read_inputs(texts, sys.stdin if stdin is None else stdin)
  task = tasks.build(config, workdir, 'translate')
  params, _ = train.restore_best_params(task, config, workdir)
  sources = [task.normalize(t) for t in texts]
  to_translate = [s for s in sources if s]
  translations = iter(task.translate(params, to_translate) if to_translate else [])
  lines = []
  for source in sources:
    hypotheses = next(translations) if source else []
    if config.decode.n_best == 1:
      lines.append(hypotheses[0][0] if hypotheses else '')
    else:
      lines.append(source)
      lines += [f'  {score:9.4f}  {translation}'
                for translation, score in hypotheses[:config.decode.n_best]]
  write_output(lines)
  return sources


def read_inputs(texts, stdin):
  """The sentences to translate: `texts` (the --text flags) if given, else the lines of `stdin`
  decoded as UTF-8. Raises UserError for an empty --text, closed or undecodable input."""
  if texts:
    if any(not t.strip() for t in texts):
      raise UserError('--text is empty: give the sentence to translate, e.g. --text "hola ."')
    return list(texts)
  if stdin is None or stdin.closed:
    raise UserError('nothing to translate: give --text "..." or sentences on standard input '
                    '(it is closed)')
  try:
    data = stdin.buffer.read() if hasattr(stdin, 'buffer') else stdin.read().encode('utf-8')
  except (OSError, ValueError) as e:
    raise UserError(f'cannot read standard input: {e}') from None
  lines = []
  for number, raw in enumerate(data.splitlines(), 1):
    try:
      lines.append(raw.decode('utf-8'))
    except UnicodeDecodeError as e:
      raise UserError(f'standard input line {number} is not UTF-8 text (byte 0x{raw[e.start]:02x} '
                      f'at column {e.start + 1}); convert it, e.g. with iconv') from None
  if not any(line.strip() for line in lines):
    raise UserError('nothing to translate: give --text "..." or sentences on standard input')
  return lines


def write_output(lines, stream=None):
  """Writes `lines` to standard output. A reader that went away (EPIPE, e.g. `| head -1`) ends
  the program quietly with status 0, as it would any Unix filter; another failure (a full disk)
  is a UserError."""
  stream = stream or sys.stdout
  try:
    stream.write(''.join(line + '\n' for line in lines))
    stream.flush()
  except BrokenPipeError:
    _silence(stream)
    raise SystemExit(0) from None
  except OSError as e:
    _silence(stream)
    raise UserError(f'could not write the translations to standard output: '
                    f'{e.strerror or e}') from None


def _silence(stream):
  """Points `stream`'s file descriptor at /dev/null, so that the interpreter's final flush of
  what is still buffered cannot fail again."""
  try:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)
  except (OSError, ValueError, AttributeError):
    pass


def decoding_metrics(workdir, beam_size, length_penalty, split='test'):
  """Metrics of the best checkpoint of a translation `workdir` on `split` ('test' or
  'validation'), decoded with `beam_size` (1: greedy) and GNMT `length_penalty`: {error_rate,
  exact_match, chrf, bleu, ...}."""
  config = workdirs.load_saved_config(workdir)
  config.decode.beam_size, config.decode.length_penalty = beam_size, float(length_penalty)
  validation.validate(config)
  parallel.check_batch_sizes(config)
  task = tasks.build(config, workdir, 'eval')
  params, _ = train.restore_best_params(task, config, workdir)
  return task.evaluate(params, split)
