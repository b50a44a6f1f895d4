"""Shared helpers of the test suite: tiny configs and synthetic batches."""
from __future__ import annotations

from configs import default
from despoof_jax.data.pipeline import random_batch  # noqa: F401 (re-exported for tests)


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
