"""The run directory: the one module that knows every path inside a workdir.

    <workdir>/
      config.json                 the config of the latest run (`write_config` / `read_config`)
      dq/ ds/ cnn/                one folder per stage (stage 1, stage 2, the binary-CNN baseline):
        checkpoints/<step>/         orbax checkpoints (global arrays + input-pipeline positions)
        metrics.jsonl               one JSON line per step
        events.out.tfevents.*       TensorBoard event files (the same scalars)
        plugins/profile/<run>/      `jax.profiler` traces (train.profile_steps)
      eval/                       evaluation: scores_{dev,test}.csv, metrics.json, table2.md,
                                  model.json (the library's decision rule), sample_sheet.png,
                                  decomposition.md (against the true noise, synthetic data),
                                  metrics_folds.json (multi-fold), events.out.tfevents.*
        medium/                   the spoof-medium analysis (Sec. 4.4)
      fold<k>/                    one workdir per fold of a multi-fold protocol (data.fold = -1)

Paths are `etils.epath.Path`s, so a workdir may be a local folder or a URL (`gs://bucket/run`):
nothing here turns a URL into a local path. Training, evaluation, the library, the report and
the medium analysis all ask this module; none spells a path of its own. `Workdir.check_writable`
is the preflight every training run does before it starts: can this process write here, and is
there room for a checkpoint?
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Union

import ml_collections
import numpy as np
from absl import logging
from etils import epath

PathLike = Union[str, "epath.PathLike"]

STAGES = ("dq", "ds", "cnn")
CONFIG = "config.json"


class WorkdirError(FileNotFoundError):
    """A path is not (inside) a training workdir, or the workdir lacks what was asked for."""


class WorkdirNotWritable(OSError):
    """The workdir cannot take a run's files: not writable, or too little free space."""


def is_url(path) -> bool:
    """A path on an object store or another non-local filesystem (gs://bucket/run): epath and
    orbax reach it through their own backends; `os` functions must never see it."""
    return "://" in str(path)


def replace_text(path, text: str) -> None:
    """Writes `text` to `path` all at once, so a kill during the write leaves the old content (or
    no file), never half of the new one: a local file through a temporary file in its folder,
    fsync and an atomic rename (an existing file's permissions kept); a URL object by one upload
    (an object store replaces an object whole, and has no rename)."""
    path = epath.Path(path)
    if is_url(path):
        path.write_text(text)
        return
    local = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                               dir=os.path.dirname(os.path.abspath(local)))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(local):
            mode = os.stat(local).st_mode & 0o7777
        else:    # what open() would have given a new file (mkstemp's is 0600)
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, local)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


class Workdir:
    """Paths inside one run directory; `Workdir(path)` accepts a local path or a URL."""

    def __init__(self, root: PathLike):
        self.root = epath.Path(root)

    def __repr__(self) -> str:
        return f"Workdir({str(self.root)!r})"

    def __str__(self) -> str:
        return str(self.root)

    def __fspath__(self) -> str:
        return str(self.root)

    # ---------------------------------------------------------------- preflight
    def check_writable(self, need_bytes: int = 0, *, process_index: int = 0) -> None:
        """Raises WorkdirNotWritable unless this process can create files here and, for a local
        workdir, its filesystem has `need_bytes` free (a checkpoint's size). A probe file is
        written and removed through epath, so a URL is checked the same way; the space of an
        object store is not measurable and its check is skipped (logged)."""
        probe = self.root / f".write_probe_{process_index}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_text("despoof_jax preflight\n")
            probe.unlink()
        except OSError as e:
            raise WorkdirNotWritable(
                f"workdir {self.root} is not writable ({type(e).__name__}: {e}); pick a folder "
                "this user can write (--workdir=...), or fix its permissions") from e
        if is_url(self.root):
            logging.info("workdir %s is a URL: free space not checked (a checkpoint needs about "
                         "%s)", self.root, _mib(need_bytes))
            return
        free = shutil.disk_usage(str(self.root)).free
        if free < need_bytes:
            raise WorkdirNotWritable(
                f"workdir {self.root} has {_mib(free)} free but a checkpoint needs about "
                f"{_mib(need_bytes)}; free some space or pick another --workdir")

    def check_shared(self) -> None:
        """Several processes: raises WorkdirNotWritable unless every one sees the same workdir.
        Process 0 writes a probe file; every other process must find it. A node-local folder
        would otherwise give each process its own checkpoints: they would resume from different
        steps and hang in the first collective. Every process must call this (collectives); one
        process returns at once."""
        import jax  # noqa: PLC0415 (loads lazily: readers of a workdir need no JAX)
        from jax.experimental import multihost_utils  # noqa: PLC0415 (loads lazily, as jax)
        if jax.process_count() == 1:
            return
        token = int(multihost_utils.broadcast_one_to_all(
            np.int32(int.from_bytes(os.urandom(4), "little") >> 1)))
        probe = self.root / f".shared_probe_{token}"
        if jax.process_index() == 0:
            probe.write_text("despoof_jax preflight: is this folder shared?\n")
        multihost_utils.sync_global_devices(f"despoof_jax.workdir.shared.{token}")
        seen = np.asarray(multihost_utils.process_allgather(
            np.array([int(probe.exists())], np.int32))).reshape(-1)
        multihost_utils.sync_global_devices(f"despoof_jax.workdir.shared.read.{token}")
        if jax.process_index() == 0:
            probe.unlink(missing_ok=True)
        if not seen.all():
            blind = ", ".join(str(i) for i in np.flatnonzero(seen == 0))
            raise WorkdirNotWritable(
                f"workdir {self.root} is not shared between the processes: process(es) {blind} "
                "do not see the file process 0 wrote there. Every process needs the same run "
                "directory (gs://..., or a filesystem every host mounts)")

    # ---------------------------------------------------------------- the config
    @property
    def config_path(self) -> epath.Path:
        return self.root / CONFIG

    def write_config(self, config: ml_collections.ConfigDict) -> None:
        # Rewritten on every resume: a kill during the write must not leave a workdir whose
        # record no longer parses (it would neither load nor be checked on the next resume).
        self.root.mkdir(parents=True, exist_ok=True)
        replace_text(self.config_path, config.to_json_best_effort(indent=2))

    def read_config(self) -> ml_collections.ConfigDict:
        """The config this workdir was trained with (its config.json), unlocked."""
        if not self.config_path.exists():
            raise WorkdirError(f"{self.root}: no {CONFIG}; expected a training workdir "
                               f"({CONFIG}, dq/, ds/, eval/model.json)")
        return ml_collections.ConfigDict(json.loads(self.config_path.read_text()))

    # ---------------------------------------------------------------- stages
    def stage(self, name: str) -> epath.Path:
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; expected one of {STAGES}")
        return self.root / name

    def checkpoints(self, stage: str) -> epath.Path:
        return self.stage(stage) / "checkpoints"

    def metrics_log(self, stage: str) -> epath.Path:
        return self.stage(stage) / "metrics.jsonl"

    def events(self, stage: str) -> epath.Path:
        """TensorBoard log dir of a stage ("eval" for the evaluation): beside metrics.jsonl."""
        return self.eval_dir if stage == "eval" else self.stage(stage)

    # ---------------------------------------------------------------- evaluation
    @property
    def eval_dir(self) -> epath.Path:
        return self.root / "eval"

    def scores_csv(self, split: str) -> epath.Path:
        return self.eval_dir / f"scores_{split}.csv"

    @property
    def metrics_json(self) -> epath.Path:
        return self.eval_dir / "metrics.json"

    @property
    def metrics_folds_json(self) -> epath.Path:
        return self.eval_dir / "metrics_folds.json"

    @property
    def table2(self) -> epath.Path:
        return self.eval_dir / "table2.md"

    @property
    def decomposition_md(self) -> epath.Path:
        return self.eval_dir / "decomposition.md"

    @property
    def model_json(self) -> epath.Path:
        return self.eval_dir / "model.json"

    @property
    def sample_sheet(self) -> epath.Path:
        return self.eval_dir / "sample_sheet.png"

    @property
    def medium_dir(self) -> epath.Path:
        return self.eval_dir / "medium"

    def fold(self, k: int) -> "Workdir":
        return Workdir(self.root / f"fold{k}")

    # ---------------------------------------------------------------- finding one
    @classmethod
    def find(cls, path: PathLike) -> "Workdir":
        """The workdir holding `path`: `path` itself or its nearest ancestor with a config.json
        (so a checkpoint or eval/ path inside a workdir works too)."""
        p = epath.Path(path)
        if not p.exists():
            raise WorkdirError(f"{path}: no such folder; expected a training workdir")
        q = p if p.is_dir() else p.parent
        for candidate in (q, *q.parents):
            if (candidate / CONFIG).exists():
                return cls(candidate)
        raise WorkdirError(f"{path}: no {CONFIG} in it or above it; expected a training workdir "
                           f"({CONFIG}, dq/, ds/, eval/model.json)")


def as_workdir(w: Union[Workdir, PathLike]) -> Workdir:
    return w if isinstance(w, Workdir) else Workdir(w)
