"""Building blocks shared by the three nets of Table 1."""
from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def scaled(channels: int, width: float) -> int:
    """Channel count of a Table 1 layer under a width multiplier (1.0 = the paper's nets)."""
    return max(1, int(round(channels * width)))


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """[n_out, n_in] weights of 1-D linear interpolation with half-pixel centres, no antialiasing.

    Same sampling as `jax.image.resize(..., 'linear', antialias=False)` and PyTorch's
    `interpolate(mode='bilinear', align_corners=False)`, with edge clamping.
    """
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] += 1.0 - frac
    m[np.arange(n_out), hi] += frac
    return m


def resize_bilinear(x: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
    """Bilinear resize of x: [B, h, w, C] -> [B, height, width, C] (no antialiasing).

    The paper resizes feature maps instead of using deconvolutions (Sec. 3.2: "no extra grid
    artifacts"). Bilinear resizing is separable, so it is written as two small matrix products
    with constant interpolation matrices: the same numbers as `jax.image.resize(antialias=False)`
    but a formulation XLA maps onto its fast dot kernels on every backend.
    """
    _, h, w, _ = x.shape
    if (h, w) == (height, width):
        return x
    rows = jnp.asarray(_interp_matrix(height, h), x.dtype)
    cols = jnp.asarray(_interp_matrix(width, w), x.dtype)
    x = jnp.einsum("Hh,bhwc->bHwc", rows, x)
    return jnp.einsum("Ww,bHwc->bHWc", cols, x)


def max_pool2(x: jnp.ndarray) -> jnp.ndarray:
    """2x2 max pooling, stride 2: [B, H, W, C] (H, W even) -> [B, H/2, W/2, C].

    The same values as `nn.max_pool(x, (2, 2), strides=(2, 2))`, written as the maximum of the four
    strided sub-grids: XLA:CPU runs the backward of a `reduce_window` max (a select-and-scatter)
    about 9x slower than the backward of elementwise maxima (forward + backward on
    [6, 128, 128, 128], 2 CPU cores: 272 ms vs 30 ms; the forward is 2x faster too). The
    gradient is the same except on exact ties inside a window, where `reduce_window` routes it to
    the first maximum and `jnp.maximum` splits it evenly (both are subgradients).
    """
    return jnp.maximum(jnp.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2]),
                       jnp.maximum(x[:, 1::2, 0::2], x[:, 1::2, 1::2]))


def max_pool2_reference(x: jnp.ndarray) -> jnp.ndarray:
    """`max_pool2` as flax's `reduce_window` max pooling (what the tests compare against)."""
    return nn.max_pool(x, (2, 2), strides=(2, 2))


class ConvELUBN(nn.Module):
    """3x3 'same' convolution -> ELU -> BatchNorm, the order Table 1's caption gives.

    `axis_name` synchronises the BatchNorm batch statistics across devices (the mean over the
    *global* batch), so a pmapped step computes what one device would on the whole batch.
    """

    features: int
    axis_name: Optional[str] = None
    dtype: jnp.dtype = jnp.float32
    momentum: float = 0.99

    @nn.compact
    def __call__(self, x, *, train: bool):
        x = nn.Conv(self.features, (3, 3), padding="SAME", dtype=self.dtype, name="conv")(x)
        x = nn.elu(x)
        return nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=1e-3,
                            axis_name=self.axis_name if train else None, dtype=self.dtype,
                            name="bn")(x)


class ConvStack(nn.Module):
    """A run of ConvELUBN layers named after Table 1 (`names[i]` has `channels[i]` outputs)."""

    channels: Sequence[int]
    names: Sequence[str]
    axis_name: Optional[str] = None
    dtype: jnp.dtype = jnp.float32
    momentum: float = 0.99

    @nn.compact
    def __call__(self, x, *, train: bool):
        for c, name in zip(self.channels, self.names):
            x = ConvELUBN(c, self.axis_name, self.dtype, self.momentum, name=name)(x, train=train)
        return x


def multiscale_shortcut(p1: jnp.ndarray, p2: jnp.ndarray, p3: jnp.ndarray) -> jnp.ndarray:
    """Table 1's short-cut: pool-1 and pool-2 resized to the pool-3 grid, concatenated with pool-3.

    p1: [B, H/2, W/2, C1], p2: [B, H/4, W/4, C2], p3: [B, H/8, W/8, C3] -> [B, H/8, W/8, C1+C2+C3].
    """
    h, w = p3.shape[1:3]
    return jnp.concatenate([resize_bilinear(p1, h, w), resize_bilinear(p2, h, w), p3], axis=-1)


def check_input(x, net: str, channels: int = 6) -> None:
    """A clear error for inputs the nets cannot take: [B, H, W, channels], H and W multiples of 8
    (three 2x2 pools, and the H/8 maps)."""
    if x.ndim != 4 or x.shape[-1] != channels or x.shape[1] % 8 or x.shape[2] % 8:
        raise ValueError(f"{net} expects [B, H, W, {channels}] with H, W multiples of 8, "
                         f"got {x.shape}")


def pyramid_features(module: nn.Module, x, blocks, width: float, *, train: bool):
    """Table 1's encoder pattern, shared by DS Net, DQ Net and the binary-CNN baseline: three
    blocks of ConvELUBN layers (`blocks`: per block a sequence of (name, channels)), each followed
    by a 2x2 pool, then the multi-scale short-cut -> [B, H/8, W/8, sum of the blocks' last widths].

    Called from inside `module`'s compact `__call__`: the blocks become its submodules
    block1..block3 and use its `axis_name`, `dtype` and `bn_momentum`.
    """
    y = x.astype(module.dtype)
    pools = []
    for i, block in enumerate(blocks):
        y = ConvStack([scaled(c, width) for _, c in block], [n for n, _ in block],
                      module.axis_name, module.dtype, module.bn_momentum,
                      name=f"block{i + 1}")(y, train=train)
        y = max_pool2(y)
        pools.append(y)
    return multiscale_shortcut(*pools)
