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
import atexit
import functools
import os
import threading
import time

import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from hw2.errors import UserError

DATA_AXIS = 'data'
_process = {'index': 0, 'count': 1}


DEFAULT_TIMEOUT = 60  # Seconds to wait for every process to join (--coordinator_timeout).
_INTERRUPT_KEY = 'hw2/interrupted'


def check_address(address):
  """Raises UserError unless `address` is HOST:PORT (an IPv6 host in brackets) with a port in
  [1, 65535]."""
  host, sep, port = address.rpartition(':')
  if host.startswith('[') and host.endswith(']'):
    host = host[1:-1]
  if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
    raise UserError(f'--coordinator_address={address} must be HOST:PORT with a port in '
                    '[1, 65535], e.g. 127.0.0.1:12345')


def initialize(coordinator_address=None, num_processes=None, process_id=None, detect=False,
               timeout=DEFAULT_TIMEOUT, on_peer_interrupt=None):
  """Starts JAX's multi-controller runtime (jax.distributed) for a run over several processes.

  Either the three explicit arguments (any cluster, or several processes on one machine), or
  `detect` for JAX's own detection (TPU pod slices, SLURM, ...). Without either, a no-op.
  Every process must join within `timeout` seconds. `on_peer_interrupt(signum, deadline)` is
  called (from a watcher thread) when another process of the run was interrupted, with the time
  at which every process ends (`announce_interrupt`).
  """
  explicit = (coordinator_address, num_processes, process_id)
  if not detect and all(x is None for x in explicit):
    return
  if not detect and any(x is None for x in explicit):
    raise UserError('--coordinator_address, --num_processes and --process_id go together '
                    '(or use --distributed to let JAX detect the cluster)')
  if not detect:
    check_address(coordinator_address)
    if num_processes < 1:
      raise UserError(f'--num_processes={num_processes} must be at least 1')
    if not 0 <= process_id < num_processes:
      raise UserError(f'--process_id={process_id} must lie in [0, {num_processes}) '
                      f'(--num_processes={num_processes})')
  if not 1 <= timeout <= 86_400:
    raise UserError(f'--coordinator_timeout={timeout} must lie in [1, 86400] seconds')
  where = 'the cluster JAX detects' if detect else f'--coordinator_address={coordinator_address}'
  # A coordinator that never answers, or a process that never joins, ends in a C++ abort inside
  # jax.distributed.initialize once its own time-out passes; a watchdog ends the process first,
  # with one line.
  joined = threading.Event()
  threading.Thread(target=_watchdog, args=(joined, timeout, where), name='hw2-join',
                   daemon=True).start()
  try:
    if detect:
      jax.distributed.initialize(initialization_timeout=timeout + _ABORT_MARGIN)
    else:
      jax.distributed.initialize(coordinator_address, num_processes, process_id,
                                 initialization_timeout=timeout + _ABORT_MARGIN)
  except (RuntimeError, ValueError) as e:  # No cluster detected, a bad address, ...
    raise UserError(f'could not start the multi-process run at {where}: '
                    f'{" ".join(str(e).split())[:300]}') from None
  finally:
    joined.set()
  _process.update(index=jax.process_index(), count=jax.process_count())
  if _process['count'] > 1 and on_peer_interrupt is not None:
    watcher = threading.Thread(target=_watch_peers, args=(on_peer_interrupt,), name='hw2-peers',
                               daemon=True)
    watcher.start()
    # Registered after jax.distributed's own exit handler, so it runs first: the watcher is out
    # of the runtime's calls before that handler disconnects.
    atexit.register(_stop_watching, watcher)


_ABORT_MARGIN = 10  # Seconds between the watchdog's exit and JAX's own abort.


def _watchdog(joined, timeout, where):
  if not joined.wait(timeout):
    os.write(2, (f'error: could not start the multi-process run at {where}: not every process '
                 f'joined within {timeout} s (--coordinator_timeout); start all of them with the '
                 'same --coordinator_address and --num_processes, process 0 first\n').encode())
    os._exit(1)  # pylint: disable=protected-access


def _client():
  from jax._src import distributed  # pylint: disable=g-import-not-at-top  # Its key-value store.
  return distributed.global_state.client


_stop = threading.Event()


def _watch_peers(on_peer_interrupt):
  """Polls the coordination service's key-value store for another process's interrupt. (A
  blocking read would leave this thread inside the runtime when the interpreter exits, which
  aborts the process.)"""
  while not _stop.wait(0.05):  # Well within EXIT_DELAY, even on a loaded machine.
    try:
      value = _client().key_value_try_get(_INTERRUPT_KEY)
    except Exception:  # pylint: disable=broad-except  # Not set (or the service is going away).
      continue
    signum, deadline = value.split()
    on_peer_interrupt(int(signum), float(deadline))
    return


def _stop_watching(watcher):
  _stop.set()
  watcher.join(timeout=5)


EXIT_DELAY = 1.0  # Seconds from an interrupt to the moment every process of the run ends.


def announce_interrupt(signum):
  """Tells the other processes of a multi-process run that this one was interrupted by `signum`,
  and returns the time (time.time()) at which every process ends, EXIT_DELAY from now.

  The processes end together, not one after the other: a process that outlives another in the
  middle of a collective operation can be aborted by the runtime (gloo's 'Received data size
  doesn't match expected size', or the lost coordination service), where it should print its own
  one line. Returns None in a single-process run."""
  if _process['count'] <= 1:
    return None
  deadline = time.time() + EXIT_DELAY
  try:
    _client().key_value_set(_INTERRUPT_KEY, f'{signum} {deadline!r}')
  except Exception:  # pylint: disable=broad-except  # Another process announced first: its time.
    try:
      deadline = float(_client().key_value_try_get(_INTERRUPT_KEY).split()[1])
    except Exception:  # pylint: disable=broad-except  # The service is gone: end now.
      return None
  return deadline


def wait_until(deadline):
  """Sleeps until time.time() reaches `deadline` (None: returns at once)."""
  if deadline is not None:
    time.sleep(max(0.0, deadline - time.time()))


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
