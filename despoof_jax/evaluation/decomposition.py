"""How close DS Net's estimated spoof noise N comes to the true one N* (synthetic data, issue #13).

Pure numpy. The synthetic world stores, next to every `image` I, its `live_reference` Î*: the same
frame through an ideal medium (`despoof_jax.data.synthetic.make_example`), so N* = I - Î* is the
true spoof noise of Eq. 1 (zero for live faces). Arrays are RGB float [N, H, W, 3] in the image's
[0, 1] units: `image` I, `noise` N (DS Net's `noise[..., :3]`: the RGB channels, the part Eq. 1
subtracts from the RGB image; the HSV half of the 6-channel noise has no ground truth),
`reference` Î*; the reconstruction is Î = I - N.

Per image (`per_image`):
  psnr_gain_db       PSNR(Î, Î*) - PSNR(I, Î*) in dB, every PSNR capped at PSNR_MAX_DB: > 0 when
                     subtracting N brings the image closer to the live reference, 0 for N = 0,
                     PSNR_MAX_DB - PSNR(I, Î*) (all of I's distance from Î*) for N = N*; <= 0 on
                     live faces (I = Î*), where any N only does harm.
  correlation        Pearson correlation of N and N* over pixels and channels; 0 when N is
                     constant (N = 0 found nothing), NaN when N* is (live faces: nothing to find).
  hf_fraction        share of N's energy at spatial frequencies >= HIGH_FREQ_CUTOFF x Nyquist
  hf_fraction_true   ... and of N*'s; NaN for an all-zero noise.
  peak_match         share of N*'s dominant spectral peaks outside the low band that coincide with
                     one of N's within PEAK_TOLERANCE_BINS (`peak_match`); NaN when N* has none.
Aggregation (`summarize`, `Accumulator`): per species and over all attacks, the mean over images
and a bootstrap-over-identities 95% interval (`bootstrap_interval`); NaNs are left out.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# Î* is stored in 8 bits, so a reconstruction within uniform quantisation error of it (rms
# 1 / (255 sqrt 12)) is as good as exact: PSNR is capped at that level, 58.92 dB. The cap keeps
# PSNR(I, Î*) of live faces (I = Î*) and a perfect Î finite.
PSNR_MAX_DB = float(10 * np.log10(12 * 255.0 ** 2))
# The high band starts at 1/4 of Nyquist (periods under 8 px) on both axes: the band whose peak the
# repetitive loss rewards (the paper's k = 64 at 256 px zeroes the central 64 x 64 of the spectrum,
# |f| < 32/128 of Nyquist; `losses.central_mask`). Colour distortion and glare sit below it,
# halftone screens, display lattices and their moire mostly above.
HIGH_FREQ_CUTOFF = 0.25
PEAK_TOP_K = 5            # dominant peaks compared per image (conjugate pairs count once)
PEAK_TOLERANCE_BINS = 1   # a peak of N matches one of N* within this many FFT bins on each axis
PEAK_MIN_RELATIVE = 0.1   # a peak is a local maximum >= this share of the image's highest one
PEAK_PROMINENCE = 2.0     # ... and at least this many times the mean of its 8 neighbours
BOOTSTRAP_DRAWS = 1000
METRICS = ("psnr_gain_db", "correlation", "hf_fraction", "hf_fraction_true", "peak_match")


def _check(name: str, a, like: np.ndarray | None = None) -> np.ndarray:
    a = np.asarray(a, np.float64)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"{name} must be RGB [N, H, W, 3] in [0, 1] units (pass DS Net's "
                         f"noise[..., :3]), got shape {a.shape}.")
    if like is not None and a.shape != like.shape:
        raise ValueError(f"{name} has shape {a.shape}; expected {like.shape} like the image.")
    return a


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PSNR in dB of [N, H, W, C] images in [0, 1] (peak 1) -> [N], capped at PSNR_MAX_DB."""
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return np.minimum(-10 * np.log10(mse), PSNR_MAX_DB)


def psnr_gain(image, noise, reference) -> np.ndarray:
    """PSNR(I - N, Î*) - PSNR(I, Î*) in dB per image -> [N] (both capped, see module doc)."""
    image = _check("image", image)
    noise, reference = _check("noise", noise, image), _check("reference", reference, image)
    return psnr(image - noise, reference) - psnr(image, reference)


def correlation(noise, true_noise) -> np.ndarray:
    """Pearson correlation of N and N* per image over pixels and channels -> [N]: 0 where N is
    constant, NaN where N* is (checked first)."""
    a = _check("noise", noise)
    b = _check("true_noise", true_noise, a)
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    na, nb = np.sqrt((a * a).sum(1)), np.sqrt((b * b).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(1) / (na * nb)
    r = np.where(na > 0, r, 0.0)
    return np.where(nb > 0, r, np.nan)


def _band(h: int, w: int, cutoff: float) -> np.ndarray:
    """[H, W] bool, unshifted FFT layout: True where max(|fy|, |fx|) >= cutoff x Nyquist."""
    fy = np.abs(np.fft.fftfreq(h))[:, None] / 0.5
    fx = np.abs(np.fft.fftfreq(w))[None, :] / 0.5
    return np.maximum(fy, fx) >= cutoff


def high_frequency_fraction(noise, cutoff: float = HIGH_FREQ_CUTOFF) -> np.ndarray:
    """Share of the energy sum |FFT|^2 (channels summed, DC included) at max(|fy|, |fx|) >=
    cutoff x Nyquist, per image -> [N] in [0, 1]; NaN for an all-zero noise."""
    x = _check("noise", noise)
    power = (np.abs(np.fft.fft2(x, axes=(1, 2))) ** 2).sum(-1)
    high = power[:, _band(x.shape[1], x.shape[2], cutoff)].sum(1)
    total = power.sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, high / total, np.nan)


def spectral_peaks(noise, k: int = PEAK_TOP_K, cutoff: float = HIGH_FREQ_CUTOFF) -> list:
    """The k dominant peaks of each image's high band -> list of int [k_i, 2] (ky, kx) FFT bins
    (unshifted, k_i <= k; empty for a zero noise).

    The magnitude is |FFT| averaged over channels; a peak is a local maximum of its 3 x 3
    neighbourhood (periodic) of the *whole* spectrum, standing PEAK_PROMINENCE times above the
    mean of its 8 neighbours, in the band max(|fy|, |fx|) >= cutoff x Nyquist, at least
    PEAK_MIN_RELATIVE of the band's highest; a real image's spectrum is conjugate-symmetric, so
    of each pair (ky, kx), (-ky, -kx) only the first one picked counts. A band holding no more
    than rounding error (< 1e-9 of the spectrum's highest magnitude) has no peaks. (Until
    2026-12-03 the band was cut out before the local-maximum test, so any spectrum falling off
    with frequency had "peaks" along the band's inner edge, and two unrelated smooth noises
    matched there: README, "Decomposition".)"""
    x = _check("noise", noise)
    _, h, w, _ = x.shape
    full = np.abs(np.fft.fft2(x, axes=(1, 2))).mean(-1)
    floor = 1e-9 * full.max((1, 2))
    local = np.ones(full.shape, bool)
    around = np.zeros(full.shape)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                shifted = np.roll(full, (dy, dx), axis=(1, 2))
                local &= full >= shifted
                around += shifted / 8.0
    local &= full >= PEAK_PROMINENCE * around
    mag = np.where(_band(h, w, cutoff)[None], full, 0.0)
    out = []
    for m, loc, eps in zip(mag, local, floor):
        top = m.max()
        if top <= eps or top <= 0:
            out.append(np.zeros((0, 2), np.int64))
            continue
        cand = np.flatnonzero(loc & (m >= PEAK_MIN_RELATIVE * top))
        cand = cand[np.argsort(-m.ravel()[cand], kind="stable")]
        picked, seen = [], set()
        for c in cand:
            ky, kx = divmod(int(c), w)
            if (ky, kx) in seen:
                continue
            picked.append((ky, kx))
            seen.update({(ky, kx), ((-ky) % h, (-kx) % w)})
            if len(picked) == k:
                break
        out.append(np.array(picked, np.int64).reshape(-1, 2))
    return out


def peak_match(noise, true_noise, k: int = PEAK_TOP_K, tolerance: int = PEAK_TOLERANCE_BINS,
               cutoff: float = HIGH_FREQ_CUTOFF) -> np.ndarray:
    """Share of N*'s dominant peaks (`spectral_peaks`) within `tolerance` bins (both axes,
    periodic, either member of a conjugate pair) of one of N's -> [N] in [0, 1]; NaN where N* has
    no peak. Chance level is not the uniform 2 k (2 tolerance + 1)^2 / (H W) (about 2 % at 64 px):
    peaks crowd the band's low-frequency edge, and a noise that knows nothing of N* matches 6-11 %
    of them on the synthetic world's attacks (README, "Chance level of 'FFT peaks matched'")."""
    est = spectral_peaks(noise, k, cutoff)
    true = spectral_peaks(true_noise, k, cutoff)
    h, w = np.asarray(noise).shape[1:3]
    out = np.full(len(true), np.nan)
    for i, (e, t) in enumerate(zip(est, true)):
        if not len(t):
            continue
        if not len(e):
            out[i] = 0.0
            continue
        e = np.concatenate([e, (-e) % np.array([h, w])])            # both members of each pair
        d = np.abs(t[:, None, :] - e[None, :, :])
        d = np.minimum(d, np.array([h, w]) - d).max(-1)            # periodic Chebyshev distance
        out[i] = float((d.min(1) <= tolerance).mean())
    return out


def per_image(image, noise, reference) -> dict[str, np.ndarray]:
    """All METRICS of a batch: image I, noise N, reference Î* RGB [N, H, W, 3] in [0, 1] ->
    {metric: float64 [N]} (see the module docstring)."""
    image = _check("image", image)
    noise, reference = _check("noise", noise, image), _check("reference", reference, image)
    true = image - reference
    return {"psnr_gain_db": psnr_gain(image, noise, reference),
            "correlation": correlation(noise, true),
            "hf_fraction": high_frequency_fraction(noise),
            "hf_fraction_true": high_frequency_fraction(true),
            "peak_match": peak_match(noise, true)}


def bootstrap_interval(values, groups, *, draws: int = BOOTSTRAP_DRAWS, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` [N] resampling `groups` [N] (the
    identities: images of one person are not independent) with replacement, `draws` times;
    each draw's statistic is the mean over all images of the drawn groups. NaN values are
    dropped first; (nan, nan) when none is left. One group gives a zero-width interval."""
    values = np.asarray(values, np.float64)
    groups = np.asarray(groups)
    if values.shape != groups.shape or values.ndim != 1:
        raise ValueError(f"values and groups must both be [N], got {values.shape} and "
                         f"{groups.shape}.")
    keep = ~np.isnan(values)
    values, groups = values[keep], groups[keep]
    if not len(values):
        return float("nan"), float("nan")
    _, inverse = np.unique(groups, return_inverse=True)
    sums = np.bincount(inverse, weights=values)
    counts = np.bincount(inverse).astype(np.float64)
    picks = np.random.default_rng(seed).integers(0, len(sums), (draws, len(sums)))
    means = sums[picks].sum(1) / counts[picks].sum(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _stat(values: np.ndarray, groups: np.ndarray, draws: int, seed: int):
    keep = ~np.isnan(values)
    if not keep.any():
        return None
    lo, hi = bootstrap_interval(values, groups, draws=draws, seed=seed)
    return {"mean": float(values[keep].mean()), "ci95": [lo, hi], "n": int(keep.sum())}


def summarize(metrics: Mapping[str, np.ndarray], species, identity,
              species_names: Sequence[str] | None = None, *, draws: int = BOOTSTRAP_DRAWS,
              seed: int = 0) -> dict:
    """Per-image metrics {name: [N]} -> the JSON-ready summary written under `decomposition` in
    eval/metrics.json: {"per_species": {name: {"n", "identities", metric: {"mean", "ci95",
    "n"} or None}}, "attacks": the same over every species but 0 (live), "settings": the
    constants}. A metric with no defined value in a group is None."""
    species = np.asarray(species)
    identity = np.asarray(identity)

    def group(mask):
        out = {"n": int(mask.sum()), "identities": len(np.unique(identity[mask]))}
        for name in METRICS:
            out[name] = _stat(np.asarray(metrics[name], np.float64)[mask], identity[mask], draws,
                              seed)
        return out

    per_species = {}
    for sid in np.unique(species).tolist():
        name = (str(species_names[sid]) if species_names is not None and 0 <= sid < len(species_names)
                else f"species{sid}")
        per_species[name] = group(species == sid)
    attacks = species != 0
    return {"per_species": per_species, "attacks": group(attacks) if attacks.any() else None,
            "settings": {"psnr_max_db": PSNR_MAX_DB, "high_freq_cutoff_of_nyquist": HIGH_FREQ_CUTOFF,
                         "peak_top_k": PEAK_TOP_K, "peak_tolerance_bins": PEAK_TOLERANCE_BINS,
                         "peak_min_relative": PEAK_MIN_RELATIVE, "bootstrap_draws": draws,
                         "bootstrap_seed": seed, "noise_channels": "RGB"}}


class Accumulator:
    """Collects `per_image` metrics batch by batch (only [N] scalars are kept, so a 256 px test
    set never sits in memory) and summarises them at the end."""

    def __init__(self):
        self._metrics = {name: [] for name in METRICS}
        self._species, self._identity = [], []

    def __len__(self) -> int:
        return sum(len(s) for s in self._species)

    def add(self, image, noise, reference, species, identity) -> None:
        """image, reference: uint8 or [0, 1] float RGB [B, H, W, 3]; noise: [B, H, W, >= 3] in
        [0, 1] units (DS Net's 6-channel noise is cut to its RGB part); species, identity: [B]."""
        def unit(a):
            a = np.asarray(a)
            return a.astype(np.float64) / 255.0 if a.dtype == np.uint8 else a.astype(np.float64)
        m = per_image(unit(image), np.asarray(noise, np.float64)[..., :3], unit(reference))
        for name in METRICS:
            self._metrics[name].append(m[name])
        self._species.append(np.asarray(species).reshape(-1))
        self._identity.append(np.asarray(identity).reshape(-1))

    def summary(self, species_names: Sequence[str] | None = None, **kwargs) -> dict | None:
        """`summarize` of everything added, or None when nothing was (no ground truth)."""
        if not len(self):
            return None
        metrics = {k: np.concatenate(v) for k, v in self._metrics.items()}
        return summarize(metrics, np.concatenate(self._species), np.concatenate(self._identity),
                         species_names, **kwargs)


MARKDOWN_COLUMNS = (("psnr_gain_db", "PSNR gain (dB)", "{:+.2f}"),
                    ("correlation", "corr(N, N*)", "{:+.3f}"),
                    ("hf_fraction", "HF share of N", "{:.2f}"),
                    ("hf_fraction_true", "HF share of N*", "{:.2f}"),
                    ("peak_match", "FFT peaks matched", "{:.2f}"))


def markdown(summary: Mapping) -> str:
    """The decomposition block of metrics.json as a Markdown table: one row per species and one
    for all attacks together, each cell "mean [95 % interval]" (bootstrap over identities)."""
    def cell(entry, fmt):
        if not entry or entry.get("mean") is None:
            return "-"
        lo, hi = entry["ci95"]
        return f"{fmt.format(entry['mean'])} [{fmt.format(lo)}, {fmt.format(hi)}]"

    rows = dict(summary.get("per_species", {}))
    if summary.get("attacks") is not None:   # None: the split has no attacks
        rows["all attacks"] = summary["attacks"]
    lines = ["| species | n | " + " | ".join(h for _, h, _ in MARKDOWN_COLUMNS) + " |",
             "|---|---|" + "---|" * len(MARKDOWN_COLUMNS)]
    for name, r in rows.items():
        lines.append(f"| {name} | {r.get('n', '')} | " + " | ".join(
            cell(r.get(k), fmt) for k, _, fmt in MARKDOWN_COLUMNS) + " |")
    return "\n".join(lines) + "\n"
