"""The training loop shared by every stage: restore-or-init, step, log, checkpoint, stop on NaN.

`train_dq` (stage 1: DQ Net on pseudo-depth) and `train_ds` (stage 2: DS + VQ Net through the frozen
DQ Net) run `run_stage`; the baselines (`training.baselines`) run it too. Paths come from
`training.workdir.Workdir`. Each stage resumes from its latest readable checkpoint, input position
included (every process its own); a finished stage is skipped. What a run shows while it trains
(`training.observe`): a parameter overview per net, a notice while the first step compiles, a
progress line every `train.log_every` steps or `train.progress_every_secs` seconds, TensorBoard
scalars beside `metrics.jsonl`, and on request (`train.profile_steps`) a `jax.profiler` trace.

Stopping (`_StopRequest`): SIGTERM, SIGINT and a scheduler's preemption notice all end a stage the
same way: every process finishes the step in flight, they agree on one step, all save it, and
`Interrupted` is raised (the entry points turn it into one line and exit status 128 + signal).
Resuming with a fixed seed gives the parameters an uninterrupted run would have had: the state,
the input position and the per-step randomness (`fold_in(rng, step)`) all come back.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from typing import Callable, Optional

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from despoof_jax import config as config_lib
from despoof_jax.data import datasets, pipeline
from despoof_jax.training import checkpoint, losses, observe, steps
from despoof_jax.training import state as state_lib
from despoof_jax.training.parallel import DataParallel
from despoof_jax.training.workdir import STAGES, as_workdir


class Interrupted(RuntimeError):
    """Raised after a checkpoint was saved because the process was asked to stop: a signal or a
    preemption notice. `exit_status` is the shell's 128 + signal (130 SIGINT, 143 SIGTERM)."""

    def __init__(self, stage: str, step: int, directory, signum: int, how: str):
        self.stage, self.step, self.signum = stage, step, signum
        self.checkpoint = f"{directory}/{step}"
        super().__init__(f"{stage}: stopped by {how} at step {step}; checkpoint {self.checkpoint} "
                         "saved; run the same command again to resume from it")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


class NonFiniteLoss(FloatingPointError):
    """A loss became NaN or infinite; nothing after the last good checkpoint was saved."""


class UnfinishedStage(config_lib.ConfigError):
    """A stage's latest readable checkpoint is not the step the config trains it to, so the net
    a reader wants (stage 2 the final DQ Net, evaluation both) is not there: the stage was stopped
    before its end (or its last checkpoint cannot be read), or was trained for more steps than the
    config says. The entry points print it in one line and exit 2, as for any config the run
    cannot take."""


# stage -> (what the messages call it, its net, the config field of its number of steps)
_FINAL_STEP = {"dq": ("stage 1", "DQ Net", "stage1_steps"),
               "ds": ("stage 2", "DS Net", "stage2_steps")}


def require_final_step(stage: str, step: int, config, directory, *, needed_by: str,
                       finish: str) -> None:
    """Raises `UnfinishedStage` unless `step`, the latest readable checkpoint of `stage` in
    `directory`, is the stage's last (`train.stage1_steps` / `train.stage2_steps`): the rule of
    every reader of a trained net (`load_frozen_dq`, `evaluate.load_model`). `needed_by` names the
    reader, `finish` tells the user how to complete the stage."""
    label, net, field = _FINAL_STEP[stage]
    final = int(config.train[field])
    if step == final:
        return
    head = (f"{needed_by} needs {label}'s final {net} (step {final}), but the latest checkpoint "
            f"in {directory} is step {step}: ")
    if step < final:
        raise UnfinishedStage(head + f"{label} was stopped before its end (or its last checkpoint "
                              f"cannot be read: see the warning above). {finish}")
    raise UnfinishedStage(head + f"{label} was trained for more steps than "
                          f"train.{field}={final}; pass the number it was trained with, "
                          f"--config.train.{field}={step}")


class _StopRequest:
    """When to stop and save: the same decision on every process, at the same step.

    One process: SIGTERM/SIGINT set a flag read after each step, so the step in flight finishes
    and is saved instead of being lost. Several processes (`jax.distributed` initialized): a
    signal reaches the processes at different steps, or only one of them, so a local flag would
    make them save different steps and hang each other's collectives. There SIGTERM is left to
    JAX's preemption notifier (the scheduler's preemption notice is a SIGTERM), whose sync manager
    picks one step that every process reaches (`multihost_utils.reached_preemption_sync_point`,
    what orbax's `reached_preemption` asks); SIGINT is handed to it as a SIGTERM. Every process
    calls `due` once per step, as the sync point requires.
    """

    # JAX's sync point wants an id that only grows over the process's life, the same on every
    # process: the count of steps run by this process over all stages (stages restart their own
    # step numbers). Every process runs the same stages from the same checkpoints, so they agree.
    _calls = itertools.count(1)

    def __init__(self):
        self.signum: Optional[int] = None
        self.jax_owns_sigterm = (jax.distributed.is_initialized()
                                 and jax.config.jax_enable_preemption_service)
        if jax.process_count() > 1 and not self.jax_owns_sigterm:
            logging.warning("jax_enable_preemption_service is off: a signal stops only the "
                            "process that receives it, and the others will wait for it")
        self._old = {}

    def __enter__(self):
        sigs = (signal.SIGINT,) if self.jax_owns_sigterm else (signal.SIGTERM, signal.SIGINT)
        for sig in sigs:
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:      # not the main thread: no signal handling there
                pass
        return self

    def _handle(self, signum, frame):
        del frame
        if self.signum is None:
            self.signum = signum
        if self.jax_owns_sigterm:
            os.kill(os.getpid(), signal.SIGTERM)   # to JAX's notifier: agreed with the others

    def due(self) -> bool:
        """Stop after this step? Call exactly once per step on every process."""
        call = next(self._calls)
        if self.jax_owns_sigterm:
            return multihost_utils.reached_preemption_sync_point(call)
        return self.signum is not None

    def describe(self) -> tuple[int, str]:
        """(signal number, how it reads) of the stop."""
        if self.signum is not None and not self.jax_owns_sigterm:
            return self.signum, signal.Signals(self.signum).name
        signum = self.signum or signal.SIGTERM
        return signum, (f"{signal.Signals(signum).name} / a preemption notice, agreed by "
                        f"{jax.process_count()} process(es)")

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def route_sigint_to_preemption() -> None:
    """On several processes, a SIGINT anywhere (also outside a stage: data preparation, stage
    changes, evaluation) becomes a preemption notice that every process acts on at the same step
    (`_StopRequest`), not a KeyboardInterrupt in one process that leaves the others waiting in a
    collective. One process: nothing changes."""
    if jax.distributed.is_initialized() and jax.config.jax_enable_preemption_service:
        signal.signal(signal.SIGINT, lambda signum, frame: os.kill(os.getpid(), signal.SIGTERM))


def fresh_data_seed(seed: int, step: int) -> int:
    """The shuffle seed of a pipeline that cannot resume its saved position (the process count
    changed): `seed` folded with the step, the same on every process, a 31-bit int."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0] >> 1)


def uses_noise_truth(config, name: str) -> bool:
    """Whether stage `name` trains on the simulator's true noise (`loss.noise_truth` > 0, DS Net's
    stage only): its batches then carry `live_reference`."""
    return name == "ds" and float(config.loss.get("noise_truth", 0.0)) > 0


def _train_iterator(config, dp: DataParallel, seed: Optional[int] = None,
                    with_reference: bool = False):
    source, meta = datasets.load_split(datasets.for_split(config.data, "train"), "train")
    indices = datasets.protocol_indices(config.data, "train", meta)
    host_batch = dp.check_batch_size(config.train.batch_size)
    return pipeline.train_iterator(
        source, indices, global_batch_size=config.train.batch_size,
        seed=config.seed if seed is None else seed,
        process_index=jax.process_index(), process_count=jax.process_count(),
        size=config.data.image_size, worker_count=config.data.worker_count,
        # `data.prefetch` batches of this host's records (grain's buffer is per process).
        prefetch=max(config.data.prefetch * host_batch, 1),
        degradation=datasets.degradation(config.data), with_reference=with_reference)


def _model_batch(batch: dict) -> dict:
    """The fields a train step reads (the rest stay on the host)."""
    return {k: batch[k] for k in ("rgb", "depth", "label", "live_reference") if k in batch}


def _restore_or_init(name, config, ckpt, dp, init_fn):
    """(state, start step, iterator) of a stage: its latest readable checkpoint, or a fresh
    start."""
    abstract = state_lib.abstract(init_fn, config)
    reference = uses_noise_truth(config, name)
    it = _train_iterator(config, dp, with_reference=reference)
    if ckpt.latest_step() is None:
        # One compiled program: run eagerly, flax's init compiles every op on its own (~175
        # small programs for stage 2, seconds of start-up).
        init = jax.jit(lambda rng: init_fn(config, rng))
        return init(jax.random.key(config.seed)), 0, it
    r = ckpt.restore(abstract, dp.replicated, iterator=it, set_aside=True)
    logging.info("%s: resumed at step %d from %s", name, r.step, ckpt.directory)
    # A run that once restarted its input at a fresh seed saved positions of that seed: continue
    # them with it (otherwise each later resume would start yet another order). Every process
    # takes part in both votes (collectives), whatever its own answer.
    saved = None if r.data else ckpt.saved_data_seed(r.step)
    if checkpoint.all_processes_agree(saved is not None and saved != config.seed):
        it = _train_iterator(config, dp, seed=saved, with_reference=reference)
        ok, note = ckpt.restore_input(r.step, it)
        if checkpoint.all_processes_agree(ok):
            logging.info("%s: input position restored with its saved data seed %d", name, saved)
            return r.state, r.step, it
        r.data_note += f"; with its saved data seed {saved}: {note or 'another process failed'}"
    if not r.data:
        seed = fresh_data_seed(config.seed, r.step)
        logging.warning("%s: input position not restored: %s. Starting the input pipeline at a "
                        "fresh position instead (seed %d = data seed %d folded with step %d); "
                        "the run stays deterministic but differs from an uninterrupted one",
                        name, r.data_note, seed, config.seed, r.step)
        it = _train_iterator(config, dp, seed=seed, with_reference=reference)
    return r.state, r.step, it


def run_stage(name: str, config, workdir,  dp: DataParallel, *, init_fn: Callable,
               total_steps: int, batches_per_step: int, make_step: Callable,
               frozen=None) -> dict:
    """The loop shared by both stages: restore-or-init, step, log, checkpoint, stop on NaN."""
    wd = as_workdir(workdir)
    stage_dir = wd.stage(name)
    ckpt = checkpoint.Checkpointer(wd.checkpoints(name),
                                   every=config.train.checkpoint_every,
                                   keep=config.train.keep_checkpoints)
    st, start, it = _restore_or_init(name, config, ckpt, dp, init_fn)
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
    primary = jax.process_index() == 0
    if primary:
        stage_dir.mkdir(parents=True, exist_ok=True)
    log = observe.MetricsLog(wd.metrics_log(name), start, enabled=primary)
    events = observe.EventWriter(wd.events(name), enabled=config.train.get("tensorboard", True))
    progress = observe.Progress(config.train.log_every,
                                config.train.get("progress_every_secs", 30.0))
    profiler = observe.StepProfiler(stage_dir, start, config.train.get("profile_steps", 0))

    bad = None      # the first row whose loss or parameters were not finite
    runaway = None  # the first row saying DS Net's noise left the image range (noise_peak, J_r)
    peak_bound = losses.noise_peak_bound(config.data.image_size, config.data.image_size)

    def flush(check: bool):
        """Writes the pending rows; with `check`, raises NonFiniteLoss if any row so far was not
        finite. Several processes must stop at the same step (one that stopped alone would leave
        the others waiting in the next collective), so `check` is only given at steps fixed by
        the step count, where every process flushes with the same rows (the metrics are
        replicated): log_every multiples, saves, stops and the stage's end. A flush on the
        wall-clock timer, whose ticks differ between processes, only records. A NaN thus stops
        the run within `train.log_every` steps, and no non-finite state is ever saved."""
        # Metrics stay on the device until here: no host synchronisation inside the loop.
        nonlocal pending, last, bad, runaway
        if pending:
            rows = [dict(step=s, **{k: float(v) for k, v in dp.to_host(m).items()})
                    for s, m in pending]
            pending = []
            last = rows[-1]
            log.write(rows)
            for r in rows:
                events.scalars(r["step"], {f"{name}/{k}": v for k, v in r.items()
                                           if k not in ("step", "finite")})
            events.flush()
            if runaway is None:
                runaway = losses.noise_runaway(rows, peak_bound)
                if runaway is not None:
                    # Measured (README, "`c12_paper_widths_long` and ..., decided"): at the
                    # paper's widths and learning rate, 4x the recipe's steps, J_r left -sqrt(HW) at
                    # step ~5500 and reached -9e4, the depth loss of the reconstructions 0.2 ->
                    # 34. Warned, not stopped: the loss is the paper's, and the run may still
                    # rank well; its decomposition no longer means anything.
                    logging.warning(
                        "%s: DS Net's spoof noise has left the image range at step %d: %s, "
                        "beyond %.0f, the most a noise within [-1, 1] can reach at %d px. The "
                        "paper's repetitive loss is unbounded on its spoof side and DS Net is "
                        "buying loss there: its reconstructions I - N are no longer images "
                        "(README, \"Reading of the paper\": repetitive loss). Fewer steps at this "
                        "rate, or an earlier train.lr_decay_step, kept it inside in our runs",
                        name, runaway["step"], losses.runaway_reading(runaway), peak_bound,
                        config.data.image_size)
            if bad is None:
                bad = next((r for r in rows if not r["finite"]), None)
                if bad is not None and not check:
                    logging.warning("%s: non-finite loss or parameters at step %d; stopping at "
                                    "the next step every process checks (a multiple of "
                                    "train.log_every=%d, a save or the last step)", name,
                                    bad["step"], config.train.log_every)
        if check and bad is not None:
            raise NonFiniteLoss(f"{name}: non-finite loss or parameters at step "
                                f"{bad['step']}: {bad} "
                                f"(metrics in {log.path}); the last good checkpoint is kept in "
                                f"{ckpt.directory}; lower train.learning_rate or check the data")

    def save(step):
        # The rows up to this checkpoint are made durable with it: a URL workdir's metrics.jsonl
        # and event files are otherwise uploaded on a timer, and a run killed after the save
        # would lose the rows before it for good (the rows after it are trimmed on resume).
        log.upload()
        events.upload()
        ckpt.save(step, dp.to_global(p_state), it)

    saved = None
    t0, s0 = time.time(), start
    try:
        with _StopRequest() as stop, _finishing_saves_on_error(ckpt, name):
            for step in range(start, total_steps):
                batches = [dp.shard_batch(_model_batch(next(it)))
                           for _ in range(batches_per_step)]
                args = [p_state] + ([p_frozen] if frozen is not None else []) + batches + [rng]
                profiler.before_step(step)
                if step == start:
                    dp.connect(f"{name}_from_step_{start}")   # processes together (multi-host)
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
                    flush(check=progress.on_schedule(done, total_steps))
                    rate = (done - s0) / max(time.time() - t0, 1e-9) if done > s0 else 0.0
                    eta = (total_steps - done) / rate if rate > 0 else float("nan")
                    logging.info("%s step %d/%d  %.3f steps/s  eta %.0f s  %s", name, done,
                                 total_steps, rate, eta,
                                 {k: round(v, 4) for k, v in last.items() if k != "step"})
                if stop.due():   # also on the last step: the next stage must not start
                    flush(check=True)
                    save(done)
                    ckpt.close()
                    signum, how = stop.describe()
                    raise Interrupted(name, done, ckpt.directory, signum, how)
                if ckpt.should_save(done):
                    flush(check=True)
                    save(done)
                    saved = done
            flush(check=True)
            if saved != total_steps:
                save(total_steps)
            # Inside the stop request: a signal while the last save is written (close waits for
            # it) is only recorded, not the default kill that would leave it half written.
            ckpt.close()
            if stop.signum is not None and not stop.jax_owns_sigterm:
                # Asked after the last step's check: the stage is complete and saved, but the
                # next stage must not start. (Several processes: JAX's notifier keeps the notice
                # for the next stage's sync point.)
                signum, how = stop.describe()
                raise Interrupted(name, total_steps, ckpt.directory, signum, how)
    finally:
        profiler.stop()
        log.close()
        events.close()
    return dict(last, step=total_steps)


@contextlib.contextmanager
def _finishing_saves_on_error(ckpt: checkpoint.Checkpointer, name: str):
    """Any way out of a stage's loop but a stop (`Interrupted`, which saved and closed), such as
    NonFiniteLoss, a data or device error or a bug, first finishes the save in flight, inside
    the stop request (a signal meanwhile is recorded, not a kill mid-commit). Saves are
    asynchronous, and a process that leaves while one is being committed loses it: measured
    (2026-12-06), a run dying one step after its step-2 save exited with that checkpoint
    uncommitted (`2.orbax-checkpoint-tmp`, orbax's commit thread failing at interpreter
    shutdown), so its resume lost it. Two local processes (2026-12-06, by hand, 2 x 2 CPU
    devices, the step raising after the step-2 save): both raising, step 2 was committed (before
    this: left as `2.orbax-checkpoint-tmp`); process 1 raising alone, step 2 was committed too,
    and both ended at JAX's shutdown barrier 5 min later (process 0 waits in the next step's
    collective; before this, both were still hung 17 min later, step 2 uncommitted). Not tried
    on a pod. The close's own error is logged, never raised over the one that is leaving."""
    try:
        yield
    except Interrupted:
        raise
    except BaseException:
        try:
            ckpt.close()
        except Exception as e:   # noqa: BLE001 (the stage's own error is the one to report)
            logging.error("%s: the checkpoint save in flight in %s did not finish: %s", name,
                          ckpt.directory, e)
        raise


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
    """Stage 1's final DQ Net as the frozen stage-2 tree (params + BatchNorm statistics), read
    from the stage-1 checkpoints on every start of stage 2 (it is never in stage 2's)."""
    directory = as_workdir(workdir).checkpoints("dq")
    abstract = state_lib.abstract(state_lib.init_stage1, config)
    try:
        st, step = checkpoint.restore_state_only(directory, abstract, sharding)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"stage 2 needs a pretrained DQ Net in {directory}; run stage 1 "
                                "first (--config.mode=dq, or mode=all)") from e
    require_final_step("dq", step, config, directory, needed_by="stage 2",
                       finish="Finish it first (--config.mode=dq, or mode=all resumes it)")
    logging.info("ds: frozen DQ Net from step %d of %s", step, directory)
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


