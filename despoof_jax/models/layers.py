"""Building blocks shared by the three nets of Table 1."""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import flax.linen as nn
import jax
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


# ELU -> training-mode BatchNorm as one function with a hand-written backward (see
# `elu_batchnorm`); False selects flax's `nn.elu` + `nn.BatchNorm` (what the tests compare against).
FUSED_ELU_BATCHNORM = True


def _elu_batchnorm_fwd(z, scale, bias, epsilon, axis_name):
    zf = z.astype(jnp.float32)
    a = jax.nn.elu(zf)
    axes = tuple(range(z.ndim - 1))
    # flax's "fast variance": E[a^2] - E[a]^2 from one pass, averaged over devices like flax does
    stats = jnp.stack([jnp.mean(a, axes), jnp.mean(a * a, axes)])
    if axis_name is not None:
        stats = jax.lax.pmean(stats, axis_name)
    mean, mean2 = stats[0], stats[1]
    var = jnp.maximum(0.0, mean2 - mean * mean)
    inv = jax.lax.rsqrt(var + epsilon)
    y = (a - mean) * (inv * scale) + bias
    return (y.astype(z.dtype), mean, var), (z, mean, inv, scale)


def _elu_batchnorm_bwd(epsilon, axis_name, residuals, cotangents):
    z, mean, inv, scale = residuals
    dy, dmean, dvar = cotangents
    zf, dy = z.astype(jnp.float32), dy.astype(jnp.float32)
    a = jax.nn.elu(zf)                      # recomputed: only z is kept between the passes
    ahat = (a - mean) * inv
    axes = tuple(range(z.ndim - 1))
    sums = jnp.stack([jnp.sum(dy, axes), jnp.sum(dy * ahat, axes)])   # one reduction pass
    d_bias, d_scale = sums[0], sums[1]      # parameter cotangents are this device's own
    n = np.prod(z.shape[:-1])
    extra = jnp.stack([dmean, dvar])
    if axis_name is not None:               # the transpose of the forward pmean of the stats
        sums, extra = jax.lax.psum(sums, axis_name), jax.lax.psum(extra, axis_name)
        n = n * jax.lax.psum(1, axis_name)
    k = inv * scale
    da = (k * (dy - sums[0] / n - ahat * (sums[1] / n))
          + extra[0] / n + extra[1] * (2.0 / n) * (a - mean))
    dz = da * jnp.where(zf > 0, 1.0, jnp.exp(jnp.minimum(zf, 0.0)))   # ELU'(z)
    return dz.astype(z.dtype), d_scale, d_bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def elu_batchnorm(z, scale, bias, epsilon: float, axis_name: Optional[str]):
    """ELU(z) followed by training-mode BatchNorm over all axes but the last -> (y, mean, var).

    The same function as `nn.BatchNorm(use_running_average=False)(nn.elu(z))` with flax's
    defaults (fast variance, statistics averaged over `axis_name`), and `mean`, `var` the batch
    statistics for the running averages. Autodiff of the composition keeps several activations
    and runs several elementwise and reduction passes in the backward; this backward keeps only
    z and makes one reduction pass (sum dy, sum dy * a_hat) and one elementwise pass: the
    textbook BatchNorm gradient with ELU'(z) applied. Measured on 2 CPU cores at 256 px: DQ Net
    training (stage 1, BatchNorm on 196-channel maps) 7 % faster; the DS Net forward + backward
    alone 2.83 s -> 2.5 s, but the whole stage-2 step within noise (its time is in convolutions).
    One step equals the flax composition to 1e-5 on 1 and 8 devices (tests/test_benchmark.py).
    """
    return _elu_batchnorm_fwd(z, scale, bias, epsilon, axis_name)[0]


elu_batchnorm.defvjp(_elu_batchnorm_fwd, _elu_batchnorm_bwd)


class ELUBatchNorm(nn.Module):
    """ELU -> BatchNorm with flax `nn.BatchNorm`'s variables (params scale/bias, batch_stats
    mean/var, same initial values and update rule), so checkpoints are interchangeable."""

    momentum: float = 0.99
    epsilon: float = 1e-3
    axis_name: Optional[str] = None
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, z, *, train: bool):
        c = z.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        if not train:
            a = nn.elu(z)
            y = (a - ra_mean.value) * (jax.lax.rsqrt(ra_var.value + self.epsilon) * scale) + bias
            return y.astype(self.dtype)
        axis_name = None if self.is_initializing() else self.axis_name
        y, mean, var = elu_batchnorm(z, scale, bias, self.epsilon, axis_name)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y.astype(self.dtype)


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
        axis_name = self.axis_name if train else None
        if FUSED_ELU_BATCHNORM:
            return ELUBatchNorm(self.momentum, 1e-3, axis_name, self.dtype, name="bn")(
                x, train=train)
        x = nn.elu(x)
        return nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=1e-3,
                            axis_name=axis_name, dtype=self.dtype, name="bn")(x)


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
