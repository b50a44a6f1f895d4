"""Baseline nets on the same pipeline (paper Sec. 2: "softmax loss based binary supervision").

`BinaryCNN` is DS Net's encoder (Table 1, conv1-0 ... pool1-3 with the multi-scale short-cut)
followed by global average pooling and a 2-way linear head: the same features the de-spoofing
method learns from, supervised by a live/spoof label alone. The depth-only baseline needs no new
module: it is DQ Net after stage 1 (`despoof_jax.baselines`).
"""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from despoof_jax.models.ds_net import ENCODER_BLOCKS, IN_CHANNELS
from despoof_jax.models.layers import ConvStack, max_pool2, multiscale_shortcut, scaled


class BinaryCNN(nn.Module):
    """x: [B, H, W, 6] (RGB+HSV in [0, 1]) -> logits [B, 2] (index 1 = spoof)."""

    width: float = 1.0
    axis_name: Optional[str] = None
    dtype: jnp.dtype = jnp.float32
    bn_momentum: float = 0.99   # BatchNorm running-average momentum

    @nn.compact
    def __call__(self, x, *, train: bool):
        if x.ndim != 4 or x.shape[-1] != IN_CHANNELS or x.shape[1] % 8 or x.shape[2] % 8:
            raise ValueError(f"BinaryCNN expects [B, H, W, {IN_CHANNELS}] with H, W multiples "
                             f"of 8, got {x.shape}")
        y = x.astype(self.dtype)
        pools = []
        for i, block in enumerate(ENCODER_BLOCKS):
            y = ConvStack([scaled(c, self.width) for _, c in block], [n for n, _ in block],
                          self.axis_name, self.dtype, self.bn_momentum,
                          name=f"block{i + 1}")(y, train=train)
            y = max_pool2(y)
            pools.append(y)
        features = jnp.mean(multiscale_shortcut(*pools), axis=(1, 2))   # [B, C] global pool
        return nn.Dense(2, dtype=self.dtype, name="head")(features).astype(jnp.float32)
