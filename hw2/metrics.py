"""Evaluation metrics: accuracy, Levenshtein distance, the homework's character error rate, and
the machine-translation community's chrF and BLEU (computed by sacrebleu, the reference
implementation, rather than by hand)."""
import numpy as np


def accuracy(predictions, labels):
  """Fraction of predictions [N] equal to labels [N]."""
  predictions, labels = np.asarray(predictions), np.asarray(labels)
  return float(np.mean(predictions == labels)) if labels.size else float('nan')


def levenshtein(a, b):
  """Edit distance between sequences a and b (insertions, deletions, substitutions cost 1)."""
  if len(a) < len(b):
    a, b = b, a
  previous = list(range(len(b) + 1))
  for i, ca in enumerate(a, 1):
    current = [i]
    for j, cb in enumerate(b, 1):
      current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
    previous = current
  return previous[-1]


def error_rate(references, predictions):
  """Mean over sentences of Levenshtein(reference, prediction) / len(reference).

  Characters are compared one by one, spaces included. A reference must be non-empty.
  """
  if len(references) != len(predictions):
    raise ValueError(f'{len(references)} references but {len(predictions)} predictions')
  return float(np.mean([levenshtein(r, p) / len(r) for r, p in zip(references, predictions)]))


def exact_match(references, predictions):
  """Fraction of predictions identical to their reference."""
  return float(np.mean([r == p for r, p in zip(references, predictions)]))


def corpus_bleu(references, predictions):
  """sacreBLEU's corpus BLEU (0-100, its default 13a tokenisation) of predictions against one
  reference each: the score machine-translation papers compare. The homework's text has its
  punctuation split off already; `force` tells sacrebleu that this is known (its warning about
  tokenised input would otherwise repeat at every evaluation) and changes no score."""
  import sacrebleu  # pylint: disable=g-import-not-at-top
  return float(sacrebleu.corpus_bleu(list(predictions), [list(references)], force=True).score)


def corpus_chrf(references, predictions):
  """sacreBLEU's corpus chrF (0-100, character 6-grams, beta 2): suited to character models."""
  import sacrebleu  # pylint: disable=g-import-not-at-top
  return float(sacrebleu.corpus_chrf(list(predictions), [list(references)]).score)


def is_better(value, best, mode):
  """Whether `value` of a selection metric beats `best` (None: nothing yet) in `mode` ('max' or
  'min'); a tie is not better, so the earlier of equal values stays best."""
  return best is None or (value > best if mode == 'max' else value < best)
