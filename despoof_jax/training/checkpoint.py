"""Orbax checkpoints of *global* arrays plus every process's input position, one manager per stage.

A checkpoint `<dir>/<step>/` holds two items:
  state/   the unreplicated training state as global, fully replicated `jax.Array`s (see
           `parallel.DataParallel.to_global`), never a pmap-stacked `[n_devices, ...]` layout.
           Restoring goes against an abstract target built from the *current* device mesh
           (`jax.eval_shape` of the init function, with the current replicated sharding), so a
           run saved on 8 devices (or 2 processes x 2 devices) resumes on 1 or 4.
  data/    one file per process, `process_<i>-of-<n>.json`: that process's grain iterator state,
           written and read by grain's own orbax handler (`grain.checkpoint.CheckpointHandler`),
           so each host resumes its own slice of the data at its own position.
When the process count changed since the save, this process's file does not exist: `restore`
then says so (`Restored.data_note`) and the loop starts the pipeline at a fresh deterministic
position (`loop`).

A checkpoint with no input positions at all, or with those of this process count but not this
process's, was cut short (a half copy): it counts as unreadable (`IncompleteCheckpoint`).
A checkpoint that cannot be read (a corrupt or half-written latest step) is set aside as
`<dir>/corrupt-<step>-<time>/` with a warning naming it, and the previous one is restored.
Saves are asynchronous; orbax writes into a temporary folder and renames it when complete, so a
process killed during a save leaves the previous checkpoint intact (the temporary folder is
removed when the next run opens the manager).

The frozen DQ tree is not part of the stage-2 checkpoint: stage 2 reloads it from the stage-1
directory on every start (`loop.load_frozen_dq`), the way a frozen teacher is kept apart from the
student.
"""
from __future__ import annotations

import dataclasses
import json
import logging as py_logging
import os
import re
import time
from typing import Any, Optional

import grain.checkpoint as grain_checkpoint
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding

from despoof_jax import config as config_lib
from despoof_jax.training.workdir import is_url

PyTree = Any
ITEMS = ("state", "data")
CORRUPT_PREFIX = "corrupt-"


def absolute(directory) -> epath.Path:
    """A checkpoint directory as orbax wants it: local paths made absolute, URLs (gs://...) left
    exactly as they are (`os.path.abspath` would turn one into `<cwd>/gs:/...`)."""
    d = os.fspath(directory)
    return epath.Path(d if is_url(d) else os.path.abspath(d))


def with_sharding(abstract_tree: PyTree, sharding: NamedSharding) -> PyTree:
    """ShapeDtypeStructs of `abstract_tree` carrying `sharding` (the restore target)."""
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        abstract_tree)


def checkpoint_bytes(abstract_state: PyTree) -> int:
    """Bytes one checkpoint of `abstract_state` needs: its arrays, with 10 % and 1 MiB to spare
    for orbax's metadata, the input positions and the filesystem's blocks."""
    arrays = sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize
                 for s in jax.tree.leaves(abstract_state))
    return int(arrays * 1.1) + 2**20


class DoesNotFit(ValueError):
    """A checkpoint whose arrays have other shapes (or other names) than the config builds."""


def _key_name(key) -> str:
    # A dataclass field is an attribute of the abstract state but a dict key in orbax's metadata.
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def shapes(tree: PyTree) -> dict[str, tuple]:
    """{path: shape} of a tree's arrays (abstract or concrete): `check_same_arrays`' form."""
    return {"/".join(_key_name(k) for k in path): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
            if hasattr(leaf, "shape")}


def _saved_shapes(step_dir) -> Optional[dict[str, tuple]]:
    """{path: shape} of the arrays saved in `<step_dir>/state`, from orbax's metadata (no array
    is read); None where it cannot be read, and for a URL (below).

    orbax's tree file (`_METADATA`) holds each leaf's `write_shape`, the shape of one written
    chunk (measured: (1,) for an (8,) array saved from 8 devices), so the whole shapes come from
    `PyTreeCheckpointHandler.metadata`, which opens the array store through its own client. On
    the suite's fake GCS (tests/fake_gcs.py) that blocked for minutes, and real GCS could not be
    tried here: a URL workdir is not checked, and a restore of other arrays there fails in
    orbax itself, as before."""
    if is_url(str(step_dir)):
        return None
    try:
        handler = ocp.PyTreeCheckpointHandler()
        try:
            meta = handler.metadata(epath.Path(step_dir) / "state")
        finally:
            handler.close()
        return shapes(getattr(meta, "tree", meta))
    except Exception:  # noqa: BLE001 (unreadable metadata: the restore says why)
        return None


def check_fits(step_dir, abstract_state: PyTree) -> None:
    """Raises `DoesNotFit` naming the arrays of `<step_dir>/state` whose saved shape differs from
    `abstract_state`'s, or that only one of them has, from the checkpoint's metadata alone; does
    nothing when the metadata cannot be read (the restore then reports what is wrong).

    Before any restore: orbax's restore into arrays of other shapes fails only after it has
    started its asynchronous reads, and those are left behind, to print "Event loop is closed"
    tracebacks after the clear error (measured on a serving load, 2026-12-06)."""
    saved = _saved_shapes(step_dir)
    if saved:
        check_same_arrays(saved, shapes(abstract_state), f"saved in {step_dir}")


def check_same_arrays(saved: dict, built: dict, where: str) -> None:
    """Raises `DoesNotFit` naming the arrays whose shapes differ between `saved` and `built`
    ({path: shape}, `shapes`), or that only one of them has; `where` says where `saved` came
    from ("saved in <step dir>")."""
    wrong = [f"{k} saved {saved[k]}, built {built[k]}" for k in sorted(saved.keys() & built.keys())
             if saved[k] != built[k]]
    wrong += [f"{k} saved, not built" for k in sorted(saved.keys() - built.keys())]
    wrong += [f"{k} built, not saved" for k in sorted(built.keys() - saved.keys())]
    if wrong:   # one example first: readers quote the first 300 characters of the message
        raise DoesNotFit(f"{len(wrong)} of the {len(saved)} arrays {where} differ "
                         f"from what the config builds, e.g. {wrong[0]}"
                         + "".join(f"; {w}" for w in wrong[1:3]))


def check_schedule(every, keep) -> None:
    """Raises `ConfigError` unless `train.checkpoint_every` and `train.keep_checkpoints` are whole
    numbers >= 1. `keep` becomes orbax's `max_to_keep`, which keeps no checkpoint at all at 0, so
    a typo there would leave a run nothing to resume from."""
    for field, value, meaning in (
            ("checkpoint_every", every, "a positive number of steps (stops and the end of a stage "
                                        "save anyway)"),
            ("keep_checkpoints", keep, "a whole number >= 1 of checkpoints to keep (orbax keeps "
                                       "none at 0: every checkpoint is deleted once saved)")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise config_lib.ConfigError(f"train.{field}={value!r}; expected {meaning}")


def all_processes_agree(ok: bool) -> bool:
    """True iff `ok` on every process (one process: `ok`); a collective every process calls."""
    if jax.process_count() == 1:
        return bool(ok)
    flags = multihost_utils.process_allgather(np.array([int(bool(ok))], np.int32))
    return bool(np.all(np.asarray(flags)))


class IncompleteCheckpoint(FileNotFoundError):
    """A checkpoint whose state restores but whose input positions are missing."""


def data_file(process_index: int, process_count: int) -> str:
    """The name grain's handler gives one process's input position inside `<step>/data/`."""
    return f"process_{process_index}-of-{process_count}.json"


@dataclasses.dataclass
class Restored:
    """What `Checkpointer.restore` read: the state, its step, and whether this process's input
    position was restored into the iterator (`data`; if not, `data_note` says why)."""

    state: PyTree
    step: int
    data: bool = False
    data_note: str = ""


class _ReadOnlyNotice(py_logging.Filter):
    """Drops orbax's "Given directory is read only" warning, which a reader's manager (`read_only`)
    triggers on every evaluation and load by design; orbax's other read-only warnings (a save or a
    delete skipped) would be our bug and still show."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Given directory is read only")


_READ_ONLY_NOTICE = _ReadOnlyNotice()


class _Manager(ocp.CheckpointManager):
    """orbax's manager, minus its own calls to the preemption sync point.

    JAX's sync point counts on every process calling it once per training step with a counter
    that only grows; the loop does that (`loop._StopRequest`). orbax's `save` would call it again
    with the stage's step number, which restarts at every stage and would move the counter back.
    """

    def reached_preemption(self, step: int) -> bool:
        del step
        return False


class Checkpointer:
    """Saves every `every` steps (and on demand), keeps the newest `keep`, saves asynchronously.

    `directory` (a local path or a URL) is created if needed. The training loop also saves when
    it is asked to stop (a signal or a preemption notice) and at the end of a stage, so a killed
    run loses nothing it had finished.
    """

    def __init__(self, directory, *, every: int, keep: int = 3, read_only: bool = False):
        self.directory = absolute(directory)
        if not read_only:
            check_schedule(every, keep)
        self.every, self.read_only = every, read_only
        # The interval is ours (`should_save`); orbax's own would also save the first step.
        # Only a trainer cleans up what a save killed half-way left behind: a reader (`read_only`:
        # evaluation, serving, stage 2's frozen DQ Net) may look at a workdir while its trainer
        # is writing a step, and must not delete that step's temporary folder.
        # A reader passes orbax's read-only values itself (no interval, nothing deleted), which
        # orbax would otherwise set with a warning per option on every evaluation and load.
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else keep,
            save_interval_steps=0 if read_only else 1,
            enable_async_checkpointing=not read_only, create=not read_only,
            cleanup_tmp_directories=not read_only, read_only=read_only)
        if read_only:   # absl's logger, which orbax writes to; adding the filter twice is a no-op
            py_logging.getLogger("absl").addFilter(_READ_ONLY_NOTICE)
        self.manager = _Manager(self.directory, options=options, item_names=ITEMS)
        self._closed = False

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def should_save(self, step: int) -> bool:
        """Every `every` steps (stops and the end of a stage save too: the loop decides)."""
        return step % self.every == 0

    def save(self, step: int, state: PyTree, iterator=None) -> bool:
        """Saves now (asynchronously): `state` (global arrays) and, with `iterator` (a grain
        iterator), this process's input position. Callers decide when with `should_save`."""
        items = {"state": ocp.args.StandardSave(state)}
        if iterator is not None:
            items["data"] = grain_checkpoint.CheckpointSave(iterator)
        return self.manager.save(step, args=ocp.args.Composite(**items), force=True)

    def restore(self, abstract_state: PyTree, sharding: NamedSharding, *, iterator=None,
                step: Optional[int] = None, set_aside: bool = False) -> Restored:
        """The state of `step` (default: the latest readable one) restored onto `sharding`, and,
        with `iterator`, this process's input position restored into it.

        Without `step`, a checkpoint that fails to restore while an older one succeeds is
        reported with a warning naming it and skipped (with `set_aside`, also moved to
        `corrupt-<step>-<time>/` so the run can save that step again); when none restores, the
        latest one's error is raised (a checkpoint that does not fit the config fails on every
        step alike). Raises FileNotFoundError when there is no checkpoint.
        """
        steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        target = with_sharding(abstract_state, sharding)
        # A config that does not build the saved arrays fails on every step alike: said once,
        # before orbax starts reading (`check_fits`), and never taken for an unreadable step.
        check_fits(self.directory / str(steps[0]), abstract_state)
        failed = []
        for s in steps:
            error, restored = None, None
            try:
                out = self.manager.restore(s, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target)))
                restored = Restored(out["state"], s)
                if iterator is not None:
                    restored.data, restored.data_note = self._restore_data(s, iterator)
            except Exception as e:  # noqa: BLE001 (any unreadable checkpoint: try the previous)
                error = e
            # Every process must resume from the same step: one that could not read it (a
            # transient error on one host, its own input position missing) sends all of them on
            # to the previous step together.
            if not all_processes_agree(error is None):
                if step is not None:
                    raise error or RuntimeError(f"checkpoint {s}: another process could not "
                                                "read it")
                failed.append((s, error or RuntimeError("another process could not read it")))
                continue
            for bad, error in failed:
                self._report_unreadable(bad, error, fallback=s, set_aside=set_aside)
            return restored
        raise failed[0][1]

    def _report_unreadable(self, step: int, error: Exception, *, fallback: int, set_aside: bool):
        where = self.directory / str(step)
        message = str(error).splitlines()[0][:300] if str(error) else ""
        if set_aside:
            aside = self.directory / f"{CORRUPT_PREFIX}{step}-{int(time.time())}"
            logging.warning("checkpoint %s cannot be read (%s: %s); moved it to %s and resumed "
                            "from step %d instead", where, type(error).__name__, message, aside,
                            fallback)
            if jax.process_index() == 0:
                where.rename(aside)
            if jax.process_count() > 1:
                multihost_utils.sync_global_devices(f"despoof_jax.checkpoint.aside.{step}")
            self.manager.reload()
        else:
            logging.warning("checkpoint %s cannot be read (%s: %s); using step %d instead",
                            where, type(error).__name__, message, fallback)

    def _restore_data(self, step: int, iterator) -> tuple[bool, str]:
        """(restored?, why not) for this process's input position of `step`."""
        folder = self.directory / str(step) / "data"
        mine = data_file(jax.process_index(), jax.process_count())
        if not (folder / mine).exists():
            saved = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
            saved = [n for n in saved if n.startswith("process_")]
            # A trainer's checkpoint always has input positions, one per process. None at all,
            # or those of this very process count without this process's, is a checkpoint cut
            # short (a half copy), not a changed process count: the previous one is used.
            if not saved or any(n.endswith(f"-of-{jax.process_count()}.json") for n in saved):
                raise IncompleteCheckpoint(
                    f"{folder} lacks this process's input position {mine} (found: "
                    f"{', '.join(saved) or 'none'})")
            return False, (f"no input position for this process ({mine}) in {folder}; saved: "
                           f"{', '.join(saved)} (the process count changed)")
        try:
            self.manager.restore(step, args=ocp.args.Composite(
                data=grain_checkpoint.CheckpointRestore(iterator)))
        except ValueError as e:   # grain: the data source or sampler is not the saved one
            return False, f"{folder / mine} does not fit this input pipeline: {e}"
        return True, ""

    def saved_data_seed(self, step: int) -> Optional[int]:
        """The shuffle seed of this process's saved input position at `step`, or None (no
        position for this process, or a file that does not say). Grain writes its sampler, seed
        included, into the position file; the seed differs from `config.seed` once a run has
        restarted its input at a fresh position (`loop.fresh_data_seed`), and a later resume
        must rebuild the pipeline with it to continue that position."""
        path = (self.directory / str(step) / "data" /
                data_file(jax.process_index(), jax.process_count()))
        try:
            sampler = json.loads(path.read_text()).get("sampler", "")
        except (OSError, ValueError, AttributeError):
            return None
        m = re.search(r"\bseed=(\d+)\b", sampler) if isinstance(sampler, str) else None
        return int(m.group(1)) if m else None

    def restore_input(self, step: int, iterator) -> tuple[bool, str]:
        """(restored?, why not): this process's input position of `step` into `iterator`."""
        return self._restore_data(step, iterator)

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        """Waits for the saves in flight, then closes; a second call does nothing."""
        if self._closed:
            return
        self.manager.wait_until_finished()
        self.manager.close()
        self._closed = True


def restore_state_only(directory, abstract_state: PyTree, sharding: NamedSharding,
                       step: Optional[int] = None) -> tuple[PyTree, int]:
    """Restores the `state` item of a stage directory (the latest readable step by default)
    without the input position; for readers (evaluation, serving), so nothing is set aside."""
    ckpt = Checkpointer(directory, every=1, keep=1_000_000, read_only=True)
    try:
        r = ckpt.restore(abstract_state, sharding, step=step)
    finally:
        ckpt.close()
    return r.state, r.step
