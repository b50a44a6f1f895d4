"""Spoof media: how a live photo becomes a print or a replay in front of the camera.

Each degradation step of the paper's Sec. 3.1 is its own pure function of arrays and explicit
parameters (sampled by the matching `sample_*` function from an `np.random.Generator`):

1. colour distortion  -> `gamut_compress` (printer) / `display_tone` (screen gamma, backlight,
   contrast, white point): a projection of the photo's colours into the medium's smaller gamut;
2. display artifacts  -> `halftone` (AM screens, ink spread, paper texture; print1 vs print2 differ
   in screen geometry and inks) / `subpixel_lattice` + `display_pixels` (RGB stripe vs PenTile,
   pixel pitch, optional `frame_blend`);
3. presenting artifacts -> `medium_coords` (the medium as a tilted, bent plane seen in perspective)
   and `reflections` (specular glare + ambient reflection, additive);
4. imaging artifacts  -> `camera.capture` on the supersampled medium: the sensor grid aliases the
   lattice (moire), then blur, sensor noise and JPEG, exactly as for live captures.

`strength` (= 1 / difficulty) scales the artifact amplitudes: 1 is the default benchmark; 0 removes
the lattice, glare and most colour error but not all of the medium (a print keeps its inks' side
absorption and the room lamp, a screen its pixel grid). The ideal medium proper - the photo
reproduced exactly, the ground truth `live_reference` - is `generator._ideal_radiance`.

Coordinates: crop units (the output crop spans [-1, 1]); lattice geometry is in *output pixels*
(`px_per_unit` = size / 2 converts), so the spoof noise has the same per-pixel frequencies at every
output size, like a native capture at that resolution.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from ._util import (
    bilinear,
    cct_rgb,
    luminance,
    rotation,
    smooth_noise,
    smoothstep,
    upsample,
)

# ---- step 3: presenting geometry -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MediumPose:
    """The medium plane in the camera frame: rotation angles (rad), scale of the shown face relative
    to the crop, translation (crop units), focal length (crop units; smaller = stronger perspective)
    and paper bend (curvature, crop units^-1; 0 for rigid screens)."""
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    scale: float = 1.0
    tx: float = 0.0
    ty: float = 0.0
    focal: float = 1e6
    bend: float = 0.0


def sample_medium_pose(rng: np.random.Generator, paper: bool) -> MediumPose:
    """A hand-held medium: tilt up to ~12 deg, roll up to ~6 deg, paper bent up to 0.25."""
    d = np.deg2rad
    return MediumPose(yaw=float(d(rng.uniform(-12, 12))), pitch=float(d(rng.uniform(-10, 10))),
                      roll=float(d(rng.normal(0, 3))), scale=float(rng.uniform(0.95, 1.05)),
                      tx=float(rng.uniform(-0.03, 0.03)), ty=float(rng.uniform(-0.03, 0.03)),
                      focal=float(rng.uniform(2.0, 6.0)),
                      bend=float(rng.uniform(0.0, 0.25)) if paper else 0.0)


def jitter_medium_pose(p: MediumPose, rng: np.random.Generator) -> MediumPose:
    """Hand shake between video frames."""
    d = np.deg2rad
    return dataclasses.replace(p, yaw=p.yaw + float(d(rng.normal(0, 0.5))),
                               pitch=p.pitch + float(d(rng.normal(0, 0.5))),
                               roll=p.roll + float(d(rng.normal(0, 0.3))),
                               tx=p.tx + float(rng.normal(0, 0.005)), ty=p.ty + float(rng.normal(0, 0.005)))


def medium_coords(x: np.ndarray, y: np.ndarray, pose: MediumPose):
    """Where each camera ray (x, y in crop units of the image plane) hits the medium -> (mx, my)
    in the medium's own crop units (the photo's coordinates).

    The medium point (mx, my) sits at O + mx e1 + my e2 + bend * mx^2 e3 in the camera frame
    (e1, e2, e3 the rotated axes, O at depth focal / scale so that the unrotated medium maps 1:1 when
    scale = 1). Rays t * (x, y, f) are intersected by a fixed-point iteration on the bend term;
    with the default pose this is exactly the identity (the registered case of Fig. 2).
    """
    r = rotation(pose.yaw, pose.pitch, pose.roll)
    e1, e2, e3 = r[:, 0], r[:, 1], r[:, 2]
    f = pose.focal
    o = np.array([pose.tx * f / pose.scale, pose.ty * f / pose.scale, f / pose.scale])
    # Ray direction d = (x, y, f); dot products with the medium axes, as float32 images.
    de1 = (e1[0] * x + e1[1] * y + e1[2] * f).astype(np.float32)
    de2 = (e2[0] * x + e2[1] * y + e2[2] * f).astype(np.float32)
    de3 = (e3[0] * x + e3[1] * y + e3[2] * f).astype(np.float32)
    oe1, oe2, oe3 = float(o @ e1), float(o @ e2), float(o @ e3)   # Python floats keep float32
    mx = np.zeros_like(de1)
    for _ in range(3 if pose.bend else 1):
        t = (oe3 + pose.bend * mx * mx) / de3
        mx = t * de1 - oe1
    my = t * de2 - oe2
    return mx, my


def reflections(rng: np.random.Generator, n: int, glossy: bool, strength: float) -> np.ndarray:
    """Additive light reflected by the medium surface [n, n, 3] (relative to the medium's mean
    radiance): a specular glare blob of a room lamp (sharp on glossy screens, a broad sheen on
    paper) and a dim ambient reflection of the room. Smooth, so it may be sampled at output res."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) * (2.0 / n) - 1.0
    lamp = cct_rgb(rng.uniform(2800, 7000))
    out = np.zeros((n, n, 3), np.float32)
    if rng.random() < 0.7:
        gx, gy = rng.uniform(-1.2, 1.2, 2)
        rx, ry = rng.uniform(0.1, 0.4, 2) * (1.0 if glossy else 2.5)
        peak = rng.uniform(0.05, 0.4 if glossy else 0.2) * strength
        out += peak * np.exp(-0.5 * (((x - gx) / rx) ** 2 + ((y - gy) / ry) ** 2))[..., None] * lamp
    amb = upsample(smooth_noise(rng, (10, 10), 1.2, 3), n) * 0.5 + 0.5
    out += np.clip(amb, 0, None) * rng.uniform(0.0, 0.06 if glossy else 0.02) * strength
    return out


# ---- steps 1-2: print ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PrintParams:
    """A printer + paper. saturation: gamut scale (<1 compresses chroma); hue: [3, 3] colour mixing;
    paper: [3] paper white reflectance; black: darkest printable reflectance; period: halftone screen
    period (output px); angles: per-ink screen angles (rad) for C, M, Y, K; line: line screen (print2)
    instead of a dot screen; soft: ink spread (dot edge width in coverage units, larger = blurrier
    dots); mod: how much of the halftone survives (0 = contone); grain: paper texture amplitude;
    absorb: [4, 3] per-ink absorbance of R, G, B."""
    saturation: float
    hue: np.ndarray
    paper: np.ndarray
    black: float
    period: float
    angles: tuple[float, float, float, float]
    line: bool
    soft: float
    mod: float
    grain: float
    absorb: np.ndarray


def sample_print(rng: np.random.Generator, printer: int, strength: float) -> PrintParams:
    """print1: a colour laser printer, classic CMYK dot screen (15/75/0/45 deg), coarse period,
    neutral paper. print2: an inkjet-like device with finer line screens at other angles, warmer
    paper, weaker and different inks (printer 1 or 2)."""
    s = strength
    rot = rng.uniform(-np.pi / 12, np.pi / 12)                       # sheet orientation
    hue = np.eye(3) + rng.normal(0, 0.04 * s, (3, 3))
    hue /= hue.sum(1, keepdims=True)
    if printer == 1:
        angles = tuple(rot + np.deg2rad(a) for a in (15, 75, 0, 45))
        paper = np.array([0.95, 0.95, 0.94]) - np.abs(rng.normal(0, 0.02 * s, 3))
        absorb = np.array([[0.95, 0.25, 0.08], [0.15, 0.95, 0.25], [0.03, 0.1, 0.95], [0.92, 0.92, 0.92]])
        return PrintParams(saturation=float(1 - s * rng.uniform(0.0, 0.15)), hue=hue.astype(np.float32),
                           paper=paper.astype(np.float32), black=float(s * rng.uniform(0.01, 0.03)),
                           period=float(rng.uniform(2.2, 3.6)), angles=angles, line=False,
                           soft=float(rng.uniform(0.15, 0.35)), mod=float(np.clip(s * rng.uniform(0.5, 0.9), 0, 1)),
                           grain=float(s * rng.uniform(0.01, 0.03)), absorb=absorb.astype(np.float32))
    if printer == 2:
        angles = tuple(rot + np.deg2rad(a) for a in (-30, 30, 90, 0))
        paper = np.array([0.94, 0.92, 0.84]) + rng.normal(0, 0.015, 3) * s
        paper = 0.93 + (paper - 0.93) * min(s, 1.5)
        absorb = np.array([[0.9, 0.3, 0.15], [0.25, 0.9, 0.3], [0.08, 0.15, 0.9], [0.88, 0.86, 0.84]])
        return PrintParams(saturation=float(1 - s * rng.uniform(0.05, 0.2)), hue=hue.astype(np.float32),
                           paper=paper.astype(np.float32), black=float(s * rng.uniform(0.02, 0.05)),
                           period=float(rng.uniform(1.5, 2.4)), angles=angles, line=True,
                           soft=float(rng.uniform(0.2, 0.45)), mod=float(np.clip(s * rng.uniform(0.4, 0.8), 0, 1)),
                           grain=float(s * rng.uniform(0.02, 0.05)), absorb=absorb.astype(np.float32))
    raise ValueError(f"printer must be 1 or 2, got {printer}")


def gamut_compress(rgb: np.ndarray, p: PrintParams) -> np.ndarray:
    """Step 1 for print: linear RGB [..., 3] in [0, 1] -> CMYK ink coverage [..., 4] in [0, 1].

    Chroma is scaled towards the luminance axis and mixed by the printer's hue matrix (the paper's
    'projection to a tinier colour subspace'); each of C, M, Y then covers enough paper to absorb
    the missing R, G, B (inverting only its main absorbance), with part of the grey component
    replaced by black ink. The inks' side absorbances and the paper's black/white point are left
    uncorrected: that residue is the printer's colour distortion."""
    lum = luminance(rgb)[..., None]
    c = np.clip(lum + p.saturation * (rgb - lum), 0, 1) @ p.hue.T
    cmy = np.clip((1.0 - np.clip(c, 0, 1)) / np.diag(p.absorb[:3]), 0, 1)
    k = cmy.min(-1, keepdims=True) ** 3          # black ink deepens the shadows only
    return np.concatenate([cmy, k], -1).astype(np.float32)


def ink_reflectance(inks, p: PrintParams) -> np.ndarray:
    """Subtractive mixing: ink amounts (list of 4 arrays in [0, 1], C, M, Y, K) -> reflectance
    [..., 3] = black + (paper - black) * prod_i (1 - absorb_i * ink_i). Planar loops: a trailing
    axis of 3 is slow in numpy at a million pixels."""
    planes = []
    for c in range(3):
        r = 1 - p.absorb[0, c] * inks[0]
        for i in range(1, 4):
            r *= 1 - p.absorb[i, c] * inks[i]
        planes.append(p.black + (p.paper[c] - p.black) * r)
    return np.stack(planes, -1)


def halftone(cover: np.ndarray, mx_px: np.ndarray, my_px: np.ndarray, p: PrintParams) -> np.ndarray:
    """Step 2 for print: ink coverage [..., 4] at medium positions (mx_px, my_px) [...] in output
    pixels (broadcastable) -> halftoned paper reflectance [..., 3] (linear).

    Amplitude-modulated screening: an ink dot is present where its coverage exceeds a periodic
    threshold s(m) (dot screen: 0.5 - (cos u + cos v)/4 over the ink's rotated grid; line screen:
    0.5 - cos(u)/2), so dots grow with coverage. `soft` widens the dot edges: ink spread / dot gain."""
    w = 2 * np.pi / p.period
    inks = []
    for i, ang in enumerate(p.angles):
        ca, sa = np.float32(np.cos(ang) * w), np.float32(np.sin(ang) * w)
        u = ca * mx_px + sa * my_px
        if p.line:
            thr = 0.5 - 0.5 * np.cos(u)
        else:
            thr = 0.5 - 0.25 * (np.cos(u) + np.cos(ca * my_px - sa * mx_px))
        inks.append(np.clip((cover[..., i] - thr) * np.float32(1 / p.soft) + 0.5, 0, 1))
    return ink_reflectance(inks, p)


def print_reflectance(src_table: np.ndarray, src_extent: float, mx: np.ndarray, my: np.ndarray,
                      px_per_unit: float, p: PrintParams) -> np.ndarray:
    """Steps 1-2 for print: reflectance [H, W, 3] at medium points (mx, my) [H, W] (crop units,
    H and W even) of the printed photo `src_table` [n, n, 4] (linear RGB + paper fibre texture
    over [-src_extent, src_extent]^2).

    Gamut mapping and the contone print are computed on the photo's own texels; the smooth contone
    maps are looked up on every other sample (they vary on the texel scale), only the sharp screen is
    evaluated at every sample; `mod` blends the halftone with the contone print."""
    cover = gamut_compress(src_table[..., :3], p)
    contone = ink_reflectance([cover[..., i] for i in range(4)], p)
    table = np.concatenate([cover, contone, src_table[..., 3:4]], -1)
    h, w = mx.shape
    mx4, my4 = mx.reshape(h // 2, 2, w // 2, 2), my.reshape(h // 2, 2, w // 2, 2)
    n = table.shape[0]
    k = np.float32(n / (2 * src_extent))
    s = bilinear(table, (my4[:, :1, :, :1] + src_extent) * k - 0.5, (mx4[:, :1, :, :1] + src_extent) * k - 0.5)
    ht = halftone(s[..., :4], mx4 * np.float32(px_per_unit), my4 * np.float32(px_per_unit), p)
    ct = s[..., 4:7]
    refl = (ct + p.mod * (ht - ct)) * (1 + p.grain * s[..., 7:8])
    return refl.reshape(h, w, 3)


def paper_texture(rng: np.random.Generator, n: int, texel_px: float) -> np.ndarray:
    """Paper fibre texture [n, n] (unit std): anisotropic, aperiodic, a few output pixels long."""
    ang = rng.uniform(0, np.pi)
    t = smooth_noise(rng, (n, n), (0.6 / texel_px + 0.3, 2.0 / texel_px + 0.3))
    t2 = smooth_noise(rng, (n, n), 0.5 / texel_px + 0.3)
    t = ndimage.rotate(t, np.rad2deg(ang), reshape=False, order=1, mode="wrap")
    return (0.7 * t + 0.5 * t2).astype(np.float32)


# ---- steps 1-2: replay ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DisplayParams:
    """A screen. pitch: display pixel pitch (output px); layout: 'stripe' (RGB vertical stripes,
    replay1) or 'pentile' (RGBG, replay2); aperture: lit fraction of a sub-pixel cell; gamma: display
    gamma applied to the photo's 1/2.2 encoding; black: backlight leakage; white: [3] white point;
    mod: lattice contrast (0 = no lattice); blend: weight of the previous frame (LCD response);
    blend_shift: its displacement (output px, x and y); flicker: refresh banding (amplitude, period
    in crop units, phase)."""
    pitch: float
    layout: str
    aperture: float
    gamma: float
    black: float
    white: np.ndarray
    mod: float
    blend: float
    blend_shift: tuple[float, float]
    flicker: tuple[float, float, float]


def sample_display(rng: np.random.Generator, display: int, strength: float) -> DisplayParams:
    """replay1: an LCD tablet, RGB stripe, pitch 1.6..3 px (a visible lattice); replay2: an OLED
    phone, PenTile RGBG, pitch 0.9..1.5 px (finer than the sensor: aliased into moire)."""
    s = strength
    if display not in (1, 2):
        raise ValueError(f"display must be 1 or 2, got {display}")
    lcd = display == 1
    white = cct_rgb(rng.uniform(6500, 9500) if lcd else rng.uniform(5500, 8000))
    white = 1 + (white - 1) * min(s, 1.5)
    blend = float(rng.uniform(0.15, 0.45) * min(s, 1.0)) if rng.random() < 0.5 else 0.0
    ang = rng.uniform(0, 2 * np.pi)
    shift = rng.uniform(0.5, 2.0)
    return DisplayParams(
        pitch=float(rng.uniform(1.6, 3.0) if lcd else rng.uniform(0.9, 1.5)),
        layout="stripe" if lcd else "pentile", aperture=float(rng.uniform(0.6, 0.85)),
        gamma=float(2.2 + s * rng.uniform(-0.35, 0.35)),
        black=float(s * (rng.uniform(0.01, 0.05) if lcd else rng.uniform(0.0, 0.015))),
        white=white.astype(np.float32), mod=float(np.clip(s * (rng.uniform(0.3, 0.7) if lcd else rng.uniform(0.45, 0.9)), 0, 1)),
        blend=blend, blend_shift=(float(shift * np.cos(ang)), float(shift * np.sin(ang))),
        flicker=(float(s * rng.uniform(0, 0.03)), float(rng.uniform(0.3, 1.5)), float(rng.uniform(0, 2 * np.pi))))


def frame_blend(src: np.ndarray, p: DisplayParams, px_per_texel: float) -> np.ndarray:
    """Optional ghost of the previous video frame (slow LCD response): [H, W, C] -> [H, W, C]."""
    if p.blend <= 0:
        return src
    shift = (p.blend_shift[1] / px_per_texel, p.blend_shift[0] / px_per_texel, 0)
    prev = ndimage.shift(src, shift, order=1, mode="nearest")
    return (1 - p.blend) * src + p.blend * prev


def display_tone(rgb: np.ndarray, p: DisplayParams) -> np.ndarray:
    """Step 1 for replay: photo linear RGB [..., 3] in [0, 1] -> emitted radiance [..., 3] (white
    = 1): the screen decodes the photo's 1/2.2 encoding with its own gamma, adds backlight leakage
    (raising blacks, lowering contrast) and tints by its white point."""
    out = np.clip(rgb, 0, 1) ** np.float32(p.gamma / 2.2)
    return p.black + (1 - p.black) * out * p.white


def _window(d: np.ndarray, half: float) -> np.ndarray:
    """A soft top-hat of half-width `half` (cell units) at signed offset d (wrapped to [-0.5, 0.5))."""
    d = np.abs(d - np.floor(d + 0.5))
    return smoothstep(half, half * 0.6, d)


def subpixel_lattice(fx: np.ndarray, fy: np.ndarray, parity: np.ndarray, p: DisplayParams) -> np.ndarray:
    """Emission pattern [H, W, 3] of the sub-pixels at in-pixel positions fx, fy in [0, 1) (display
    pixel units) and pixel parity ((i + j) % 2, for PenTile), normalised to mean 1 per channel over
    a pixel pair, so that the camera's average sees the intended colour."""
    a = p.aperture
    if p.layout == "stripe":
        wy = _window(fy - 0.5, 0.5 * a)
        pat = np.stack([_window(fx - (c + 0.5) / 3, a / 6) * wy for c in range(3)], -1)
        norm = np.float32(1.0 / ((a / 3 * 0.8) * (a * 0.8)))       # mean of the soft windows
    else:
        wy = _window(fy - 0.5, 0.35 * a)
        g = _window(fx - 0.75, 0.18 * a) * _window(fy - 0.5, 0.18 * a)
        rb = _window(fx - 0.25, 0.28 * a) * wy
        pat = np.stack([rb * (parity == 0), g, rb * (parity == 1)], -1)
        norm = np.array([1 / (0.5 * 0.56 * a * 0.7 * a * 0.8), 1 / (0.36 * a * 0.8) ** 2,
                         1 / (0.5 * 0.56 * a * 0.7 * a * 0.8)], np.float32)
    return pat * norm


def display_pixels(mx_px: np.ndarray, my_px: np.ndarray, pitch: float):
    """Display pixel index and in-pixel position of medium points (output px) -> (i, j, fx, fy)."""
    gx = mx_px / np.float32(pitch)
    gy = my_px / np.float32(pitch)
    i = np.floor(gx)
    j = np.floor(gy)
    return i.astype(np.int32), j.astype(np.int32), gx - i, gy - j


def lattice_norm(p: DisplayParams) -> np.ndarray:
    """Exact per-channel mean [3] of `subpixel_lattice` over a 2 x 2 pixel block (numerically)."""
    n = 64
    f = (np.arange(n, dtype=np.float32) + 0.5) / n
    fx, fy = np.meshgrid(f, f)
    pats = [subpixel_lattice(fx, fy, np.full_like(fx, par), p) for par in (0, 1)]
    return (pats[0].mean((0, 1)) + pats[1].mean((0, 1))) / 2


def replay_emission(src_table: np.ndarray, src_extent: float, mx: np.ndarray, my: np.ndarray,
                    px_per_unit: float, p: DisplayParams) -> np.ndarray:
    """Steps 1-2 for replay: radiance [H, W, 3] emitted at medium points (mx, my) [H, W] (crop units)
    by a screen showing the photo `src_table` [n, n, 3+] (linear RGB over [-src_extent, src_extent]^2).

    The photo is resampled to the display's own pixel grid (pixelation, the paper's 'approximation
    and down-sampling'), tone-mapped, then each pixel lights its sub-pixels.

    Known limitations, kept so that the base world's records (and the figures published from
    them) stay byte for byte: the sub-pixel lattice is point-sampled at each sample of the
    supersampled camera grid (generator.SS_SPOOF = 3 per px), so its sharp windows' harmonics
    above 1.5 cycles/px fold into low frequencies before the camera's optics and pixels act:
    fine pitches (replay2's PenTile, 0.9-1.5 px) show stronger moire than a real sensor would
    (README "A wider world", 2026-12-04); `halftone` is point-sampled the same way. The refresh
    banding runs along the screen's my, not the camera's rows (equal only for an upright screen).
    The wide world's `wide.display_emission(footprint=..., rows=...)` (world wide3) fixes both."""
    mpx, mpy = mx * np.float32(px_per_unit), my * np.float32(px_per_unit)
    i, j, fx, fy = display_pixels(mpx, mpy, p.pitch)
    # The display frame: the photo sampled at every display pixel centre covering the medium.
    half = int(np.ceil(src_extent * px_per_unit / p.pitch)) + 2
    c = (np.arange(-half, half, dtype=np.float32) + 0.5) * np.float32(p.pitch / px_per_unit)
    n = src_table.shape[0]
    tex = (c + src_extent) * (n / (2 * src_extent)) - 0.5
    frame = bilinear(src_table[..., :3], tex[:, None] + 0 * tex[None, :], tex[None, :] + 0 * tex[:, None])
    frame = display_tone(frame, p)
    ii = np.clip(i + half, 0, 2 * half - 1)
    jj = np.clip(j + half, 0, 2 * half - 1)
    emitted = np.take(frame.reshape(-1, 3), jj * (2 * half) + ii, axis=0)
    pat = subpixel_lattice(fx, fy, (i + j) & 1, p) / lattice_norm(p)
    emitted *= 1 - p.mod + p.mod * pat
    amp, period, phase = p.flicker
    if amp > 0:   # rolling-shutter refresh banding: meant along the camera's rows, taken along my
        emitted *= (1 + amp * np.sin(2 * np.pi * my / period + phase))[..., None]
    return emitted
