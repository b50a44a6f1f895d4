"""Procedural 3-D live faces: identity maps, scene sampling and a vectorised height-field renderer.

An identity is a height field h(u, v) over a canonical frontal face frame (u right, v down, h towards
the camera, all in crop units) plus per-texel albedo, specular strength and ambient occlusion maps.
Rendering casts orthographic rays through the posed height field (fixed-point iteration, exact for
the small head rotations of a face-detector crop), shades with Lambert + Blinn-Phong and z-buffers
the face depth, which is what a 3-D face fit (the paper's depth supervision) would give.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy import ndimage

from ._util import (
    cct_rgb,
    gauss2,
    pixel_grid,
    rng_for,
    rotation,
    sample_crop,
    smooth_noise,
    smoothstep,
    upsample,
)

MAP_RES = 320          # canonical map texels; 320 over 2.5 units ~ 256 px over the 2-unit crop
MAP_EXTENT = 1.25      # canonical maps cover [-1.25, 1.25]^2 crop units (room for pose and zoom)

# Channels of the identity table [MAP_RES, MAP_RES, 10].
_H, _OBJ, _FACE, _ALB, _KS, _AO, _DU, _DV = 0, 1, 2, slice(3, 6), 6, 7, 8, 9


@dataclasses.dataclass(frozen=True)
class Identity:
    """Canonical maps of one person. table: float32 [MAP_RES, MAP_RES, 10] (height, object mask,
    face mask, albedo RGB (linear, [0, 1]), specular strength, ambient occlusion, dh/du, dh/dv)."""
    table: np.ndarray
    shininess: float


# Hair textures. "streaks" (every world up to wide4): white noise filtered with sigma 5 texels
# down and 0.8 across, vertical everywhere on the head, 0.4 crop px across at 128 px: a fine
# vertical grating (on light hair, the contrast of a display's stripe pattern; it is not what the
# shipped model refuses light-haired faces for, README "The hair's brightness, not its
# texture"). "flow" (world wide5): the same white noise laid along strands that run from the
# crown down over the head, filtered HAIR_FLOW_SIGMA texels along the strand and across it in
# angle, so locks are about 1-3 crop px wide at 128 px (wider far from the crown, as real locks
# fan out) and turn with the head's outline.
HAIRS: tuple[str, ...] = ("streaks", "flow")
HAIR_FLOW_SIGMA = (10.0, 2.0)   # (along the strand, texels of radius; across, texels of angle)


@functools.lru_cache(maxsize=128)
def identity(seed: int, ident: int, hair: str = "streaks") -> Identity:
    """The identity `ident` of world `seed` (cached: rendering many captures of a person is cheap).
    `hair` (`HAIRS`) picks the hair texture only: every other draw, and so the rest of the face,
    is the same for both."""
    if hair not in HAIRS:
        raise ValueError(f"hair must be one of {HAIRS}, got {hair!r}")
    return _make_identity(rng_for(seed, 0x1D, ident), hair)


def flow_streaks(white: np.ndarray, u: np.ndarray, v: np.ndarray, crown_v: float) -> np.ndarray:
    """Unit-std strand texture [r, r] of hair that falls from a crown at (0, crown_v): the white
    noise `white` [r, r] is read as a (radius, angle) table, filtered HAIR_FLOW_SIGMA (along the
    radius, across the angle; wrapping in angle) and sampled at each texel's polar coordinates
    about the crown, so the streaks run along the radius, away from the crown."""
    r = white.shape[0]
    table = ndimage.gaussian_filter(white, HAIR_FLOW_SIGMA, mode="wrap", truncate=3.0)
    step = 2 * MAP_EXTENT / r
    rho = np.hypot(u, v - crown_v) / step                                  # table rows
    theta = (np.arctan2(u, v - crown_v) / (2 * np.pi)) % 1.0 * r           # table columns
    out = ndimage.map_coordinates(table, [rho, theta], order=1, mode="grid-wrap")
    return (out / (out.std() + 1e-8)).astype(np.float32)


def _make_identity(rng: np.random.Generator, hair_texture: str = "streaks") -> Identity:
    r = MAP_RES
    step = 2 * MAP_EXTENT / r
    u, v = (np.asarray(a, np.float32) for a in pixel_grid(r, MAP_EXTENT))
    U = rng.uniform

    # --- shape: an egg-shaped, front-flattened ellipsoid plus Gaussian feature bumps -------------
    cv = U(-0.08, -0.02)                       # head centre (v)
    a, b = U(0.64, 0.78), U(0.86, 0.98)        # head half width / height
    jaw = U(0.08, 0.28)                        # narrowing towards the chin
    a_eff = a * (1 - jaw * np.clip((v - cv) / b, 0, 1) ** 2)
    r2 = (u / a_eff) ** 2 + ((v - cv) / b) ** 2
    depth = a * U(0.75, 0.95)
    head = np.clip(1 - r2 ** 1.35, 0, 1) ** 0.5 * depth
    inside = smoothstep(1.0, 0.96, r2)          # soft head silhouette, 1 inside

    eye_v, eye_u = cv + U(-0.14, -0.05), U(0.23, 0.30)
    tip_v = eye_v + U(0.27, 0.35)
    mouth_v = tip_v + U(0.17, 0.23)
    chin_v = cv + b * 0.86
    nose_h, nose_w = U(0.13, 0.22), U(0.05, 0.08)
    feat = np.zeros_like(u)
    for s in (-1, 1):
        feat += -U(0.05, 0.09) * gauss2(u, v, s * eye_u, eye_v, 0.12, 0.08)        # eye socket
        feat += 0.035 * gauss2(u, v, s * eye_u, eye_v, 0.06, 0.035)                  # eyeball
        feat += U(0.02, 0.05) * gauss2(u, v, s * eye_u, eye_v - 0.13, 0.16, 0.045)   # brow ridge
        feat += U(0.03, 0.06) * gauss2(u, v, s * 0.32, tip_v - 0.02, 0.14, 0.13)     # cheek
        feat += 0.045 * gauss2(u, v, s * 0.075, tip_v, 0.04, 0.035)                  # nose wing
    t = np.clip((v - eye_v) / (tip_v - eye_v), 0, 1)
    along = t ** 1.4 * np.where(v > tip_v, np.exp(-0.5 * ((v - tip_v) / 0.045) ** 2), 1.0)
    feat += nose_h * along * np.exp(-0.5 * (u / (nose_w * (0.55 + 0.6 * t))) ** 2)   # nose ridge
    feat += 0.035 * gauss2(u, v, 0, tip_v - 0.01, 0.05, 0.045)                       # nose tip
    feat += U(0.03, 0.05) * gauss2(u, v, 0, mouth_v - 0.025, 0.14, 0.03)             # upper lip
    feat += U(0.03, 0.05) * gauss2(u, v, 0, mouth_v + 0.03, 0.12, 0.035)             # lower lip
    feat += -0.02 * gauss2(u, v, 0, mouth_v, 0.13, 0.008)                            # mouth line
    feat += U(0.02, 0.05) * gauss2(u, v, 0, chin_v, 0.12, 0.08)                      # chin
    h_face = (head + feat * smoothstep(1.0, 0.7, r2)) * inside

    # --- hair: a shell over the head above the hairline, optionally long at the sides -----------
    bald = rng.random() < 0.06
    hair_top = cv - b * (U(0.55, 0.72) if not bald else 0.95)
    hairline = hair_top + U(0.35, 0.9) * u ** 2                   # lower at the temples
    ha, hb = U(0.03, 0.16), U(0.04, 0.14)
    hair_bottom = cv + U(-0.1, 1.3)                                # short ... shoulder length
    r2o = (u / (a + ha)) ** 2 + ((v - cv) / (b + hb)) ** 2
    in_outer = (r2o < 1) | ((np.abs(u) < a + ha) & (v > cv) & (v < hair_bottom))
    hair = in_outer & ((v < hairline) | ((r2 >= 1) & (v < hair_bottom)))
    if bald:
        hair &= r2 < 1
    hair = hair.astype(np.float32)
    hair_shell = (depth + 0.05) * np.clip(1 - r2o, 0, 1) ** 0.5 - np.where(r2o >= 1, 0.2, 0.0)
    h_hair = np.where(hair > 0, np.maximum(h_face + 0.02, hair_shell), -1.0)

    # --- neck: a cylinder behind the jaw --------------------------------------------------------
    neck_w = a * U(0.55, 0.7)
    neck = ((np.abs(u) < neck_w) & (v > cv + 0.3)).astype(np.float32)
    h_neck = np.where(neck > 0, 0.2 * np.sqrt(np.clip(1 - (u / neck_w) ** 2, 0, 1)) - 0.25, -1.0)

    h_obj = np.maximum(np.maximum(np.where(inside > 0.5, h_face, -1.0), h_hair), h_neck)
    obj = np.maximum(np.maximum(inside, hair), neck)
    h = np.where(obj > 0, h_obj, -1.0).astype(np.float32)
    h = np.maximum(h, -0.3)
    # Face region for the depth label: skin of the head below the hairline (what a face fit covers).
    # Occlusion by hair is ignored, as a fitted 3-D face model would.
    face = inside * smoothstep(hairline - 0.02, hairline + 0.03, v)

    # --- albedo (linear RGB) ---------------------------------------------------------------------
    tone = U(0, 1)
    dark, light = np.array([0.12, 0.055, 0.03]), np.array([0.80, 0.55, 0.41])
    skin = np.exp(np.log(dark) * (1 - tone) + np.log(light) * tone) * np.exp(rng.normal(0, 0.05, 3))
    blotch = smooth_noise(rng, (r, r), 18.0, 3) * np.array([0.06, 0.05, 0.05], np.float32)
    pores = smooth_noise(rng, (r, r), 0.7)[..., None] * U(0.02, 0.05)
    alb = skin.astype(np.float32) * np.exp(blotch + pores)
    red = (gauss2(u, v, 0.3, tip_v, 0.12, 0.1) + gauss2(u, v, -0.3, tip_v, 0.12, 0.1)) * U(0.05, 0.25)
    red = red + gauss2(u, v, 0, tip_v, 0.05, 0.05) * U(0.0, 0.2)
    alb *= np.stack([1 + red, 1 - 0.5 * red, 1 - 0.5 * red], -1)
    for _ in range(rng.integers(0, 6)):                              # moles / freckles
        mu, mv = U(-0.5, 0.5), U(-0.5, 0.6)
        alb *= 1 - U(0.2, 0.6) * gauss2(u, v, mu, mv, 0.008, 0.008)[..., None]

    hair_col = np.array([[0.02, 0.015, 0.012], [0.09, 0.05, 0.025], [0.25, 0.15, 0.07],
                         [0.55, 0.40, 0.20], [0.35, 0.09, 0.03], [0.45, 0.45, 0.45]])[
        rng.choice(6, p=[0.35, 0.25, 0.15, 0.1, 0.05, 0.1])] * np.exp(rng.normal(0, 0.1, 3))
    if hair_texture == "flow":   # the same draw as smooth_noise's, so later draws do not move
        white = rng.standard_normal((r, r), dtype=np.float32)
        streak = flow_streaks(white, u, v, hair_top - 0.35)[..., None]
    else:
        streak = smooth_noise(rng, (r, r), (5.0, 0.8))[..., None]
    hair_alb = hair_col.astype(np.float32) * np.exp(0.35 * streak)

    # Beard / stubble on some identities: lower face tinted towards the hair colour.
    if rng.random() < 0.3:
        beard = smoothstep(tip_v + 0.02, tip_v + 0.12, v) * smoothstep(0.95, 0.7, r2) * U(0.2, 0.7)
        beard = np.clip(beard * (0.8 + 0.2 * smooth_noise(rng, (r, r), 0.6)), 0, 1)[..., None]
        alb = alb * (1 - beard) + hair_col.astype(np.float32) * 0.8 * beard

    # Eyes: almond opening, sclera, iris, pupil, lash line.
    ew, eh = U(0.085, 0.11), U(0.028, 0.04)
    iris_col = np.array([[0.10, 0.05, 0.02], [0.05, 0.10, 0.16], [0.07, 0.11, 0.05],
                         [0.12, 0.12, 0.12]])[rng.choice(4, p=[0.6, 0.2, 0.1, 0.1])]
    look = U(-0.015, 0.015, 2)
    ks = 0.04 + 0.05 * gauss2(u, v, 0, tip_v - 0.1, 0.1, 0.3)     # oily T-zone
    for s in (-1, 1):
        du, dv = u - s * eye_u, v - eye_v
        # Signed distance-like field of the almond opening: > 0 inside, negative everywhere else.
        lens = eh * (1 - (du / ew) ** 2) - np.abs(dv + 0.3 * eh * (du / ew) ** 2)
        eye = smoothstep(-0.004, 0.004, lens)[..., None]
        ri = np.hypot(du - look[0], dv - look[1])
        iris = smoothstep(0.036, 0.03, ri)[..., None]
        pupil = smoothstep(0.015, 0.011, ri)[..., None]
        white = np.array([0.55, 0.5, 0.48], np.float32)
        eye_alb = white * (1 - iris) + iris_col * iris * (0.7 + 0.3 * np.cos(40 * np.arctan2(dv, du)))[..., None]
        eye_alb = eye_alb * (1 - pupil) + 0.01 * pupil
        alb = alb * (1 - eye) + eye_alb * eye
        lash = smoothstep(0.006, 0.0, np.abs(lens)) * (dv < 0.2 * eh) * smoothstep(-ew * 1.1, -ew * 0.5, -np.abs(du))
        alb *= 1 - U(0.6, 0.9) * lash[..., None]
        ks = ks + 0.3 * eye[..., 0]
        # Brow: an arched band above the eye, in the hair colour.
        bw, bt, arch = U(0.1, 0.14), U(0.012, 0.025), U(0.01, 0.04)
        bc = eye_v - U(0.08, 0.12) - arch * np.clip(1 - ((du - s * 0.01) / bw) ** 2, 0, 1)
        brow = smoothstep(bt, bt * 0.5, np.abs(v - bc)) * smoothstep(bw, bw * 0.7, np.abs(du))
        brow = brow * (0.6 + 0.4 * smoothstep(-1, 1, smooth_noise(rng, (r, r), (2.0, 0.6))))
        alb = alb * (1 - brow[..., None] * 0.9) + hair_alb * brow[..., None] * 0.9

    # Lips and nostrils.
    lip_w = U(0.1, 0.14)
    lip = smoothstep(1.0, 0.8, (u / lip_w) ** 2 + ((v - mouth_v) / 0.045) ** 2
                     + 1.5 * np.maximum(0, -(v - mouth_v)) * (0.3 - np.abs(u) * 2))[..., None]
    lip_col = alb * np.array([1.15, 0.7, 0.72], np.float32) * U(0.65, 0.95)
    alb = alb * (1 - lip) + lip_col * lip
    alb *= 1 - 0.7 * gauss2(u, v, 0, mouth_v, lip_w * 0.9, 0.005)[..., None]
    for s in (-1, 1):
        alb *= 1 - 0.8 * gauss2(u, v, s * 0.035, tip_v + 0.035, 0.016, 0.009)[..., None]
    ks = ks + 0.06 * lip[..., 0]

    alb = alb * (1 - hair[..., None]) + hair_alb * hair[..., None]
    alb = np.where((neck > 0)[..., None] & (h_neck >= h_obj - 1e-6)[..., None], alb * 0.85, alb)
    ks = np.where(hair > 0, 0.06, ks)

    # Ambient occlusion from the height field's cavities: concave -> darker.
    ao = np.clip(1 + 4.0 * (h - ndimage.gaussian_filter(h, 6.0)), 0.55, 1.1)
    dv_, du_ = np.gradient(h, step)
    dv_ = np.clip(dv_, -6, 6)
    du_ = np.clip(du_, -6, 6)
    table = np.concatenate([
        h[..., None], obj[..., None], face[..., None], np.clip(alb, 0, 1), ks[..., None],
        ao[..., None], du_[..., None], dv_[..., None]], -1).astype(np.float32)
    table.setflags(write=False)
    return Identity(table=table, shininess=float(U(15, 40)))


# ---- scene ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Pose:
    """Head pose: radians and crop units (scale 1 = the canonical face fills the crop)."""
    yaw: float
    pitch: float
    roll: float
    scale: float
    tx: float
    ty: float


@dataclasses.dataclass(frozen=True)
class Light:
    """Directional key light + ambient: direction [3] (camera frame, towards the light), colours
    [3] linear RGB (already multiplied by intensity)."""
    direction: np.ndarray
    key: np.ndarray
    ambient: np.ndarray


def sample_pose(rng: np.random.Generator) -> Pose:
    """Small face-crop poses: |yaw| <= 12 deg, |pitch| <= 9, |roll| <= 10, scale 0.93..1.05."""
    d = np.deg2rad
    return Pose(yaw=float(d(np.clip(rng.normal(0, 5), -12, 12))),
                pitch=float(d(np.clip(rng.normal(0, 4), -9, 9))),
                roll=float(d(np.clip(rng.normal(0, 4), -10, 10))),
                scale=float(rng.uniform(0.93, 1.05)),
                tx=float(rng.uniform(-0.04, 0.04)), ty=float(rng.uniform(-0.04, 0.04)))


def jitter_pose(p: Pose, rng: np.random.Generator, amount: float = 1.0) -> Pose:
    """A frame's small head motion around the session pose (about a degree, a hundredth of a crop)."""
    d = np.deg2rad
    return Pose(p.yaw + float(d(rng.normal(0, 1.0 * amount))), p.pitch + float(d(rng.normal(0, 0.7 * amount))),
                p.roll + float(d(rng.normal(0, 0.5 * amount))), p.scale * float(1 + rng.normal(0, 0.005 * amount)),
                p.tx + float(rng.normal(0, 0.006 * amount)), p.ty + float(rng.normal(0, 0.006 * amount)))


def sample_light(rng: np.random.Generator) -> Light:
    """Key light from the front hemisphere (elevation 25..75 deg off the view axis at most),
    intensity 0.6..1.3, ambient 0.15..0.5 of it, colour temperature 2800..7500 K (ambient may differ)."""
    az = rng.uniform(0, 2 * np.pi)
    off = rng.uniform(0.15, 1.1)
    direction = np.array([np.sin(off) * np.cos(az), np.sin(off) * np.sin(az) - 0.2, np.cos(off)])
    direction /= np.linalg.norm(direction)
    kelvin = rng.uniform(2800, 7500)
    amb_kelvin = np.clip(kelvin + rng.normal(0, 800), 2800, 9000)
    k = rng.uniform(0.6, 1.3)
    return Light(direction=direction.astype(np.float32), key=cct_rgb(kelvin) * np.float32(k),
                 ambient=cct_rgb(amb_kelvin) * np.float32(k * rng.uniform(0.15, 0.5)))


def render_face(ident: Identity, pose: Pose, light: Light, x: np.ndarray, y: np.ndarray):
    """Ray-cast the posed identity at crop coords x, y [H, W].

    Returns (radiance [H, W, 3] linear RGB >= 0 (object only, premultiplied by alpha),
    alpha [H, W] in [0, 1] (object coverage), z [H, W] height towards the camera in crop units,
    face [H, W] in [0, 1] (face-skin coverage, the support of the depth label)).
    """
    t = ident.table
    rot = rotation(pose.yaw, pose.pitch, pose.roll).astype(np.float32)
    a_inv = np.linalg.inv(rot[:2, :2]).astype(np.float32)
    # Orthographic projection: (x, y) = s * (R[:2,:2] (u, v) + R[:2,2] h(u, v)) + t. Solve for
    # (u, v) by fixed-point iteration on h; converges since |slope * sin(pose)| < 1 on the face.
    px = (x - pose.tx) / pose.scale
    py = (y - pose.ty) / pose.scale
    height = t[..., :1]

    def ray(h, px, py):
        qx = px - rot[0, 2] * h
        qy = py - rot[1, 2] * h
        return a_inv[0, 0] * qx + a_inv[0, 1] * qy, a_inv[1, 0] * qx + a_inv[1, 1] * qy

    # The plain fixed-point iteration diverges at the cliffs of the height field (silhouettes, hair
    # and neck edges), so first march each ray from the front on a coarse grid (first height level
    # the surface reaches = the visible hit), then refine at full resolution from that guess.
    f = max(1, x.shape[0] // 64)
    cx, cy = px[f // 2::f, f // 2::f], py[f // 2::f, f // 2::f]
    levels = np.arange(1.0, -0.31, -0.05, dtype=np.float32)
    hit = np.full(cx.shape, levels[-1], np.float32)
    found = np.zeros(cx.shape, bool)
    for lv in levels:
        u, v = ray(lv, cx, cy)
        reach = (sample_crop(height, MAP_EXTENT, v, u)[..., 0] >= lv) & ~found
        hit[reach] = lv
        found |= reach
    h = np.repeat(np.repeat(hit, f, 0), f, 1)[:x.shape[0], :x.shape[1]]
    if h.shape != px.shape:                      # grids not divisible by f: pad by edge values
        h = np.pad(h, [(0, px.shape[0] - h.shape[0]), (0, px.shape[1] - h.shape[1])], mode="edge")
    for _ in range(3):
        u, v = ray(h, px, py)
        h = sample_crop(height, MAP_EXTENT, v, u)[..., 0]
    u, v = ray(h, px, py)
    # Rays that still have not converged (a few % near silhouettes): march them one by one, finely.
    bad = np.abs(sample_crop(height, MAP_EXTENT, v, u)[..., 0] - h) > 0.01
    if bad.any():
        bx, by = px[bad], py[bad]
        step = np.float32(0.025)
        hb = np.full(bx.shape, -0.3, np.float32)
        done = np.zeros(bx.shape, bool)
        for lv in np.arange(1.0, -0.3, -step, dtype=np.float32):
            uu, vv = ray(lv, bx, by)
            reach = (sample_crop(height, MAP_EXTENT, vv, uu)[..., 0] >= lv) & ~done
            hb[reach] = lv
            done |= reach
        lo, hi = hb, hb + step                     # bisect the crossing inside the bracket
        for _ in range(4):
            mid = 0.5 * (lo + hi)
            uu, vv = ray(mid, bx, by)
            above = sample_crop(height, MAP_EXTENT, vv, uu)[..., 0] >= mid
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        h = h.copy()
        h[bad] = np.where(done, lo, -0.3)
        u, v = ray(h, px, py)
    s = sample_crop(t, MAP_EXTENT, v, u)
    h = s[..., _H]
    z = pose.scale * (rot[2, 0] * u + rot[2, 1] * v + rot[2, 2] * h)
    nf = np.stack([-s[..., _DU], -s[..., _DV], np.ones_like(h)], -1)
    n = nf @ rot.T
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    ndl = n @ light.direction
    diffuse = np.clip((ndl + 0.15) / 1.15, 0, None)                 # slightly wrapped Lambert
    half = light.direction + np.array([0, 0, 1], np.float32)
    half /= np.linalg.norm(half)
    spec = np.clip(n @ half, 0, 1) ** ident.shininess * s[..., _KS]
    ao = s[..., _AO][..., None]
    rad = s[..., _ALB] * ao * (light.ambient + diffuse[..., None] * light.key) + spec[..., None] * light.key
    alpha = np.clip(s[..., _OBJ], 0, 1)
    return rad * alpha[..., None], alpha, z, np.clip(s[..., _FACE], 0, 1) * alpha


def sample_background(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random indoor background at n x n: a two-colour gradient, soft blobs (furniture, doors)
    and a little wall texture. Linear reflectance [n, n, 3] in [0, 1]; aperiodic by design so that
    live images carry no lattice peaks."""
    x, y = pixel_grid(n)
    def colour():   # mostly muted wall/furniture colours: a grey level plus some chroma
        grey = rng.uniform(0.05, 0.8) ** 1.5
        return np.clip(grey * (1 + rng.uniform(0, 0.8) * rng.normal(0, 0.5, 3)), 0.005, 1)

    c0, c1 = colour(), colour()
    ang = rng.uniform(0, 2 * np.pi)
    t = np.clip(0.5 + 0.5 * (np.cos(ang) * x + np.sin(ang) * y) * rng.uniform(0.3, 1.0), 0, 1)[..., None]
    bg = c0 * (1 - t) + c1 * t
    for _ in range(rng.integers(0, 4)):
        cx, cy, w, hh = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.1, 0.8), rng.uniform(0.1, 0.8)
        m = smoothstep(1.0, 0.9, np.maximum(np.abs(x - cx) / w, np.abs(y - cy) / hh))[..., None]
        bg = bg * (1 - m) + colour() * m
    low = upsample(smooth_noise(rng, (12, 12), 1.5, 3), n) * rng.uniform(0.02, 0.15)
    tex = smooth_noise(rng, (n, n), rng.uniform(0.7, 3.0) * n / 128)[..., None] * rng.uniform(0.0, 0.04)
    return np.clip(bg * np.exp(low + tex), 0, 1).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Scene:
    """One capture session of a live person: pose, light, background reflectance [n, n, 3]."""
    pose: Pose
    light: Light
    background: np.ndarray


def sample_scene(rng: np.random.Generator, bg_res: int) -> Scene:
    return Scene(pose=sample_pose(rng), light=sample_light(rng), background=sample_background(rng, bg_res))


def render_scene(ident: Identity, scene: Scene, pose: Pose, x: np.ndarray, y: np.ndarray):
    """Radiance of the whole live scene at crop coords x, y [H, W] (face over the lit background).

    Returns (radiance [H, W, 3] linear, z [H, W], face [H, W] coverage in [0, 1])."""
    rad, alpha, z, face = render_face(ident, pose, scene.light, x, y)
    bg = sample_crop(scene.background, 1.0, y, x)
    # The background is a wall behind the person: mostly ambient light, some key light.
    bg_light = scene.light.ambient + 0.6 * scene.light.key * scene.light.direction[2]
    return rad + bg * bg_light * (1 - alpha)[..., None], z, face


def depth_label(z: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Face depth [H, W] float32 in [0, 1]: 0 off the face, 0.1 at the farthest face point, 1 at
    the nearest (per-image min-max, as a fitted-3-D-face depth map is usually normalised)."""
    on = face > 0.5
    if not on.any():
        return np.zeros_like(z)
    lo, hi = z[on].min(), z[on].max()
    d = 0.1 + 0.9 * np.clip((z - lo) / max(hi - lo, 1e-6), 0, 1)
    return (d * smoothstep(0.3, 0.7, face)).astype(np.float32)

