"""Test setup: 8 fake CPU devices, set before jax is imported anywhere.

Most tests compile a step and run it once or twice, so XLA's optimisation passes cost more than
they save: they are disabled (also in the subprocesses tests start, which inherit the
environment). Even the end-to-end training test gains nothing from them: at 80 + 40 steps, the
steps ran 1.4x faster optimised and the test took as long (95 s optimised against 92 s, 2-core
CPU).
"""
import fcntl
import os
import shutil


# XLA:CPU's classic fusion emitters (`--xla_cpu_use_fusion_emitters=false`) compile about twice
# as fast as the newer ones at the suite's optimisation level, and the suite used them from
# 2026-12-02 to 2026-12-03. It no longer does: with the classic emitters and most optimisations
# off, XLA miscompiles the stage-1 step (jaxlib 0.10; measured 2026-12-03 on the tiny config of
# tests/training/kernels_worker.py: the step reports a loss of 0.7758 where the same forward
# pass jitted alone, the step compiled with optimisations, the new emitters and YNNPACK all give
# 0.7657). The product never sets that pair of flags.
SUITE_XLA_FLAGS = "--xla_force_host_platform_device_count=8"
os.environ.setdefault("XLA_FLAGS", SUITE_XLA_FLAGS)
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


# The trained fixtures that take a minute or more to build. Under pytest-xdist (`--dist
# loadgroup --no-loadscope-reorder`, setup.cfg) every test that uses one runs on the same worker:
# otherwise the other worker, handed one of them while the first builds the fixture, sits idle on
# the lock. The benchmark tests (about 100 s, no dataset) form a group too, second in line: the
# first worker starts by building the shared dataset (one core), and the second has work that
# does not wait for it (measured 2026-12-03: handed a dataset user first, it sat ~30 s on the lock).
# Longest first: these groups and the end-to-end test go to the workers before the short tests,
# which then fill in around them (a long unit handed out last would leave one worker idle at the
# end). xdist hands out the units in this order (no reordering by test count), two to each worker
# to start with: the first worker gets the two-process runs and the trained workdir, the second
# the benchmarks and the end-to-end test.
GROUPED_FIXTURES = ("two_process_runs", "trained_workdir", "smoke_workdirs")
GROUPED_FILES = {"test_benchmark.py": "benchmark"}
LONGEST_FIRST = ("two_process_runs", "test_benchmark.py", "trained_workdir", "test_end_to_end.py",
                 "smoke_workdirs")


@pytest.hookimpl(tryfirst=True)   # before xdist's worker reads the marks
def pytest_collection_modifyitems(config, items):
    def rank(item):
        names = set(getattr(item, "fixturenames", ())) | {item.path.name}
        return next((i for i, n in enumerate(LONGEST_FIRST) if n in names), len(LONGEST_FIRST))

    for item in items:
        used = [f for f in GROUPED_FIXTURES if f in getattr(item, "fixturenames", ())]
        group = used[0] if used else GROUPED_FILES.get(item.path.name)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=rank)   # stable: the collection order within each rank


def shared_once(tmp_path_factory, name: str, build) -> str:
    """`build(path)` run once for the whole test run, also under pytest-xdist: the workers share
    one folder (the parent of their own base temp) and a lock file, so a session fixture is built
    by the first worker that needs it and reused by the others. Returns the folder."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path = root / name
    done = root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                if path.exists():
                    shutil.rmtree(path)   # a half-built folder of a crashed worker
                path.mkdir(parents=True)
                build(path)
                done.write_text("ok")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return str(path)


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory):
    """A TFDS data dir holding the `s64_small` synthetic dataset, built once per test run."""
    from despoof_jax.data.builders import synthetic_spoof  # noqa: PLC0415 (after the XLA flags set above)
    def build(d):
        # Rendered in this process: both cores are busy with the two xdist workers, and a pool
        # of spawned renderers (one per split) adds their imports (tests/data test the pool).
        synthetic_spoof.prepare("s64_small", d, num_workers=1)
        for split in synthetic_spoof.SPLITS:   # the metadata tables too, while locked
            synthetic_spoof.load_metadata("s64_small", d, split)

    return shared_once(tmp_path_factory, "tfds_s64_small", build)


@pytest.fixture(scope="session")
def smoke_workdirs(synthetic_data_dir, tmp_path_factory):
    """Three tiny trained workdirs shared by the issue-4 tests (ablation, baselines, report):
    `ablation`: configs/ablation_loss.py:no_zero_one_map,smoke for 2 + 2 steps (a de-spoofing
    run with the 0\\1 map loss removed); `cnn`: configs/baseline_cnn.py:smoke for 2 steps;
    `depth`: configs/baseline_depth.py:smoke evaluated on the ablation run's stage-1 DQ Net."""
    from despoof_jax import experiment  # noqa: PLC0415 (after the XLA flags set above)
    from tests.util import config_module  # noqa: PLC0415 (after the XLA flags set above)

    def configure(c, **train_fields):
        c.data.data_dir = synthetic_data_dir
        c.train.stage1_steps = c.train.stage2_steps = 2
        c.train.checkpoint_every = 2
        c.eval.batch_size = 32
        for k, v in train_fields.items():
            c.train[k] = v
        return c

    def build(root):
        dirs = {name: str(root / name) for name in ("ablation", "cnn", "depth")}
        experiment.train_and_evaluate(
            configure(config_module("ablation_loss").get_config("no_zero_one_map,smoke")),
            dirs["ablation"])
        experiment.train_and_evaluate(
            configure(config_module("baseline_cnn").get_config("smoke"), baseline_steps=2),
            dirs["cnn"])
        shutil.copytree(os.path.join(dirs["ablation"], "dq"), os.path.join(dirs["depth"], "dq"))
        c = configure(config_module("baseline_depth").get_config("smoke"))
        c.mode = "eval"
        experiment.train_and_evaluate(c, dirs["depth"])

    root = shared_once(tmp_path_factory, "smoke_workdirs", build)
    return {name: os.path.join(root, name) for name in ("ablation", "cnn", "depth")}


@pytest.fixture(scope="session")
def trained_workdir(synthetic_data_dir, tmp_path_factory):
    """A smoke model (4 + 4 steps) trained and evaluated once per test run through the `despoof`
    command line, with a profile of one step and `loss.noise_truth` on; shared by the serving
    tests (library, CLI, export) and the run-observation tests."""
    import jax  # noqa: PLC0415 (after the XLA flags set above)

    from despoof_jax import cli  # noqa: PLC0415 (after the XLA flags set above)
    from tests.util import CONFIGS  # noqa: PLC0415 (after the XLA flags set above)

    def build(root):
        jax.config.update("jax_disable_most_optimizations", True)   # compile time dominates
        rc = cli.main(["--cpu-kernels=default", "train", f"--config={CONFIGS}/default.py:smoke",
                       f"--workdir={root}/workdir", f"--config.data.data_dir={synthetic_data_dir}",
                       "--config.train.stage1_steps=4", "--config.train.stage2_steps=4",
                       "--config.train.log_every=2", "--config.train.profile_steps=1",
                       # the loop's path for the truth term (not in the paper) at no extra run
                       "--config.loss.noise_truth=3.0"])
        assert rc == 0

    return os.path.join(shared_once(tmp_path_factory, "api_model", build), "workdir")
