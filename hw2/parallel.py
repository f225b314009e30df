"""Processes, the device mesh and the shardings: the one module that knows how many devices a run
uses. The loop and the tasks ask it; none of them decides a sharding itself.

Data parallel over a 1-d mesh of every device of every process (axis 'data'):
- parameters, optimizer state and the (small) training set are replicated on every device;
- a batch of B rows is split along its leading dimension, B / D rows per device; each device
  gathers its rows of the batch from its copy of the training set;
- jitted functions return replicated results, which every process can read.
Every process runs the same program on the same data and builds the same batches (JAX's
multi-controller model); only process 0 writes files (`is_writer`).
"""
import functools

import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from hw2.errors import UserError

DATA_AXIS = 'data'
_process = {'index': 0, 'count': 1}


def initialize(coordinator_address=None, num_processes=None, process_id=None, detect=False):
  """Starts JAX's multi-controller runtime (jax.distributed) for a run over several processes.

  Either the three explicit arguments (any cluster, or several processes on one machine), or
  `detect` for JAX's own detection (TPU pod slices, SLURM, ...). Without either, a no-op.
  """
  explicit = (coordinator_address, num_processes, process_id)
  if not detect and all(x is None for x in explicit):
    return
  if not detect and any(x is None for x in explicit):
    raise UserError('--coordinator_address, --num_processes and --process_id go together '
                    '(or use --distributed to let JAX detect the cluster)')
  if not detect and not 0 <= process_id < num_processes:
    raise UserError(f'--process_id={process_id} must lie in [0, {num_processes}) '
                    f'(--num_processes={num_processes})')
  try:
    if detect:
      jax.distributed.initialize()
    else:
      jax.distributed.initialize(coordinator_address, num_processes, process_id)
  except (RuntimeError, ValueError) as e:  # No coordinator, no cluster detected, a timeout, ...
    where = 'the cluster JAX detects' if detect else f'--coordinator_address={coordinator_address}'
    raise UserError(f'could not start the multi-process run at {where}: '
                    f'{" ".join(str(e).split())[:300]}') from None
  _process.update(index=jax.process_index(), count=jax.process_count())


def is_writer():
  """True in the process that writes files and logs progress (process 0)."""
  return _process['index'] == 0


def process_index():
  return _process['index']


@functools.cache
def mesh():
  """The 1-d device mesh ('data',) over every device of every process."""
  return Mesh(np.array(jax.devices()), (DATA_AXIS,))


def device_count():
  return mesh().devices.size


def replicated():
  """Sharding of an array held whole on every device."""
  return NamedSharding(mesh(), P())


def batch_split(axis=0):
  """Sharding of an array split over the devices along dimension `axis` (the batch)."""
  return NamedSharding(mesh(), P(*[None] * axis, DATA_AXIS))


def _put(value, sharding):
  """One host value (the same in every process) as a global array with `sharding`."""
  if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
    return jax.random.wrap_key_data(_put(jax.random.key_data(value), sharding),
                                    impl=jax.random.key_impl(value))
  value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def _place(tree, sharding):
  """Host leaves of `tree` as global arrays with `sharding`; arrays already on the mesh stay."""
  return jax.tree_util.tree_map(lambda x: x if isinstance(x, jax.Array) else _put(x, sharding),
                                tree)


def put_replicated(tree):
  """A pytree of host (or single-device) arrays, replicated on every device of the mesh."""
  sharding = replicated()
  return jax.tree_util.tree_map(lambda x: _put(x, sharding), tree)


def put_batch(tree, axis=0):
  """A pytree of host arrays whose dimension `axis` (the batch) is split over the devices."""
  sharding = batch_split(axis)
  return jax.tree_util.tree_map(lambda x: _put(x, sharding), tree)


def abstract_replicated(tree):
  """jax.ShapeDtypeStructs of `tree`'s arrays with the replicated sharding (orbax restore target:
  a checkpoint written on any number of devices restores onto this mesh)."""
  sharding = replicated()
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def compiler_options(cpuinfo_path='/proc/cpuinfo'):
  """XLA options for compiling the training steps on this machine's devices.

  On a CPU with AVX-512, XLA's CPU backend still prefers 256-bit vectors by default; asking for
  512-bit ones makes the elementwise kernels that divide and take square roots (Adam's step) about
  twice as wide (the CNN's step, alternating both: batch 8 +3%, batch 64 +1%). Elsewhere, none.
  """
  if jax.default_backend() != 'cpu':
    return {}
  try:
    with open(cpuinfo_path, encoding='utf-8') as f:
      flags = next((line.split(':', 1)[1].split() for line in f if line.startswith('flags')), [])
  except OSError:  # Not Linux.
    return {}
  return {'xla_cpu_prefer_vector_width': 512} if 'avx512f' in flags else {}


def jit_batched(fn, batch_argnums, donate_argnums=()):
  """jax.jit of fn whose arguments at `batch_argnums` are batches split over the devices along
  their leading dimension and whose other arguments are replicated; results are replicated.

  Host (numpy) arguments are placed on the mesh by the returned function itself; the returned
  function's `compilations()` counts its XLA compilations.
  """
  jitted = {}

  def call(*args):
    if len(args) not in jitted:
      in_shardings = tuple(batch_split() if i in batch_argnums else replicated()
                           for i in range(len(args)))
      jitted[len(args)] = jax.jit(fn, in_shardings=in_shardings, out_shardings=replicated(),
                                  donate_argnums=donate_argnums)
    args = tuple(_place(a, batch_split() if i in batch_argnums else replicated())
                 for i, a in enumerate(args))
    return jitted[len(args)](*args)

  call.compilations = lambda: sum(f._cache_size() for f in jitted.values())  # pylint: disable=protected-access
  return call


def check_batch_sizes(config):
  """Raises UserError unless the training and evaluation batches divide by the device count."""
  devices = device_count()
  for field in ('batch_size', 'eval_batch_size'):
    if field in config and config[field] % devices:
      raise UserError(f'--config.{field}={config[field]} does not divide by the {devices} '
                      f'devices of this run: give a multiple of {devices}')


def sync(name):
  """Waits until every process has reached this point (no-op with one process)."""
  if _process['count'] > 1:
    multihost_utils.sync_global_devices(name)
