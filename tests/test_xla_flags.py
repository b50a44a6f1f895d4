"""The YNNPACK flag goes into XLA_FLAGS only for a jaxlib whose XLA knows it (XLA aborts on an
unknown flag; jaxlib 0.6-0.8 lack it, 0.9.0 on have it: checked in the wheels)."""
import importlib.metadata
import os

import pytest

from despoof_jax import xla_flags


@pytest.mark.parametrize("version, added", [("0.6.2", False), ("0.8.0", False), ("0.9.0", True),
                                             ("0.10.2", True), ("0.11.0.dev20261201", True)])
def test_the_ynn_flag_only_for_a_jaxlib_that_has_it(monkeypatch, version, added):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: version)
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    xla_flags.use_cpu_kernels("ynn")
    assert (xla_flags.YNN_CPU_FLAGS in os.environ["XLA_FLAGS"]) == added
    assert "--xla_force_host_platform_device_count=8" in os.environ["XLA_FLAGS"]
    monkeypatch.setenv("XLA_FLAGS", "")
    xla_flags.use_cpu_kernels("default")
    assert os.environ["XLA_FLAGS"] == ""
    with pytest.raises(ValueError, match="cpu kernels 'fast' unknown"):
        xla_flags.use_cpu_kernels("fast")
