"""Throughput of the real steps, optionally interleaved with the PyTorch peer (a script, not a test).

    despoof benchmark --sizes 128 256 --steps 3 --warmup 1
    despoof benchmark --sizes 256 --vs-peer --peer-python ~/.peer-venv/bin/python \
        --json /tmp/bench.json
    despoof benchmark --data /tmp/tfds --only data

(`despoof --cpu-kernels=default benchmark ...` keeps XLA's own CPU kernels.)

Per image size: the stage-2 step (VQ update + DS update, `train_step.stage2_step`) at the paper's
batch (two batches of 6) and widths; `stage2_shared` is the same iteration on one batch with one
DS forward (`train_step.stage2_step_one_batch`, config.train.vq_batch = "shared"), which is the
computation of the PyTorch peer; the stage-1 step (DQ Net pretraining) and inference
(`scores.predict`, DS + DQ forward) at batch 32. The train steps run exactly as in training:
`DataParallel("pmap")` over the real devices, donated state, the numpy batch moved host -> device
inside the timed region. Reported: images/s (DS images for stage 2), the first call's time (trace
+ compile + one step), peak RSS (`getrusage`, process-wide, so it only grows from row to row),
device peak memory where the backend reports it (GPU), and GFLOP/s from the analytic count of
`despoof_jax.tools.flops` (2 * conv/dense MACs).

`--vs-peer` runs `shared/bench/peer_torch.py` (`--feature concat --channels-last`) in a
subprocess, interleaved with ours: A B A B ..., one ratio (peer time / our time, > 1 = we are
faster) per pair, and the median of the ratios: the machine may be shared, and load drifts more
between minutes than between neighbouring runs.

`--data DIR` measures the grain `train_iterator` alone (building the 64 px `s64_small` synthetic
dataset under DIR if missing): the input pipeline must outrun the step.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from despoof_jax import config as config_lib
from despoof_jax.data import pipeline
from despoof_jax.data.builders import synthetic_spoof
from despoof_jax.evaluation import evaluate
from despoof_jax.tools import flops
from despoof_jax.training import parallel
from despoof_jax.training import state as state_lib
from despoof_jax.training import steps as train_step

# ../shared/bench beside the checkout: despoof_jax/tools/benchmark.py -> parents[3] is its parent.
DEFAULT_PEER = Path(__file__).resolve().parents[3] / "shared" / "bench" / "peer_torch.py"


# ------------------------------------------------------------------ measurement helpers
def _cpu_snapshot():
    """(machine busy s, steal s, this process's CPU s), to see what other processes took."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    steal = v[7] if len(v) > 7 else 0
    busy = sum(v[:8]) - v[3] - v[4] - steal
    t = os.times()
    return busy / hz, steal / hz, t.user + t.system


def _timed(fn, n: int) -> tuple[list[float], list[float]]:
    """n timed calls of fn -> (seconds, share of the machine other processes used meanwhile)."""
    times, other = [], []
    ncpu = os.cpu_count() or 1
    for _ in range(n):
        c0 = _cpu_snapshot() if os.path.exists("/proc/stat") else None
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        if c0 is not None:
            c1 = _cpu_snapshot()
            foreign = max(0.0, (c1[0] - c0[0]) - (c1[2] - c0[2])) + (c1[1] - c0[1])
            other.append(round(foreign / (ncpu * dt), 3))
    return times, other


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def device_peak_mib():
    """Device 0's peak since the process started (JAX has no reset): a row's figure includes every
    earlier row's, as peak RSS does."""
    stats = jax.local_devices()[0].memory_stats()
    if not stats or "peak_bytes_in_use" not in stats:
        return None   # the CPU backend keeps no statistics
    return stats["peak_bytes_in_use"] / 2 ** 20


def _config(size: int, widths, dtype: str, batch: int):
    c = config_lib.base_config()
    with c.unlocked():
        c.data.image_size = size
        c.model.ds_width, c.model.dq_width, c.model.vq_width = widths
        c.model.compute_dtype = dtype
        c.train.batch_size = batch
    return c


def _random_batch(seed: int, batch: int, size: int) -> dict:
    return pipeline.random_batch(seed, batch, size)


# ------------------------------------------------------------------ our steps
class _Runner:
    """One compiled step and its state; `run(n)` times n more steps."""

    def __init__(self, kind: str, config, infer_batch: int):
        self.kind, self.jax = kind, jax
        size, batch = config.data.image_size, config.train.batch_size
        self.batches = [_random_batch(i, batch, size) for i in range(2)]
        if kind == "infer":
            ds = state_lib.init_stage2(config, jax.random.key(0)).ds
            dq = state_lib.frozen_dq_from_stage1(state_lib.init_stage1(config, jax.random.key(1)))
            self.frozen = (state_lib.FrozenNet(ds.params, ds.batch_stats), dq)
            self.rgb = _random_batch(2, infer_batch, size)["rgb"]
            self.predict = evaluate.make_predict(config)
            return
        self.dp = dp = parallel.DataParallel("pmap")
        dp.check_batch_size(batch)
        if kind.startswith("stage2"):
            st = state_lib.init_stage2(config, jax.random.key(0))
            dq = state_lib.frozen_dq_from_stage1(state_lib.init_stage1(config, jax.random.key(1)))
            self.frozen = dp.from_global(dq)
            self.n_batches = n = train_step.stage2_batches(config)
            self.step = dp.wrap(train_step.bind_stage2(config), batch_args=tuple(range(2, 2 + n)),
                                n_args=3 + n)
        else:
            st = state_lib.init_stage1(config, jax.random.key(1))
            self.step = dp.wrap(train_step.bind_stage1(config), batch_args=(1,), n_args=3)
        self.state = dp.from_global(st)
        self.rng = jax.random.key(0)

    def once(self):
        jax = self.jax
        if self.kind == "infer":
            jax.block_until_ready(self.predict(*self.frozen, self.rgb))
            return
        if self.kind.startswith("stage2"):
            batches = [self.dp.shard_batch(b) for b in self.batches[:self.n_batches]]
            self.state, metrics = self.step(self.state, self.frozen, *batches, self.rng)
        else:
            self.state, metrics = self.step(self.state, self.dp.shard_batch(self.batches[0]),
                                            self.rng)
        jax.block_until_ready((self.state, metrics))


def _gflop(kind: str, config, infer_batch: int) -> float:
    m, size, b = config.model, config.data.image_size, config.train.batch_size
    if kind.startswith("stage2"):
        count = flops.stage2_step(size, b, m.ds_width, m.dq_width, m.vq_width)
        macs = count["total MACs"]
        if config.train.vq_batch == "shared":   # no DS forward of a separate VQ batch
            macs -= count["DS fwd (VQ batch)"]
    elif kind == "stage1":
        macs = flops.stage1_step(size, b, m.dq_width)
    else:
        macs = flops.inference(size, infer_batch, m.ds_width, m.dq_width)
    return 2 * macs / 1e9


def _images(kind: str, config, infer_batch: int) -> int:
    return infer_batch if kind == "infer" else config.train.batch_size


def _summary(times, other, images, gflop) -> dict:
    med = statistics.median(times)
    return dict(times_s=[round(t, 4) for t in times], other_load=other, median_s=med,
                images_per_s=images / med, gflops=gflop / med)


# ------------------------------------------------------------------ the peer
def _peer(args, kind: str, size: int) -> dict:
    python = args.peer_python or sys.executable
    if kind == "infer":
        # Our first call (trace + compile) is never timed, and --warmup calls after it: the peer
        # skips as many (as for training).
        mode = ["infer", "--batch", str(args.infer_batch), "--iters", str(args.steps),
                "--warmup", str(args.warmup + 1)]
    else:
        mode = ["train", "--steps", str(args.steps), "--warmup", str(args.warmup + 1)]
    cmd = [python, args.peer_script or str(DEFAULT_PEER), *mode, "--size", str(size), "--feature", "concat",
           "--channels-last", "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode:
        raise RuntimeError(f"peer failed ({' '.join(cmd)}):\n{p.stderr[-2000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    times = r["step_times_s"] if kind != "infer" else r["batch_times_s"]
    images = r["batch"]
    # The peer times until enough calls saw a quiet machine; we compare the plain median of all
    # its timed calls with the plain median of ours.
    med = statistics.median(times)
    return dict(times_s=[round(t, 4) for t in times],
                other_load=[c["other"] + c["steal"] for c in r.get("contention", [])],
                median_s=med, images_per_s=images / med,
                gflops=(r.get("model_gflop_per_step") or r.get("model_gflop_per_batch")) / med,
                peak_rss_mib=r["peak_rss_mib"], first_step_s=r.get("first_step_s"))


# ------------------------------------------------------------------ sections
KINDS = ("stage2", "stage2_shared", "stage1", "infer")


def bench_kind(args, kind: str, size: int, widths) -> dict:
    config = _config(size, widths, args.dtype, args.batch)
    if kind == "stage2_shared":
        config.train.vq_batch = "shared"
    gflop = _gflop(kind, config, args.infer_batch)
    images = _images(kind, config, args.infer_batch)
    t0 = time.perf_counter()
    runner = _Runner(kind, config, args.infer_batch)
    init_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    runner.once()
    first_s = time.perf_counter() - t0
    for _ in range(args.warmup):
        runner.once()
    out = dict(kind=kind, size=size, batch=images, gflop_per_call=gflop, init_s=init_s,
               first_call_s=first_s)
    ours = []
    n_pairs = args.pairs if args.vs_peer and kind != "stage1" else 1
    peers, ratios = [], []
    for i in range(n_pairs):
        ours.append(_summary(*_timed(runner.once, args.steps), images, gflop))
        line = (f"  {kind:13s} {size:4d}px  ours {ours[-1]['images_per_s']:7.3f} img/s "
                f"({ours[-1]['median_s']:.3f} s/call, {ours[-1]['gflops']:.1f} GFLOP/s, "
                f"others used {_fmt_load(ours[-1]['other_load'])})")
        if args.vs_peer and kind != "stage1":
            peers.append(_peer(args, kind, size))
            ratios.append(peers[-1]["median_s"] / ours[-1]["median_s"])
            line += (f"\n  {'':13s} {'':4s}    peer {peers[-1]['images_per_s']:7.3f} img/s "
                     f"({peers[-1]['median_s']:.3f} s/call, {peers[-1]['gflops']:.1f} GFLOP/s, "
                     f"others used {_fmt_load(peers[-1]['other_load'])})  "
                     f"pair {i + 1}: ratio {ratios[-1]:.2f}")
        print(line, flush=True)
    all_times = [t for o in ours for t in o["times_s"]]
    out.update(_summary(all_times, [x for o in ours for x in o["other_load"]], images, gflop))
    out["compile_s"] = max(0.0, first_s - out["median_s"])
    out["peak_rss_mib"] = peak_rss_mib()
    out["device_peak_mib"] = device_peak_mib()
    if ratios:
        out.update(peer=peers, ratios=ratios, median_ratio=statistics.median(ratios))
        print(f"  {kind:13s} {size:4d}px  median ratio peer/ours over {len(ratios)} pairs: "
              f"{out['median_ratio']:.2f} (> 1: ours faster)", flush=True)
    print(f"  {kind:13s} {size:4d}px  first call {first_s:.1f} s "
          f"(compile ~{out['compile_s']:.1f} s)"
          f", peak RSS {out['peak_rss_mib']:.0f} MiB"
          + (f", device peak {out['device_peak_mib']:.0f} MiB" if out["device_peak_mib"] else ""),
          flush=True)
    return out


def _fmt_load(xs) -> str:
    return f"{max(xs):.0%} max" if xs else "n/a"


def bench_data(args) -> dict:
    """Batches/s of the grain train_iterator over the 64 px synthetic dataset (built if missing)."""
    t0 = time.perf_counter()
    source = synthetic_spoof.load_source("s64_small", args.data, "train")
    build_s = time.perf_counter() - t0
    it = pipeline.train_iterator(source, np.arange(len(source)), global_batch_size=args.batch,
                                 seed=0, process_index=0, process_count=1, size=64)
    next(it)
    times, other = _timed(lambda: next(it), args.data_batches)
    total = sum(times)
    out = dict(kind="data", size=64, records=len(source), batch=args.batch, build_or_open_s=build_s,
               batches_per_s=len(times) / total, images_per_s=len(times) * args.batch / total,
               other_load=other)
    print(f"  data     64px  grain train_iterator: {out['batches_per_s']:.1f} batches/s = "
          f"{out['images_per_s']:.0f} img/s (batch {args.batch}, {len(source)} records)",
          flush=True)
    return out


def environment() -> dict:
    env = dict(date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), python=platform.python_version(),
               jax=jax.__version__, backend=jax.default_backend(), devices=jax.device_count(),
               device_kind=jax.devices()[0].device_kind, cpus=os.cpu_count(),
               xla_flags=os.environ.get("XLA_FLAGS", ""))
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        env["cpu"] = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                           if ln.startswith("Model name")), "")
    except OSError:
        env["cpu"] = platform.processor()
    if os.path.exists("/proc/loadavg"):
        env["loadavg"] = open("/proc/loadavg").read().split()[:3]
    return env


def run(args) -> dict:
    """Runs the benchmark of parsed `args`; the caller has chosen the XLA:CPU kernels already
    (`despoof --cpu-kernels ... benchmark`), before JAX started."""
    widths = tuple(float(w) for w in args.widths.split(","))
    if args.vs_peer and (args.batch != 6 or args.dtype != "float32" or widths != (1.0, 1.0, 1.0)):
        # The peer script always trains batch 6 in float32 at Table 1's widths: another setting
        # here would compare different work.
        raise SystemExit("--vs-peer compares like with like: it needs --batch 6, --dtype float32 "
                         "and --widths 1,1,1 (the peer's fixed setting)")
    env = environment()
    print(f"# despoof_jax benchmark {env['date']}: {env['backend']} x{env['devices']} "
          f"({env['device_kind']}; {env['cpu']}, {env['cpus']} CPUs), jax {env['jax']}, "
          f"load {' '.join(env.get('loadavg', []))}, XLA_FLAGS={env['xla_flags']!r}, "
          f"dtype {args.dtype}, widths {widths}", flush=True)
    results = dict(env=env, args=vars(args), runs=[])
    only = args.only.split(",")
    unknown = [k for k in only if k not in KINDS + ("data",)]
    if unknown:   # before anything is measured: a misspelt name would measure nothing
        raise SystemExit(f"--only {args.only}: unknown {', '.join(unknown)}; expected names "
                         f"from {', '.join(KINDS + ('data',))}")
    if "data" in only:
        if not args.data:
            raise SystemExit("--only data needs --data DIR (a TFDS data dir; built if missing)")
        results["runs"].append(bench_data(args))
    elif args.data:
        results["runs"].append(bench_data(args))
    for size in args.sizes:
        for kind in KINDS:
            if kind in only:
                results["runs"].append(bench_kind(args, kind, size, widths))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
        print(f"# wrote {args.json}")
    return results

