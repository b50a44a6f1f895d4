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
the medium analysis all ask this module; none spells a path of its own.
"""
from __future__ import annotations

import json
from typing import Union

import ml_collections
from etils import epath

PathLike = Union[str, "epath.PathLike"]

STAGES = ("dq", "ds", "cnn")
CONFIG = "config.json"


class WorkdirError(FileNotFoundError):
    """A path is not (inside) a training workdir, or the workdir lacks what was asked for."""


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

    # ---------------------------------------------------------------- the config
    @property
    def config_path(self) -> epath.Path:
        return self.root / CONFIG

    def write_config(self, config: ml_collections.ConfigDict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(config.to_json_best_effort(indent=2))

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

    def folds(self) -> list["Workdir"]:
        """The fold workdirs of a multi-fold run, in fold order."""
        ks = sorted(int(p.name[4:]) for p in self.root.glob("fold*") if p.name[4:].isdigit())
        return [self.fold(k) for k in ks]

    def is_multifold(self) -> bool:
        return self.metrics_folds_json.exists()

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
