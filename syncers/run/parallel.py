"""Data parallelism over every device of every process (docs/design.md,
"Run directories and configs").

Both training stages use the same recipe, built from ``jax.sharding`` (no ``pmap``): a 1-D
:class:`~jax.sharding.Mesh` with a ``data`` axis over ``jax.devices()`` (all processes), the
batch split along its first axis (``NamedSharding(mesh, P("data"))``), parameters and
optimiser state replicated (``P()``), and the step jitted once with those in/out shardings —
the step itself stays the single-device ``train_step(state, batch)``; XLA inserts the
gradient all-reduce. The global batch size is the config's: each process builds only its own
rows of each global batch (:func:`local_rows`; the samplers are pure functions of the step, so
the rows are the ones the whole batch would have) and :func:`global_batch` assembles them with
``jax.make_array_from_process_local_data``. On one device this is the plain single-device step.

Multi-host: :func:`initialize` starts ``jax.distributed`` from the environment before
anything else touches JAX (``msync train ... --distributed``); checkpoints are written
collectively by orbax and only :func:`is_primary` (process 0) writes the run's own files.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from syncers.run.errors import InputError

DATA_AXIS = "data"
# Read when the cluster is not one JAX detects by itself (SLURM, Open MPI, cloud TPU, k8s).
_ENV = (("coordinator_address", "JAX_COORDINATOR_ADDRESS", str),
        ("num_processes", "JAX_NUM_PROCESSES", int),
        ("process_id", "JAX_PROCESS_ID", int))


def initialize() -> None:
    """``jax.distributed.initialize()`` from the environment; call before any other JAX use.

    SLURM, Open MPI, cloud TPU and Kubernetes are detected by JAX itself; elsewhere set
    ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0), ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID``.
    """
    kwargs: dict[str, Any] = {}
    for name, variable, cast in _ENV:
        value = os.environ.get(variable)
        if value:
            try:
                kwargs[name] = cast(value)
            except ValueError:
                raise InputError(variable, f"expected an integer; got {value!r}") from None
    try:
        jax.distributed.initialize(**kwargs)
    except (RuntimeError, ValueError, TypeError) as err:
        text = str(err).strip().splitlines()
        reason = text[0][:300] if text else type(err).__name__
        raise InputError("--distributed", f"cannot start jax.distributed ({reason}); run under "
                         "SLURM, Open MPI or on cloud TPU, or set JAX_COORDINATOR_ADDRESS, "
                         "JAX_NUM_PROCESSES and JAX_PROCESS_ID") from None


def is_primary() -> bool:
    """Whether this process writes the run's files (metrics, config, run info): process 0."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Wait for every process (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``data`` over ``devices`` (default: every device of every process,
    in ``jax.devices()`` order, so each process's devices hold consecutive batch rows)."""
    return Mesh(np.asarray(list(devices if devices is not None else jax.devices())),
                (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over ``data``; other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device (parameters, optimiser state, metrics)."""
    return NamedSharding(mesh, PartitionSpec())


def check_batch_size(global_size: int, mesh: Mesh, what: str = "sampling.batch_size") -> None:
    if global_size % mesh.size:
        raise InputError("--set", f"{what} ({global_size}) must be a multiple of the number "
                                  f"of devices ({mesh.size}) for data parallelism")


def local_rows(global_size: int, mesh: Mesh) -> slice:
    """The rows ``[start, stop)`` of a global batch of ``global_size`` this process loads.

    Derived from the batch sharding itself, so it agrees with how
    ``jax.make_array_from_process_local_data`` places them; raises :class:`InputError` when
    the batch does not split evenly over the devices.
    """
    check_batch_size(global_size, mesh)
    indices = batch_sharding(mesh).addressable_devices_indices_map((global_size,)).values()
    starts = sorted(index[0].indices(global_size)[:2] for index in indices)
    start, stop = starts[0][0], starts[-1][1]
    covered = sum(b - a for a, b in set(starts))
    if covered != stop - start:
        raise InputError(None, "this process's devices do not hold consecutive batch rows; "
                               "use a mesh in jax.devices() order")
    return slice(start, stop)


def global_batch(local: Any, mesh: Mesh, global_size: int) -> Any:
    """Assemble each process's rows (a pytree of ``[b, ...]`` arrays, ``b`` =
    ``local_rows(global_size)``'s length) into global ``[global_size, ...]`` arrays split over
    ``data``."""
    sharding = batch_sharding(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(
            sharding, np.asarray(x), (global_size,) + np.shape(x)[1:]), local)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Copy a pytree (identical on every process: from a seed, or restored) to every device."""
    sharding = replicated(mesh)

    def put(x):
        if isinstance(x, jax.Array) and x.sharding == sharding:
            return x
        if jax.process_count() == 1:
            return jax.device_put(x, sharding)
        value = np.asarray(x)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree.map(put, tree)


def data_parallel_jit(fn: Callable, mesh: Mesh, n_args: int, batch_argnums: Sequence[int] = (1,),
                      donate_argnums: Sequence[int] = (0,), **jit_kwargs) -> Callable:
    """``jax.jit(fn)`` with the arguments in ``batch_argnums`` split over ``data`` and every
    other argument and every output replicated (``fn`` takes ``n_args`` positional arguments,
    e.g. ``train_step(state, batch)``: ``n_args=2, batch_argnums=(1,)``). ``jit_kwargs`` go to
    ``jax.jit`` (``compiler_options``, say)."""
    shardings = tuple(batch_sharding(mesh) if i in batch_argnums else replicated(mesh)
                      for i in range(n_args))
    return jax.jit(fn, in_shardings=shardings, out_shardings=replicated(mesh),
                   donate_argnums=tuple(donate_argnums), **jit_kwargs)


def describe(mesh: Mesh) -> str:
    """``"4 devices (cpu) in 1 process"`` — for logs."""
    kinds = sorted({d.platform for d in mesh.devices.flat})
    return (f"{mesh.size} device{'s' * (mesh.size != 1)} ({','.join(kinds)}) in "
            f"{jax.process_count()} process{'es' * (jax.process_count() != 1)}")
