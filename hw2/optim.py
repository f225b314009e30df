"""The optimizer a config describes: optax's transformations chained in one function.

  clip_by_global_norm(grad_clip_norm)       if grad_clip_norm > 0
  adam / adamw(weight_decay) / sgd          at learning_rate(step), the schedule below
  scale(plateau factor)                     if schedule == 'plateau'
  parameter_ema(ema_decay)                  if ema_decay > 0: averaged copy of the parameters

Schedules (`config.schedule`), each after `warmup_steps` of linear warmup from 0:
- constant: learning_rate.
- cosine / linear: decay from learning_rate to learning_rate * final_learning_rate_fraction at
  the last step of the run (num_epochs epochs, so num_epochs cannot change on resume).
- rsqrt: learning_rate * sqrt(max(1, warmup_steps) / max(step, max(1, warmup_steps))).
- plateau: learning_rate, multiplied by plateau_factor whenever the validation metric has not
  improved for plateau_patience epochs (`plateau_scale`, a function of the history, so a resumed
  run continues exactly).
With the homework's settings (constant, no warmup, clipping, decay or averaging) this is
`optax.adam(optax.constant_schedule(learning_rate))`: the homework's Adam.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from hw2 import metrics

SCHEDULES = ('constant', 'cosine', 'linear', 'rsqrt', 'plateau')  # config.schedule
OPTIMIZERS = ('adam', 'sgd')  # config.optimizer


def learning_rate_schedule(config, steps_per_epoch):
  """optax schedule: step -> rate (before any plateau factor)."""
  rate, warmup = config.learning_rate, config.warmup_steps
  total = config.num_epochs * steps_per_epoch
  if config.schedule in ('constant', 'plateau'):
    main = optax.constant_schedule(rate)
  elif config.schedule == 'cosine':
    main = optax.cosine_decay_schedule(rate, max(total - warmup, 1),
                                       alpha=config.final_learning_rate_fraction)
  elif config.schedule == 'linear':
    main = optax.linear_schedule(rate, rate * config.final_learning_rate_fraction,
                                 max(total - warmup, 1))
  else:  # rsqrt, counted from step 0 (join_schedules below shifts `main` by the warmup).
    scale = max(warmup, 1)
    main = lambda step: rate * jnp.sqrt(scale / jnp.maximum(step + warmup, scale))
  if not warmup:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, rate, warmup), main], [warmup])


class ParameterEmaState(NamedTuple):
  """ema: the exponential moving average of the parameters after each step (a params tree)."""
  ema: optax.Params


def parameter_ema(decay):
  """A transformation that passes the updates through and keeps, in its state, the moving
  average ema <- decay * ema + (1 - decay) * new params, starting from the initial parameters."""
  def init(params):
    return ParameterEmaState(ema=jax.tree_util.tree_map(jnp.array, params))

  def update(updates, state, params):
    ema = jax.tree_util.tree_map(lambda e, p, u: decay * e + (1 - decay) * (p + u), state.ema,
                                 params, updates)
    return updates, ParameterEmaState(ema=ema)
  return optax.GradientTransformation(init, update)


def make_optimizer(config, steps_per_epoch):
  """The optax transformation of `config` (see the module docstring)."""
  schedule = learning_rate_schedule(config, steps_per_epoch)
  if config.optimizer == 'sgd':
    base = optax.sgd(schedule)
    if config.weight_decay:  # Decoupled and L2 decay are one thing for plain SGD.
      base = optax.chain(optax.add_decayed_weights(config.weight_decay), base)
  elif config.weight_decay:
    base = optax.adamw(schedule, weight_decay=config.weight_decay)
  else:
    base = optax.adam(schedule)
  parts = [base]
  if config.grad_clip_norm:
    parts.insert(0, optax.clip_by_global_norm(config.grad_clip_norm))
  if config.schedule == 'plateau':
    parts.append(optax.inject_hyperparams(optax.scale)(step_size=1.0))
  if config.ema_decay:
    parts.append(parameter_ema(config.ema_decay))
  return parts[0] if len(parts) == 1 else optax.chain(*parts)


def plateau_scale(config, history, metric, mode):
  """The plateau schedule's factor for the next epoch, from the records of the epochs so far:
  plateau_factor ** (number of reductions), a reduction after each plateau_patience epochs
  without a better validation `metric` ('max' or 'min' mode) since the best or the last
  reduction. 1.0 under any other schedule, whose rate no stall changes."""
  scale, best, waited = 1.0, None, 0
  if config.schedule != 'plateau':
    return scale
  for record in history:
    value = record[f'val_{metric}']
    if metrics.is_better(value, best, mode):
      best, waited = value, 0
    else:
      waited += 1
      if waited >= config.plateau_patience:
        scale, waited = scale * config.plateau_factor, 0
  return scale


def with_plateau_scale(opt_state, scale):
  """opt_state with the plateau factor set to `scale`, a float32 scalar array placed as the
  state is (a no-op without the plateau schedule)."""
  if optax.tree_utils.tree_get(opt_state, 'step_size') is None:
    return opt_state
  return optax.tree_utils.tree_set(opt_state, step_size=scale)


def applied_rate(schedule, step, scale=1.0):
  """The learning rate of optimizer step `step` (0-based) under `schedule` (of
  learning_rate_schedule), plateau factor `scale` included, as a float."""
  return float(schedule(step)) * scale


def evaluation_params(state):
  """The parameters to evaluate: the moving average where the optimizer keeps one, else the
  trained parameters."""
  ema = optax.tree_utils.tree_get(state.opt_state, 'ema')
  return state.params if ema is None else ema
