"""The translator of hw2/models/seq2seq.py itself, with its dropout masks drawn by the unrolled
threefry of hw2/models/fast/layers.py (the same masks; on CPU one kernel instead of a loop of
five). Nothing else departs from the definition: the other rewrites once here (a fused scan of
both directions, a written-out LSTM backward pass) did not gain 10% of a training step (BUILD.md).
"""
import flax.linen as nn

from hw2.models import seq2seq
from hw2.models.fast.layers import threefry_dropout


class Seq2Seq(seq2seq.Seq2Seq):
  """hw2/models/seq2seq.Seq2Seq, each method run under `threefry_dropout`."""

  def __call__(self, *args, **kwargs):
    with nn.intercept_methods(threefry_dropout):
      return super().__call__(*args, **kwargs)

  def encode(self, *args, **kwargs):
    with nn.intercept_methods(threefry_dropout):
      return super().encode(*args, **kwargs)

  def decode(self, *args, **kwargs):
    with nn.intercept_methods(threefry_dropout):
      return super().decode(*args, **kwargs)
