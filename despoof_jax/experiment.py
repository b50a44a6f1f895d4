"""`train_and_evaluate(config, workdir)`: one experiment from config to report.

The top of the pipeline (config -> data -> models -> training -> evaluation): it runs
`config.mode` — "all" (stage 1, stage 2, evaluation), "train" (both stages, no evaluation: on a
pod, evaluate later with "eval") or "dq", "ds", "eval" alone — for the
de-spoofing method or a baseline (`config.method`), and every fold of a multi-fold protocol
(`data.fold = -1`). `despoof train` and `python -m despoof_jax.main` call it; so can a notebook.
Paths inside the workdir: `training.workdir`. Before anything is trained, `preflight` checks every
field that takes one of a few values (a typo would otherwise surface after stage 1 trained, or
in the evaluation), the checkpoint schedule, and that the workdir takes files and has room for the
largest checkpoint of the stages to run.
"""
from __future__ import annotations

import jax
import ml_collections
from absl import logging

from despoof_jax import config as config_lib
from despoof_jax.data import datasets
from despoof_jax.evaluation import baselines as baseline_eval
from despoof_jax.evaluation import evaluate, scores
from despoof_jax.tools import calibration_simulator
from despoof_jax.training import baselines, checkpoint, loop, parallel, steps
from despoof_jax.training import state as state_lib
from despoof_jax.training import workdir as workdir_lib
from despoof_jax.training.parallel import DataParallel
from despoof_jax.training.workdir import as_workdir

MODES = ("all", "train", "dq", "ds", "eval")
ALL_FOLDS = -1
INIT = {"dq": state_lib.init_stage1, "ds": state_lib.init_stage2, "cnn": baselines.init_cnn}


def stages_to_train(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The stage folders `config.mode` trains for `config.method`."""
    if config.method == "despoof":
        return {"all": ("dq", "ds"), "train": ("dq", "ds"), "dq": ("dq",),
                "ds": ("ds",)}.get(config.mode, ())
    if config.mode in ("all", "train", "dq"):
        return ("dq",) if config.method == "depth_only" else ("cnn",)
    return ()


def modes_of(method: str) -> tuple[str, ...]:
    """The values of `config.mode` that apply to `method`."""
    if method == "despoof":
        return MODES
    return ("all", "train", "eval") + (("dq",) if method == "depth_only" else ())


def check_values(config: ml_collections.ConfigDict) -> None:
    """Raises `ConfigError` naming the field, the value and what it takes when a field that takes
    one of a few values holds anything else, or the checkpoint schedule is not one. The choices
    come from the modules that read the fields, so they cannot drift apart."""
    methods = ("despoof",) + baselines.METHODS
    choices = [("method", config.method, methods)]
    if config.method in methods:
        choices.append(("mode", config.mode, modes_of(config.method)))
    choices += [
        ("parallel", config.parallel, parallel.MODES),
        ("data.dataset", config.data.dataset, datasets.DATASETS),
        ("eval.apcer_per", config.eval.get("apcer_per", "species"), evaluate.APCER_PER),
        ("eval.input_policy", config.eval.get("input_policy", "resize"),
         config_lib.INPUT_POLICIES),
    ]
    if config.method == "despoof":   # a baseline has no stage 2, and names its one score itself
        choices += [
            ("train.vq_batch", config.train.get("vq_batch", "separate"), steps.VQ_BATCH_MODES),
            ("eval.fusion", config.eval.fusion, scores.FUSIONS + (evaluate.DEV_CHOICE,)),
        ]
    for field, value, allowed in choices:
        if value not in allowed:
            raise config_lib.ConfigError(f"config.{field}={value!r}; expected one of {allowed}")
    checkpoint.check_schedule(config.train.checkpoint_every, config.train.keep_checkpoints)
    evaluate.threshold_criterion(config.eval.threshold)
    # These raise plain ValueError where they are used; here they are config errors.
    for check in (lambda: state_lib.compute_dtype(config),          # model.compute_dtype
                  lambda: datasets.get_protocol(config.data),       # data.protocol
                  lambda: datasets.check_degradation(config.data),  # data.degrade_size, blur
                  lambda: calibration_simulator.check_config(config)):   # eval.calibration*
        try:
            check()
        except ValueError as e:
            if isinstance(e, config_lib.ConfigError):
                raise
            raise config_lib.ConfigError(str(e)) from e


def preflight(config: ml_collections.ConfigDict, workdir) -> None:
    """Raises `ConfigError` (`check_values`) or `workdir.WorkdirNotWritable` before training:
    a config value that the run would refuse later, a global batch that does not divide over
    the devices; this process cannot write the workdir, (several processes) the processes do
    not share it, or (local workdirs) its disk lacks room for the largest checkpoint to be
    saved. The size comes
    from the abstract state (`jax.eval_shape`), nothing is allocated."""
    check_values(config)
    # Before process 0 builds a dataset for minutes: the global batch over every device.
    DataParallel(config.parallel).check_batch_size(int(config.train.batch_size))
    need = max((checkpoint.checkpoint_bytes(state_lib.abstract(INIT[s], config))
                for s in stages_to_train(config)), default=0)
    wd = as_workdir(workdir)
    wd.check_writable(need, process_index=jax.process_index())
    wd.check_shared()
    check_checkpoints_fit(config, wd)


def check_checkpoints_fit(config: ml_collections.ConfigDict, wd) -> None:
    """`ConfigError` when a stage folder the run may read holds a latest checkpoint of other
    arrays than `config` builds (another width, another image size): told before config.json is
    rewritten with `config`, which would leave the workdir's record naming a model its
    checkpoints are not (so it would no longer load), and before any dataset is built."""
    if config.method == "despoof":
        # Both, whatever the mode: every mode rewrites config.json, which must keep describing
        # both stages' checkpoints (mode=dq too, or the workdir's DS Net would no longer load).
        stages = ("dq", "ds")
    else:
        stages = ("dq",) if config.method == "depth_only" else ("cnn",)
    url = workdir_lib.is_url(str(wd.root))
    for stage in stages:
        directory = wd.checkpoints(stage)
        saved = [int(p.name) for p in directory.iterdir() if p.name.isdigit()] \
            if directory.is_dir() else []
        if not saved:
            continue
        abstract = state_lib.abstract(INIT[stage], config)
        try:
            if not url:
                checkpoint.check_fits(directory / str(max(saved)), abstract)
                continue
            # A URL's checkpoint metadata is not read (`checkpoint._saved_shapes`: it blocked
            # on the suite's fake GCS). The workdir's config.json stands in for it: this check
            # runs before every rewrite of config.json, so config.json describes the arrays of
            # every checkpoint in the workdir. Unreadable, or written by a version whose
            # config no longer builds, it is not used, and orbax's restore reports a mismatch.
            recorded = _recorded_shapes(wd, stage)
            if recorded is not None:
                checkpoint.check_same_arrays(
                    recorded, checkpoint.shapes(abstract),
                    f"of the checkpoints in {directory} (as {workdir_lib.CONFIG} records them)")
        except checkpoint.DoesNotFit as e:
            raise config_lib.ConfigError(
                f"{stage}: cannot resume: {e}. The workdir holds a run of another model config: "
                "resume it with that run's settings (its config.json) or train in a new "
                "workdir") from e


def _recorded_shapes(wd, stage: str):
    """{path: shape} of `stage`'s state as the workdir's config.json builds it; None (logged)
    when config.json is missing, unreadable, or no longer builds a state."""
    try:
        return checkpoint.shapes(state_lib.abstract(INIT[stage], wd.read_config()))
    except Exception as e:   # noqa: BLE001 (any failure only means the check is not made)
        logging.info("%s: the %s checkpoints are not checked against it (%s: %s)",
                      wd.config_path, stage, type(e).__name__, e)
        return None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir) -> dict:
    """Runs `config.mode` in `workdir` (a local path or a URL); returns what each part reported
    ({"dq": ..., "ds": ..., "eval": metrics}). Resumes whatever a killed run had finished."""
    preflight(config, workdir)
    if config.data.fold == ALL_FOLDS:
        return train_all_folds(config, workdir)
    wd = as_workdir(workdir)
    dp = DataParallel(config.parallel)
    if jax.process_index() == 0:
        wd.write_config(config)
    datasets.prepare(config.data)
    if config.method != "despoof":
        return train_and_evaluate_baseline(config, wd, dp)
    out = {}
    if config.mode in ("all", "train", "dq"):
        out["dq"] = loop.train_dq(config, wd, dp)
    if config.mode in ("all", "train", "ds"):
        out["ds"] = loop.train_ds(config, wd, dp)
    if config.mode in ("all", "eval"):
        out["eval"] = evaluate.evaluate(config, wd)
        if config.eval.calibration:
            out["calibration"] = calibration_simulator.calibrate_workdir(config, wd)
    return out


def train_and_evaluate_baseline(config, workdir, dp: DataParallel) -> dict:
    """`train_and_evaluate` for `config.method` in `baselines.METHODS` (modes all | train |
    eval, and dq for depth_only)."""
    if config.method not in baselines.METHODS:
        raise config_lib.ConfigError(f"config.method={config.method!r}; expected 'despoof' or one of "
                         f"{baselines.METHODS}")
    allowed = modes_of(config.method)
    if config.mode not in allowed:
        raise config_lib.ConfigError(f"config.mode={config.mode!r} does not apply to method "
                         f"{config.method!r}; expected one of {allowed}")
    out = {}
    if config.mode in ("all", "train", "dq"):
        out["train"] = (loop.train_dq(config, workdir, dp) if config.method == "depth_only"
                        else baselines.train_cnn(config, workdir, dp))
    if config.mode in ("all", "eval"):
        out["eval"] = baseline_eval.evaluate_baseline(config, workdir)
    return out


def train_all_folds(config: ml_collections.ConfigDict, workdir) -> dict:
    """`data.fold = -1`: every fold of the protocol in `<workdir>/fold<k>/` (each thresholded on
    its own dev set), then the mean +- std over folds in `<workdir>/eval/` (Oulu P3/P4-style)."""
    wd = as_workdir(workdir)
    n = len(datasets.get_protocol(config.data).folds)
    if jax.process_index() == 0:
        wd.write_config(config)
    out, tables = {}, []
    for k in range(n):
        c = config.copy_and_resolve_references()
        c.data.fold = k
        out[f"fold{k}"] = train_and_evaluate(c, wd.fold(k))
        if "eval" in out[f"fold{k}"]:
            tables.append(out[f"fold{k}"]["eval"])
    if tables:
        out["eval"] = evaluate.write_fold_summary(
            tables, wd, protocol=config.data.protocol,
            method=config.method, criterion=config.eval.threshold,
            default_fusion=tables[0].get("default_fusion", config.eval.fusion))
    return out
