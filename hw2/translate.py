"""Using a trained translation workdir: --mode translate (sentences in, translations out), and
its test metrics under other decoding settings (the beam-search table)."""
import sys

from hw2 import parallel
from hw2 import tasks
from hw2 import train
from hw2 import validation
from hw2 import workdir as workdirs
from hw2.errors import UserError


def translate_cli(config, workdir, texts):
  """Prints one translation per input (or the n best with their scores, --config.decode.n_best).

  Inputs are the --text flags, or else the non-empty lines of standard input.
  """
  config = validation.validate(workdirs.config_for_evaluation(workdir, config))
  parallel.check_batch_sizes(config)
  if config.task != 'translation':
    raise UserError(f'--mode translate needs a translation run; {workdir} holds a {config.task} run')
  task = tasks.build(config, workdir, 'translate')
  if not texts:
    texts = [line.rstrip('\n') for line in sys.stdin if line.strip()]
  if not texts:
    raise UserError('nothing to translate: give --text "..." or sentences on standard input')
  params, _ = train.restore_best_params(task, config, workdir)
  n_best = config.decode.n_best
  sources = [task.normalize(t) for t in texts]
  for source, hypotheses in zip(sources, task.translate(params, sources)):
    if n_best == 1:
      print(hypotheses[0][0])
    else:
      print(source)
      for translation, score in hypotheses[:n_best]:
        print(f'  {score:9.4f}  {translation}')
  return sources


def decoding_metrics(workdir, beam_size, length_penalty, split='test'):
  """Metrics of the best checkpoint of a translation `workdir` on `split`, decoded with
  `beam_size` (1: greedy) and GNMT `length_penalty`: {error_rate, exact_match, chrf, bleu}."""
  config = workdirs.load_saved_config(workdir)
  config.decode.beam_size, config.decode.length_penalty = beam_size, float(length_penalty)
  validation.validate(config)
  parallel.check_batch_sizes(config)
  task = tasks.build(config, workdir, 'eval')
  params, _ = train.restore_best_params(task, config, workdir)
  return task.evaluate(params, split)
