"""The training loop shared by every stage: restore-or-init, step, log, checkpoint, stop on NaN.

`train_dq` (stage 1: DQ Net on pseudo-depth) and `train_ds` (stage 2: DS + VQ Net through the frozen
DQ Net) run `run_stage`; the baselines (`training.baselines`) run it too. Paths come from
`training.workdir.Workdir`. Each stage resumes from its latest checkpoint; a finished stage is
skipped. SIGTERM/SIGINT and orbax's preemption notice save a checkpoint at the current step before
the process stops. What a run shows while it trains (`training.observe`): a parameter overview
per net, a notice while the first step compiles, a progress line every `train.log_every` steps or
`train.progress_every_secs` seconds, TensorBoard scalars beside `metrics.jsonl`, and on request
(`train.profile_steps`) a `jax.profiler` trace.
"""
from __future__ import annotations

import json
import signal
import time
from typing import Callable

import jax
from absl import logging

from despoof_jax.data import datasets, pipeline
from despoof_jax.training import checkpoint, observe, steps
from despoof_jax.training import state as state_lib
from despoof_jax.training.parallel import DataParallel
from despoof_jax.training.workdir import STAGES, as_workdir


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


def run_stage(name: str, config, workdir,  dp: DataParallel, *, init_fn: Callable,
               total_steps: int, batches_per_step: int, make_step: Callable,
               frozen=None) -> dict:
    """The loop shared by both stages: restore-or-init, step, log, checkpoint, stop on NaN."""
    wd = as_workdir(workdir)
    stage_dir = wd.stage(name)
    ckpt = checkpoint.Checkpointer(wd.checkpoints(name),
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

    logging.info("%s: parameters\n%s", name, observe.parameter_overview(
        _params_of(st), name=name))
    step_fn = make_step()
    p_state = dp.from_global(st)
    p_frozen = None if frozen is None else dp.from_global(frozen)
    rng = jax.random.key(config.seed + 1 + STAGES.index(name))
    pending, last = [], {}
    log_path = wd.metrics_log(name)
    if jax.process_index() == 0:
        stage_dir.mkdir(parents=True, exist_ok=True)
    events = observe.EventWriter(wd.events(name), enabled=config.train.get("tensorboard", True))
    progress = observe.Progress(config.train.log_every,
                                config.train.get("progress_every_secs", 30.0))
    profiler = observe.StepProfiler(stage_dir, start, config.train.get("profile_steps", 0))

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
            with log_path.open("a") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
            for r in rows:
                events.scalars(r["step"], {f"{name}/{k}": v for k, v in r.items()
                                           if k not in ("step", "finite")})
            events.flush()
        if bad:
            raise FloatingPointError(f"{name}: non-finite loss at step {bad[0]['step']}: {bad[0]}"
                                     f" (metrics in {log_path}); lower train.learning_rate or "
                                     "check the data")

    def save(step):
        ckpt.save(step, dp.to_global(p_state), {"iterator": it.get_state().decode()})

    saved = None
    t0, s0 = time.time(), start
    try:
        with _StopFlag() as stop:
            for step in range(start, total_steps):
                batches = [dp.shard_batch(_model_batch(next(it)))
                           for _ in range(batches_per_step)]
                args = [p_state] + ([p_frozen] if frozen is not None else []) + batches + [rng]
                profiler.before_step(step)
                if step == start:
                    logging.info("%s: compiling the step (the first call traces and compiles; "
                                 "tens of seconds at 256 px on CPU) ...", name)
                    tc = time.time()
                p_state, metrics = step_fn(*args)
                done = step + 1
                if step == start:
                    jax.block_until_ready(metrics)
                    logging.info("%s: first step done in %.1f s (compile included)", name,
                                 time.time() - tc)
                    t0, s0 = time.time(), done   # the rate leaves the compilation out
                pending.append((done, metrics))
                profiler.after_step(done, metrics)
                if progress.due(done, total_steps):
                    flush()
                    rate = (done - s0) / max(time.time() - t0, 1e-9) if done > s0 else 0.0
                    eta = (total_steps - done) / rate if rate > 0 else float("nan")
                    logging.info("%s step %d/%d  %.3f steps/s  eta %.0f s  %s", name, done,
                                 total_steps, rate, eta,
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
    finally:
        profiler.stop()
        events.close()
    ckpt.close()
    return dict(last, step=total_steps)


def _params_of(st) -> dict:
    """{net: params} of a stage state, for the parameter overview."""
    return {k: v.params for k, v in vars(st).items() if hasattr(v, "params")}


def train_dq(config, workdir, dp: DataParallel) -> dict:
    """Stage 1: pretrain DQ Net on pseudo-depth."""
    return run_stage(
        "dq", config, workdir, dp, init_fn=state_lib.init_stage1,
        total_steps=config.train.stage1_steps, batches_per_step=1,
        make_step=lambda: dp.wrap(steps.bind_stage1(config), batch_args=(1,), n_args=3))


def load_frozen_dq(config, workdir, sharding) -> state_lib.FrozenNet:
    """Stage 1's final DQ Net as the frozen stage-2 tree (params + BatchNorm statistics)."""
    directory = as_workdir(workdir).checkpoints("dq")
    abstract = state_lib.abstract(state_lib.init_stage1, config)
    try:
        st, _ = checkpoint.restore_state_only(directory, abstract, sharding)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"stage 2 needs a pretrained DQ Net in {directory}; run stage 1 "
                                "first (--config.mode=dq, or mode=all)") from e
    return state_lib.frozen_dq_from_stage1(st)


def train_ds(config, workdir, dp: DataParallel) -> dict:
    """Stage 2: DS Net and VQ Net through the frozen DQ Net."""
    dq = load_frozen_dq(config, workdir, dp.replicated)
    n_batches = steps.stage2_batches(config)   # 2, or 1 with train.vq_batch = "shared"
    return run_stage(
        "ds", config, workdir, dp, init_fn=state_lib.init_stage2,
        total_steps=config.train.stage2_steps, batches_per_step=n_batches, frozen=dq,
        make_step=lambda: dp.wrap(steps.bind_stage2(config),
                                  batch_args=tuple(range(2, 2 + n_batches)), n_args=3 + n_batches))


