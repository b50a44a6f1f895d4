"""Shared helpers of the test suite: tiny configs and synthetic batches."""
from __future__ import annotations

import numpy as np

from configs import default


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


def random_batch(seed: int, batch: int, size: int) -> dict:
    """A train-step batch (rgb uint8, face depth, label) with live and spoof samples."""
    r = np.random.RandomState(seed)
    return dict(rgb=r.randint(0, 256, (batch, size, size, 3)).astype(np.uint8),
                depth=r.rand(batch, size // 8, size // 8, 1).astype(np.float32),
                label=(np.arange(batch) % 2).astype(np.int32))
