"""The only module that names devices, meshes and axes.

`DataParallel` runs the per-device steps of `steps.py` over all devices, either with
`jax.pmap` (the default) or with `jax.jit(jax.shard_map(...))` (config `parallel = "shard_map"`).
Both see the same per-device function with the same `AXIS`; they differ only in how state and
batches are laid out:
  pmap:      state stacked per *local* device [n_local, ...]; batch [n_local, b, ...].
  shard_map: state as global replicated arrays; batch as one global array sharded on AXIS.
Checkpoints never see either layout: `to_global` / `from_global` convert the state to and from
plain global (fully replicated) arrays, so a run saved on 8 devices restores on 1 or 4.

Multi-host: each process feeds its own per-host batch (global batch / process count); the mesh
spans every device of every process.
"""
from __future__ import annotations

import functools
import itertools
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from orbax.checkpoint import multihost as ocp_multihost

from despoof_jax import config as config_lib

AXIS = "batch"
MODES = ("pmap", "shard_map")
# How long a process waits for the others at `connect`'s barrier (they may still be restoring a
# checkpoint or starting the input pipeline). A process that dies ends the wait much sooner:
# the coordination service misses its heartbeats and aborts the others (measured 2026-12-05 with
# tests/training/skewed_main.py, DESPOOF_TEST_EXIT=before: process 0 stopped with status 134
# "Task 1 heartbeat timeout" 56-57 s after process 1 exited before this barrier; README
# "Multi-host").
BARRIER_TIMEOUT_S = 3600
# Barrier names must not repeat within a run of the coordination service, and a process may run
# the same stage twice (the folds of a cross-validation run): a per-process count, which every
# process advances in the same order, makes each name unique.
_BARRIER_COUNT = itertools.count()


class DataParallel:
    """Data-parallel execution of per-device steps over every device of every process."""

    def __init__(self, mode: str = "pmap"):
        if mode not in MODES:
            raise ValueError(f"parallel mode {mode!r} unknown; expected one of {MODES}")
        self.mode = mode
        self.mesh = Mesh(np.asarray(jax.devices()), (AXIS,))
        self.replicated = NamedSharding(self.mesh, P())
        self.batch_sharding = NamedSharding(self.mesh, P(AXIS))
        self.local_devices = jax.local_devices()
        # pmap's layout: a leading axis of length n_local, one slice per local device.
        self.local_stacked = NamedSharding(Mesh(np.asarray(self.local_devices), (AXIS,)), P(AXIS))

    @property
    def n_devices(self) -> int:
        return jax.device_count()

    @property
    def n_local(self) -> int:
        return len(self.local_devices)

    def check_batch_size(self, global_batch: int) -> int:
        """Per-host batch for a global batch; errors when it does not split evenly."""
        if global_batch % self.n_devices:
            raise config_lib.ConfigError(
                f"global batch {global_batch} does not divide over {self.n_devices} devices; pick "
                f"a multiple of {self.n_devices} (train.batch_size; the paper's 6 fits 1, 2, 3 or "
                "6 devices)")
        return global_batch // jax.process_count()

    # ----------------------------------------------------------------- state layout
    def from_global(self, tree):
        """Global (replicated) arrays or host values -> this mode's device layout."""
        if self.mode == "pmap":
            return jax.tree.map(lambda v: jax.device_put(
                np.broadcast_to(_host(v), (self.n_local,) + np.shape(v)), self.local_stacked), tree)
        return jax.tree.map(lambda v: jax.device_put(_host(v), self.replicated), tree)

    def to_host(self, tree):
        """Device layout -> numpy values of this host's first replica."""
        if self.mode == "pmap":
            return jax.tree.map(lambda x: np.asarray(x.addressable_shards[0].data)[0], tree)
        return jax.tree.map(_host, tree)

    def to_global(self, tree):
        """Device layout -> global replicated jax.Arrays over every device (what checkpoints
        hold): the same on any device count, so a checkpoint restores on any other."""
        return jax.tree.map(
            lambda v: jax.make_array_from_callback(v.shape, self.replicated, lambda idx: v[idx]),
            self.to_host(tree))

    # ----------------------------------------------------------------- batches
    def shard_batch(self, batch: dict):
        """Per-host numpy batch [b_host, ...] -> device layout."""
        if self.mode == "pmap":
            def split(x):
                if x.shape[0] % self.n_local:
                    raise ValueError(f"host batch {x.shape[0]} does not split over "
                                     f"{self.n_local} local devices")
                x = x.reshape((self.n_local, x.shape[0] // self.n_local) + x.shape[1:])
                return jax.device_put(x, self.local_stacked)
            return jax.tree.map(split, batch)
        return jax.tree.map(
            lambda x: jax.make_array_from_process_local_data(self.batch_sharding, x), batch)

    # ----------------------------------------------------------------- steps
    def wrap(self, step_fn: Callable, batch_args: Sequence[int], n_args: int,
             donate: Sequence[int] = (0,)) -> Callable:
        """Compiles `step_fn(*args, axis_name=AXIS)`; args at `batch_args` are batch slices,
        the last argument is an rng key shared by all devices (the step folds in its axis index),
        the others are replicated state. Outputs are replicated (state, metrics)."""
        fn = functools.partial(step_fn, axis_name=AXIS)
        rng_arg = n_args - 1
        if self.mode == "pmap":
            in_axes = tuple(None if i == rng_arg else 0 for i in range(n_args))
            return jax.pmap(fn, axis_name=AXIS, in_axes=in_axes, donate_argnums=tuple(donate))
        in_specs = tuple(P(AXIS) if i in batch_args else P() for i in range(n_args))
        mapped = jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=P(),
                               check_vma=False)
        return jax.jit(mapped, donate_argnums=tuple(donate))

    def connect(self, key: str, timeout_s: int = BARRIER_TIMEOUT_S) -> None:
        """With several processes: meet the others at a barrier, then run one collective over
        every device, so that a stage's first step finds its cross-process connections made.

        Why: on CPU, XLA's cross-process collectives go through Gloo, which connects a group of
        devices when the first program with a collective over that group runs, and waits at most
        30 s there for the other processes (jaxlib 0.10, not a flag). A process that compiled the
        first step more than 30 s after another (a busier host, a colder compilation cache) made
        both exit with "Gloo context initialization failed: DEADLINE_EXCEEDED" (measured
        2026-12-05, README "Multi-host"). The barrier is the coordination service's
        (`jax.distributed`'s, through orbax's `multihost.get_barrier_sync_fn`: a key-value wait,
        not a collective, so no Gloo and no 30 s limit); right after it every process runs the
        same tiny all-device sum, laid out as the steps are, so the group is
        connected while the processes are together, and the steps' collectives over the same
        group reuse that connection however far apart their compilations end. `key` names the
        barrier (the same on every process; a count keeps names unique)."""
        if jax.process_count() == 1:
            return
        barrier = ocp_multihost.get_barrier_sync_fn()
        name = f"despoof_jax/{next(_BARRIER_COUNT)}/{key}"
        barrier(key=name, timeout_ms=int(timeout_s * 1000))
        # The sum goes through `wrap`, the steps' own path: multihost_utils.sync_global_devices
        # did not make the connection that the pmapped step then needed (measured: the same
        # DEADLINE_EXCEEDED, on the key "cpu:gloo/0,1,2048,2049/2").
        ones = self.shard_batch({"x": np.ones((self.n_local, 1), np.float32)})
        total = self.wrap(_count_devices, batch_args=(0,), n_args=2, donate=())(
            ones, jax.random.key(0))
        if int(np.asarray(self.to_host(total)).reshape(-1)[0]) != self.n_devices:
            raise RuntimeError(f"{key}: a sum over the {self.n_devices} devices of "
                               f"{jax.process_count()} processes gave {total}")


def _count_devices(batch: dict, rng, axis_name):
    """`connect`'s collective: the number of devices (one 1 each), summed over `axis_name`."""
    del rng
    return jax.lax.psum(batch["x"].sum(), axis_name)


def _host(v) -> np.ndarray:
    """A host copy of a replicated value (any jax.Array layout, numpy or Python scalar)."""
    if isinstance(v, jax.Array):
        return np.asarray(v.addressable_shards[0].data)
    return np.asarray(v)
