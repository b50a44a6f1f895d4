"""Test setup: 8 fake CPU devices, set before jax is imported anywhere.

Most tests compile a step and run it once or twice, so XLA's optimisation passes cost more than
they save: they are disabled by default (also in the subprocesses tests start, which inherit the
environment). Tests that train for many steps turn them back on with the `optimized` fixture.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# Many tests (and the subprocesses they start) compile the same steps: a persistent compilation
# cache turns every repeat into a ~5 s load instead of a ~30 s compile. Entries are keyed by the
# program and the XLA flags, so a stale entry is never used for a different program.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(os.environ.get("TMPDIR", "/tmp"), "despoof_jax_test_jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402


@pytest.fixture
def optimized():
    """Full XLA optimisation for the duration of a test that runs many steps."""
    import jax   # noqa: PLC0415
    old = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", old)


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory):
    """A TFDS data dir holding the `s64_small` synthetic dataset, built once per session."""
    from despoof_jax.data import synthetic_spoof   # noqa: PLC0415
    d = tmp_path_factory.mktemp("tfds")
    synthetic_spoof.prepare("s64_small", d)
    return str(d)


@pytest.fixture(scope="session")
def smoke_workdirs(synthetic_data_dir, tmp_path_factory):
    """Three tiny trained workdirs shared by the issue-4 tests (ablation, baselines, report):
    `ablation`: configs/ablation_loss.py:no_zero_one_map,smoke for 2 + 2 steps (a de-spoofing
    run with the 0\\1 map loss removed); `cnn`: configs/baseline_cnn.py:smoke for 2 steps;
    `depth`: configs/baseline_depth.py:smoke evaluated on the ablation run's stage-1 DQ Net."""
    import shutil   # noqa: PLC0415

    from configs import ablation_loss, baseline_cnn, baseline_depth   # noqa: PLC0415
    from despoof_jax import train   # noqa: PLC0415
    root = tmp_path_factory.mktemp("smoke_workdirs")

    def configure(c, **train_fields):
        c.data.data_dir = synthetic_data_dir
        c.train.stage1_steps = c.train.stage2_steps = 2
        c.train.checkpoint_every = 2
        c.eval.batch_size = 32
        for k, v in train_fields.items():
            c.train[k] = v
        return c

    dirs = {name: str(root / name) for name in ("ablation", "cnn", "depth")}
    train.train_and_evaluate(configure(ablation_loss.get_config("no_zero_one_map,smoke")),
                             dirs["ablation"])
    train.train_and_evaluate(configure(baseline_cnn.get_config("smoke"), baseline_steps=2),
                             dirs["cnn"])
    shutil.copytree(os.path.join(dirs["ablation"], "dq"), os.path.join(dirs["depth"], "dq"))
    c = configure(baseline_depth.get_config("smoke"))
    c.mode = "eval"
    train.train_and_evaluate(c, dirs["depth"])
    return dirs
