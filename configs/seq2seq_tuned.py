"""The homework's translator with attention, at its size, trained with the options that gave the
lowest validation error rate in the sweeps of BUILD.md ("The tuned translator").

  python main.py --config configs/seq2seq_tuned.py --workdir runs/s2s_tuned
  python main.py --config configs/seq2seq_tuned.py --workdir runs/s2s_tuned --mode eval \
      --config.decode.beam_size=8

The architecture and its parameter count are those of configs/seq2seq_attention.py; what differs
is how it is trained: a cosine decay after a warmup, clipped gradients, a moving average of the
parameters for evaluation, and more epochs.
"""
from configs import seq2seq


def get_config():
  config = seq2seq.get_config()
  config.model.use_attention = True
  config.num_epochs = 80
  config.schedule = 'cosine'
  config.warmup_steps = 300
  config.grad_clip_norm = 1.0
  config.ema_decay = 0.999
  return config
