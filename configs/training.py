"""The training options shared by the task configs (not a config of its own): each is off at its
default, so the homework's settings train exactly as the homework did. hw2/optim.py builds the
optimizer from them; hw2/train.py applies early stopping.

  --config.schedule=cosine --config.warmup_steps=300 --config.grad_clip_norm=1.0
  --config.label_smoothing=0.1 --config.ema_decay=0.999 --config.early_stopping_patience=10
"""


def add_training_options(config):
  """Adds the fields below to `config` (a ConfigDict) and returns it."""
  # Learning-rate schedule: 'constant', 'cosine' or 'linear' (decay to learning_rate *
  # final_learning_rate_fraction at the last step of num_epochs), 'rsqrt', or 'plateau' (times
  # plateau_factor after plateau_patience epochs without a better validation metric); each after
  # warmup_steps of linear warmup from 0.
  config.schedule = 'constant'
  config.warmup_steps = 0
  config.final_learning_rate_fraction = 0.0
  config.plateau_patience = 5
  config.plateau_factor = 0.5
  config.grad_clip_norm = 0.0  # > 0: clip the gradient's global norm to this.
  config.weight_decay = 0.0  # > 0: decoupled weight decay (AdamW).
  config.label_smoothing = 0.0  # Training loss only; the validation loss is plain cross-entropy.
  config.early_stopping_patience = 0  # > 0: stop after this many epochs without a better metric.
  config.ema_decay = 0.0  # > 0: evaluate (and keep) a moving average of the parameters.
  return config
