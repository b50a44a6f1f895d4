"""The smooth colour jitter of DQ pretraining (train.dq_colour_jitter): it changes colour and
shading smoothly, never texture, and is random per image."""
import jax
import numpy as np

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
