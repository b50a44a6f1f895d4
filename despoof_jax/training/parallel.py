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
from typing import Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from despoof_jax import config as config_lib

AXIS = "batch"
MODES = ("pmap", "shard_map")


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


def _host(v) -> np.ndarray:
    """A host copy of a replicated value (any jax.Array layout, numpy or Python scalar)."""
    if isinstance(v, jax.Array):
        return np.asarray(v.addressable_shards[0].data)
    return np.asarray(v)
