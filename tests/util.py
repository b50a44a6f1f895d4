"""Shared helpers of the test suite: tiny configs and synthetic batches."""
from __future__ import annotations

import importlib.util
import pathlib

from despoof_jax.data.pipeline import random_batch  # noqa: F401 (re-exported for tests)

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def config_module(name: str):
    """configs/<name>.py loaded by path, as `despoof train --config=` does (configs/ is not a
    package: a config file loads from anywhere)."""
    spec = importlib.util.spec_from_file_location(f"despoof_config_{name}", CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


default = config_module("default")


def tiny_config(size: int = 32, **overrides):
    """The smoke config at `size` px with narrow nets: compiles and runs in seconds."""
    c = default.get_config("smoke")
    with c.unlocked():
        c.data.image_size = size
        c.model.ds_width = 0.5
        c.model.dq_width = 0.125
        c.model.vq_width = 0.5
        for key, value in overrides.items():
            node = c
            *path, leaf = key.split(".")
            for p in path:
                node = node[p]
            node[leaf] = value
    return c


def smoke_config(data_dir, **overrides):
    """`tiny_config(64)` on the session's `s64_small` synthetic dataset in `data_dir`."""
    overrides = {"data.data_dir": data_dir, "data.builder_config": "s64_small", **overrides}
    return tiny_config(64, **overrides)
