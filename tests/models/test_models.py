"""Table 1: parameter counts and output shapes of the three nets, plus the shared layers."""
import colorsys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from despoof_jax.data.color import model_input, rgb_to_hsv
from despoof_jax.models import DQNet, DSNet, VQNet
from despoof_jax.models.layers import resize_bilinear
from despoof_jax.training.state import count_params

# Table 1 of the paper, restated here (not imported) so that the test checks the modules against
# the table: output channels of each 3x3 conv in order, with the input channels they read.
IN = 6
DS_CONVS = ([(IN, 24), (24, 20), (20, 25), (25, 20),           # conv1-0..1-3
             (20, 20), (20, 25), (25, 20),                     # conv1-4..1-6
             (20, 20), (20, 25), (25, 20),                     # conv1-7..1-9
             (60, 28), (28, 16)],                              # conv1-10, 1-11 (short-cut: 60)
            [(16, 1)],                                         # conv1-12 (output, no BN)
            [(60, 28), (28, 24), (24, 20), (20, 20), (20, 20), (20, 16), (16, 16)],  # conv2-1..7
            [(16, 6)])                                         # conv2-8 (output)
DQ_CONVS = ([(IN, 64), (64, 128), (128, 196), (196, 128),
             (128, 128), (128, 196), (196, 128),
             (128, 128), (128, 196), (196, 128),
             (384, 128), (128, 64)],
            [(64, 1)])
VQ_CONVS = [(IN, 24), (24, 20), (20, 20), (20, 16), (16, 12), (12, 6)]


def conv_params(cin, cout, bn=True):
    return 9 * cin * cout + cout + (2 * cout if bn else 0)


def expected_ds():
    body, out1, dec, out2 = DS_CONVS
    return (sum(conv_params(a, b) for a, b in body + dec)
            + sum(conv_params(a, b, bn=False) for a, b in out1 + out2))


def expected_dq():
    body, out = DQ_CONVS
    return sum(conv_params(a, b) for a, b in body) + sum(conv_params(a, b, False) for a, b in out)


def expected_vq(size):
    flat = (size // 8) ** 2 * 6
    return sum(conv_params(a, b) for a, b in VQ_CONVS) + flat * 100 + 100 + 100 * 2 + 2


def _shapes(model, size):
    x = jnp.zeros((2, size, size, 6))
    variables = jax.eval_shape(lambda: model.init({"params": jax.random.key(0)}, x, train=False))
    out = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    return variables, out


def test_table1_parameter_counts_and_shapes_at_256():
    v, out = _shapes(DSNet(), 256)
    assert count_params(v["params"]) == expected_ds() == 99_076
    assert out["map"].shape == (2, 32, 32, 1)
    assert out["noise"].shape == out["live"].shape == (2, 256, 256, 6)
    v, out = _shapes(DQNet(), 256)
    assert count_params(v["params"]) == expected_dq()
    assert out.shape == (2, 32, 32, 1)
    v, out = _shapes(VQNet(), 256)
    assert count_params(v["params"]) == expected_vq(256)
    assert out.shape == (2, 2)


def _half(c):
    return max(1, round(c * 0.5))


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_follow_resolution_and_width(size):
    v, out = _shapes(DSNet(width=0.5), size)
    assert out["map"].shape == (2, size // 8, size // 8, 1)
    assert out["noise"].shape == (2, size, size, 6)
    # Every hidden layer of Table 1 at half its channels; the input (6), the outputs (the 0\1
    # map's 1, the noise's 6) and the short-cut's three concatenated 20s follow from them.
    body, out1, dec, out2 = DS_CONVS
    half = [(IN if a == IN else 3 * _half(20) if a == 60 else _half(a), _half(b)) for a, b in body]
    half_dec = [(3 * _half(20) if a == 60 else _half(a), _half(b)) for a, b in dec]
    assert count_params(v["params"]) == (
        sum(conv_params(a, b) for a, b in half + half_dec)
        + sum(conv_params(_half(a), b, bn=False) for a, b in out1 + out2))
    v, out = _shapes(VQNet(width=0.5), size)
    assert out.shape == (2, 2)
    # conv4-6 keeps its 6 channels (the flattened feature the dense layer reads)
    vq = [(IN if a == IN else _half(a), b if b == 6 else _half(b)) for a, b in VQ_CONVS]
    assert count_params(v["params"]) == (sum(conv_params(a, b) for a, b in vq)
                                         + (size // 8) ** 2 * 6 * 100 + 100 + 100 * 2 + 2)


def test_live_is_input_minus_noise():
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 6))
    model = DSNet(width=0.5)
    v = model.init({"params": jax.random.key(1)}, x, train=False)
    out = model.apply(v, x, train=False)
    np.testing.assert_array_equal(out["live"], x - out["noise"])


def test_input_skip_feeds_the_full_resolution_input_to_the_decoder():
    """model.ds_input_skip (not in the paper): conv2-1 reads 6 more channels, the input itself,
    so the noise depends on pixel-level detail that pooling removes; shapes are unchanged."""
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 6))
    plain, skip = DSNet(width=0.5), DSNet(width=0.5, input_skip=True)
    vp = plain.init({"params": jax.random.key(1)}, x, train=False)
    vs = skip.init({"params": jax.random.key(1)}, x, train=False)
    kp = vp["params"]["decoder"]["conv2-1"]["conv"]["kernel"]
    ks = vs["params"]["decoder"]["conv2-1"]["conv"]["kernel"]
    assert ks.shape[2] == kp.shape[2] + 6
    out = skip.apply(vs, x, train=False)
    assert out["noise"].shape == (2, 32, 32, 6)
    np.testing.assert_array_equal(out["live"], x - out["noise"])
    # with the plain net's weights and zeros on the skip's channels, it is the plain net
    params = jax.tree.map(lambda a: a, vp["params"])
    params["decoder"]["conv2-1"]["conv"]["kernel"] = jnp.concatenate(
        [kp, jnp.zeros(kp.shape[:2] + (6,) + kp.shape[3:], kp.dtype)], axis=2)
    np.testing.assert_allclose(skip.apply(dict(vp, params=params), x, train=False)["noise"],
                               plain.apply(vp, x, train=False)["noise"], rtol=1e-5, atol=1e-6)


def test_dsnet_rejects_bad_input():
    with pytest.raises(ValueError, match="multiples of 8"):
        DSNet().init({"params": jax.random.key(0)}, jnp.zeros((1, 30, 30, 6)), train=False)
    with pytest.raises(ValueError, match="6"):
        DSNet().init({"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3)), train=False)


@pytest.mark.parametrize("hw_in,hw_out", [((4, 4), (32, 32)), ((16, 16), (4, 4)), ((8, 4), (16, 12))])
def test_resize_matches_jax_image_resize(hw_in, hw_out):
    x = jax.random.normal(jax.random.key(0), (2,) + hw_in + (5,))
    got = resize_bilinear(x, *hw_out)
    want = jax.image.resize(x, (2,) + hw_out + (5,), "linear", antialias=False)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_hsv_matches_colorsys():
    r = np.random.RandomState(0)
    rgb = r.rand(500, 3).astype(np.float32)
    rgb[:20] = 0.5                       # grey: hue and saturation 0
    rgb[20:40] = 0.0                     # black
    rgb[40:60, 1] = rgb[40:60, 0]        # ties between channels
    want = np.array([colorsys.rgb_to_hsv(*p) for p in rgb])
    np.testing.assert_allclose(rgb_to_hsv(rgb), want, atol=1e-6)
    u8 = (rgb * 255).astype(np.uint8)
    six = np.asarray(model_input(u8))
    assert six.shape == (500, 6) and six.min() >= 0 and six.max() <= 1
    np.testing.assert_allclose(six[:, :3], u8 / 255.0, atol=1e-7)
