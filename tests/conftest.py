"""Test setup: 8 fake CPU devices, set before jax is imported anywhere.

Most tests compile a step and run it once or twice, so XLA's optimisation passes cost more than
they save: they are disabled by default (also in the subprocesses tests start, which inherit the
environment). Tests that train for many steps turn them back on with the `optimized` fixture.
"""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import pytest  # noqa: E402


@pytest.fixture
def optimized():
    """Full XLA optimisation for the duration of a test that runs many steps."""
    import jax   # noqa: PLC0415
    old = jax.config.jax_disable_most_optimizations
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
