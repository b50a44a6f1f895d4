"""The paper's losses (Sec. 3.3-3.4), pure `jnp` functions of arrays.

Layouts: images and noise are NHWC, `noise: [B, H, W, 6]`; maps are `[B, H/8, W/8, 1]`;
`is_spoof: [B]` float in {0, 1}. Every L1 "norm" of the paper is taken as a *mean* absolute value
(per pixel, per channel, over the batch) so that the loss weights of Eq. 7 do not depend on the
image size; the choice is recorded in the README's "Reading of the paper".

Batch reductions go through `batch_mean`, which takes an optional `axis_name`: inside a pmapped or
shard_mapped step each device holds a slice of the batch, and a mean over a *subset* of the batch
(live samples only, say) must divide by the global count, not the local one, for the gradient
`pmean` to equal the single-device gradient of the whole batch.
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from despoof_jax.models.vq_net import REAL


def batch_mean(values: jnp.ndarray, weights: Optional[jnp.ndarray] = None,
               axis_name: Optional[str] = None) -> jnp.ndarray:
    """Weighted mean over the (global) batch of per-sample `values: [B]`; `weights: [B]` >= 0.

    With `axis_name`, returns this device's share, scaled so that `pmean` over the axis of the
    returned value (and of its gradient) is exactly the global weighted mean. An empty selection
    (all weights 0) gives 0, not NaN: a batch without live samples simply has no magnitude loss.
    """
    if weights is None:
        weights = jnp.ones_like(values)
    num = jnp.sum(values * weights)
    den = jax.lax.stop_gradient(jnp.sum(weights))
    if axis_name is not None:
        den = jax.lax.psum(den, axis_name)
        num = num * jax.lax.psum(1, axis_name)
    return num / jnp.maximum(den, 1.0)


def _per_sample_l1(x: jnp.ndarray) -> jnp.ndarray:
    return jnp.mean(jnp.abs(x), axis=tuple(range(1, x.ndim)))


def zero_one_map_loss(pred_map, is_spoof, axis_name=None):
    """Eq. 6, J_z = ||CNN_01map(F) - M||_1 with M all ones for spoof, all zeros for live.

    pred_map: [B, h, w, 1]; is_spoof: [B].
    """
    target = is_spoof.reshape((-1,) + (1,) * (pred_map.ndim - 1))
    return batch_mean(_per_sample_l1(pred_map - target), axis_name=axis_name)


def magnitude_loss(noise, is_spoof, axis_name=None):
    """Eq. 5, J_m = ||N||_1 on live samples only (a live face carries no spoof noise)."""
    return batch_mean(_per_sample_l1(noise), 1.0 - is_spoof, axis_name)


def noise_truth_loss(noise, truth, axis_name=None):
    """J_t = ||N - N*||_1 on the RGB half (not in the paper; `config.loss.noise_truth`).

    noise: DS Net's [B, H, W, 6] noise; truth: N* in the same input space
    (`despoof_jax.data.color.true_noise`, 0 for live faces). Every sample counts: on live faces
    J_t is the RGB half of the magnitude loss J_m, on spoof faces it is the supervision the paper
    does not have. The HSV half is left out: hue wraps around, so N* jumps by up to 1 where a
    colour crosses red.
    """
    return batch_mean(_per_sample_l1(noise[..., :3] - truth[..., :3]), axis_name=axis_name)


def repetitive_kernel_size(image_size: int, k_at_256: int = 64) -> int:
    """k of the repetitive loss, scaled with the resolution (the paper's k = 64 at 256 px)."""
    return max(2, int(round(k_at_256 * image_size / 256)))


def central_mask(h: int, w: int, k: int) -> np.ndarray:
    """[h, w] float mask of the paper's H(., k): 0 on the central k x k block of an
    fftshift-ed spectrum, 1 elsewhere.

    After fftshift the DC term sits at (h // 2, w // 2); the block spans rows
    h//2 - k//2 .. h//2 - k//2 + k - 1 (same for columns): centred on DC for odd k, one extra
    negative-frequency row/column for even k (the paper only says "a k x k region in the center").
    On the real-valued noise N the extra row/column changes nothing: |F(-f)| = |F(f)|, and a
    frequency the block zeroes at radius k/2 has its conjugate kept, so the peak is the maximum
    over every frequency of Chebyshev radius >= k/2 around DC, as a DC-centred mask gives
    (tests/training/test_losses.py).
    """
    if not 0 <= k <= min(h, w):
        raise ValueError(f"k must be in [0, min(H, W)] = [0, {min(h, w)}], got {k}.")
    mask = np.ones((h, w), dtype=np.float64)
    r0, c0 = h // 2 - k // 2, w // 2 - k // 2
    mask[r0:r0 + k, c0:c0 + k] = 0.0
    return mask


def high_frequency_peak(noise: jnp.ndarray, k: int) -> jnp.ndarray:
    """max(H(F(N), k)) of the repetitive loss, per sample: noise [B, H, W, C] -> [B].

    Per channel: the 2-D FFT (`jnp.fft.fft2`, orthonormal scaling), shifted, its central k x k
    low-frequency square zeroed, the maximum magnitude; then the mean over channels.
    Orthonormal scaling (divide by sqrt(H W)) is our reading of the paper's unnormalised F: with
    the raw FFT a grating of amplitude a peaks at a*H*W/2, which at lambda_2 = 0.005 would
    outweigh every other term of Eq. 7 by orders of magnitude; with a mean-normalised FFT it would
    be negligible. The orthonormal peak (a*sqrt(HW)/2) puts lambda_2 J_r on the scale of lambda_3
    J_DQ, where the paper's weights say it belongs (at 256 px: the peak grows as sqrt(HW), so at
    128 and 64 px lambda_2 J_r weighs 2x and 4x less; README, "Repetitive loss scaling"). The
    magnitude is sqrt(|F|^2 + eps) so that the
    gradient is finite (zero) at zero noise instead of NaN.
    """
    b, h, w, c = noise.shape
    if k >= min(h, w):
        raise ValueError(f"repetitive-loss mask k={k} leaves no high frequencies in a {h}x{w} noise")
    spec = jnp.fft.fftshift(jnp.fft.fft2(noise.astype(jnp.float32), axes=(1, 2), norm="ortho"),
                            axes=(1, 2))
    mag = jnp.sqrt(jnp.real(spec) ** 2 + jnp.imag(spec) ** 2 + 1e-12)
    mag = mag * jnp.asarray(central_mask(h, w, k), jnp.float32)[None, :, :, None]
    return jnp.mean(jnp.max(mag, axis=(1, 2)), axis=-1)


def noise_peak_bound(height: int, width: int) -> float:
    """The largest `high_frequency_peak` a noise inside the image range can have: sqrt(H W).

    A live reconstruction I - N and the image I both lie in [0, 1], so N lies in [-1, 1], and an
    orthonormal Fourier coefficient is at most sum|N| / sqrt(HW) <= sqrt(HW) (a +-1 checkerboard
    reaches it at Nyquist). The paper's repetitive loss has no such bound on its spoof side
    (-peak is minimised without limit), so a J_r below -sqrt(HW) in training says DS Net has
    left the image range to buy loss there (`noise_runaway`; README, "Reading of the paper").
    """
    return float(np.sqrt(height * width))


def noise_runaway(rows, bound: float) -> Optional[dict]:
    """The first metrics row that says DS Net's noise left the image range, else None: its
    `noise_peak` (the largest per-sample peak of the global batch, `peak_max`) above bound
    (`noise_peak_bound`), or its J_r below -bound.

    Either is a sufficient sign, never a false alarm, of a noise outside [-1, 1]: no sample's
    peak exceeds the bound inside the range, and J_r, a batch mean of +peak (live) and -peak
    (spoof), is below -bound only when the spoof samples' mean peak exceeds it. `noise_peak` sees
    one sample leave the range; J_r only a batch gone on average, so logs written before
    `noise_peak` was logged (2026-12-06) are checked less closely. Rows with neither (stage 1)
    never match."""
    return next((r for r in rows if r.get("noise_peak", -np.inf) > bound
                 or r.get("J_r", np.inf) < -bound), None)


def runaway_reading(row: dict) -> str:
    """What a `noise_runaway` row read, for a message: "noise_peak = 160.3, J_r = -3.1"."""
    return ", ".join(f"{k} = {row[k]:.4g}" for k in ("noise_peak", "J_r") if k in row)


def peak_max(peak: jnp.ndarray, axis_name=None) -> jnp.ndarray:
    """The largest `high_frequency_peak` of the global batch, peak: [B] -> scalar, without a
    gradient: the stage-2 log's `noise_peak`, which `noise_runaway` reads. With `axis_name`,
    the maximum over every device's samples (the same value on each device)."""
    m = jnp.max(jax.lax.stop_gradient(peak))
    return m if axis_name is None else jax.lax.pmax(m, axis_name)


def repetitive_loss(noise, is_spoof, k: int, axis_name=None, peak=None):
    """Repetitive loss J_r (after Eq. 6): -peak for spoof samples, +|peak| for live ones.
    `peak`: `high_frequency_peak(noise, k)` when the caller has it already."""
    peak = high_frequency_peak(noise, k) if peak is None else peak
    sign = 1.0 - 2.0 * is_spoof
    return batch_mean(sign * peak, axis_name=axis_name)


def depth_loss(pred_depth, target_depth, axis_name=None):
    """Eq. 2, J_DQ = ||CNN_DQ(I - N) - D||_1, both [B, h, w, 1] in depth units [0, 1].

    Also the stage-1 pretraining loss of DQ Net, with `dq_pretraining_target` as the target.
    """
    return batch_mean(_per_sample_l1(pred_depth - target_depth), axis_name=axis_name)


def dq_pretraining_target(face_depth, is_spoof):
    """The pseudo-depth DQ Net learns in stage 1 (Sec. 3.3, after [18]): the face depth for live
    samples, a zero map (a flat surface) for spoof samples. face_depth: [B, h, w, 1]."""
    return face_depth * (1.0 - is_spoof).reshape((-1, 1, 1, 1))


def _cross_entropy(logits, label: int):
    labels = jnp.full(logits.shape[:1], label, jnp.int32)
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def vq_discriminator_loss(real_logits, real_weight, fake_logits, fake_weight, axis_name=None):
    """Eq. 3, J_VQ_train = -E_R log CNN_VQ(I) - E_S log(1 - CNN_VQ(CNN_DS(I))).

    real_logits: [B, 2] of real live images (R), fake_logits: [B, 2] of DS reconstructions (S);
    the weights select which samples of the batch belong to R and S. A two-logit softmax, so
    log(1 - p_real) is the log-probability of the "synthesised" class.
    """
    real = batch_mean(_cross_entropy(real_logits, REAL), real_weight, axis_name)
    fake = batch_mean(_cross_entropy(fake_logits, 1 - REAL), fake_weight, axis_name)
    return real + fake


def vq_generator_loss(fake_logits, fake_weight, axis_name=None):
    """Eq. 4, J_VQ_test = -E_S log CNN_VQ(CNN_DS(I)): DS Net tries to make VQ Net say "real"."""
    return batch_mean(_cross_entropy(fake_logits, REAL), fake_weight, axis_name)


def total_ds_loss(parts: dict, lambdas) -> jnp.ndarray:
    """Eq. 7, J_T = J_z + l1 J_m + l2 J_r + l3 J_DQ + l4 J_VQ_test.

    parts: dict with keys z, m, r, dq, vq; lambdas: (l1, l2, l3, l4) = (3, 0.005, 0.1, 0.016)
    in the paper, or (l0, l1, l2, l3, l4) with a weight l0 of J_z (the paper has none: l0 = 1),
    or (l0, l1, l2, l3, l4, lt) with the weight lt of `noise_truth_loss` (part "t"; not in the
    paper, 0 = off). A weight of 0 removes a term (the ablations of Sec. 4.2).
    """
    if len(lambdas) not in (4, 5, 6):
        raise ValueError(f"lambdas must have 4, 5 or 6 weights, got {len(lambdas)}")
    l0, l1, l2, l3, l4, lt = (*((1.0,) if len(lambdas) == 4 else ()), *lambdas,
                              *((0.0,) if len(lambdas) < 6 else ()))
    total = (l0 * parts["z"] + l1 * parts["m"] + l2 * parts["r"] + l3 * parts["dq"]
             + l4 * parts["vq"])
    if lt:
        if "t" not in parts:
            raise ValueError("a noise_truth weight needs the true noise: batches with "
                             "`live_reference` (the synthetic world)")
        total = total + lt * parts["t"]
    return total
