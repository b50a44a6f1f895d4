"""Shared helpers of the test suite: tiny configs and synthetic batches."""
from __future__ import annotations

import hashlib
import importlib.util
import pathlib
import subprocess
import sys

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


def example_digest(ex: dict) -> str:
    """sha256 of a synthetic example's image, live reference and depth."""
    return hashlib.sha256(ex["image"].tobytes() + ex["live_reference"].tobytes()
                          + ex["depth"].tobytes()).hexdigest()


def example_digest_in_fresh_process(args: dict) -> str:
    """`example_digest(make_example(**args))` computed by a new interpreter: nothing cached or
    seeded in this process can reach it."""
    code = ("from despoof_jax.data.synthetic import make_example; "
            "from tests.util import example_digest; "
            f"print(example_digest(make_example(**{args!r})))")
    root = pathlib.Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=root)
    return out.stdout.strip()
