"""The analytic FLOP count, the benchmark script, and the fast formulations it relies on."""
import functools
import importlib.util
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from despoof_jax import cli
from despoof_jax.models import layers
from despoof_jax.tools import flops
from despoof_jax.training import state as state_lib
from despoof_jax.training import steps as train_step
from tests.util import random_batch, tiny_config

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "bench" / "flops.py"


def _reference():
    if not REFERENCE.exists():
        pytest.skip(f"reference FLOP counter {REFERENCE} not present")
    spec = importlib.util.spec_from_file_location("reference_flops", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("size", [64, 256])
def test_flops_match_the_reference_counter(size):
    ref = _reference()
    # Our decoder reads the 60-channel short-cut concatenation: the reference's "concat" feature.
    assert flops.macs(flops.ds_net_layers(size)) == ref.ds_net(size, "concat").macs
    assert flops.macs(flops.dq_net_layers(size)) == ref.dq_net(size).macs
    assert flops.macs(flops.vq_net_layers(size)) == ref.vq_net(size).macs
    ours, theirs = flops.stage2_step(size, 6), ref.train_step(size, 6, "concat")
    for key in ("DS fwd", "DS bwd", "DQ fwd", "DQ bwd (to input)", "VQ(a) fwd", "VQ(a) bwd",
                "VQ(b) fwd", "VQ(b) bwd (to input)"):
        assert ours[key] == theirs[key], key
    # Our step adds one DS forward: the VQ update and the DS update see different batches.
    assert ours["total MACs"] == theirs["total MACs"] + ours["DS fwd (VQ batch)"]
    assert flops.inference(size, 32) == ref.inference(size, 32, "concat")


def test_flops_follow_the_width_multiplier():
    # Half-width DS Net: every conv whose in and out channels both halve costs a quarter.
    full, half = flops.ds_net_layers(64), flops.ds_net_layers(64, 0.5)
    assert dict(half)["conv1-4"] * 4 == dict(full)["conv1-4"]   # 20 -> 20 at full width


def test_benchmark_main_runs_on_a_tiny_config(tmp_path):
    out = tmp_path / "bench.json"
    # 8 fake devices in the test session: a batch of 8 splits over them. The paper's two-batch
    # stage 2 (`stage2`) runs the same code as `stage2_shared` with one more batch; left out
    # here, as its step is compiled and checked in tests/training.
    assert cli.main(["--cpu-kernels", "default", "benchmark", "--sizes", "32", "--steps", "1",
                     "--warmup", "0", "--batch", "8", "--infer-batch", "4",
                     "--only", "stage2_shared,stage1,infer",
                     "--widths", "0.5,0.125,0.5", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    runs = {r["kind"]: r for r in res["runs"]}
    assert list(runs) == ["stage2_shared", "stage1", "infer"]
    for r in res["runs"]:
        assert r["images_per_s"] > 0 and r["gflops"] > 0 and r["peak_rss_mib"] > 0
    # the one-batch iteration counts one DS forward less than the paper's two-batch one
    count = flops.stage2_step(32, 8, 0.5, 0.125, 0.5)
    shared = runs["stage2_shared"]["gflop_per_call"]
    assert shared == pytest.approx(2 * (count["total MACs"] - count["DS fwd (VQ batch)"]) / 1e9)
    assert 0 < shared < 2 * count["total MACs"] / 1e9
    # the peer always trains batch 6, float32, Table 1 widths: another setting is refused
    with pytest.raises(SystemExit, match="compares like with like"):
        cli.main(["--cpu-kernels", "default", "benchmark", "--sizes", "32", "--batch", "8",
                  "--vs-peer"])
    with pytest.raises(SystemExit, match="unknown stage_2"):     # a misspelt name measures nothing
        cli.main(["--cpu-kernels", "default", "benchmark", "--sizes", "32", "--only", "stage_2"])


def test_the_default_peer_script_is_the_one_beside_the_checkout():
    """`--vs-peer` without --peer-script reads ../shared/bench/peer_torch.py (README)."""
    from despoof_jax.tools import benchmark   # noqa: PLC0415 (the module behind the CLI)
    assert benchmark.DEFAULT_PEER == REFERENCE.parent / "peer_torch.py"
    if REFERENCE.parent.exists():
        assert benchmark.DEFAULT_PEER.exists()


def test_strided_max_pool_equals_reduce_window_pool():
    """The strided pool that DS, DQ and VQ Net use is bit-identical to reduce_window's, forward
    and backward (so a whole step with either pool is the same step)."""
    x = jnp.asarray(np.random.RandomState(0).randn(2, 8, 12, 3).astype(np.float32))
    g = jnp.asarray(np.random.RandomState(1).randn(2, 4, 6, 3).astype(np.float32))
    np.testing.assert_array_equal(layers.max_pool2(x), layers.max_pool2_reference(x))
    grad = lambda pool: jax.vjp(pool, x)[1](g)[0]  # noqa: E731
    np.testing.assert_array_equal(grad(layers.max_pool2), grad(layers.max_pool2_reference))


def test_bfloat16_compute_follows_the_float32_loss_curve():
    """A few steps of bfloat16 compute (float32 params) track the float32 loss curve.

    Tolerance: bfloat16 keeps 8 mantissa bits (relative error ~4e-3 per rounding); through a dozen
    conv layers the DS loss moves by about 1%; we allow 5% of the loss, per step.
    """
    curves, params = {}, {}
    for dtype in ("float32", "bfloat16"):
        # The config of tests/training/test_train_step.py's steps (adam_eps 1e-3 included): the
        # float32 step is then the program those tests compile, shared through the suite's
        # persistent compilation cache.
        config = tiny_config(32, **{"model.vq_dropout": 0.0, "train.adam_eps": 1e-3,
                                    "model.compute_dtype": dtype})
        s2 = state_lib.init_stage2(config, jax.random.key(0))
        dq = state_lib.frozen_dq_from_stage1(state_lib.init_stage1(config, jax.random.key(1)))
        step = jax.jit(functools.partial(train_step.bind_stage2(config), axis_name=None))
        losses = []
        for i in range(5):
            s2, metrics = step(s2, dq, random_batch(2 * i, 8, 32), random_batch(2 * i + 1, 8, 32),
                               jax.random.key(i))
            losses.append(float(metrics["ds_total"]))
        curves[dtype] = np.asarray(losses)
        params[dtype] = s2.ds.params
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params["bfloat16"]))
    np.testing.assert_allclose(curves["bfloat16"], curves["float32"], rtol=0.05)
    # and the curve is a real one: training moved the loss
    assert abs(curves["float32"][-1] - curves["float32"][0]) > 1e-3


def _step_results(config, stage: int, axis_name=None, dp=None):
    s1 = state_lib.init_stage1(config, jax.random.key(1))
    size = config.data.image_size
    ba, bb = random_batch(0, 8, size), random_batch(1, 8, size)
    if stage == 1:
        step = train_step.bind_stage1(config)
        args = (s1, ba, jax.random.key(2))
    else:
        step = train_step.bind_stage2(config)
        s2 = state_lib.init_stage2(config, jax.random.key(0))
        args = (s2, state_lib.frozen_dq_from_stage1(s1), ba, bb, jax.random.key(2))
    if dp is None:
        return jax.jit(functools.partial(step, axis_name=None))(*args)
    # Donating the state, as training does: the placed arguments below are fresh copies, and the
    # fused stage-2 program is then the very one tests/training/test_train_step.py compiles for
    # its pmap comparison (same config, shapes and donation), so the two tests share one
    # compilation through the suite's persistent cache.
    wrapped = dp.wrap(step, batch_args=(1,) if stage == 1 else (2, 3), n_args=len(args))
    batch_args = (1,) if stage == 1 else (2, 3)
    placed = [dp.shard_batch(a) if i in batch_args else a if i == len(args) - 1 else
              dp.from_global(a) for i, a in enumerate(args)]
    return dp.to_host(wrapped(*placed))


# Stage 2 pmapped over 8 devices covers the single-device stage-2 case too (same per-device
# code, plus the synchronised statistics); stage 1 runs on one device.
@pytest.mark.parametrize("stage,devices", [(1, 1), (2, 8)])
def test_fused_elu_batchnorm_step_equals_flax_batchnorm(monkeypatch, stage, devices):
    """The hand-written ELU + BatchNorm backward computes what autodiff of flax's nn.elu +
    nn.BatchNorm does: one training step (new params, Adam moments, BatchNorm statistics,
    losses), on one device and pmapped over 8 with synchronised statistics."""
    from despoof_jax.training import parallel  # noqa: PLC0415
    # Adam eps 1e-3: at step 1 Adam moves a weight by ~lr * sign(g), so a gradient that is zero
    # up to round-off (a conv bias in front of BatchNorm) could flip by 2 lr; with a larger eps
    # the update is proportional to the gradient and the comparison measures the gradient.
    config = tiny_config(32, **{"model.vq_dropout": 0.0, "train.adam_eps": 1e-3})
    dp = None if devices == 1 else parallel.DataParallel("pmap")
    fast = _step_results(config, stage, dp=dp)
    monkeypatch.setattr(layers, "FUSED_ELU_BATCHNORM", False)
    plain = _step_results(config, stage, dp=dp)
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(plain)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_ynnpack_cpu_kernels_compute_what_the_default_kernels_do(tmp_path):
    """main.py and the benchmark route XLA:CPU convolutions to YNNPACK (xla_flags.py): a stage-1
    step, the stage-2 losses and inference give what XLA's default kernels give.

    Tolerance 1e-4 relative: YNNPACK sums in another order and less accurately. Measured against
    float64 on VQ Net's gradients: 3e-6..7e-5 relative error for YNNPACK, 4e-7..9e-6 for the
    default kernels; the VQ loss of the tiny step differs by 2.4e-5 relative.
    """
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    from despoof_jax import xla_flags  # noqa: PLC0415
    root = Path(__file__).resolve().parents[2]
    results = {}
    for kind in xla_flags.CPU_KERNELS:
        # XLA's optimisation passes stay off, as everywhere in the suite: the YNNPACK fusion
        # still applies at that level (measured: 176 of the 190 output leaves differ from the
        # default kernels', by up to 5.7e-6) and the two workers compile 3x faster.
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        env["XLA_FLAGS"] = xla_flags.YNN_CPU_FLAGS if kind == "ynn" else ""
        out = tmp_path / f"{kind}.npz"
        subprocess.run([sys.executable, "-m", "tests.training.kernels_worker", str(out)], cwd=root,
                       env=env, check=True, timeout=600)
        with np.load(out) as f:
            results[kind] = [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]
    assert len(results["ynn"]) == len(results["default"]) > 10
    # the YNNPACK kernels really ran: they sum in another order, so some results differ
    assert any(not np.array_equal(a, b) for a, b in zip(results["ynn"], results["default"]))
    for a, b in zip(results["ynn"], results["default"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
