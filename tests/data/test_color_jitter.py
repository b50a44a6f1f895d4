"""The smooth colour jitter of DQ pretraining (train.dq_colour_jitter): it changes colour and
shading smoothly, never texture, and is random per image; and the true noise N* in the nets'
input space (data/color.py)."""
import jax
import numpy as np
import pytest

from despoof_jax.data import color


def test_jitter_is_a_smooth_per_image_gain_and_offset():
    r = np.random.default_rng(0)
    rgb = (0.25 + 0.5 * r.random((3, 32, 32, 3))).astype(np.float32)   # texture, no clipping
    out = np.asarray(color.smooth_colour_jitter(rgb, jax.random.key(1), 0.1))
    assert out.shape == rgb.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    # Per pixel, out = rgb * g + o with g, o smooth: a least-squares fit on every 8x8 block
    # explains the output up to the field's variation inside the block, and the fitted gains
    # vary little from block to block (a bilinear ramp), so no texture is added or removed.
    x = rgb.reshape(3, 4, 8, 4, 8, 3).transpose(0, 1, 3, 5, 2, 4).reshape(3, 4, 4, 3, 64)
    y = out.reshape(3, 4, 8, 4, 8, 3).transpose(0, 1, 3, 5, 2, 4).reshape(3, 4, 4, 3, 64)
    xm, ym = x.mean(-1, keepdims=True), y.mean(-1, keepdims=True)
    gain = ((x - xm) * (y - ym)).sum(-1) / ((x - xm) ** 2).sum(-1)
    resid = y - (ym + gain[..., None] * (x - xm))
    assert np.abs(resid).mean() < 0.1 * np.abs(x - xm).mean()   # the texture survives
    assert np.abs(np.diff(gain, axis=1)).max() < 0.2 and np.abs(np.diff(gain, axis=2)).max() < 0.2
    # different images (and channels) get different colour changes
    assert np.std(gain.mean(axis=(1, 2)), axis=0).mean() > 1e-3
    # strength 0 is the identity
    np.testing.assert_allclose(color.smooth_colour_jitter(rgb, jax.random.key(1), 0.0), rgb)


def test_true_noise_is_exactly_zero_where_the_image_is_its_live_reference():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    reference = image.copy()
    reference[1, 4:8] = rng.integers(0, 256, (4, 16, 3), dtype=np.uint8)   # a spoof's patch
    n = np.asarray(color.true_noise(image, reference))
    changed = np.any(image != reference, axis=-1)
    assert n.shape == (2, 16, 16, 6)
    assert np.all(n[~changed] == 0.0) and np.any(n[changed] != 0.0)
    np.testing.assert_allclose(
        n[changed], np.asarray(color.model_input(image) - color.model_input(reference))[changed],
        atol=1e-6)


def test_model_input_refuses_images_it_would_mis_scale():
    """Only uint8 is taken as 0..255: an int or uint16 image, or a float one in 0..255, would
    pass through unscaled (255 x too bright), so each is refused."""
    red = np.array([[[255, 0, 0]]])
    np.testing.assert_allclose(color.model_input(red.astype(np.uint8))[0, 0],
                               [1, 0, 0, 0, 1, 1])
    for bad in (red, red.astype(np.uint16), red.astype(np.int32)):
        with pytest.raises(TypeError, match=f"dtype {bad.dtype}; expected uint8"):
            color.model_input(bad)
    with pytest.raises(ValueError, match=r"float RGB with values in \[0, 255\]"):
        color.model_input(red.astype(np.float32))
    np.testing.assert_allclose(color.model_input(red.astype(np.float32) / 255)[0, 0],
                               [1, 0, 0, 0, 1, 1])
