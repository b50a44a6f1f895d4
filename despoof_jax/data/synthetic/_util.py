"""Small vectorised numpy helpers shared by the synthetic spoof world (no jax here).

Coordinates throughout the package are *crop units*: the output face crop spans [-1, 1] in x
(right) and y (down), whatever its pixel size, so geometry is resolution-independent.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage


def rng_for(*key: int) -> np.random.Generator:
    """A PCG64 generator seeded from integer `key` parts; identical on every machine and process.

    `SeedSequence` hashes the whole tuple, so (seed, identity) and (identity, seed) differ and no
    Python `hash()` (salted per process) is involved.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key])))


def pixel_grid(n: int, extent: float = 1.0, offset: tuple[float, float] = (0.0, 0.0)):
    """Centres of an n x n pixel grid covering [-extent, extent]^2 -> (x [n, n], y [n, n]) float32.

    `offset` shifts the grid by a fraction of a pixel (sensor sampling phase), in pixels.
    """
    step = 2.0 * extent / n
    c = (np.arange(n, dtype=np.float32) + 0.5) * step - extent
    x = c[None, :] + np.float32(offset[0] * step)
    y = c[:, None] + np.float32(offset[1] * step)
    return np.broadcast_to(x, (n, n)), np.broadcast_to(y, (n, n))


def bilinear(table: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bilinear lookup. table: [H, W, C]; y, x: float arrays of any shape in *pixel* coordinates
    (0 = first pixel centre), clamped at the border -> [..., C] float32.

    Hand-rolled (four `take`s of whole rows of C channels) because it is ~5x faster than C separate
    `ndimage.map_coordinates` calls, and it is the hot loop of every render.
    """
    h, w, c = table.shape
    y = np.clip(y, 0.0, h - 1.0001).astype(np.float32, copy=False)
    x = np.clip(x, 0.0, w - 1.0001).astype(np.float32, copy=False)
    y0 = y.astype(np.int32)
    x0 = x.astype(np.int32)
    fy = (y - y0)[..., None]
    fx = (x - x0)[..., None]
    flat = table.reshape(h * w, c)
    i = y0 * w + x0
    a = np.take(flat, i, axis=0)
    b = np.take(flat, i + 1, axis=0)
    top = a + (b - a) * fx
    a = np.take(flat, i + w, axis=0)
    b = np.take(flat, i + w + 1, axis=0)
    bot = a + (b - a) * fx
    return top + (bot - top) * fy


def sample_crop(table: np.ndarray, extent: float, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a [H, W, C] map covering [-extent, extent]^2 at crop-unit coords (x, y)."""
    h, w = table.shape[:2]
    return bilinear(table, (y + extent) * (h / (2 * extent)) - 0.5, (x + extent) * (w / (2 * extent)) - 0.5)


def block_mean(img: np.ndarray, f: int) -> np.ndarray:
    """[H, W, ...] -> [H/f, W/f, ...] mean over f x f blocks (a 100%-fill-factor pixel aperture)."""
    if f == 1:
        return img
    h, w = img.shape[:2]
    rest = img.shape[2:]
    # Two contiguous partial sums are ~3x faster than one mean over axes (1, 3).
    rows = img.reshape(h // f, f, w, *rest).sum(axis=1, dtype=np.float32)
    return rows.reshape(h // f, w // f, f, *rest).sum(axis=2) * np.float32(1.0 / (f * f))


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma, channels: int = 0) -> np.ndarray:
    """Gaussian-filtered white noise, rescaled to unit std: [H, W] or [H, W, channels] float32.

    `sigma` in pixels, scalar or (sy, sx) for anisotropic (hair streaks, paper fibres)."""
    full = shape + ((channels,) if channels else ())
    n = rng.standard_normal(full, dtype=np.float32)
    s = tuple(np.broadcast_to(sigma, (2,))) + ((0,) if channels else ())
    n = ndimage.gaussian_filter(n, s, mode="wrap", truncate=3.0)
    return n / (n.std() + 1e-8)


def upsample(img: np.ndarray, n: int) -> np.ndarray:
    """Bilinear resize of [h, w(, C)] to [n, n(, C)], pixel-centre aligned."""
    squeeze = img.ndim == 2
    t = img[..., None] if squeeze else img
    h, w = t.shape[:2]
    yy = (np.arange(n, dtype=np.float32) + 0.5) * (h / n) - 0.5
    xx = (np.arange(n, dtype=np.float32) + 0.5) * (w / n) - 0.5
    out = bilinear(np.ascontiguousarray(t, dtype=np.float32), yy[:, None] + 0 * xx[None, :], xx[None, :] + 0 * yy[:, None])
    return out[..., 0] if squeeze else out


def gauss2(u, v, u0, v0, su, sv):
    """Unnormalised 2-D Gaussian bump exp(-((u-u0)/su)^2/2 - ((v-v0)/sv)^2/2)."""
    return np.exp(-0.5 * (((u - u0) / su) ** 2 + ((v - v0) / sv) ** 2))


def smoothstep(e0, e1, x):
    """Hermite step from 0 at e0 to 1 at e1 (used for anti-aliased region edges)."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 709 luma of linear RGB [..., 3] -> [...]."""
    return rgb[..., 0] * 0.2126 + rgb[..., 1] * 0.7152 + rgb[..., 2] * 0.0722


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """3x3 rotation (radians), x right, y down, z towards the camera: roll about z, yaw about y,
    pitch about x, applied as R = Rz @ Ry @ Rx."""
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ ry @ rx


# Colour of a light source by correlated colour temperature (K), unit luminance, linear RGB.
# Anchor values are rough blackbody colours after a D65 white balance; interpolated in mired
# (1e6 / K), which is close to perceptually uniform along the Planckian locus.
_CCT_K = np.array([2500.0, 3000.0, 4000.0, 5000.0, 6500.0, 8000.0, 10000.0])
_CCT_RGB = np.array([
    [1.00, 0.55, 0.22], [1.00, 0.64, 0.33], [1.00, 0.78, 0.57], [1.00, 0.89, 0.78],
    [1.00, 1.00, 1.00], [0.87, 0.92, 1.00], [0.78, 0.86, 1.00]])


def cct_rgb(kelvin: float) -> np.ndarray:
    """Linear RGB [3] of a `kelvin` light, normalised to unit luminance."""
    m = 1e6 / np.clip(kelvin, _CCT_K[0], _CCT_K[-1])
    mk = 1e6 / _CCT_K
    rgb = np.array([np.interp(m, mk[::-1], _CCT_RGB[::-1, c]) for c in range(3)])
    return (rgb / luminance(rgb)).astype(np.float32)


def shrink(a: np.ndarray, size: int) -> np.ndarray:
    """uint8 [h, w, 3] RGB or float [h, w] -> [size, size] (uint8 or float32) by PIL's bilinear
    resize, which widens its kernel by the factor when it shrinks (antialiased): the resize
    `DespoofModel.score` gives a user's crop (world wide4 captures finer and shrinks with it)."""
    if a.ndim == 3:
        return np.asarray(Image.fromarray(np.asarray(a, np.uint8), "RGB").resize(
            (size, size), Image.BILINEAR))
    return np.asarray(Image.fromarray(np.asarray(a, np.float32), "F").resize(
        (size, size), Image.BILINEAR), np.float32)
