"""Baseline nets on the same pipeline (paper Sec. 2: "softmax loss based binary supervision").

`BinaryCNN` is DS Net's encoder (Table 1, conv1-0 ... pool1-3 with the multi-scale short-cut)
followed by global average pooling and a 2-way linear head: the same features the de-spoofing
method learns from, supervised by a live/spoof label alone. The depth-only baseline needs no new
module: it is DQ Net after stage 1 (`despoof_jax.training.baselines`).
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from despoof_jax.models.ds_net import ENCODER_BLOCKS, IN_CHANNELS
from despoof_jax.models.layers import check_input, pyramid_features


class BinaryCNN(nn.Module):
    """x: [B, H, W, 6] (RGB+HSV in [0, 1]) -> logits [B, 2] (index 1 = spoof)."""

    width: float = 1.0
    axis_name: Optional[str] = None
    dtype: jnp.dtype = jnp.float32
    bn_momentum: float = 0.99   # BatchNorm running-average momentum

    @nn.compact
    def __call__(self, x, *, train: bool):
        check_input(x, "BinaryCNN", IN_CHANNELS)
        cat = pyramid_features(self, x, ENCODER_BLOCKS, self.width, train=train)
        features = jnp.mean(cat, axis=(1, 2))   # [B, C] global pool
        return nn.Dense(2, dtype=self.dtype, name="head")(features).astype(jnp.float32)
