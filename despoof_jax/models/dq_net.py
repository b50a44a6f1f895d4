"""DQ Net (Discriminative Quality Net), Table 1 column 3: the pseudo-depth net of [18]."""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from despoof_jax.models.layers import ConvStack, pyramid_features, scaled

BLOCKS = (
    (("conv3-0", 64), ("conv3-1", 128), ("conv3-2", 196), ("conv3-3", 128)),  # -> pool3-1
    (("conv3-4", 128), ("conv3-5", 196), ("conv3-6", 128)),                   # -> pool3-2
    (("conv3-7", 128), ("conv3-8", 196), ("conv3-9", 128)),                   # -> pool3-3
)
HEAD = (("conv3-10", 128), ("conv3-11", 64))                                  # then conv3-12 -> 1


class DQNet(nn.Module):
    """x: [B, H, W, 6] (RGB+HSV) -> depth [B, H/8, W/8, 1], target range [0, 1].

    Pretrained in stage 1 (face depth for live, zeros for spoof) and frozen in stage 2, where it is
    always applied with `train=False` (BatchNorm running statistics) so nothing about it changes.
    """

    width: float = 1.0
    axis_name: Optional[str] = None
    dtype: jnp.dtype = jnp.float32
    bn_momentum: float = 0.99   # BatchNorm running-average momentum

    @nn.compact
    def __call__(self, x, *, train: bool):
        cat = pyramid_features(self, x, BLOCKS, self.width, train=train)
        y = ConvStack([scaled(c, self.width) for _, c in HEAD], [n for n, _ in HEAD],
                      self.axis_name, self.dtype, self.bn_momentum, name="head")(cat, train=train)
        return nn.Conv(1, (3, 3), padding="SAME", dtype=self.dtype,
                       name="conv3-12")(y).astype(jnp.float32)
