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

import dataclasses
import functools
from typing import Optional

import numpy as np
import scipy.fft

from . import camera, faces, spoof, wide
from ._util import block_mean, cct_rgb, luminance, pixel_grid, rng_for, sample_crop, shrink

SPECIES: tuple[str, ...] = ("live", "print1", "print2", "replay1", "replay2")
# `make_example(world=...)`: the base world, or the wide world of `wide` (domain randomisation).
# "wide2" is the wide world plus photo sources and content scenes (`wide.sample_photo_source`,
# `wide.sample_content`); "wide" keeps the first round's physics, so its datasets (and the models
# and tables made from them) stay reproducible. "wide3" is wide2 (the same sessions and draws) with
# two physics fixes, so wide and wide2 records stay byte for byte what they were: display
# lattices and print screens area-sampled over each camera sample's footprint (FOOTPRINT) instead
# of point-sampled at its centre (which aliased fine pitches into fake moire), and the rolling
# shutter's refresh banding along the camera's rows instead of the screen's. "wide4" is wide2's
# physics seen by a sensor finer than the crop (`capture_size`): each session renders and
# captures at CAPTURE_SCALE times the crop's side, and the crop is then brought to its size by the
# resize a user's crop gets in `DespoofModel.score` (`_util.shrink`). "wide5" (2026-12-06) is
# wide2 (the same sessions and draws) with hair that follows the head (`faces.HAIRS`: "flow")
# instead of the vertical grating of fine streaks every earlier world gives each identity; only the
# hair's texture changes (and the brows', drawn in it): every other draw is wide2's.
WORLDS: tuple[str, ...] = ("base", "wide", "wide2", "wide3", "wide4", "wide5")
# Extra int fields of a wide-world example: the physics family each stage used (-1 = none).
WIDE_FIELDS: tuple[str, ...] = ("print_family", "display_layout", "camera_pipeline", "photo_source",
                                "scene_content")
N_CAPTURE_DEVICES: int = camera.N_CAPTURE_DEVICES

SS_LIVE = 2     # supersampling of live scenes (smooth: 2 suffices for the camera's pixel aperture)
# Supersampling of spoof media. Point-sampled (base, wide, wide2), a sub-pixel lattice's sharp
# windows carry harmonics above the grid's 1.5 cycles/px that fold into low frequencies: fine
# pitches (< ~2 px) get fake moire. World wide3 area-samples the lattice and the screens over each
# sample's footprint (`wide.footprint_points`: tent-weighted, FOOTPRINT points per grid step, i.e.
# SS_SPOOF * FOOTPRINT = 12 points/px, (2 * FOOTPRINT)^2 = 64 evaluations per sample).
SS_SPOOF = 3
FOOTPRINT = 4   # footprint sub-points per grid step and axis (world wide3; 1 = point sampling)
SRC_EXTENT = 1.3  # the attacker's photo covers [-1.3, 1.3]^2 so tilted media still fill the crop

# Stream tags (any fixed distinct ints).
_SCENE, _CAPTURE, _MEDIUM, _MEDIUM_POSE, _SRC, _REFLECT, _ROOM = range(1, 8)
_F_POSE, _F_NOISE, _F_MEDIUM, _F_SRC = range(11, 15)
# The wide world's own session streams (the base world's streams are drawn as they always were).
_W_LOOK, _W_CAMERA, _W_MEDIUM, _W_POSE, _W_PAPER, _W_SOURCE, _W_CONTENT, _W_SENSOR = range(21, 29)

# World wide4: the session's sensor px per crop px, log-uniform on this range. A real face crop is
# cut from a photo in which the face covers several times the model's input (a phone at arm's
# length: ~500-1000 px, 4-8x a 128 px crop), and `score` shrinks it; both simulators of the
# other worlds capture at the crop's own size, where a medium finer than a crop pixel is still
# drawn on the crop's grid (README, "Capture resolution": a sensor at 2x the input doubled the
# shipped model's cross-simulator ACER). The range stops at 3x because rendering costs the scale
# squared (log-uniform on [1, 3]: 3.6x wide2's pixels on average); at 1x a session is captured at
# the crop's size, as in wide2, so the check at the input size stays inside the world.
CAPTURE_SCALE = (1.0, 3.0)


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


def _capture_live(ident, scene, pose, profile, settings, noise_rng, size, render=None,
                  capture=None):
    """Live capture -> (uint8 [size, size, 3], depth float [size, size] in [0, 1]).
    `render` and `capture` (None: the base world's `faces.render_scene`, `camera.capture`)."""
    render = render or faces.render_scene
    capture = capture or camera.capture
    n = size * SS_LIVE
    x, y = pixel_grid(n, 1.0, (settings.phase[0] * SS_LIVE, settings.phase[1] * SS_LIVE))
    rad, z, face = render(ident, scene, pose, x, y)
    img = capture(rad, SS_LIVE, profile, settings, noise_rng)
    depth = block_mean(faces.depth_label(z, face), SS_LIVE)
    return img, depth


def _attacker_photo(ident, scene, pose, size, rng, render=None):
    """The photo shown on the medium: a clean, auto-exposed capture of the live scene covering
    [-SRC_EXTENT, SRC_EXTENT]^2 at 0.8..1.25x the output resolution. -> (rgb table [n, n, 3] linear
    in [0, 1], depth table [n, n, 1] in [0, 1], texel size in output px)."""
    n = int(round(size * SRC_EXTENT * rng.uniform(0.8, 1.25)))
    x, y = pixel_grid(n, SRC_EXTENT)
    rad, z, face = (render or faces.render_scene)(ident, scene, pose, x, y)
    c = n // 4
    gain = rng.uniform(0.18, 0.26) / (luminance(rad[c:-c, c:-c].reshape(-1, 3).mean(0)) + 1e-6)
    rgb = np.clip(rad * np.float32(gain), 0, 1)
    texel_px = (size * SRC_EXTENT) / n
    return rgb, faces.depth_label(z, face)[..., None], texel_px


@dataclasses.dataclass(frozen=True)
class _Medium:
    """Everything one spoof session draws for its medium, sampled once so that every render of the
    same frame (the spoof, its ideal-medium reference, the stage chain) shows the same photo.

    src: the attacker's photo, linear RGB [n, n, 3] in [0, 1] over [-SRC_EXTENT, SRC_EXTENT]^2;
    src_depth [n, n, 1]; texel_px: photo texel size in output px; params: spoof.PrintParams or
    spoof.DisplayParams; fibre: paper texture [n, n] (print); lamp [3] and gradient (gx, gy): the
    recapture room's light on a print; extra [S, S, 3]: glare + ambient reflection (presenting).
    Wide-world media only (world wide3; the defaults are the base, wide and wide2 physics):
    footprint: sub-points per axis over which the display lattice or print screen of each camera
    sample is averaged (`wide.footprint_points`; 1 = its centre, point sampling); camera_rows: the
    refresh banding runs along the camera's rows (the grid's y), not the screen's (my)."""
    is_print: bool
    src: np.ndarray
    src_depth: np.ndarray
    texel_px: float
    params: object
    fibre: np.ndarray | None
    lamp: np.ndarray | None
    gradient: tuple
    extra: np.ndarray
    footprint: int = 1
    camera_rows: bool = False


def _sample_medium(ident, species, scene, src_pose, session, size, strength) -> _Medium:
    """The session's medium: photo, print/display parameters, room light, reflections. Each draw
    comes from its own session stream (_SRC, _MEDIUM, _ROOM, _REFLECT) in a fixed order."""
    is_print = species in (1, 2)
    src, src_depth, texel_px = _attacker_photo(ident, scene, src_pose, size, session[_SRC])
    fibre = lamp = None
    gradient = (0.0, 0.0)
    if is_print:
        p = spoof.sample_print(session[_MEDIUM], species, strength)
        fibre = spoof.paper_texture(session[_MEDIUM], src.shape[0], texel_px)
        room = session[_ROOM]
        lamp = cct_rgb(room.uniform(2800, 7000))
        gradient = tuple(room.uniform(-0.15, 0.15, 2) * strength)
    else:
        p = spoof.sample_display(session[_MEDIUM], species - 2, strength)
    extra = spoof.reflections(session[_REFLECT], size, glossy=not is_print, strength=strength)
    return _Medium(is_print, src, src_depth, texel_px, p, fibre, lamp, gradient, extra)


def _medium_radiance(m: _Medium, mx, my, size, params=None, rows=None) -> np.ndarray:
    """Steps 1-2 (and the replay's refresh banding): unlit print reflectance or display emission
    [H, W, 3] at medium points (mx, my) [H, W] of the camera's samples; `params` overrides
    m.params (stage chain); rows [H, W]: the samples' image y (crop units), which the banding
    follows where m.camera_rows (world wide3)."""
    p = m.params if params is None else params
    if isinstance(p, wide.PrintParams):
        table = np.concatenate([m.src, m.fibre[..., None]], -1)
        return wide.print_reflectance(table, SRC_EXTENT, mx, my, size / 2, p,
                                      footprint=m.footprint)
    if isinstance(p, wide.DisplayParams):
        src = spoof.frame_blend(m.src, p.tone, m.texel_px)
        if m.camera_rows and rows is None:
            raise ValueError("_medium_radiance: a medium with camera_rows=True needs the camera "
                             "grid's rows (the y of `_spoof_grid`).")
        return wide.display_emission(src, SRC_EXTENT, mx, my, size / 2, p, footprint=m.footprint,
                                     rows=rows if m.camera_rows else None)
    if m.is_print:
        table = np.concatenate([m.src, m.fibre[..., None]], -1)
        return spoof.print_reflectance(table, SRC_EXTENT, mx, my, size / 2, p)
    src = spoof.frame_blend(m.src, p, m.texel_px)
    return spoof.replay_emission(src, SRC_EXTENT, mx, my, size / 2, p)


def _present(m: _Medium, rad, x, y, size) -> np.ndarray:
    """Step 3, presenting: the room lamp and its gradient on a print, then glare + ambient
    reflection, smooth, added at camera-pixel resolution. rad [S*ss, S*ss, 3]; a replay's `rad`
    is modified in place."""
    if m.is_print:
        gx, gy = m.gradient
        rad = rad * m.lamp * (1 + gx * x + gy * y)[..., None]
    level = luminance(rad.reshape(-1, 3).mean(0))
    ss = rad.shape[0] // size
    rad = rad.reshape(size, ss, size, ss, 3)
    rad += (m.extra * level)[:, None, :, None, :]
    return rad.reshape(size * ss, size * ss, 3)


def _ideal_radiance(m: _Medium, mx, my) -> np.ndarray:
    """The ideal medium: the attacker's photo reproduced exactly (unbounded gamut, no screen or
    lattice, no paper, not lit by the room) at medium points (mx, my) -> linear RGB [H, W, 3]."""
    return sample_crop(m.src, SRC_EXTENT, my, mx)


def _twin(rng: np.random.Generator) -> np.random.Generator:
    """A generator in `rng`'s current state: a second capture gets the same sensor noise draws."""
    twin = np.random.Generator(type(rng.bit_generator)())
    twin.bit_generator.state = rng.bit_generator.state
    return twin


def _spoof_grid(size, settings, mpose):
    """Camera samples of the spoof capture (SS_SPOOF-supersampled, at the session's sensor phase)
    and where their rays hit the medium -> (x, y, mx, my), each [S*ss, S*ss] crop units."""
    ss = SS_SPOOF
    x, y = pixel_grid(size * ss, 1.0, (settings.phase[0] * ss, settings.phase[1] * ss))
    mx, my = spoof.medium_coords(x, y, mpose)
    return x, y, mx, my


def _capture_spoof(ident, species, scene, src_pose, mpose, session, frame_rngs, profile, settings,
                   size, strength, reference=True):
    """Spoof capture -> (uint8 [size, size, 3], depth float [size, size] in [0, 1],
    ideal-medium reference uint8 [size, size, 3] or None when `reference` is False).

    session: dict of per-session rngs (_MEDIUM, _SRC, _REFLECT, _ROOM); frame_rngs: (noise rng,).
    The reference (`live_reference` of a record) is the same photo on an ideal medium at the same
    pose, seen by the same camera with the same settings and the same sensor noise draws
    (see `make_example`)."""
    (noise_rng,) = frame_rngs
    m = _sample_medium(ident, species, scene, src_pose, session, size, strength)
    x, y, mx, my = _spoof_grid(size, settings, mpose)
    ref = None
    if reference:
        ref = camera.capture(_ideal_radiance(m, mx, my), SS_SPOOF, profile, settings,
                             _twin(noise_rng))
    rad = _present(m, _medium_radiance(m, mx, my, size), x, y, size)
    img = camera.capture(rad, SS_SPOOF, profile, settings, noise_rng)
    # The depth of the face shown, in the spoof image's geometry: the photo's depth, warped.
    xo, yo = pixel_grid(size, 1.0, settings.phase)
    mxo, myo = spoof.medium_coords(xo, yo, mpose)
    depth = sample_crop(m.src_depth, SRC_EXTENT, myo, mxo)[..., 0]
    return img, depth, ref


def _session(seed, identity, species, device, video):
    key = (seed, 0x5E55, identity, species, device, video)
    return {part: rng_for(*key, part) for part in (_SCENE, _CAPTURE, _MEDIUM, _MEDIUM_POSE, _SRC, _REFLECT, _ROOM)}


def _frame_rng(seed, identity, species, device, video, frame, part):
    return rng_for(seed, 0xF7A, identity, species, device, video, frame, part)


def _scene_and_camera(seed, identity, species, device, video, size, difficulty, hair="streaks"):
    """What a capture session fixes: the identity (its hair texture `hair`, `faces.HAIRS`), the
    session's random streams, the scene, the camera's profile and its settings for this session
    (checked arguments first)."""
    _check(size, species, device, difficulty)
    s = _session(seed, identity, species, device, video)
    profile = camera.device_profile(device)
    return (faces.identity(seed, identity, hair), s, faces.sample_scene(s[_SCENE], size), profile,
            camera.sample_settings(profile, s[_CAPTURE]))


def _frame(seed, identity, species, device, video, frame, size, difficulty, hair="streaks"):
    """Everything one frame fixes before rendering (checked arguments first): the identity, the
    session's streams, scene, camera profile and settings, the frame's sensor noise stream, the
    head pose and, for spoofs, the medium pose and the pose of the face in the attacker's photo."""
    ident, s, scene, profile, settings = _scene_and_camera(seed, identity, species, device, video,
                                                           size, difficulty, hair)
    key = (seed, identity, species, device, video, frame)
    noise_rng = _frame_rng(*key, _F_NOISE)
    head = faces.jitter_pose(scene.pose, _frame_rng(*key, _F_POSE))
    mpose = src_pose = None
    if species:
        mpose = spoof.sample_medium_pose(s[_MEDIUM_POSE], paper=species in (1, 2))
        mpose = spoof.jitter_medium_pose(mpose, _frame_rng(*key, _F_MEDIUM))
        # A print is a still photo; a replayed video moves with the recorded head.
        src_pose = scene.pose if species in (1, 2) else head
    return {"ident": ident, "session": s, "scene": scene, "profile": profile, "settings": settings,
            "noise_rng": noise_rng, "head": head, "mpose": mpose, "src_pose": src_pose,
            "strength": 1.0 / difficulty}


def _photographed(ident, scene, pose, x, y, *, render, source, size, rng):
    """`render`, then the session's source camera (`wide.photograph`) over the rendered table;
    the grid (x, y) in crop units gives its texel size in output px (the crop spans `size`)."""
    rad, z, face = render(ident, scene, pose, x, y)
    texel_px = float(x[0, 1] - x[0, 0]) * size / 2
    return wide.photograph(rad, texel_px, source, rng), z, face


def _wide_example(seed, identity, species, device, video, frame, size, difficulty,
                  second: bool = False, area_sampled: bool = False, hair: str = "streaks") -> dict:
    """`make_example(world="wide")`: the base world's identity, scene, devices, settings, head
    motion and sensor noise streams, with the wide world's look, medium and pipeline drawn from
    streams of their own (`wide`). The live reference keeps its definition: the same photo on an
    ideal medium at the same pose, through the same pipeline with the same noise draws.
    `second` (world "wide2"): a session may also draw a photo source and a content scene, each
    from a stream of its own, so a wide2 session that draws neither is the wide session.
    `area_sampled` (world "wide3", with `second`): the same draws as wide2, the medium's lattice or
    screen averaged over each camera sample's footprint (FOOTPRINT) and the refresh banding along
    the camera's rows; no random stream changes, so live records and contone prints are wide2's.
    `hair` (world "wide5", with `second`: "flow"): the identities' hair texture (`faces.HAIRS`)."""
    f = _frame(seed, identity, species, device, video, frame, size, difficulty, hair)
    key = (seed, 0x31DE, identity, species, device, video)
    look = wide.sample_look(rng_for(*key, _W_LOOK), int(size * wide.SKIN_EXTENT))
    scene = f["scene"]
    pipe = wide.sample_pipeline(rng_for(*key, _W_CAMERA))
    source = wide.sample_photo_source(rng_for(*key, _W_SOURCE)) if second else None
    content = (wide.sample_content(rng_for(*key, _W_CONTENT), int(2 * size * wide.SKIN_EXTENT))
               if second else None)
    if content is None:
        render = functools.partial(wide.render_scene, look=look)
    else:                    # natural-image content instead of a person, live and spoofed alike
        render = functools.partial(wide.render_content, table=content[1])
    if source is not None:   # the scene (live) or the attacker's photo (spoof) is a photograph
        render = functools.partial(_photographed, render=render, source=source, size=size,
                                   rng=rng_for(*key, _W_SOURCE, 1 + frame if species == 0 else 0))
    capture = functools.partial(wide.capture, pipeline=pipe)
    profile, settings, noise_rng = f["profile"], f["settings"], f["noise_rng"]
    fields = {"print_family": -1, "display_layout": -1, "camera_pipeline": pipe.kind,
              "photo_source": -1 if source is None else source.kind,
              "scene_content": -1 if content is None else content[0]}
    if species == 0:
        img, depth = _capture_live(f["ident"], scene, f["head"], profile, settings, noise_rng, size,
                                   render=render, capture=capture)
        return {"image": img, "live_reference": img.copy(), "depth": depth, **fields}
    is_print = species in (1, 2)
    strength = f["strength"]
    mpose = wide.sample_medium_pose(rng_for(*key, _W_POSE), paper=is_print)
    mpose = spoof.jitter_medium_pose(
        mpose, _frame_rng(seed, identity, species, device, video, frame, _F_MEDIUM))
    src, src_depth, texel_px = _attacker_photo(f["ident"], scene, f["src_pose"], size,
                                               f["session"][_SRC], render=render)
    mrng, params = _wide_medium(key, species, strength)
    fibre = lamp = None
    gradient = (0.0, 0.0)
    if is_print:
        fibre = spoof.paper_texture(rng_for(*key, _W_PAPER), src.shape[0], texel_px)
        lamp = cct_rgb(mrng.uniform(2700, 7500))
        gradient = tuple(mrng.uniform(-0.2, 0.2, 2) * strength)
        fields["print_family"] = params.family
    else:
        fields["display_layout"] = params.layout
    # Glossy photo paper reflects like a screen.
    glossy = not is_print or params.family == wide.PRINT_FAMILIES.index("contone")
    extra = spoof.reflections(mrng, size, glossy=glossy, strength=strength * mrng.uniform(0.3, 1.5))
    m = _Medium(is_print, src, src_depth, texel_px, params, fibre, lamp, gradient, extra,
                footprint=FOOTPRINT if area_sampled else 1, camera_rows=area_sampled)
    x, y, mx, my = _spoof_grid(size, settings, mpose)
    ref = capture(_ideal_radiance(m, mx, my), SS_SPOOF, profile, settings, _twin(noise_rng))
    rad = _present(m, _medium_radiance(m, mx, my, size, rows=y), x, y, size)
    img = capture(rad, SS_SPOOF, profile, settings, noise_rng)
    xo, yo = pixel_grid(size, 1.0, settings.phase)
    mxo, myo = spoof.medium_coords(xo, yo, mpose)
    depth = sample_crop(m.src_depth, SRC_EXTENT, myo, mxo)[..., 0]
    return {"image": img, "live_reference": ref, "depth": depth, **fields}


def capture_size(*, seed: int, identity: int, species: int, device: int, video: int,
                 size: int) -> int:
    """World wide4: the side in px at which the session renders and captures a `size` px crop,
    `size` times the scale drawn log-uniform on CAPTURE_SCALE from the session's own stream,
    rounded to a multiple of 8 (at least `size`). Live and attack sessions draw it alike."""
    lo, hi = CAPTURE_SCALE
    k = rng_for(seed, 0x31DE, identity, species, device, video, _W_SENSOR).uniform(np.log(lo),
                                                                                   np.log(hi))
    return max(int(size), 8 * int(round(size * float(np.exp(k)) / 8)))


def capture_example(*, seed: int, identity: int, species: int, device: int, video: int,
                    frame: int, size: int, difficulty: float = 1.0) -> dict:
    """World wide4's session as its sensor recorded it, before the shrink to `size`: wide2's
    example rendered and captured at `capture_size` (128-384 px for a 128 px crop), its image,
    live reference and depth (float) at that side, with the wide fields. `make_example(world=
    "wide4")` is this, shrunk; a user's larger crop is this, unshrunk (README, Rule N)."""
    cap = capture_size(seed=seed, identity=identity, species=species, device=device, video=video,
                       size=size)
    return _wide_example(seed, identity, species, device, video, frame, cap, difficulty,
                         second=True)


def _finer_sensor_example(seed, identity, species, device, video, frame, size, difficulty) -> dict:
    """`make_example(world="wide4")`: wide2's example of the session rendered and captured at
    `capture_size`, its image, live reference and depth then shrunk to `size` by the resize a
    user's crop gets (`_util.shrink`: PIL bilinear, antialiased). The image and the reference go
    through the same linear resize, so N* = image - reference keeps its meaning (up to the
    rounding to uint8). The physics (pitches, rulings, noise, blur, JPEG) are drawn in sensor px,
    so in crop px a medium is up to 3x finer than wide2's and the sensor noise and codec blocks
    are averaged over the resize, as a real camera's are."""
    ex = capture_example(seed=seed, identity=identity, species=species, device=device,
                         video=video, frame=frame, size=size, difficulty=difficulty)
    if ex["image"].shape[0] == size:
        return ex
    return {**ex, "image": shrink(ex["image"], size),
            "live_reference": shrink(ex["live_reference"], size),
            "depth": shrink(np.asarray(ex["depth"], np.float32), size)}


def _wide_medium(key: tuple, species: int, strength: float):
    """(the session's medium stream, the print or screen drawn first from it): one function for
    the renderer (`_wide_example` goes on drawing from the stream) and `session_physics`."""
    mrng = rng_for(*key, _W_MEDIUM)
    if species in (1, 2):
        return mrng, wide.sample_print(mrng, species, strength)
    return mrng, wide.sample_display(mrng, species, strength)


# Continuous physics of a wide-world session, in output px unless said: `session_physics`.
PHYSICS_COLUMNS = ("display_pitch", "display_aperture", "display_contrast", "print_period",
                   "print_dot", "print_contrast", "camera_gain", "camera_quality",
                   "source_res", "source_quality", "capture_scale")


def session_physics(*, seed: int, identity: int, species: int, device: int, video: int,
                    difficulty: float = 1.0, world: str = "wide2",
                    size: Optional[int] = None) -> dict[str, float]:
    """The continuous physics a wide-world session drew, without rendering anything.

    {PHYSICS_COLUMNS name: value}, NaN where the session has no such stage: `display_pitch`
    (the screen's pixel pitch), `display_aperture` (sub-pixel width / cell), `display_contrast`
    (lattice contrast); `print_period` (AM screen ruling: AM dot and line families),
    `print_dot` (FM / inkjet dot size), `print_contrast` (screen contrast; 0 for contone);
    `camera_gain` (sensor noise multiplier), `camera_quality` (JPEG or video-codec quality);
    `source_res` (source px per output px) and `source_quality` of a photo source (wide2 to
    wide4); `capture_scale` (sensor px per output px: `capture_size` / `size` in wide4, which
    needs `size`; 1 in the other worlds). Lengths are in px of the output crop, so a wide4
    session's pitch, ruling and dot are its drawn values (in sensor px) over its capture scale.
    The values are the draws `make_example` renders with: the same streams, called through the
    same functions (`_wide_medium`, `wide.sample_pipeline`, `wide.sample_photo_source`,
    `capture_size`), so a model's misses can be broken down by them (`despoof subset --by
    display_pitch --bins ...`)."""
    if world not in ("wide", "wide2", "wide3", "wide4", "wide5"):
        raise ValueError(f"session physics are drawn by the wide worlds only, not {world!r}")
    key = (seed, 0x31DE, identity, species, device, video)
    scale = 1.0
    if world == "wide4":
        if size is None:
            raise ValueError("world wide4's session physics need the crop's size (its capture "
                             "scale is capture_size / size)")
        scale = capture_size(seed=seed, identity=identity, species=species, device=device,
                             video=video, size=size) / size
    out = dict.fromkeys(PHYSICS_COLUMNS, float("nan"))
    pipe = wide.sample_pipeline(rng_for(*key, _W_CAMERA))
    out.update(camera_gain=float(pipe.gain), camera_quality=float(pipe.quality),
               capture_scale=float(scale))
    if world != "wide":
        source = wide.sample_photo_source(rng_for(*key, _W_SOURCE))
        if source is not None:
            out.update(source_res=float(source.res) * scale, source_quality=float(source.quality))
    if species == 0:
        return out
    _, params = _wide_medium(key, species, 1.0 / difficulty)
    if species in (1, 2):
        family = wide.PRINT_FAMILIES[params.family]
        out["print_contrast"] = float(params.base.mod)
        if family in ("am_dot", "am_line"):
            out["print_period"] = float(params.base.period) / scale
        elif family in ("fm_bluenoise", "inkjet"):
            out["print_dot"] = float(params.dot) / scale
    else:
        t = params.tone
        out.update(display_pitch=float(t.pitch) / scale, display_aperture=float(t.aperture),
                   display_contrast=float(t.mod))
    return out


def make_example(*, seed: int, identity: int, species: int, device: int, video: int, frame: int,
                 size: int, difficulty: float = 1.0, world: str = "base") -> dict:
    """One frame of one capture session.

    Deterministic in all its arguments (same args -> same bytes, any machine, any process).
    Identity appearance depends only on (seed, identity); the session (pose, light, background,
    camera settings, medium) on (seed, identity, species, device, video); `frame` adds head/hand
    motion and fresh sensor noise, so consecutive frames form a short video.
    `difficulty` > 0: spoof artifact amplitudes scale as 1 / difficulty (higher = subtler).
    `world`: "base", "wide" (`wide`: randomised print screening, display layouts, camera
    pipelines, skin texture and natural backgrounds), "wide2" (wide, plus photo sources and
    content scenes), "wide3" (wide2's sessions with area-sampled lattices and screens and
    refresh banding along the camera's rows), "wide4" (wide2's physics captured by a sensor
    1-3x finer than the crop, then shrunk as `score` shrinks a user's crop) or "wide5" (wide2
    with hair that follows the head instead of a vertical grating of streaks, `faces.HAIRS`):
    see WORLDS; a wide example (wide to wide5) also carries the int fields
    WIDE_FIELDS (print_family, display_layout: -1 where the stage has none; camera_pipeline;
    photo_source: -1 where the scene and the attacker's photo are not photographs;
    scene_content: -1 for a person, else the natural image shown instead, depth 0).

    Returns {"image": uint8 [size, size, 3] RGB face crop,
             "live_reference": uint8 [size, size, 3], the ground-truth live face of Eq. 1, so that
                      image - live_reference is the true spoof noise N*; equal to `image` for live,
             "depth": uint8 [size, size] face depth 0..255 (0 = background; nearest point 255),
                      face-shaped for spoofs too (the depth of the face shown, warped as shown),
             "label": int (0 live, 1 spoof), "species", "device", "identity", "video", "frame": int}.

    The live reference of a spoof is the same frame with an ideal medium: the attacker's photo
    (the paper's Î, the live image the attack is made from) reproduced exactly - no colour
    distortion, no halftone/screen/pixels/paper, no room lamp or glare, no refresh banding - held
    at the same pose (tilt and bend are registration, not noise: the paper registers spoof to live
    before taking N, Sec. 3.1), captured by the same camera with the same session settings and the
    *same* sensor noise draws, on the same supersampled grid. Sensor noise therefore cancels in N*
    except where the medium changed the signal level (shot noise, clipping, JPEG), and the
    camera's auto exposure and white balance meter the ideal medium, as they meter every live
    face. `spoof_noise_stages` splits N* by the paper's Sec. 3.1 steps.
    """
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    meta = {"label": int(species > 0), "species": int(species), "device": int(device),
            "identity": int(identity), "video": int(video), "frame": int(frame)}
    if world != "base":
        if world == "wide4":
            ex = _finer_sensor_example(seed, identity, species, device, video, frame, size,
                                       difficulty)
        else:
            ex = _wide_example(seed, identity, species, device, video, frame, size, difficulty,
                               second=world in ("wide2", "wide3", "wide5"),
                               area_sampled=world == "wide3",
                               hair="flow" if world == "wide5" else "streaks")
        ex["depth"] = _to_u8(ex["depth"])
        return {**ex, **meta, **{k: int(ex[k]) for k in WIDE_FIELDS}}
    f = _frame(seed, identity, species, device, video, frame, size, difficulty)
    if species == 0:
        img, depth = _capture_live(f["ident"], f["scene"], f["head"], f["profile"], f["settings"],
                                   f["noise_rng"], size)
        reference = img.copy()
    else:
        img, depth, reference = _capture_spoof(
            f["ident"], species, f["scene"], f["src_pose"], f["mpose"], f["session"],
            (f["noise_rng"],), f["profile"], f["settings"], size, f["strength"])
    return {"image": img, "live_reference": reference, "depth": _to_u8(depth),
            "label": int(species > 0), "species": int(species), "device": int(device),
            "identity": int(identity), "video": int(video), "frame": int(frame)}


# The paper's four degradation steps (Sec. 3.1), in the order `spoof_noise_stages` adds them.
STAGES: tuple[str, ...] = ("colour", "display", "presenting", "imaging")


def _band_limit(rad: np.ndarray, size: int) -> np.ndarray:
    """rad [S*ss, S*ss, C] without what the S x S output grid cannot hold: DCT-II coefficients of
    index >= S (above the output Nyquist) zeroed: what a camera with an ideal anti-aliasing filter
    would see. The DCT's even extension spares the edges the ringing of a periodic (FFT) filter."""
    c = scipy.fft.dctn(rad, type=2, axes=(0, 1), norm="ortho", workers=1)
    c[size:] = 0
    c[:, size:] = 0
    return scipy.fft.idctn(c, type=2, axes=(0, 1), norm="ortho", workers=1).astype(np.float32)


def spoof_noise_stages(*, seed: int, identity: int, species: int, device: int, video: int,
                       frame: int, size: int, difficulty: float = 1.0) -> dict:
    """The true spoof noise of one `make_example` frame, split by the paper's Sec. 3.1 steps.

    Renders a chain of captures of the same frame (same photo, pose, camera, settings and sensor
    noise draws), each adding one step to the previous:
        R0 live_reference: ideal medium (as in `make_example`);
        R1 + colour:     the medium's colour transfer only (print: gamut compression, inks, paper
                         white/black; replay: display gamma, backlight, white point), no texture;
        R2 + display:    the full print (halftone screen, paper fibres) or screen (pixel grid,
                         sub-pixel lattice, previous-frame ghost), band-limited to the output grid;
        R3 + presenting: the room lamp and its gradient on a print, glare + ambient reflection;
        R4 + imaging:    what the camera's sampling aliases (moire) and the rolling-shutter
                         refresh banding of a screen = `image`.
    Stage k's noise is R_k - R_{k-1} in 8-bit units: the four sum exactly to image - live_reference.
    Each step is measured on top of the earlier ones (the captures are nonlinear, so the split
    depends on the order; this is the paper's).
    Costs about four extra captures; an analysis tool, not part of the stored records.

    Returns {"image", "live_reference": uint8 [S, S, 3] (as `make_example`),
             "stages": {name: int16 [S, S, 3]} for name in STAGES (all zero for live)}.
    """
    if species == 0:
        ex = make_example(seed=seed, identity=identity, species=species, device=device, video=video,
                          frame=frame, size=size, difficulty=difficulty)
        return {"image": ex["image"], "live_reference": ex["live_reference"],
                "stages": {name: np.zeros((size, size, 3), np.int16) for name in STAGES}}
    f = _frame(seed, identity, species, device, video, frame, size, difficulty)
    m = _sample_medium(f["ident"], species, f["scene"], f["src_pose"], f["session"], size,
                       f["strength"])
    x, y, mx, my = _spoof_grid(size, f["settings"], f["mpose"])
    p = m.params
    if m.is_print:
        cover = spoof.gamut_compress(m.src, p)
        contone = spoof.ink_reflectance([cover[..., i] for i in range(4)], p)
        colour = sample_crop(contone, SRC_EXTENT, my, mx)
        no_banding = p
    else:
        colour = sample_crop(spoof.display_tone(m.src, p), SRC_EXTENT, my, mx)
        no_banding = dataclasses.replace(p, flicker=(0.0,) + tuple(p.flicker[1:]))
    display = colour + _band_limit(_medium_radiance(m, mx, my, size, no_banding) - colour, size)
    presented = _present(m, display.copy(), x, y, size)
    full = _present(m, _medium_radiance(m, mx, my, size), x, y, size)
    shots = [camera.capture(r, SS_SPOOF, f["profile"], f["settings"], _twin(f["noise_rng"]))
             for r in (_ideal_radiance(m, mx, my), colour, display, presented, full)]
    shots = [s.astype(np.int16) for s in shots]
    return {"image": shots[-1].astype(np.uint8), "live_reference": shots[0].astype(np.uint8),
            "stages": {name: shots[k + 1] - shots[k] for k, name in enumerate(STAGES)}}


def render_image(kwargs: dict) -> np.ndarray:
    """`make_example(**kwargs)["image"]`: a module-level function, so that process pools can run it
    without importing more than this module."""
    return np.asarray(make_example(**kwargs)["image"])


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
        other, _, _ = _capture_spoof(ident, species, scene, scene.pose, spoof.MediumPose(), s,
                                     (other_rng,), profile, settings, size, strength,
                                     reference=False)
    return other, live
