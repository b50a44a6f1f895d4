"""The paper's losses: what each must reward and punish."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from despoof_jax.training import losses


def grating(size, period, amplitude, channels=6):
    yy, xx = np.mgrid[:size, :size]
    g = amplitude * np.sin(2 * np.pi * (xx + yy) / period)
    return np.repeat(g[None, :, :, None], channels, axis=-1).astype(np.float32)


def test_repetitive_loss_ranks_grating_above_white_noise_of_same_energy():
    size, k = 64, losses.repetitive_kernel_size(64)
    periodic = grating(size, period=3, amplitude=0.1)
    white = np.random.RandomState(0).randn(*periodic.shape).astype(np.float32)
    white *= np.sqrt((periodic ** 2).mean() / (white ** 2).mean())      # same energy
    p, w = losses.high_frequency_peak(jnp.asarray(np.concatenate([periodic, white])), k)
    assert p > 5 * w
    spoof = jnp.ones(1)
    # Maximised for spoof (lower loss for the grating), minimised for live.
    assert losses.repetitive_loss(periodic, spoof, k) < losses.repetitive_loss(white, spoof, k)
    assert losses.repetitive_loss(periodic, 1 - spoof, k) > losses.repetitive_loss(white, 1 - spoof, k)


def test_repetitive_loss_ignores_the_low_frequency_square():
    size, k = 64, 16
    smooth = grating(size, period=32, amplitude=1.0)    # 2 cycles: inside the k x k centre
    assert float(losses.high_frequency_peak(jnp.asarray(smooth), k)[0]) < 1e-3
    assert float(losses.high_frequency_peak(jnp.asarray(smooth), 2)[0]) > 1.0


def test_even_k_mask_is_symmetric_in_effect_on_real_noise():
    # For even k the zeroed block has one more negative-frequency row/column than positive. N is
    # real, so |F(-f)| = |F(f)|: a frequency the block zeroes on one side is kept on the other,
    # and the peak is the maximum over every frequency of Chebyshev radius >= k/2 around DC,
    # as a mask centred on DC gives. Checked against that symmetric mask in numpy.
    rng = np.random.RandomState(1)
    for size, k in ((16, 4), (32, 8), (20, 6)):
        noise = rng.randn(3, size, size, 2).astype(np.float32)
        # An exact-grid grating at +k/2 only: its conjugate -k/2 sits in the zeroed block.
        yy, xx = np.mgrid[:size, :size]
        noise[0] += 5 * np.cos(2 * np.pi * (k // 2) * yy / size)[..., None]
        got = np.asarray(losses.high_frequency_peak(jnp.asarray(noise), k))
        spec = np.abs(np.fft.fftshift(np.fft.fft2(noise.astype(np.float64), axes=(1, 2),
                                                  norm="ortho"), axes=(1, 2)))
        r = np.maximum(np.abs(yy - size // 2), np.abs(xx - size // 2))
        want = np.where((r >= k // 2)[None, :, :, None], spec, 0).max(axis=(1, 2)).mean(-1)
        np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got[0] > 2 * got[1]          # the grating at radius k/2 counts


def test_repetitive_gradient_is_finite_at_zero_noise():
    zero = jnp.zeros((2, 32, 32, 6))
    for label in (0.0, 1.0):
        g = jax.grad(losses.repetitive_loss)(zero, jnp.full(2, label), 8)
        assert np.all(np.isfinite(g))


def test_repetitive_kernel_scales_with_resolution():
    assert losses.repetitive_kernel_size(256) == 64
    assert losses.repetitive_kernel_size(128) == 32
    assert losses.repetitive_kernel_size(64) == 16
    with pytest.raises(ValueError, match="no high frequencies"):
        losses.high_frequency_peak(jnp.zeros((1, 8, 8, 1)), 8)


def test_the_noise_peak_bound_is_reached_by_a_checkerboard_and_not_exceeded_in_range():
    size, k = 32, losses.repetitive_kernel_size(32)
    bound = losses.noise_peak_bound(size, size)
    yy, xx = np.mgrid[:size, :size]
    checker = np.repeat(((-1.0) ** (xx + yy))[None, :, :, None], 6, axis=-1).astype(np.float32)
    rng = np.random.RandomState(0)
    in_range = rng.uniform(-1, 1, (8, size, size, 6)).astype(np.float32)
    noise = jnp.asarray(np.concatenate([checker, in_range]))
    peaks = np.asarray(losses.high_frequency_peak(noise, k))
    assert peaks[0] == pytest.approx(bound, rel=1e-5)       # the +-1 checkerboard at Nyquist
    assert np.all(peaks[1:] < bound)
    # Out of range, the spoof side of J_r goes past -bound, and the detector names that row.
    j_r = float(losses.repetitive_loss(3 * checker, jnp.ones(1), k))
    assert j_r == pytest.approx(-3 * bound, rel=1e-5)
    rows = [{"step": 1, "J_r": -0.4}, {"step": 2, "J_r": -bound + 1e-3}, {"step": 3, "J_r": j_r},
            {"step": 4, "J_r": -1e5}]
    assert losses.noise_runaway(rows, bound) == rows[2]
    assert losses.noise_runaway(rows[:2] + [{"step": 5, "dq_pretrain": 0.1}], bound) is None
    # One spoof sample out of range among in-range live ones: the batch mean J_r stays above
    # -bound, the logged batch maximum of the peaks (`peak_max`, "noise_peak") does not.
    batch = jnp.asarray(np.concatenate([3 * checker, in_range[:7]]))
    spoof = jnp.asarray([1.0] + [0.0] * 7)
    one = {"step": 6, "J_r": float(losses.repetitive_loss(batch, spoof, k)),
           "noise_peak": float(losses.peak_max(losses.high_frequency_peak(batch, k)))}
    assert one["J_r"] > -bound and one["noise_peak"] == pytest.approx(3 * bound, rel=1e-5)
    assert losses.noise_runaway(rows[:2] + [one], bound) == one
    assert losses.noise_runaway([dict(one, noise_peak=bound - 1e-3)], bound) is None
    assert losses.runaway_reading(one).startswith("noise_peak = ")


def test_magnitude_loss_is_zero_for_zero_noise_and_counts_live_only():
    assert float(losses.magnitude_loss(jnp.zeros((4, 8, 8, 6)), jnp.array([0., 1, 0, 1]))) == 0.0
    noise = jnp.concatenate([jnp.zeros((1, 8, 8, 6)), jnp.ones((1, 8, 8, 6))])
    # Sample 1 carries noise 1 but is a spoof: no magnitude loss.
    assert float(losses.magnitude_loss(noise, jnp.array([0., 1.]))) == 0.0
    assert float(losses.magnitude_loss(noise, jnp.array([1., 0.]))) == pytest.approx(1.0)
    # A batch without live samples has no magnitude term (0, not NaN).
    assert float(losses.magnitude_loss(noise, jnp.ones(2))) == 0.0


def test_zero_one_map_loss_targets():
    ones, zeros = jnp.ones((2, 4, 4, 1)), jnp.zeros((2, 4, 4, 1))
    assert float(losses.zero_one_map_loss(ones, jnp.ones(2))) == 0.0
    assert float(losses.zero_one_map_loss(zeros, jnp.zeros(2))) == 0.0
    assert float(losses.zero_one_map_loss(ones, jnp.zeros(2))) == pytest.approx(1.0)


def test_dq_targets_and_gan_losses():
    depth = jnp.full((2, 4, 4, 1), 0.5)
    target = losses.dq_pretraining_target(depth, jnp.array([0., 1.]))
    np.testing.assert_array_equal(target[0], depth[0])
    np.testing.assert_array_equal(target[1], 0.0)
    real = jnp.array([[-5.0, 5.0]])     # confident "real" (index REAL = 1)
    fake = jnp.array([[5.0, -5.0]])     # confident "synthesised"
    one = jnp.ones(1)
    assert losses.vq_discriminator_loss(real, one, fake, one) < 0.01
    assert losses.vq_discriminator_loss(fake, one, real, one) > 10
    assert losses.vq_generator_loss(real, one) < 0.01 < losses.vq_generator_loss(fake, one)


def test_total_loss_weights():
    # Distinct term values, so that a weight on the wrong term shows (Sec. 4.1: lambda_1..4 =
    # 3, 0.005, 0.1, 0.016 on J_m, J_r, J_DQ, J_VQ in Eq. 7; J_z has no weight).
    distinct = dict(z=1.0, m=10.0, r=100.0, dq=1e3, vq=1e4)
    assert losses.total_ds_loss(distinct, (3, 0.005, 0.1, 0.016)) == \
        pytest.approx(1 + 30 + 0.5 + 100 + 160)
    assert losses.total_ds_loss(distinct, (2, 3, 0.005, 0.1, 0.016)) == \
        pytest.approx(2 + 30 + 0.5 + 100 + 160)
    parts = dict(z=1.0, m=1.0, r=1.0, dq=1.0, vq=1.0)
    assert losses.total_ds_loss(parts, (3, 0.005, 0.1, 0.016)) == pytest.approx(4.121)
    assert losses.total_ds_loss(parts, (0, 0, 0, 0)) == 1.0
    # The truth term (not in the paper) counts only with a weight, and only where it exists.
    assert losses.total_ds_loss(dict(parts, t=2.0), (1, 3, 0.005, 0.1, 0.016, 0.0)) == \
        pytest.approx(4.121)
    assert losses.total_ds_loss(dict(parts, t=2.0), (1, 3, 0.005, 0.1, 0.016, 3.0)) == \
        pytest.approx(10.121)
    with pytest.raises(ValueError, match="live_reference"):
        losses.total_ds_loss(parts, (1, 3, 0.005, 0.1, 0.016, 3.0))
    with pytest.raises(ValueError, match="4, 5 or 6"):
        losses.total_ds_loss(parts, (1, 3, 0.005))


def test_noise_truth_loss_on_hand_made_noise():
    r = np.random.RandomState(1)
    truth = jnp.asarray(r.randn(2, 8, 8, 6).astype(np.float32))
    # N = N*: zero, whatever the HSV half holds; the HSV half is never compared.
    other_hsv = truth.at[..., 3:].add(5.0)
    assert float(losses.noise_truth_loss(other_hsv, truth)) == 0.0
    # N = 0: the mean |N*| over the RGB half of every sample.
    assert float(losses.noise_truth_loss(jnp.zeros_like(truth), truth)) == pytest.approx(
        float(jnp.mean(jnp.abs(truth[..., :3]))), rel=1e-6)
    # Live faces (N* = 0): the RGB half of the magnitude loss on them.
    noise = jnp.asarray(r.randn(2, 8, 8, 6).astype(np.float32))
    live = jnp.zeros(2)
    assert float(losses.noise_truth_loss(noise, jnp.zeros_like(noise))) == pytest.approx(
        float(losses.magnitude_loss(noise[..., :3], live)), rel=1e-6)


def test_batch_mean_over_devices_equals_global_masked_mean():
    n = jax.local_device_count()
    assert n == 8, "tests/conftest.py forces 8 CPU devices"
    r = np.random.RandomState(0)
    values = r.rand(n, 3).astype(np.float32)
    weights = (r.rand(n, 3) > 0.6).astype(np.float32)
    weights[0] = 0    # one device without any selected sample

    def per_device(v, w):
        return jax.lax.pmean(losses.batch_mean(v, w, axis_name="i"), "i")

    got = jax.pmap(per_device, axis_name="i")(values, weights)[0]
    want = (values * weights).sum() / weights.sum()
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    # Each device's gradient, averaged over devices as the step's pmean does, is the gradient of
    # the global weighted mean: w / sum(w) for every sample of every device.
    grad = jax.pmap(jax.grad(functools.partial(losses.batch_mean, axis_name="i")),
                    axis_name="i")(values, weights)
    np.testing.assert_allclose(np.asarray(grad) / n, weights / weights.sum(), atol=1e-7)


def test_a_step_is_finite_only_if_its_losses_and_its_new_parameters_are():
    from despoof_jax.training import steps  # noqa: PLC0415
    losses_ok = {"a": jnp.float32(1.0), "b": jnp.ones(3)}
    params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
    assert steps.check_finite(losses_ok, params)["finite"] == 1.0
    # finite losses, but the update (non-finite gradients) left NaN parameters: not finite
    bad = {"w": jnp.ones((2, 2)).at[0, 1].set(jnp.nan), "b": jnp.zeros(2)}
    assert steps.check_finite(losses_ok, params, bad)["finite"] == 0.0
    assert steps.check_finite(dict(losses_ok, c=jnp.float32(jnp.inf)))["finite"] == 0.0
