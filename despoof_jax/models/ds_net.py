"""DS Net (De-Spoof Net), Table 1 columns 1-2: encoder, 0\\1 map head and noise decoder."""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from despoof_jax.models.layers import (
    ConvStack,
    check_input,
    pyramid_features,
    resize_bilinear,
    scaled,
)

# Table 1, DS Net encoder and decoder: (layer name, output channels). Every listed conv is followed
# by ELU + BatchNorm except the output convs conv1-12 and conv2-8.
ENCODER_BLOCKS = (
    (("conv1-0", 24), ("conv1-1", 20), ("conv1-2", 25), ("conv1-3", 20)),   # -> pool1-1, H/2
    (("conv1-4", 20), ("conv1-5", 25), ("conv1-6", 20)),                    # -> pool1-2, H/4
    (("conv1-7", 20), ("conv1-8", 25), ("conv1-9", 20)),                    # -> pool1-3, H/8
)
MAP_HEAD = (("conv1-10", 28), ("conv1-11", 16))                             # then conv1-12 -> 1
DECODER = (("conv2-1", 28), ("conv2-2", 24), ("conv2-3", 20), ("conv2-4", 20),
           ("conv2-5", 20), ("conv2-6", 16), ("conv2-7", 16))               # then conv2-8 -> 6
IN_CHANNELS = 6   # RGB + HSV


class DSNet(nn.Module):
    """x: [B, H, W, 6] (RGB+HSV in [0, 1]) -> dict(
         map   = [B, H/8, W/8, 1] the 0\\1 map (conv1-12; target 0 live, 1 spoof),
         noise = [B, H, W, 6] the spoof noise N (conv2-8), in the input's units,
         live  = [B, H, W, 6] the live reconstruction I - N (Eq. 1)).

    The decoder reads the 60-channel short-cut concatenation (Table 1: the decoder's input is
    "pool1-1+pool1-2+pool1-3"), resized bilinearly to H x W (Sec. 3.2, no deconvolution). The
    features F of Sec. 3.2 that feed the 0\\1 map head are the conv1-12 path of the same tensor.
    """

    width: float = 1.0
    axis_name: Optional[str] = None
    dtype: jnp.dtype = jnp.float32
    bn_momentum: float = 0.99   # BatchNorm running-average momentum
    # Not in the paper (config.model.ds_input_skip): the decoder also reads x at full resolution.
    input_skip: bool = False

    @nn.compact
    def __call__(self, x, *, train: bool):
        check_input(x, "DSNet", IN_CHANNELS)
        h, w = x.shape[1:3]
        stack = lambda layers, name: ConvStack(  # noqa: E731
            [scaled(c, self.width) for _, c in layers], [n for n, _ in layers],
            self.axis_name, self.dtype, self.bn_momentum, name=name)
        cat = pyramid_features(self, x, ENCODER_BLOCKS, self.width, train=train)
        f = stack(MAP_HEAD, "map_head")(cat, train=train)
        zmap = nn.Conv(1, (3, 3), padding="SAME", dtype=self.dtype, name="conv1-12")(f)
        dec_in = resize_bilinear(cat, h, w)
        if self.input_skip:
            dec_in = jnp.concatenate([dec_in, x.astype(dec_in.dtype)], axis=-1)
        dec = stack(DECODER, "decoder")(dec_in, train=train)
        noise = nn.Conv(IN_CHANNELS, (3, 3), padding="SAME", dtype=self.dtype, name="conv2-8")(dec)
        zmap, noise = zmap.astype(jnp.float32), noise.astype(jnp.float32)
        return dict(map=zmap, noise=noise, live=x.astype(jnp.float32) - noise)
