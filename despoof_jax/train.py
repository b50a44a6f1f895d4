"""`train_and_evaluate(config, workdir)`: stage 1 (DQ Net), stage 2 (DS + VQ), evaluation.

Workdir layout:
  config.json              the config of the latest run
  dq/checkpoints/<step>/   stage-1 state (global arrays) + input-pipeline position
  dq/metrics.jsonl         one JSON line per step
  ds/checkpoints/<step>/   stage-2 state (DS + VQ; the frozen DQ tree is read from dq/)
  ds/metrics.jsonl
  eval/                    scores, metrics and figures (see `evaluate.py`)
Each stage resumes from its latest checkpoint; a finished stage is skipped. SIGTERM/SIGINT and
orbax's preemption notice save a checkpoint at the current step before the process stops.
"""
from __future__ import annotations

import json
import os
import signal
import time
from typing import Callable

import jax
import ml_collections
from absl import logging

from despoof_jax import checkpoint, evaluate, state as state_lib, train_step
from despoof_jax.data import datasets, pipeline
from despoof_jax.parallel import DataParallel

STAGES = ("dq", "ds", "cnn")   # "cnn": the binary-CNN baseline (`baselines.py`)


class Interrupted(RuntimeError):
    """Raised after a checkpoint was saved because the process was asked to stop."""


class _StopFlag:
    """Turns SIGTERM/SIGINT into a flag the loop polls, so the step in flight finishes and is
    saved instead of being lost; restores the previous handlers on exit."""

    def __init__(self):
        self.raised = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:      # not the main thread: no signal handling there
                pass
        return self

    def _handle(self, signum, frame):
        del frame
        self.raised = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _write_config(config, workdir):
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))


def _train_iterator(config, dp: DataParallel):
    source, meta = datasets.load_split(datasets.for_split(config.data, "train"), "train")
    indices = datasets.protocol_indices(config.data, "train", meta)
    dp.check_batch_size(config.train.batch_size)
    return pipeline.train_iterator(
        source, indices, global_batch_size=config.train.batch_size, seed=config.seed,
        process_index=jax.process_index(), process_count=jax.process_count(),
        size=config.data.image_size, worker_count=config.data.worker_count,
        prefetch=max(config.data.prefetch * config.train.batch_size, 1),
        degradation=datasets.degradation(config.data))


def _model_batch(batch: dict) -> dict:
    """The fields a train step reads (the rest stay on the host)."""
    return {k: batch[k] for k in ("rgb", "depth", "label")}


def _run_stage(name: str, config, workdir: str, dp: DataParallel, *, init_fn: Callable,
               total_steps: int, batches_per_step: int, make_step: Callable,
               frozen=None) -> dict:
    """The loop shared by both stages: restore-or-init, step, log, checkpoint, stop on NaN."""
    stage_dir = os.path.join(workdir, name)
    ckpt = checkpoint.Checkpointer(os.path.join(stage_dir, "checkpoints"),
                                   every=config.train.checkpoint_every,
                                   keep=config.train.keep_checkpoints)
    abstract = state_lib.abstract(init_fn, config)
    it = _train_iterator(config, dp)
    if ckpt.latest_step() is not None:
        st, data_state, start = ckpt.restore(abstract, dp.replicated)
        if data_state.get("iterator"):
            it.set_state(data_state["iterator"].encode())
        logging.info("%s: resumed at step %d from %s", name, start, ckpt.directory)
    else:
        st, start = init_fn(config, jax.random.key(config.seed)), 0
    if start >= total_steps:
        ckpt.close()
        logging.info("%s: already trained (%d steps)", name, start)
        return {"step": start}

    step_fn = make_step()
    p_state = dp.from_global(st)
    p_frozen = None if frozen is None else dp.from_global(frozen)
    rng = jax.random.key(config.seed + 1 + STAGES.index(name))
    pending, last = [], {}
    t0, s0 = time.time(), start
    log_path = os.path.join(stage_dir, "metrics.jsonl")
    if jax.process_index() == 0:
        os.makedirs(stage_dir, exist_ok=True)

    def flush():
        # Metrics stay on the device until here: no host synchronisation inside the loop.
        nonlocal pending, last
        if not pending:
            return
        rows = [dict(step=s, **{k: float(v) for k, v in dp.to_host(m).items()})
                for s, m in pending]
        pending = []
        last = rows[-1]
        bad = [r for r in rows if not r["finite"]]
        if jax.process_index() == 0:
            with open(log_path, "a") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
        if bad:
            raise FloatingPointError(f"{name}: non-finite loss at step {bad[0]['step']}: {bad[0]}"
                                     f" (metrics in {log_path}); lower train.learning_rate or "
                                     "check the data")

    def save(step):
        ckpt.save(step, dp.to_global(p_state), {"iterator": it.get_state().decode()})

    saved = None
    with _StopFlag() as stop:
        for step in range(start, total_steps):
            batches = [dp.shard_batch(_model_batch(next(it))) for _ in range(batches_per_step)]
            args = [p_state] + ([p_frozen] if frozen is not None else []) + batches + [rng]
            p_state, metrics = step_fn(*args)
            pending.append((step + 1, metrics))
            done = step + 1
            if done % config.train.log_every == 0 or done == total_steps:
                flush()
                rate = (done - s0) / max(time.time() - t0, 1e-9)
                logging.info("%s step %d/%d  %.2f steps/s  eta %.0f s  %s", name, done,
                             total_steps, rate, (total_steps - done) / max(rate, 1e-9),
                             {k: round(v, 4) for k, v in last.items() if k != "step"})
            if stop.raised is not None:
                flush()
                save(done)
                ckpt.close()
                raise Interrupted(f"{name}: stopped by signal {stop.raised} at step {done}; "
                                  f"checkpoint saved in {ckpt.directory}")
            if ckpt.should_save(done):   # the interval, or an orbax preemption notice
                flush()
                save(done)
                saved = done
        flush()
        if saved != total_steps:
            save(total_steps)
    ckpt.close()
    return dict(last, step=total_steps)


def train_dq(config, workdir: str, dp: DataParallel) -> dict:
    """Stage 1: pretrain DQ Net on pseudo-depth."""
    return _run_stage(
        "dq", config, workdir, dp, init_fn=state_lib.init_stage1,
        total_steps=config.train.stage1_steps, batches_per_step=1,
        make_step=lambda: dp.wrap(train_step.bind_stage1(config), batch_args=(1,), n_args=3))


def load_frozen_dq(config, workdir: str, sharding) -> state_lib.FrozenNet:
    """Stage 1's final DQ Net as the frozen stage-2 tree (params + BatchNorm statistics)."""
    directory = os.path.join(workdir, "dq", "checkpoints")
    abstract = state_lib.abstract(state_lib.init_stage1, config)
    try:
        st, _ = checkpoint.restore_state_only(directory, abstract, sharding)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"stage 2 needs a pretrained DQ Net in {directory}; run stage 1 "
                                "first (--config.mode=dq, or mode=all)") from e
    return state_lib.frozen_dq_from_stage1(st)


def train_ds(config, workdir: str, dp: DataParallel) -> dict:
    """Stage 2: DS Net and VQ Net through the frozen DQ Net."""
    dq = load_frozen_dq(config, workdir, dp.replicated)
    n_batches = train_step.stage2_batches(config)   # 2, or 1 with train.vq_batch = "shared"
    return _run_stage(
        "ds", config, workdir, dp, init_fn=state_lib.init_stage2,
        total_steps=config.train.stage2_steps, batches_per_step=n_batches, frozen=dq,
        make_step=lambda: dp.wrap(train_step.bind_stage2(config),
                                  batch_args=tuple(range(2, 2 + n_batches)), n_args=3 + n_batches))


ALL_FOLDS = -1


def train_all_folds(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """`data.fold = -1`: every fold of the protocol in `<workdir>/fold<k>/` (each thresholded on
    its own dev set), then the mean +- std over folds in `<workdir>/eval/` (Oulu P3/P4-style)."""
    from despoof_jax.data import protocols   # noqa: PLC0415
    n = len(protocols.get_protocol(config.data.protocol, config.data.dataset).folds)
    if jax.process_index() == 0:
        _write_config(config, workdir)
    out, tables = {}, []
    for k in range(n):
        c = config.copy_and_resolve_references()
        c.data.fold = k
        out[f"fold{k}"] = train_and_evaluate(c, os.path.join(workdir, f"fold{k}"))
        if "eval" in out[f"fold{k}"]:
            tables.append(out[f"fold{k}"]["eval"])
    if tables:
        out["eval"] = evaluate.write_fold_summary(
            tables, os.path.join(workdir, "eval"), protocol=config.data.protocol,
            method=config.method, criterion=config.eval.threshold,
            default_fusion=tables[0].get("default_fusion", config.eval.fusion))
    return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Runs `config.mode`: "all" (stage 1, stage 2, evaluation), or "dq", "ds", "eval" alone.

    `data.fold = -1` runs every fold of the protocol (`train_all_folds`); `method` other than
    "despoof" trains and evaluates a baseline (`despoof_jax.baselines`) on the same pipeline.
    """
    modes = ("all", "dq", "ds", "eval")
    if config.mode not in modes:
        raise ValueError(f"config.mode={config.mode!r}; expected one of {modes}")
    if config.data.fold == ALL_FOLDS:
        return train_all_folds(config, workdir)
    dp = DataParallel(config.parallel)
    if jax.process_index() == 0:
        _write_config(config, workdir)
    datasets.prepare(config.data)
    if config.method != "despoof":
        from despoof_jax import baselines   # noqa: PLC0415 (baselines reuse this module's loop)
        return baselines.train_and_evaluate(config, workdir, dp)
    out = {}
    if config.mode in ("all", "dq"):
        out["dq"] = train_dq(config, workdir, dp)
    if config.mode in ("all", "ds"):
        out["ds"] = train_ds(config, workdir, dp)
    if config.mode in ("all", "eval"):
        out["eval"] = evaluate.evaluate(config, workdir)
    return out
