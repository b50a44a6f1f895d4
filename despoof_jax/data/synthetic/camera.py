"""Capture cameras: optics, pixel sampling, sensor noise, ISP and JPEG (paper Sec. 3.1, step 4).

Live faces and spoof media go through exactly the same `capture` with the same parameter ranges,
so a camera signature never gives the label away. The camera samples a *supersampled* scene: its
pixel aperture (a box over ss x ss scene samples) and optics PSF are applied before decimation, so a
display/halftone lattice finer than the pixel pitch aliases into moire as it does on a real sensor.

Units: scene radiance is linear RGB (>= 0, unbounded); images leave as uint8 sRGB-like RGB.
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image
from scipy import ndimage

from ._util import block_mean, luminance, rng_for

N_CAPTURE_DEVICES = 6


@dataclasses.dataclass(frozen=True)
class CameraProfile:
    """Fixed properties of one capture device (like one of Oulu-NPU's six phones).

    psf: optics Gaussian sigma in output pixels; read/shot: sensor noise (std of read noise, and
    variance per unit signal) in linear units at the auto-exposed level; sensor: [3, 3] colour
    response (rows sum to 1); awb: 0..1 strength of grey-world white balance; gamma, contrast,
    saturation, sharpen: ISP tone/colour/unsharp-mask settings; jpeg: base JPEG quality;
    exposure: target mean luminance of the auto exposure."""
    psf: float
    read: float
    shot: float
    sensor: np.ndarray
    awb: float
    gamma: float
    contrast: float
    saturation: float
    sharpen: float
    jpeg: int
    exposure: float


def device_profile(device: int) -> CameraProfile:
    """The profile of capture device `device` in [0, N_CAPTURE_DEVICES): a fixed function of the id
    alone (not of the world seed), so a device is the same phone in every dataset."""
    if not 0 <= device < N_CAPTURE_DEVICES:
        raise ValueError(f"device must be in [0, {N_CAPTURE_DEVICES}), got {device}")
    rng = rng_for(0xCA3E7A, device)
    sensor = np.eye(3) + rng.normal(0, 0.05, (3, 3))
    sensor = np.clip(sensor, 0, None)
    sensor /= sensor.sum(1, keepdims=True)
    return CameraProfile(
        psf=float(rng.uniform(0.25, 0.45)), read=float(rng.uniform(0.002, 0.006)),
        shot=float(rng.uniform(0.0005, 0.0025)), sensor=sensor.astype(np.float32),
        awb=float(rng.uniform(0.3, 0.8)), gamma=float(rng.uniform(2.0, 2.5)),
        contrast=float(rng.uniform(0.0, 0.4)), saturation=float(rng.uniform(0.9, 1.2)),
        sharpen=float(rng.uniform(0.0, 0.6)), jpeg=int(rng.integers(78, 96)),
        exposure=float(rng.uniform(0.17, 0.24)))


@dataclasses.dataclass(frozen=True)
class CaptureSettings:
    """Per-session capture state: extra defocus and motion blur (output px), motion angle (rad),
    exposure error (log2 EV), JPEG quality, sensor sampling phase (fraction of a pixel, x and y)."""
    defocus: float
    motion: float
    motion_angle: float
    ev: float
    jpeg: int
    phase: tuple[float, float]


def sample_settings(profile: CameraProfile, rng: np.random.Generator) -> CaptureSettings:
    """Session settings; the same distribution for live and spoof captures."""
    return CaptureSettings(
        defocus=float(rng.uniform(0, 0.6) ** 2), motion=float(rng.uniform(0, 1.2) ** 2),
        motion_angle=float(rng.uniform(0, np.pi)), ev=float(rng.normal(0, 0.25)),
        jpeg=int(np.clip(profile.jpeg + rng.integers(-6, 7), 60, 98)),
        phase=(float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.5, 0.5))))


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """A normalised line kernel of `length` px at `angle`, rasterised with bilinear splats."""
    n = 2 * int(np.ceil(length / 2)) + 3
    k = np.zeros((n, n), np.float32)
    c = n // 2
    for t in np.linspace(-length / 2, length / 2, 9):
        x, y = c + t * np.cos(angle), c + t * np.sin(angle)
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        k[y0, x0] += (1 - fx) * (1 - fy)
        k[y0, x0 + 1] += fx * (1 - fy)
        k[y0 + 1, x0] += (1 - fx) * fy
        k[y0 + 1, x0 + 1] += fx * fy
    return k / k.sum()


def expose(scene: np.ndarray, ss: int, profile: CameraProfile,
           settings: CaptureSettings) -> np.ndarray:
    """The camera up to the photosites: optics, pixel aperture and sampling, motion blur, the
    sensor's colour response, auto exposure and auto white balance. scene [H*ss, W*ss, 3] linear
    -> float [H, W, 3] linear, before noise (shared by `capture` and the wide world's raw
    pipelines)."""
    # Optics (lens PSF + defocus) before sampling, so lattices finer than a pixel alias as moire.
    sigma = np.hypot(profile.psf, settings.defocus) * ss
    img = ndimage.gaussian_filter(scene, (sigma, sigma, 0), truncate=2.0, mode="nearest")
    img = block_mean(img, ss)                         # pixel aperture + sampling grid
    if settings.motion > 0.05:
        k = motion_kernel(settings.motion, settings.motion_angle)
        img = np.stack([ndimage.convolve(img[..., c], k, mode="nearest") for c in range(3)], -1)
    # Sensor colour response, then auto exposure on the centre (the face) and auto white balance.
    raw = img @ profile.sensor.T
    h, w = raw.shape[:2]
    centre = raw[h // 4: 3 * h // 4, w // 4: 3 * w // 4].reshape(-1, 3).mean(0) + 1e-6
    gain = profile.exposure * 2.0 ** settings.ev / luminance(centre)
    grey = raw.reshape(-1, 3).mean(0) + 1e-6
    wb = (luminance(grey) / grey) ** profile.awb
    return raw * (gain * wb / luminance(wb)).astype(np.float32)


def capture(scene: np.ndarray, ss: int, profile: CameraProfile, settings: CaptureSettings,
            rng: np.random.Generator) -> np.ndarray:
    """Photograph a supersampled scene.

    scene: [H*ss, W*ss, 3] linear radiance sampled on the camera's own grid (the caller placed the
    samples with `settings.phase`); rng: the per-frame sensor noise stream.
    Returns uint8 [H, W, 3] RGB after JPEG at `settings.jpeg`.
    """
    raw = expose(scene, ss, profile, settings)
    # Sensor noise: photon shot noise (variance ~ signal) + read noise, in linear units.
    std = np.sqrt(profile.shot * np.clip(raw, 0, None) + profile.read ** 2)
    raw = raw + std * rng.standard_normal(raw.shape, dtype=np.float32)
    # ISP: clip, gamma, S-curve contrast, saturation, unsharp mask, 8-bit.
    y = np.clip(raw, 0, 1) ** (1 / profile.gamma)
    y = (1 - profile.contrast) * y + profile.contrast * y * y * (3 - 2 * y)
    lum = luminance(y)[..., None]
    y = lum + profile.saturation * (y - lum)
    if profile.sharpen > 0:
        y = y + profile.sharpen * (y - ndimage.gaussian_filter(y, (1.0, 1.0, 0), truncate=2.0))
    out = np.clip(np.round(y * 255), 0, 255).astype(np.uint8)
    return jpeg(out, settings.jpeg)


def jpeg(img: np.ndarray, quality: int, subsampling: int = 2) -> np.ndarray:
    """JPEG round trip through PIL (4:2:0 chroma unless `subsampling` says otherwise: PIL's 0 is
    4:4:4, 2 is 4:2:0; fixed encoder settings: deterministic)."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality), subsampling=int(subsampling),
                              optimize=False)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))
