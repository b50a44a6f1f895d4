"""Analytic multiply-accumulate (MAC) counts of the three nets and of the steps that use them.

The layer tables are read from the model modules (`ds_net.ENCODER_BLOCKS`, `MAP_HEAD`, `DECODER`,
`dq_net.BLOCKS`, `HEAD`, `vq_net.BLOCKS`, `FC_HIDDEN`), so a change of Table 1's reading changes
the count with it. FLOP = 2 * MAC ("matmul FLOPs", what `torch.utils.flop_counter` reports); only
convolutions and dense layers are counted: bias, ELU, BatchNorm, pooling, resizing and the FFT are
memory-bound and left out, as in the reference counter `shared/bench/flops.py`, which
`tests/test_benchmark.py` checks these numbers against.

Conventions: a 3x3 'same' conv costs H W C_in C_out 9 MACs per image, a dense layer in*out. Its
backward costs one forward for the input gradient and one for the weight gradient; a layer fed
with data needs no input gradient, a frozen layer no weight gradient.
"""
from __future__ import annotations

import math
from typing import NamedTuple

from despoof_jax.models import dq_net, ds_net, vq_net
from despoof_jax.models.layers import scaled


class Layer(NamedTuple):
    name: str
    macs: int    # per image


def _convs(layers, c_in: int, hw: int, width: float, keep=()) -> tuple[list[Layer], int]:
    """A ConvStack table [(name, channels)] at `hw` x `hw` -> (layers, output channels)."""
    out = []
    for name, c in layers:
        c = c if name in keep else scaled(c, width)
        out.append(Layer(name, hw * hw * c_in * c * 9))
        c_in = c
    return out, c_in


def _pyramid(blocks, size: int, width: float):
    """The encoder pattern of `layers.pyramid_features`: three conv blocks, each followed by a
    2x2 pool -> (conv layers, short-cut channels, side of the short-cut grid)."""
    layers, c, hw, pooled = [], ds_net.IN_CHANNELS, size, []
    for block in blocks:
        convs, c = _convs(block, c, hw, width)
        layers += convs
        hw //= 2
        pooled.append(c)
    return layers, sum(pooled), hw


def ds_net_layers(size: int, width: float = 1.0) -> list[Layer]:
    """DS Net: encoder, 0\\1 map head on the short-cut, decoder on the short-cut resized to S."""
    layers, cat, hw = _pyramid(ds_net.ENCODER_BLOCKS, size, width)
    head, c = _convs(ds_net.MAP_HEAD, cat, hw, width)
    layers += head + [Layer("conv1-12", hw * hw * c * 1 * 9)]
    dec, c = _convs(ds_net.DECODER, cat, size, width)
    return layers + dec + [Layer("conv2-8", size * size * c * ds_net.IN_CHANNELS * 9)]


def dq_net_layers(size: int, width: float = 1.0) -> list[Layer]:
    layers, cat, hw = _pyramid(dq_net.BLOCKS, size, width)
    head, c = _convs(dq_net.HEAD, cat, hw, width)
    return layers + head + [Layer("conv3-12", hw * hw * c * 1 * 9)]


def vq_net_layers(size: int, width: float = 1.0) -> list[Layer]:
    layers, c, hw = [], ds_net.IN_CHANNELS, size
    for block in vq_net.BLOCKS:
        convs, c = _convs(block, c, hw, width, keep=("conv4-6",))
        layers += convs
        hw //= 2
    flat = hw * hw * c
    return layers + [Layer("fc4-1", flat * vq_net.FC_HIDDEN), Layer("fc4-2", vq_net.FC_HIDDEN * 2)]


def macs(layers: list[Layer]) -> int:
    return sum(layer.macs for layer in layers)


def stage2_step(size: int, batch: int, ds_width=1.0, dq_width=1.0, vq_width=1.0) -> dict:
    """MACs of one `train_step.stage2_step` on two batches of `batch` images -> dict of parts.

    The keys up to "VQ(b) bwd (to input)" are those of the reference counter (one DS forward whose
    output serves both updates). Our step takes the VQ update and the DS update on two different
    batches (Sec. 3.3), so it runs DS Net forward once more, on the VQ batch: "DS fwd (VQ batch)".
    """
    ds, dq, vq = (ds_net_layers(size, ds_width), dq_net_layers(size, dq_width),
                  vq_net_layers(size, vq_width))
    r = {
        "DS fwd": batch * macs(ds),
        "DS bwd": batch * (2 * macs(ds) - ds[0].macs),     # conv1-0 reads data: no input grad
        "DQ fwd": batch * macs(dq),
        "DQ bwd (to input)": batch * macs(dq),              # frozen: input grads only
        "VQ(a) fwd": 2 * batch * macs(vq),                  # real live + reconstructions
        "VQ(a) bwd": 2 * batch * (2 * macs(vq) - vq[0].macs),
        "VQ(b) fwd": batch * macs(vq),
        "VQ(b) bwd (to input)": batch * macs(vq),
        "DS fwd (VQ batch)": batch * macs(ds),
    }
    r["total MACs"] = sum(r.values())
    return r


def stage1_step(size: int, batch: int, dq_width=1.0) -> int:
    """MACs of one `train_step.stage1_step`: DQ forward and backward (no grad into the data)."""
    dq = dq_net_layers(size, dq_width)
    return batch * (3 * macs(dq) - dq[0].macs)


def inference(size: int, batch: int, ds_width=1.0, dq_width=1.0) -> int:
    """MACs of `scores.predict` on `batch` images: DS Net and DQ Net forward."""
    return batch * (macs(ds_net_layers(size, ds_width)) + macs(dq_net_layers(size, dq_width)))


def fft_flops(size: int, n_maps: int) -> int:
    """~5 N log2 N FLOPs of a complex 2-D FFT of N = size^2 points, per map (not in the totals)."""
    n = size * size
    return int(n_maps * 5 * n * math.log2(n))
