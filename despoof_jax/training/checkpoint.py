"""Orbax checkpoints of *global* arrays, one manager per training stage.

What is saved is the unreplicated state as global, fully replicated `jax.Array`s (see
`parallel.DataParallel.to_global`) plus the input pipeline's position (JSON), never a pmap-stacked
`[n_devices, ...]` layout. Restoring goes against an abstract target built from the *current*
device mesh (`jax.eval_shape` of the init function, with the current replicated sharding), so a
run saved on 8 devices resumes on 1 or 4.

The frozen DQ tree is not part of the stage-2 checkpoint: stage 2 reloads it from the stage-1
directory (`restore_frozen_dq`), the way a frozen teacher is kept apart from the student.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.sharding import NamedSharding

PyTree = Any


def absolute(directory) -> epath.Path:
    """A checkpoint directory as orbax wants it: local paths made absolute, URLs (gs://...) left
    exactly as they are (`os.path.abspath` would turn one into `<cwd>/gs:/...`)."""
    d = str(directory)
    return epath.Path(d if "://" in d else os.path.abspath(d))


def with_sharding(abstract_tree: PyTree, sharding: NamedSharding) -> PyTree:
    """ShapeDtypeStructs of `abstract_tree` carrying `sharding` (the restore target)."""
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        abstract_tree)


class Checkpointer:
    """Saves every `every` steps (and on demand), keeps the newest `keep`, saves asynchronously.

    `directory` is created if needed. The training loop also saves on SIGTERM/SIGINT and at the
    end of a stage, so a killed run loses nothing it had finished.
    """

    def __init__(self, directory, *, every: int, keep: int = 3):
        self.directory = absolute(directory)
        self.every = every
        # The interval is ours (`should_save`); orbax's own would also save the first step.
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True,
                                               create=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options,
                                             item_names=("state", "data"))

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def should_save(self, step: int) -> bool:
        """Every `every` steps, or when orbax reports a preemption notice (multi-host jobs)."""
        return step % self.every == 0 or self.manager.reached_preemption(step)

    def save(self, step: int, state: PyTree, data_state: Optional[dict] = None) -> bool:
        """Saves now (asynchronously); callers decide when with `should_save`."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=ocp.args.JsonSave(data_state or {}))
        return self.manager.save(step, args=args, force=True)

    def restore(self, abstract_state: PyTree, sharding: NamedSharding,
                step: Optional[int] = None) -> tuple[PyTree, dict, int]:
        """(state, data_state, step) of `step` (default: the latest) restored onto `sharding`."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        target = with_sharding(abstract_state, sharding)
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
        return out["state"], dict(out["data"] or {}), step

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def restore_state_only(directory, abstract_state: PyTree, sharding: NamedSharding,
                       step: Optional[int] = None) -> tuple[PyTree, int]:
    """Restores the `state` item of a stage directory without the data position."""
    ckpt = Checkpointer(directory, every=1, keep=1_000_000)
    try:
        state, _, step = ckpt.restore(abstract_state, sharding, step)
    finally:
        ckpt.close()
    return state, step
