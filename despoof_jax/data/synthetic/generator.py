"""The synthetic spoof world: `make_example` and `make_registered_pair` (the data contract).

Randomness is organised in independent, named streams so that each factor depends only on the
arguments the contract says it depends on:

    identity appearance   rng(seed, identity)                                   (faces.identity)
    session / scene       rng(seed, identity, species, device, video, part)     pose, light, background,
                                                                                 capture settings, medium
    frame                 rng(seed, identity, species, device, video, frame, part)  head/hand motion, noise
    capture device        rng(device)                                           (camera.device_profile)

Spoof pipeline (paper Sec. 3.1): the attacker's photo of the person (a live render) -> medium
(print: gamut + halftone + paper; replay: display tone + pixels + sub-pixel lattice) -> presented as
a tilted/bent plane with glare -> recaptured by the same capture cameras as live faces.
"""
from __future__ import annotations

import numpy as np

from . import camera, faces, spoof
from ._util import block_mean, cct_rgb, luminance, pixel_grid, rng_for, sample_crop

SPECIES: tuple[str, ...] = ("live", "print1", "print2", "replay1", "replay2")
N_CAPTURE_DEVICES: int = camera.N_CAPTURE_DEVICES

SS_LIVE = 2     # supersampling of live scenes (smooth: 2 suffices for the camera's pixel aperture)
SS_SPOOF = 3    # supersampling of spoof media: resolves lattice periods down to ~0.7 px before aliasing
SRC_EXTENT = 1.3  # the attacker's photo covers [-1.3, 1.3]^2 so tilted media still fill the crop

# Stream tags (any fixed distinct ints).
_SCENE, _CAPTURE, _MEDIUM, _MEDIUM_POSE, _SRC, _REFLECT, _ROOM = range(1, 8)
_F_POSE, _F_NOISE, _F_MEDIUM, _F_SRC = range(11, 15)


def _check(size: int, species: int, device: int, difficulty: float) -> None:
    if size < 32 or size % 8:
        raise ValueError(f"size must be a multiple of 8 and >= 32 (e.g. 64, 128, 256), got {size}")
    if not 0 <= species < len(SPECIES):
        raise ValueError(f"species must be in [0, {len(SPECIES)}) for {SPECIES}, got {species}")
    if not 0 <= device < N_CAPTURE_DEVICES:
        raise ValueError(f"device must be in [0, {N_CAPTURE_DEVICES}), got {device}")
    if not difficulty > 0:
        raise ValueError(f"difficulty must be > 0 (1.0 = default benchmark), got {difficulty}")


def _to_u8(d: np.ndarray) -> np.ndarray:
    return np.clip(np.round(d * 255), 0, 255).astype(np.uint8)


def _capture_live(ident, scene, pose, profile, settings, noise_rng, size):
    """Live capture -> (uint8 [size, size, 3], depth float [size, size] in [0, 1])."""
    n = size * SS_LIVE
    x, y = pixel_grid(n, 1.0, (settings.phase[0] * SS_LIVE, settings.phase[1] * SS_LIVE))
    rad, z, face = faces.render_scene(ident, scene, pose, x, y)
    img = camera.capture(rad, SS_LIVE, profile, settings, noise_rng)
    depth = block_mean(faces.depth_label(z, face), SS_LIVE)
    return img, depth


def _attacker_photo(ident, scene, pose, size, rng):
    """The photo shown on the medium: a clean, auto-exposed capture of the live scene covering
    [-SRC_EXTENT, SRC_EXTENT]^2 at 0.8..1.25x the output resolution. -> (rgb table [n, n, 3] linear
    in [0, 1], depth table [n, n, 1] in [0, 1], texel size in output px)."""
    n = int(round(size * SRC_EXTENT * rng.uniform(0.8, 1.25)))
    x, y = pixel_grid(n, SRC_EXTENT)
    rad, z, face = faces.render_scene(ident, scene, pose, x, y)
    c = n // 4
    gain = rng.uniform(0.18, 0.26) / (luminance(rad[c:-c, c:-c].reshape(-1, 3).mean(0)) + 1e-6)
    rgb = np.clip(rad * np.float32(gain), 0, 1)
    texel_px = (size * SRC_EXTENT) / n
    return rgb, faces.depth_label(z, face)[..., None], texel_px


def _capture_spoof(ident, species, scene, src_pose, mpose, session, frame_rngs, profile, settings,
                   size, strength):
    """Spoof capture -> (uint8 [size, size, 3], depth float [size, size] in [0, 1]).

    session: dict of per-session rngs (_MEDIUM, _SRC, _REFLECT, _ROOM); frame_rngs: (noise rng,)."""
    (noise_rng,) = frame_rngs
    is_print = species in (1, 2)
    src, src_depth, texel_px = _attacker_photo(ident, scene, src_pose, size, session[_SRC])
    px_per_unit = size / 2
    ss = SS_SPOOF
    x, y = pixel_grid(size * ss, 1.0, (settings.phase[0] * ss, settings.phase[1] * ss))
    mx, my = spoof.medium_coords(x, y, mpose)
    room = session[_ROOM]
    if is_print:
        p = spoof.sample_print(session[_MEDIUM], species, strength)
        fibre = spoof.paper_texture(session[_MEDIUM], src.shape[0], texel_px)
        table = np.concatenate([src, fibre[..., None]], -1)
        refl = spoof.print_reflectance(table, SRC_EXTENT, mx, my, px_per_unit, p)
        # Lit by the recapture room's lamp, with a gentle illumination gradient across the sheet.
        lamp = cct_rgb(room.uniform(2800, 7000))
        gx, gy = room.uniform(-0.15, 0.15, 2) * strength
        rad = refl * lamp * (1 + gx * x + gy * y)[..., None]
    else:
        p = spoof.sample_display(session[_MEDIUM], species - 2, strength)
        src = spoof.frame_blend(src, p, texel_px)
        rad = spoof.replay_emission(src, SRC_EXTENT, mx, my, px_per_unit, p)
    # Presenting artifacts: glare + ambient reflection, smooth, added at camera-pixel resolution.
    extra = spoof.reflections(session[_REFLECT], size, glossy=not is_print, strength=strength)
    level = luminance(rad.reshape(-1, 3).mean(0))
    rad = rad.reshape(size, ss, size, ss, 3)
    rad += (extra * level)[:, None, :, None, :]
    rad = rad.reshape(size * ss, size * ss, 3)
    img = camera.capture(rad, ss, profile, settings, noise_rng)
    # The depth of the face shown, in the spoof image's geometry: the photo's depth, warped.
    xo, yo = pixel_grid(size, 1.0, settings.phase)
    mxo, myo = spoof.medium_coords(xo, yo, mpose)
    depth = sample_crop(src_depth, SRC_EXTENT, myo, mxo)[..., 0]
    return img, depth


def _session(seed, identity, species, device, video):
    key = (seed, 0x5E55, identity, species, device, video)
    return {part: rng_for(*key, part) for part in (_SCENE, _CAPTURE, _MEDIUM, _MEDIUM_POSE, _SRC, _REFLECT, _ROOM)}


def _frame_rng(seed, identity, species, device, video, frame, part):
    return rng_for(seed, 0xF7A, identity, species, device, video, frame, part)


def _scene_and_camera(seed, identity, species, device, video, size, difficulty):
    """What a capture session fixes: the identity, the session's random streams, the scene, the
    camera's profile and its settings for this session (checked arguments first)."""
    _check(size, species, device, difficulty)
    s = _session(seed, identity, species, device, video)
    profile = camera.device_profile(device)
    return (faces.identity(seed, identity), s, faces.sample_scene(s[_SCENE], size), profile,
            camera.sample_settings(profile, s[_CAPTURE]))


def make_example(*, seed: int, identity: int, species: int, device: int, video: int, frame: int,
                 size: int, difficulty: float = 1.0) -> dict:
    """One frame of one capture session.

    Deterministic in all its arguments (same args -> same bytes, any machine, any process).
    Identity appearance depends only on (seed, identity); the session (pose, light, background,
    camera settings, medium) on (seed, identity, species, device, video); `frame` adds head/hand
    motion and fresh sensor noise, so consecutive frames form a short video.
    `difficulty` > 0: spoof artifact amplitudes scale as 1 / difficulty (higher = subtler).

    Returns {"image": uint8 [size, size, 3] RGB face crop,
             "depth": uint8 [size, size] face depth 0..255 (0 = background; nearest point 255),
                      face-shaped for spoofs too (the depth of the face shown, warped as shown),
             "label": int (0 live, 1 spoof), "species", "device", "identity", "video", "frame": int}.
    """
    ident, s, scene, profile, settings = _scene_and_camera(seed, identity, species, device, video,
                                                           size, difficulty)
    strength = 1.0 / difficulty
    noise_rng = _frame_rng(seed, identity, species, device, video, frame, _F_NOISE)
    head = faces.jitter_pose(scene.pose, _frame_rng(seed, identity, species, device, video, frame, _F_POSE))
    if species == 0:
        img, depth = _capture_live(ident, scene, head, profile, settings, noise_rng, size)
    else:
        mpose = spoof.sample_medium_pose(s[_MEDIUM_POSE], paper=species in (1, 2))
        mpose = spoof.jitter_medium_pose(mpose, _frame_rng(seed, identity, species, device, video, frame, _F_MEDIUM))
        # A print is a still photo; a replayed video moves with the recorded head.
        src_pose = scene.pose if species in (1, 2) else head
        img, depth = _capture_spoof(ident, species, scene, src_pose, mpose, s, (noise_rng,), profile,
                                    settings, size, strength)
    return {"image": img, "depth": _to_u8(depth), "label": int(species > 0), "species": int(species),
            "device": int(device), "identity": int(identity), "video": int(video), "frame": int(frame)}


def make_registered_pair(*, seed: int, identity: int, species: int, device: int, video: int,
                         size: int, difficulty: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(spoof uint8 [size, size, 3], registered live uint8 [size, size, 3]) of one scene.

    The paper's Fig. 2 case study: the spoof medium is presented exactly where the face was
    (identity medium pose, no bend), and the same camera with the same settings captures both, so
    spoof - live is the spoof noise N (colour distortion, lattice/moire, glare, plus independent
    sensor noise). For species 0 the 'spoof' is a second live capture with fresh sensor noise: the
    null noise a detector should see on live faces.
    """
    ident, s, scene, profile, settings = _scene_and_camera(seed, identity, species, device, video,
                                                           size, difficulty)
    strength = 1.0 / difficulty
    live_rng = _frame_rng(seed, identity, species, device, video, 0, _F_NOISE)
    other_rng = _frame_rng(seed, identity, species, device, video, 1, _F_NOISE)
    live, _ = _capture_live(ident, scene, scene.pose, profile, settings, live_rng, size)
    if species == 0:
        other, _ = _capture_live(ident, scene, scene.pose, profile, settings, other_rng, size)
    else:
        other, _ = _capture_spoof(ident, species, scene, scene.pose, spoof.MediumPose(), s, (other_rng,),
                                  profile, settings, size, strength)
    return other, live
