"""Colour conversion for the network input: RGB + HSV, six channels (paper Sec. 3.2, after [31]).

Written in `jnp` so that it runs inside the jitted step on the accelerator: the input pipeline ships
compact uint8 RGB and the step expands it. `jnp` functions also accept numpy arrays, so host code
(tests, the library API) calls the same function: one formula, one place.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def to_unit_rgb(rgb) -> jnp.ndarray:
    """uint8 [..., 3] in [0, 255] or float [..., 3] in [0, 1] -> float32 [..., 3] in [0, 1].

    Other integer dtypes are refused (an int or uint16 image would pass through unscaled, 255x
    too bright), and so is a host (numpy) float image outside [0, 1] (one in 0..255); traced
    floats are the step's own and are not checked."""
    if isinstance(rgb, np.ndarray) and np.issubdtype(rgb.dtype, np.floating) and rgb.size and \
            not (np.nanmin(rgb) >= 0.0 and np.nanmax(rgb) <= 1.0):
        raise ValueError(f"float RGB with values in [{np.nanmin(rgb):.4g}, {np.nanmax(rgb):.4g}]; "
                         "expected [0, 1] (divide 8-bit values by 255, or pass uint8)")
    given = getattr(rgb, "dtype", None)   # before jnp narrows int64 to int32
    rgb = jnp.asarray(rgb)
    if rgb.dtype == jnp.uint8:
        return rgb.astype(jnp.float32) / 255.0
    if not jnp.issubdtype(rgb.dtype, jnp.floating):
        raise TypeError(f"RGB of dtype {given or rgb.dtype}; expected uint8 in [0, 255] or float "
                        "in [0, 1]")
    return rgb.astype(jnp.float32)


def rgb_to_hsv(rgb) -> jnp.ndarray:
    """float [..., 3] RGB in [0, 1] -> float32 [..., 3] HSV in [0, 1], as Python's `colorsys`.

    Hue is in turns ([0, 1), red = 0); grey pixels (max == min) get hue 0 and black pixels
    saturation 0, exactly as `colorsys.rgb_to_hsv`. Gradients are finite everywhere (the divisions
    are guarded with `where` on both branches) because DS Net's noise gradient never passes through
    this function, but the library may differentiate a full model input.
    """
    rgb = to_unit_rgb(rgb)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc = jnp.max(rgb, axis=-1)
    minc = jnp.min(rgb, axis=-1)
    delta = maxc - minc
    v = maxc
    s = jnp.where(maxc > 0, delta / jnp.where(maxc > 0, maxc, 1.0), 0.0)
    safe = jnp.where(delta > 0, delta, 1.0)
    rc = (maxc - r) / safe
    gc = (maxc - g) / safe
    bc = (maxc - b) / safe
    # colorsys checks r first, then g, else b.
    h = jnp.where(r == maxc, bc - gc, jnp.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
    h = jnp.where(delta > 0, jnp.mod(h / 6.0, 1.0), 0.0)
    return jnp.stack([h, s, v], axis=-1)


def model_input(rgb) -> jnp.ndarray:
    """RGB (uint8 [..., 3] or float in [0, 1]) -> float32 [..., 6] = (R, G, B, H, S, V), all in [0, 1]."""
    rgb = to_unit_rgb(rgb)
    return jnp.concatenate([rgb, rgb_to_hsv(rgb)], axis=-1)


def true_noise(rgb, live_reference) -> jnp.ndarray:
    """The simulator's spoof noise in the nets' input space, N* = model_input(I) -
    model_input(Î*): [..., 6], exactly 0 at every pixel where the image equals its live reference
    (everywhere on a live record). model_input acts pixel by pixel, so that is what the
    difference means; it is said explicitly because XLA may compile the two colour conversions
    into different fusions that round differently (measured: a 1e-7 residue on live records)."""
    same = jnp.all(jnp.asarray(rgb) == jnp.asarray(live_reference), axis=-1, keepdims=True)
    return jnp.where(same, 0.0, model_input(rgb) - model_input(live_reference))


def smooth_colour_jitter(rgb, rng, strength: float) -> jnp.ndarray:
    """A random, spatially smooth colour change per image: rgb [B, H, W, 3] (uint8 or [0, 1])
    -> float32 [B, H, W, 3] in [0, 1].

    Per image, per channel: a gain and an offset that vary smoothly over the image (a random
    2 x 2 field of values, bilinearly interpolated), with standard deviation `strength` for the
    log-gain and strength / 4 for the offset. It changes colour and low-frequency shading, never
    texture or geometry: an augmentation that teaches DQ Net to read depth from what depth is
    made of (`train.dq_colour_jitter`, see README "Reading of the paper").
    """
    rgb = to_unit_rgb(rgb)
    b, h, w, _ = rgb.shape
    k_gain, k_off = jax.random.split(rng)
    corners_gain = strength * jax.random.normal(k_gain, (b, 2, 2, 3))
    corners_off = 0.25 * strength * jax.random.normal(k_off, (b, 2, 2, 3))
    ty = jnp.linspace(0.0, 1.0, h)[None, :, None, None]
    tx = jnp.linspace(0.0, 1.0, w)[None, None, :, None]

    def field(c):   # [B, 2, 2, 3] corner values -> [B, H, W, 3] bilinear
        top = c[:, 0:1, 0:1] * (1 - tx) + c[:, 0:1, 1:2] * tx
        bottom = c[:, 1:2, 0:1] * (1 - tx) + c[:, 1:2, 1:2] * tx
        return top * (1 - ty) + bottom * ty

    return jnp.clip(rgb * jnp.exp(field(corners_gain)) + field(corners_off), 0.0, 1.0)
