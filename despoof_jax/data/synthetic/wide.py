"""The wide world: domain randomisation of the spoof physics (issue #14), `make_example(world="wide")`.

The base world draws every print from two screens, every screen from two lattices and every
capture from one ISP; a model trained there learns *those* artifacts and nothing else (it scores
chance on real photographs of other media). The wide world keeps the base world's faces, scenes,
devices, streams and the definition of the ground truth (`live_reference`: the same photo on an
ideal medium, same camera, same sensor noise draws), and widens each physical stage into families,
each recorded per example so that protocols can hold one out:

    print_family    (`PRINT_FAMILIES`): AM dot screen and AM line screen at random angles and
                    rulings (print1), FM blue-noise screening, inkjet-like stochastic dots with head
                    banding and continuous-tone photo paper (print2); random inks, paper white,
                    gamut, dot gain and paper grain.
    display_layout  (`DISPLAY_LAYOUTS`): RGB stripe, BGR stripe, delta (replay1: LCD-like),
                    PenTile RG-BG and diamond (replay2: OLED-like) at log-uniform pitches 0.7..4.5
                    output px, so moire runs from none to strong (strong partly fake below ~2 px:
                    see "wide3" below); gamma, backlight, white point.
    camera_pipeline (`CAMERA_PIPELINES`): the base ISP + JPEG at a wide quality range, and three
                    raw pipelines (Bayer RGGB mosaic, sensor noise on the mosaic, bilinear
                    demosaicing, denoising, tone curve, sharpening) ending in JPEG or in a
                    video-codec-like blockwise 8x8 DCT quantisation at random quality.
    live look       (`sample_look`): skin micro-texture (pores) on the face, and natural-image
                    backgrounds cut from scikit-image's non-face sample images (`NATURAL_IMAGES`),
                    so high-frequency detail is not a spoof cue by itself.

The world "wide2" (`make_example(world="wide2")`) adds two more, each drawn from a stream of its
own (a wide2 session that draws neither is the wide session, byte for byte):

    scene_content   (`CONTENT_IMAGES`): in 30 % of sessions the scene is natural-image content
                    instead of a person, live and spoofed alike (no face: depth 0), so that the
                    medium, not the picture, is what separates the classes; -1: a person.
    photo_source    (`PHOTO_SOURCES`): in 60 % of sessions the live scene *and* the attacker's
                    photo are photographs by a source camera (still JPEG or video frame: its
                    resolution, noise, tone, sharpening and compression), as the "live" faces of
                    a photo collection are; one law for both classes, so the source camera's
                    texture is not a spoof cue either; -1: the scene is seen directly.

The world "wide3" (`make_example(world="wide3")`) is wide2 - the same sessions and draws, so its
live records are wide2's - with two physics fixes (2026-12-04). Wide and wide2 point-sample each
display lattice and print screen at the centre of every sample of the supersampled camera grid,
so the lattices' sharp sub-pixel windows alias on that grid before the camera's optics and pixels
act: fine pitches (< ~2 output px) show strong moire no real sensor would (a 0.75 px RGB stripe:
relative spread 0.50 after the camera, against 0.004 with 24 samples/px). Wide3 area-samples them
over each sample's footprint on the medium (`footprint_points`; `display_emission` and
`print_reflectance`, `footprint`), and bands the refresh along the camera's rows (`rows`), not
the screen's. Wide and wide2 keep the old sampling, so their datasets stay byte for byte.

The world "wide4" (`make_example(world="wide4")`, `generator.capture_size`) is wide2's physics
seen by a sensor finer than the crop: each session renders and captures at 1-3x the crop's side
(log-uniform, a stream of its own) and the crop is shrunk to its size by the resize `score` gives
a user's crop. A real crop is cut from a photo in which the face covers several times the model's
input; in the other worlds a medium finer than a crop pixel is drawn on the crop's own grid.

The world "wide5" (`make_example(world="wide5")`, 2026-12-06) is wide2 - the same sessions and
draws - with the identities' hair laid along strands that fall from the crown, locks 1-3 crop px
wide at 128 px (`faces.HAIRS`, "flow"), instead of the vertical grating of 0.4 px streaks that
every earlier world draws. Closer to real hair at a crop's scale; it does not change which live
faces the shipped model refuses (README, "The hair's brightness, not its texture").

In the wide world both columns are -1. Presenting is wider too (`sample_medium_pose`: larger tilt, roll, scale and bend). Everything is
numpy/scipy/PIL and deterministic in its rng arguments, like the base world.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import scipy.fft
from scipy import ndimage

from . import camera, faces, spoof
from ._util import (
    bilinear,
    block_mean,
    cct_rgb,
    luminance,
    sample_crop,
    smooth_noise,
    upsample,
)

PRINT_FAMILIES: tuple[str, ...] = ("am_dot", "am_line", "fm_bluenoise", "inkjet", "contone")
DISPLAY_LAYOUTS: tuple[str, ...] = ("rgb_stripe", "bgr_stripe", "delta", "pentile", "diamond")
CAMERA_PIPELINES: tuple[str, ...] = ("isp_jpeg", "bayer_jpeg", "bayer_video", "bayer_lowlight")
# Which families a species draws from: print1 = AM screens (laser/offset), print2 = stochastic
# and photo prints; replay1 = LCD-like layouts, replay2 = OLED-like layouts. Keeps the base
# world's `unseen_medium` protocol meaningful in the wide world.
SPECIES_FAMILIES: dict[int, tuple[int, ...]] = {1: (0, 1), 2: (2, 3, 4), 3: (0, 1, 2), 4: (3, 4)}
# scikit-image sample images used as natural content. Faces (astronaut, camera) are excluded on
# purpose: they are reserved for plumbing tests, never for training data.
NATURAL_IMAGES: tuple[str, ...] = ("coffee", "chelsea", "rocket", "brick", "grass", "gravel")

# Content scenes (no face): the natural images above plus more of scikit-image's non-face samples.
CONTENT_IMAGES: tuple[str, ...] = NATURAL_IMAGES + ("hubble_deep_field", "immunohistochemistry",
                                                    "retina", "coins", "clock", "moon")
CONTENT_P = 0.3     # share of sessions that show natural-image content instead of a person

SKIN_EXTENT = 1.3   # the skin texture table covers [-1.3, 1.3]^2 crop units


# ---- live look -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def natural_image(name: str) -> np.ndarray:
    """scikit-image sample `name` as linear RGB float32 [h, w, 3] in [0, 1] (grey ones repeated)."""
    if name not in CONTENT_IMAGES:
        raise ValueError(f"natural image {name!r} is not one of {CONTENT_IMAGES}")
    import skimage.data  # noqa: PLC0415 (optional dependency: only the wide world needs scikit-image)
    img = np.asarray(getattr(skimage.data, name)(), np.float32) / 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    return np.ascontiguousarray(img[..., :3] ** 2.2)


@dataclasses.dataclass(frozen=True)
class LiveLook:
    """A session's live appearance beyond the base world: background reflectance [n, n, 3] and
    skin texture [m, m] (unit std), both over [-SKIN_EXTENT, SKIN_EXTENT]^2 (so the attacker's
    photo, which covers more than the crop, is filled too; None: the base world's wall), and the
    texture's relative amplitude."""
    background: np.ndarray | None
    skin: np.ndarray
    skin_amp: float


def sample_look(rng: np.random.Generator, n: int) -> LiveLook:
    """70 % natural-image backgrounds (random image, crop, flip, tint, depth-of-field blur);
    skin micro-texture of 0.4..1 output px (at 128 px) and 2..10 % amplitude."""
    background = None
    if rng.random() < 0.7:
        img = natural_image(NATURAL_IMAGES[int(rng.integers(len(NATURAL_IMAGES)))])
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.3, 1.0))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = img[y0:y0 + side, x0:x0 + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        bg = upsample(np.ascontiguousarray(crop), n)
        blur = rng.uniform(0.0, 1.5) ** 2
        if blur > 0.05:
            bg = ndimage.gaussian_filter(bg, (blur, blur, 0), truncate=2.0, mode="nearest")
        tint = np.exp(rng.normal(0, 0.1, 3)).astype(np.float32)
        background = np.clip(bg * tint * np.float32(rng.uniform(0.5, 1.1)), 0, 1)
    skin = smooth_noise(rng, (256, 256), float(rng.uniform(0.6, 1.5)))
    return LiveLook(background, skin, float(rng.uniform(0.02, 0.10)))


def render_scene(ident, scene, pose, x, y, look: LiveLook):
    """`faces.render_scene` with the session's natural background (if any) and skin texture on the
    face skin (same outputs)."""
    if look.background is None:
        rad, z, face = faces.render_scene(ident, scene, pose, x, y)
    else:
        rad, alpha, z, face = faces.render_face(ident, pose, scene.light, x, y)
        bg = sample_crop(look.background, SKIN_EXTENT, y, x)
        bg_light = scene.light.ambient + 0.6 * scene.light.key * scene.light.direction[2]
        rad = rad + bg * bg_light * (1 - alpha)[..., None]
    tex = sample_crop(look.skin[..., None], SKIN_EXTENT, y, x)[..., 0]
    return rad * (1 + np.float32(look.skin_amp) * tex * face)[..., None], z, face


# ---- content scenes ------------------------------------------------------------------------------

# A medium's artifacts do not need a face to be learnt, and a model that has only seen procedural
# faces calls whatever looks unlike them an attack. So a share of sessions shows natural-image
# content instead of a person, live and spoofed alike (the attacker's photo is of the same
# content): the classes differ by the medium only, whatever the picture. Such a scene is flat and
# faces the camera; its depth label is 0 everywhere (no face).


def sample_content(rng: np.random.Generator, n: int) -> tuple[int, np.ndarray] | None:
    """None (the session shows a person) with probability 1 - CONTENT_P, else (index into
    CONTENT_IMAGES, reflectance [n, n, 3] over [-SKIN_EXTENT, SKIN_EXTENT]^2): a random square
    crop (0.25..1 of the shorter side), quarter turn and flip, colour tint (strong for grey
    images, which get a colour), contrast and level."""
    if rng.random() >= CONTENT_P:
        return None
    k = int(rng.integers(len(CONTENT_IMAGES)))
    img = natural_image(CONTENT_IMAGES[k])
    h, w = img.shape[:2]
    side = int(min(h, w) * rng.uniform(0.25, 1.0))
    y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = np.rot90(img[y0:y0 + side, x0:x0 + side], int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    table = upsample(np.ascontiguousarray(crop), n)
    grey = bool(np.allclose(img[..., 0], img[..., 1]))
    tint = np.exp(rng.normal(0, 0.35 if grey else 0.1, 3)).astype(np.float32)
    gamma = np.float32(rng.uniform(0.8, 1.25))
    return k, np.clip(table ** gamma * tint * np.float32(rng.uniform(0.5, 1.0)), 0, 1)


def render_content(ident, scene, pose, x, y, table: np.ndarray):
    """A content scene in `faces.render_scene`'s form: the flat picture lit by the session's
    ambient and key light, with no face -> (radiance, z = 0, face coverage = 0)."""
    del ident, pose
    light = scene.light.ambient + scene.light.key * max(float(scene.light.direction[2]), 0.2)
    rad = sample_crop(table, SKIN_EXTENT, y, x) * light
    zero = np.zeros(x.shape, np.float32)
    return rad.astype(np.float32), zero, zero


# ---- photo sources -------------------------------------------------------------------------------

# A "live" face in a photo collection is itself a photograph: someone's camera already put its
# noise, sharpening and compression into the picture, at that camera's resolution, before our
# camera sees it. The same holds for the attacker's photo that a print or a display shows. So a
# session may draw a photo source, and the *same law* then degrades the live scene and the
# attacker's photo: camera texture of the source is never a cue for either class; only the
# medium is. -1 in the `photo_source` column: the scene is seen directly.
PHOTO_SOURCES: tuple[str, ...] = ("still_jpeg", "video_frame")
PHOTO_SOURCE_P = 0.6   # share of sessions whose scene and attacker's photo are photographs


@dataclasses.dataclass(frozen=True)
class PhotoSource:
    """The camera that made the source photograph. kind: index into PHOTO_SOURCES; res: source px
    per output px (0.5: the photo was smaller than the crop, upsampled; 3: much larger);
    exposure: mid-grey level of the photo; luma / chroma: noise std (encoded 0..1) and grain: its
    correlation length (source px); saturation, contrast (S-curve mix), sharpen (unsharp amount,
    radius 1 source px); quality: JPEG quality (still_jpeg, 4:2:0 or 4:4:4) or the video codec's
    (video_frame: 4:2:0 blockwise DCT, chroma noise blurred like an analogue chroma channel)."""
    kind: int
    res: float
    exposure: float
    luma: float
    chroma: float
    grain: float
    saturation: float
    contrast: float
    sharpen: float
    quality: int
    subsample: bool


def sample_photo_source(rng: np.random.Generator) -> PhotoSource | None:
    """None (the scene is seen directly) with probability 1 - PHOTO_SOURCE_P, else a source camera:
    resolution log-uniform 0.5..3 source px per output px, noise up to 4 % (luma) and 5 % (chroma),
    JPEG 30..92 or video 20..70."""
    if rng.random() >= PHOTO_SOURCE_P:
        return None
    u = rng.uniform
    kind = int(rng.integers(len(PHOTO_SOURCES)))
    quality = int(rng.integers(30, 93)) if kind == 0 else int(rng.integers(20, 71))
    return PhotoSource(kind, float(np.exp(u(np.log(0.5), np.log(3.0)))), float(u(0.16, 0.28)),
                       float(u(0.0, 0.04)), float(u(0.0, 0.05)), float(u(0.0, 1.5)),
                       float(u(0.85, 1.35)), float(u(0.0, 0.4)), float(u(0.0, 1.0)), quality,
                       bool(kind == 1 or rng.random() < 0.6))


def photograph(rad: np.ndarray, texel_px: float, src: PhotoSource,
               rng: np.random.Generator) -> np.ndarray:
    """A linear scene table [n, n, 3] (texel_px output px per texel) as the source camera's
    photograph of it, back on the same table and in the same linear units: exposure to the
    source's mid-grey (highlights clip), resampling to the source's pixel grid, tone (gamma 2.2,
    S-curve, saturation), correlated luma and chroma noise, sharpening, compression, then
    resampling back (bilinear: an enlarged small photo is soft and blocky, as it is in life)."""
    n = rad.shape[0]
    c = n // 4
    gain = np.float32(src.exposure / (luminance(rad[c:-c, c:-c].reshape(-1, 3).mean(0)) + 1e-6))
    m = int(np.clip(round(n * texel_px * src.res), 16, 4 * n))
    small = block_mean_resize(np.clip(rad * gain, 0, 1), m)
    y = small ** np.float32(1 / 2.2)
    y = (1 - src.contrast) * y + src.contrast * y * y * (3 - 2 * y)
    lum = luminance(y)[..., None]
    y = lum + np.float32(src.saturation) * (y - lum)
    noise_l = smooth_noise(rng, (m, m), max(src.grain, 0.3))[..., None] * np.float32(src.luma)
    noise_c = smooth_noise(rng, (m, m), max(src.grain, 0.3) * (3.0 if src.kind == 1 else 1.0), 3)
    y = y + noise_l + (noise_c - noise_c.mean(-1, keepdims=True)) * np.float32(src.chroma)
    if src.sharpen > 0:
        y = y + np.float32(src.sharpen) * (y - ndimage.gaussian_filter(y, (1.0, 1.0, 0), truncate=2.0))
    u8 = np.clip(np.round(y * 255), 0, 255).astype(np.uint8)
    if src.kind == 1:
        u8 = video_codec(u8, src.quality)
    else:
        u8 = camera.jpeg(u8, src.quality, subsampling=2 if src.subsample else 0)
    lin = (u8.astype(np.float32) / 255.0) ** np.float32(2.2)
    return (upsample(lin, n) / gain).astype(np.float32)


def block_mean_resize(img: np.ndarray, m: int) -> np.ndarray:
    """[n, n, C] -> [m, m, C]: an area-averaging resize when shrinking (a sensor's pixels
    integrate light), bilinear when enlarging."""
    n = img.shape[0]
    if m >= n:
        return upsample(img, m)
    f = n / m
    blurred = ndimage.gaussian_filter(img, (0.45 * f, 0.45 * f, 0), truncate=2.0, mode="nearest")
    return upsample(blurred, m)


def sample_medium_pose(rng: np.random.Generator, paper: bool) -> spoof.MediumPose:
    """A hand-held or stand-mounted medium, wider than the base world's: tilt up to ~20 deg, roll
    N(0, 6 deg) (the lattice's angle to the sensor rows: moire orientation), scale 0.9..1.15,
    stronger perspective, paper bend up to 0.35."""
    d = np.deg2rad
    return spoof.MediumPose(yaw=float(d(rng.uniform(-20, 20))), pitch=float(d(rng.uniform(-15, 15))),
                            roll=float(d(rng.normal(0, 6))), scale=float(rng.uniform(0.9, 1.15)),
                            tx=float(rng.uniform(-0.05, 0.05)), ty=float(rng.uniform(-0.05, 0.05)),
                            focal=float(rng.uniform(1.5, 8.0)),
                            bend=float(rng.uniform(0.0, 0.35)) if paper else 0.0)


# ---- area sampling -------------------------------------------------------------------------------


def footprint_points(mx: np.ndarray, my: np.ndarray, k: int):
    """Weighted sub-points of each camera sample's footprint on the medium: the area average of a
    pattern over them is what a supersampled grid can hold of a pattern finer than it.

    mx, my [H, W]: where the samples of a camera grid (one per grid step, e.g. the SS_SPOOF grid)
    hit the medium (crop units). The footprint is mapped to the medium through the local Jacobian
    of (mx, my) with respect to the grid (`np.gradient`: central differences, one-sided at the
    border), so tilt, perspective and bend shape it. Yields (2k)^2 triples (mx', my' [H, W],
    weight): a 2k x 2k grid of points at (a + 0.5) / k - 1 steps, a = 0..2k-1, along each grid
    axis, weighted by the tent (1 - |u|)(1 - |v|) over +-1 step (weights sum to 1).

    Why a tent and not the sample's own cell (a box of one step): a box's response falls to zero
    only at the grid rate (3 cycles/px on the SS_SPOOF grid), so a sub-pixel lattice's harmonics
    near it (2.2-3.8 cycles/px) still fold into the low frequencies that the camera's pixels keep;
    measured on a 0.75 px RGB stripe (relative spread of a flat picture after the camera, blur
    0.35 px): centre 0.50, box 0.067, tent 0.011, point sampling at 24 samples/px 0.0037. The tent
    (box * box) has double zeros there; it costs 4x the points of the box for the same density.
    """
    dmx_dr, dmx_dc = np.gradient(mx)     # per grid row (image y), per grid column (image x)
    dmy_dr, dmy_dc = np.gradient(my)
    offsets = (np.arange(2 * k, dtype=np.float32) + np.float32(0.5)) / np.float32(k) - np.float32(1)
    weights = (1 - np.abs(offsets)) / np.float32(k)          # sums to 1 over the 2k offsets
    for v, wv in zip(offsets, weights):
        for u, wu in zip(offsets, weights):
            yield mx + u * dmx_dc + v * dmx_dr, my + u * dmy_dc + v * dmy_dr, wu * wv


# ---- print families ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PrintParams:
    """A wide-world print. family: index into PRINT_FAMILIES; base: the colour model and (AM
    families) the screen geometry, as `spoof.PrintParams`; mask: [T, T] threshold tile in [0, 1)
    (FM / inkjet) and dot: its cell size (output px); offsets: [4, 2] per-ink tile offsets;
    banding: inkjet head banding (amplitude, period in output px, phase)."""
    family: int
    base: spoof.PrintParams
    mask: np.ndarray | None
    dot: float
    offsets: np.ndarray
    banding: tuple[float, float, float]


def _rank_uniform(a: np.ndarray) -> np.ndarray:
    """Values -> their ranks mapped to [0, 1): a threshold tile with a flat histogram."""
    r = np.empty(a.size, np.float32)
    r[np.argsort(a, axis=None, kind="stable")] = (np.arange(a.size, dtype=np.float32) + 0.5) / a.size
    return r.reshape(a.shape)


def sample_print(rng: np.random.Generator, species: int, strength: float) -> PrintParams:
    """A print of species 1 or 2 from one of its families (`SPECIES_FAMILIES`), any orientation."""
    if species not in (1, 2):
        raise ValueError(f"print species must be 1 or 2, got {species}")
    s = strength
    fams = SPECIES_FAMILIES[species]
    family = int(fams[int(rng.integers(len(fams)))])
    rot = rng.uniform(0, np.pi / 2)
    hue = np.eye(3) + rng.normal(0, 0.05 * s, (3, 3))
    hue /= hue.sum(1, keepdims=True)
    paper = np.array([0.94, 0.93, 0.90]) + rng.normal(0, 0.025, 3) * s
    absorb = np.array([[0.93, 0.27, 0.1], [0.2, 0.93, 0.27], [0.05, 0.12, 0.93], [0.9, 0.89, 0.88]])
    absorb = np.clip(absorb + rng.normal(0, 0.04, (4, 3)), 0.02, 0.99)
    if family == 0:
        angles = tuple(rot + np.deg2rad(a) for a in rng.permutation([15.0, 75.0, 0.0, 45.0]))
    else:
        angles = tuple(rot + rng.uniform(0, np.pi, 4))
    period = float(np.exp(rng.uniform(np.log(1.3), np.log(5.0))))
    contone = family == 4
    mod = 0.0 if contone else float(np.clip(s * rng.uniform(0.2, 0.9), 0, 1))
    base = spoof.PrintParams(
        saturation=float(1 - s * rng.uniform(0.0, 0.25)), hue=hue.astype(np.float32),
        paper=np.clip(paper, 0.75, 0.99).astype(np.float32), black=float(s * rng.uniform(0.005, 0.05)),
        period=period, angles=angles, line=family == 1, soft=float(rng.uniform(0.08, 0.45)), mod=mod,
        grain=float(s * (rng.uniform(0.003, 0.015) if contone else rng.uniform(0.01, 0.05))),
        absorb=absorb.astype(np.float32))
    mask, dot, banding = None, 1.0, (0.0, 1.0, 0.0)
    if family in (2, 3):
        t = 64
        white = rng.standard_normal((t, t)).astype(np.float32)
        if family == 2:   # blue noise: high-pass white noise -> isolated, evenly spread dots
            mask = _rank_uniform(white - ndimage.gaussian_filter(white, 1.5, mode="wrap"))
            dot = float(rng.uniform(0.45, 1.3))
        else:             # inkjet: clumped stochastic drops, larger, plus head banding
            mask = _rank_uniform(ndimage.gaussian_filter(white, 0.6, mode="wrap"))
            dot = float(rng.uniform(0.7, 2.2))
            banding = (float(s * rng.uniform(0.0, 0.08)), float(rng.uniform(4.0, 30.0)),
                       float(rng.uniform(0, 2 * np.pi)))
    offsets = rng.integers(0, 64, (4, 2))
    return PrintParams(family, base, mask, dot, offsets, banding)


def stochastic_screen(cover: np.ndarray, mx_px: np.ndarray, my_px: np.ndarray, p: PrintParams):
    """FM / inkjet screening: coverage [..., 4] at medium points (output px) -> reflectance [..., 3];
    a dot of ink i where its coverage exceeds the threshold tile (offset per ink) at that cell."""
    t = p.mask.shape[0]
    ix = np.floor(mx_px * np.float32(1 / p.dot)).astype(np.int32)
    iy = np.floor(my_px * np.float32(1 / p.dot)).astype(np.int32)
    flat = p.mask.reshape(-1)
    inks = []
    for i in range(4):
        thr = np.take(flat, ((iy + p.offsets[i, 0]) % t) * t + (ix + p.offsets[i, 1]) % t)
        inks.append(np.clip((cover[..., i] - thr) * np.float32(1 / p.base.soft) + 0.5, 0, 1))
    return spoof.ink_reflectance(inks, p.base)


def print_reflectance(src_table, src_extent, mx, my, px_per_unit, p: PrintParams,
                      footprint: int = 1) -> np.ndarray:
    """`spoof.print_reflectance` for every family: reflectance [H, W, 3] at medium points (mx, my)
    [H, W] of the photo `src_table` [n, n, 4] (linear RGB + paper fibre).

    footprint: as in `display_emission`: 1 evaluates the screen (AM dot/line threshold, FM and
    inkjet threshold tiles) at each sample's centre (worlds "wide", "wide2"); k > 1 averages the
    screened reflectance over the sample's footprint on the paper (`footprint_points`, world "wide3"),
    the ink coverage held at the sample's value (it is smooth: texel scale). Head banding is the
    print's own (paper rows) in every world; the contone family has no screen."""
    b = p.base
    cover = spoof.gamut_compress(src_table[..., :3], b)
    ct_table = spoof.ink_reflectance([cover[..., i] for i in range(4)], b)
    table = np.concatenate([cover, ct_table, src_table[..., 3:4]], -1)
    h, w = mx.shape
    mx4, my4 = mx.reshape(h // 2, 2, w // 2, 2), my.reshape(h // 2, 2, w // 2, 2)
    k = np.float32(table.shape[0] / (2 * src_extent))
    s = bilinear(table, (my4[:, :1, :, :1] + src_extent) * k - 0.5,
                 (mx4[:, :1, :, :1] + src_extent) * k - 0.5)
    ct = s[..., 4:7]
    ppu = np.float32(px_per_unit)
    if b.mod > 0:
        def screen(sx, sy):
            sx, sy = sx.reshape(h // 2, 2, w // 2, 2), sy.reshape(h // 2, 2, w // 2, 2)
            if p.mask is None:
                return spoof.halftone(s[..., :4], sx * ppu, sy * ppu, b)
            return stochastic_screen(s[..., :4], sx * ppu, sy * ppu, p)
        if footprint > 1:
            ht = sum(wt * screen(sx, sy) for sx, sy, wt in footprint_points(mx, my, footprint))
        else:
            ht = screen(mx, my)
        ct = ct + b.mod * (ht - ct)
    refl = ct * (1 + b.grain * s[..., 7:8])
    amp, period, phase = p.banding
    if amp > 0:
        refl = refl * (1 + amp * np.sin(2 * np.pi * my4 * ppu / period + phase))[..., None]
    return np.broadcast_to(refl, (h // 2, 2, w // 2, 2, 3)).reshape(h, w, 3)


# ---- display layouts -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DisplayParams:
    """A wide-world screen: layout (index into DISPLAY_LAYOUTS) and `tone`, a `spoof.DisplayParams`
    with the pitch, aperture, gamma, backlight, white point, lattice contrast, ghost and flicker."""
    layout: int
    tone: spoof.DisplayParams


def sample_display(rng: np.random.Generator, species: int, strength: float) -> DisplayParams:
    """A screen of species 3 or 4 from one of its layouts, pitch log-uniform in 0.7..4.5 px."""
    if species not in (3, 4):
        raise ValueError(f"replay species must be 3 or 4, got {species}")
    s = strength
    fams = SPECIES_FAMILIES[species]
    layout = int(fams[int(rng.integers(len(fams)))])
    white = 1 + (cct_rgb(rng.uniform(5000, 10000)) - 1) * min(s, 1.5)
    blend = float(rng.uniform(0.1, 0.45) * min(s, 1.0)) if rng.random() < 0.4 else 0.0
    ang, shift = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 2.0)
    tone = spoof.DisplayParams(
        pitch=float(np.exp(rng.uniform(np.log(0.7), np.log(4.5)))), layout=DISPLAY_LAYOUTS[layout],
        aperture=float(rng.uniform(0.5, 0.9)), gamma=float(2.2 + s * rng.uniform(-0.45, 0.45)),
        black=float(s * rng.uniform(0.0, 0.06)), white=white.astype(np.float32),
        mod=float(np.clip(s * rng.uniform(0.25, 0.95), 0, 1)), blend=blend,
        blend_shift=(float(shift * np.cos(ang)), float(shift * np.sin(ang))),
        flicker=(float(s * rng.uniform(0, 0.04)), float(rng.uniform(0.3, 1.5)),
                 float(rng.uniform(0, 2 * np.pi))))
    return DisplayParams(layout, tone)


def _window(d, half):
    d = np.abs(d - np.floor(d + 0.5))
    return np.clip((half - d) / (0.4 * half) + 0.5, 0, 1)


def lattice(fx, fy, parity, layout: int, aperture: float) -> np.ndarray:
    """Unnormalised emission [H, W, 3] of a pixel's sub-pixels at in-pixel position (fx, fy) in
    [0, 1) and pixel parity ((i + j) & 1) for `layout` (index into DISPLAY_LAYOUTS)."""
    a = aperture
    name = DISPLAY_LAYOUTS[layout]
    if name in ("rgb_stripe", "bgr_stripe", "delta"):
        wy = _window(fy - 0.5, 0.5 * a) if name != "delta" else None
        order = (0, 1, 2) if name != "bgr_stripe" else (2, 1, 0)
        planes = [None] * 3
        for slot, c in enumerate(order):
            if name == "delta":   # triangles: the middle sub-pixel sits lower than its neighbours
                wy = _window(fy - (0.65 if slot == 1 else 0.35), 0.3 * a)
            planes[c] = _window(fx - (slot + 0.5) / 3, a / 6) * wy
        return np.stack(planes, -1)
    if name == "pentile":
        wy = _window(fy - 0.5, 0.35 * a)
        g = _window(fx - 0.75, 0.18 * a) * _window(fy - 0.5, 0.18 * a)
        rb = _window(fx - 0.25, 0.28 * a) * wy
        return np.stack([rb * (parity == 0), g, rb * (parity == 1)], -1)
    # diamond: R and B as large diamonds alternating by parity, G as a small diamond between.
    dx, dy = fx - 0.3, fy - 0.3
    big = np.clip((0.3 * a - (np.abs(dx - np.floor(dx + 0.5)) + np.abs(dy - np.floor(dy + 0.5))))
                  / (0.1 * a) + 0.5, 0, 1)
    gx, gy = fx - 0.8, fy - 0.8
    small = np.clip((0.18 * a - (np.abs(gx - np.floor(gx + 0.5)) + np.abs(gy - np.floor(gy + 0.5))))
                    / (0.06 * a) + 0.5, 0, 1)
    return np.stack([big * (parity == 0), small, big * (parity == 1)], -1)


@functools.lru_cache(maxsize=256)
def _lattice_mean(layout: int, aperture: float) -> np.ndarray:
    n = 48
    f = (np.arange(n, dtype=np.float32) + 0.5) / n
    fx, fy = np.meshgrid(f, f)
    m = sum(lattice(fx, fy, np.full_like(fx, par), layout, aperture).mean((0, 1)) for par in (0, 1))
    return (m / 2 + 1e-6).astype(np.float32)


def _display_cells(mx, my, px_per_unit, pitch: float, layout: int):
    """Display pixel index and in-pixel position of medium points (mx, my) [H, W] (crop units)
    -> (i, j int32, fx, fy in [0, 1)), the delta layout's odd rows shifted by half a pixel."""
    mpx, mpy = mx * np.float32(px_per_unit), my * np.float32(px_per_unit)
    gy = mpy / np.float32(pitch)
    j = np.floor(gy)
    gx = mpx / np.float32(pitch)
    if DISPLAY_LAYOUTS[layout] == "delta":   # odd rows shifted by half a pixel
        gx = gx + np.float32(0.5) * (j.astype(np.int32) & 1)
    i = np.floor(gx)
    fx, fy = gx - i, gy - j
    return i.astype(np.int32), j.astype(np.int32), fx, fy


def display_emission(src_table, src_extent, mx, my, px_per_unit, p: DisplayParams,
                     footprint: int = 1, rows: np.ndarray | None = None) -> np.ndarray:
    """`spoof.replay_emission` for every layout: radiance [H, W, 3] at medium points (mx, my)
    [H, W], the camera's samples (one per grid step) as seen on the screen.

    footprint: 1 (worlds "wide", "wide2") evaluates the sub-pixel lattice at each sample's centre:
    point sampling, so the lattice's sharp windows alias on the supersampled grid before the
    camera's optics and pixel box act (fake moire at pitches below ~2 output px, README "A wider
    world", 2026-12-04). k > 1 (world "wide3") averages it over the sample's footprint on the
    screen (`footprint_points`: 2k x 2k tent-weighted sub-points): area sampling, the
    pre-filter that the supersampled grid needs. The frame's colour (constant over a display pixel) stays sampled at
    the centre. rows [H, W] (crop units): the camera's image y of each sample, along which the
    rolling shutter bands the refresh (world "wide3"); None: the screen's own my (wide, wide2)."""
    t = p.tone
    i, j, fx, fy = _display_cells(mx, my, px_per_unit, t.pitch, p.layout)
    half = int(np.ceil(src_extent * px_per_unit / t.pitch)) + 2
    c = (np.arange(-half, half, dtype=np.float32) + 0.5) * np.float32(t.pitch / px_per_unit)
    n = src_table.shape[0]
    tex = (c + src_extent) * (n / (2 * src_extent)) - 0.5
    frame = bilinear(src_table[..., :3], tex[:, None] + 0 * tex[None, :], tex[None, :] + 0 * tex[:, None])
    frame = spoof.display_tone(frame, t)
    ii = np.clip(i + half, 0, 2 * half - 1)
    jj = np.clip(j + half, 0, 2 * half - 1)
    emitted = np.take(frame.reshape(-1, 3), jj * (2 * half) + ii, axis=0)
    if footprint > 1:
        pat = np.zeros(fx.shape + (3,), np.float32)
        for sx, sy, wt in footprint_points(mx, my, footprint):
            si, sj, sfx, sfy = _display_cells(sx, sy, px_per_unit, t.pitch, p.layout)
            pat += wt * lattice(sfx, sfy, (si + sj) & 1, p.layout, t.aperture)
    else:
        pat = lattice(fx, fy, (i + j) & 1, p.layout, t.aperture)
    pat = pat / _lattice_mean(p.layout, t.aperture)
    emitted *= 1 - t.mod + t.mod * pat
    amp, period, phase = t.flicker
    if amp > 0:
        band_y = my if rows is None else rows
        emitted *= (1 + amp * np.sin(2 * np.pi * band_y / period + phase))[..., None]
    return emitted


# ---- camera pipelines ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """A session's capture pipeline. kind: index into CAMERA_PIPELINES; gain: sensor noise
    multiplier (ISO); denoise: chroma denoising sigma (px; luma gets half); gamma, contrast: tone
    curve; sharpen, radius: unsharp mask; codec: "jpeg" or "dct" (video-like 8x8 DCT
    quantisation, 4:2:0); quality: 1..100 (libjpeg scaling of the standard tables)."""
    kind: int
    gain: float
    denoise: float
    gamma: float
    contrast: float
    sharpen: float
    radius: float
    codec: str
    quality: int


def sample_pipeline(rng: np.random.Generator) -> Pipeline:
    """One of CAMERA_PIPELINES, uniformly, and its settings; the same law for live and spoof."""
    kind = int(rng.integers(len(CAMERA_PIPELINES)))
    u = rng.uniform
    if kind == 0:
        return Pipeline(kind, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, "jpeg", int(rng.integers(55, 98)))
    if kind == 1:
        return Pipeline(kind, float(u(1, 2)), float(u(0, 0.5)), float(u(1.8, 2.6)), float(u(0, 0.5)),
                        float(u(0.2, 1.2)), float(u(0.7, 1.5)), "jpeg", int(rng.integers(60, 96)))
    if kind == 2:
        return Pipeline(kind, float(u(1, 3)), float(u(0.5, 1.0)), float(u(1.8, 2.6)), float(u(0, 0.4)),
                        float(u(0, 0.6)), float(u(0.8, 1.5)), "dct", int(rng.integers(25, 75)))
    return Pipeline(kind, float(u(3, 8)), float(u(0.7, 1.4)), float(u(2.0, 2.6)), float(u(0.1, 0.5)),
                    float(u(0.8, 2.0)), float(u(0.7, 1.2)), "jpeg", int(rng.integers(50, 82)))


_JPEG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float32).reshape(8, 8)
_JPEG_CHROMA = np.full((8, 8), 99, np.float32)
_JPEG_CHROMA[:4, :4] = np.array([17, 18, 24, 47, 18, 21, 26, 66, 24, 26, 56, 99, 47, 66, 99, 99],
                                np.float32).reshape(4, 4)


def _dct_quantise(plane: np.ndarray, table: np.ndarray) -> np.ndarray:
    """A [H, W] plane (0..255) through 8x8 block DCT quantisation (edge-padded to multiples of 8)."""
    h, w = plane.shape
    ph, pw = -h % 8, -w % 8
    p = np.pad(plane, ((0, ph), (0, pw)), mode="edge") - 128.0
    bh, bw = p.shape[0] // 8, p.shape[1] // 8
    blocks = p.reshape(bh, 8, bw, 8)
    c = scipy.fft.dctn(blocks, type=2, axes=(1, 3), norm="ortho", workers=1)
    c = np.round(c / table[None, :, None, :]) * table[None, :, None, :]
    out = scipy.fft.idctn(c, type=2, axes=(1, 3), norm="ortho", workers=1).reshape(p.shape) + 128.0
    return out[:h, :w]


def video_codec(img: np.ndarray, quality: int) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8: YCbCr, 4:2:0 chroma (box down, nearest up, as cheap decoders do),
    8x8 DCT quantisation with the standard tables scaled like libjpeg's `quality`."""
    q = int(np.clip(quality, 1, 100))
    scale = 5000 / q if q < 50 else 200 - 2 * q
    lt = np.clip(np.floor((_JPEG_LUMA * scale + 50) / 100), 1, 255)
    ct = np.clip(np.floor((_JPEG_CHROMA * scale + 50) / 100), 1, 255)
    x = img.astype(np.float32)
    y = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    cb = 128 - 0.168736 * x[..., 0] - 0.331264 * x[..., 1] + 0.5 * x[..., 2]
    cr = 128 + 0.5 * x[..., 0] - 0.418688 * x[..., 1] - 0.081312 * x[..., 2]
    h, w = y.shape
    y = _dct_quantise(y, lt)
    chroma = []
    for ch in (cb, cr):
        small = block_mean(np.pad(ch, ((0, h % 2), (0, w % 2)), mode="edge"), 2)
        small = _dct_quantise(small, ct)
        chroma.append(np.repeat(np.repeat(small, 2, 0), 2, 1)[:h, :w] - 128)
    cb, cr = chroma
    rgb = np.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], -1)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


_K_RB = np.array([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], np.float32)
_K_G = np.array([[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]], np.float32)


def demosaic_bilinear(mosaic: np.ndarray) -> np.ndarray:
    """RGGB Bayer mosaic [H, W] -> RGB [H, W, 3] by bilinear interpolation of each colour plane."""
    h, w = mosaic.shape
    yy, xx = np.mgrid[0:h, 0:w]
    masks = [(yy % 2 == 0) & (xx % 2 == 0), (yy + xx) % 2 == 1, (yy % 2 == 1) & (xx % 2 == 1)]
    out = [ndimage.convolve(mosaic * m, _K_G if c == 1 else _K_RB, mode="mirror")
           for c, m in enumerate(masks)]
    return np.stack(out, -1).astype(np.float32)


def capture(scene: np.ndarray, ss: int, profile: camera.CameraProfile,
            settings: camera.CaptureSettings, rng: np.random.Generator,
            pipeline: Pipeline) -> np.ndarray:
    """`camera.capture` through `pipeline`: scene [H*ss, W*ss, 3] linear -> uint8 [H, W, 3].

    isp_jpeg is the base camera at the pipeline's JPEG quality; the raw pipelines share its optics,
    pixel aperture, motion blur, colour response, auto exposure and white balance, then mosaic,
    add noise per photosite, demosaic, denoise, tone-map, sharpen and compress."""
    if pipeline.kind == 0:
        return camera.capture(scene, ss, profile, dataclasses.replace(settings, jpeg=pipeline.quality),
                              rng)
    raw = camera.expose(scene, ss, profile, settings)
    h, w = raw.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    cfa = np.where((yy % 2 == 0) & (xx % 2 == 0), 0, np.where((yy + xx) % 2 == 1, 1, 2))
    mosaic = np.take_along_axis(raw, cfa[..., None], -1)[..., 0]
    g = np.float32(pipeline.gain)
    std = np.sqrt(g * profile.shot * np.clip(mosaic, 0, None) + (g * profile.read) ** 2)
    mosaic = mosaic + std * rng.standard_normal(mosaic.shape, dtype=np.float32)
    rgb = demosaic_bilinear(mosaic)
    if pipeline.denoise > 0.05:
        lum = luminance(rgb)[..., None]
        chroma = ndimage.gaussian_filter(rgb - lum, (pipeline.denoise, pipeline.denoise, 0), truncate=2.0)
        lum = ndimage.gaussian_filter(lum, (pipeline.denoise / 2, pipeline.denoise / 2, 0), truncate=2.0)
        rgb = lum + chroma
    y = np.clip(rgb, 0, 1) ** np.float32(1 / pipeline.gamma)
    y = (1 - pipeline.contrast) * y + pipeline.contrast * y * y * (3 - 2 * y)
    lum = luminance(y)[..., None]
    y = lum + np.float32(profile.saturation) * (y - lum)
    if pipeline.sharpen > 0:
        r = pipeline.radius
        y = y + pipeline.sharpen * (y - ndimage.gaussian_filter(y, (r, r, 0), truncate=2.0))
    out = np.clip(np.round(y * 255), 0, 255).astype(np.uint8)
    return camera.jpeg(out, pipeline.quality) if pipeline.codec == "jpeg" else video_codec(out, pipeline.quality)
