"""Tests of the synthetic spoof world (despoof_jax.data.synthetic): the data contract, determinism,
and the two statistical properties the benchmark is built for:

* spoof noise N = spoof - registered live has high-frequency FFT peaks (paper Sec. 3.1, Fig. 2)
  far above the null noise of two live captures of the same scene;
* live vs spoof is *not* separable from global colour/brightness statistics alone;

and the ground truth of the decomposition: every record's `live_reference` (the same frame through
an ideal medium), so that N* = image - live_reference is the true spoof noise, split by the paper's
Sec. 3.1 steps by `spoof_noise_stages`.
"""

import numpy as np
import pytest

from despoof_jax.data.synthetic import (
    N_CAPTURE_DEVICES,
    SPECIES,
    STAGES,
    faces,
    generator,
    make_example,
    make_registered_pair,
    spoof,
    spoof_noise_stages,
)
from despoof_jax.data.synthetic._util import rng_for
from despoof_jax.evaluation import decomposition
from tests.util import example_digest, example_digest_in_fresh_process

SEED = 7


def test_constants():
    assert SPECIES == ("live", "print1", "print2", "replay1", "replay2")
    assert N_CAPTURE_DEVICES == 6


@pytest.mark.parametrize("species", range(len(SPECIES)))
@pytest.mark.parametrize("size", [64, 72])
def test_contract_shapes_and_face_depth(species, size):
    ex = make_example(seed=SEED, identity=3, species=species, device=species % 6, video=1, frame=2, size=size)
    assert set(ex) == {"image", "live_reference", "depth", "label", "species", "device", "identity",
                       "video", "frame"}
    assert ex["image"].shape == (size, size, 3) and ex["image"].dtype == np.uint8
    assert ex["live_reference"].shape == (size, size, 3) and ex["live_reference"].dtype == np.uint8
    # N* = image - live_reference is zero exactly for live faces, and only for them.
    assert np.array_equal(ex["live_reference"], ex["image"]) == (species == 0)
    assert ex["depth"].shape == (size, size) and ex["depth"].dtype == np.uint8
    assert (ex["label"], ex["species"], ex["device"], ex["identity"], ex["video"], ex["frame"]) == (
        int(species > 0), species, species % 6, 3, 1, 2)
    assert all(type(ex[k]) is int for k in ("label", "species", "device", "identity", "video", "frame"))
    assert ex["image"].std() > 10                                   # not blank
    d = ex["depth"].astype(np.float32)
    # Background (corners) is 0; the face covers a face-detector-crop share of the pixels.
    c = size // 10
    assert d[:c, :c].max() == 0 and d[:c, -c:].max() == 0
    coverage = (d > 0).mean()
    assert 0.35 < coverage < 0.75, coverage
    assert d.max() >= 250
    # Face-shaped: the nose tip (brightest point) sits near the middle, well above the cheeks.
    yy, xx = np.unravel_index(np.argmax(d), d.shape)
    assert abs(xx / size - 0.5) < 0.15 and 0.45 < yy / size < 0.75, (xx, yy)
    cheeks = [d[yy, int(xx + s * 0.22 * size)] for s in (-1, 1)]
    assert max(cheeks) < d[yy, xx] - 25, (cheeks, d[yy, xx])


def test_supports_other_sizes_and_rejects_bad_arguments():
    assert make_example(seed=1, identity=0, species=3, device=0, video=0, frame=0, size=32)["image"].shape == (32, 32, 3)
    for bad in (dict(size=60), dict(size=24), dict(species=5), dict(device=6), dict(difficulty=0.0)):
        kw = dict(seed=1, identity=0, species=1, device=0, video=0, frame=0, size=64) | bad
        with pytest.raises(ValueError):
            make_example(**kw)


def test_deterministic_across_calls_and_processes():
    args = dict(seed=SEED, identity=11, species=2, device=4, video=3, frame=1, size=64)
    first = example_digest(make_example(**args))
    # Other samples (and a cache-filling identity) in between must not change it.
    for sp in range(5):
        make_example(seed=SEED + 1, identity=12, species=sp, device=1, video=0, frame=0, size=64)
    assert example_digest(make_example(**args)) == first
    assert example_digest_in_fresh_process(args) == first
    pair = make_registered_pair(seed=SEED, identity=11, species=3, device=4, video=3, size=64)
    again = make_registered_pair(seed=SEED, identity=11, species=3, device=4, video=3, size=64)
    assert all(np.array_equal(a, b) for a, b in zip(pair, again))


def test_factors_change_what_they_should():
    base = dict(seed=SEED, identity=5, species=0, device=2, video=0, frame=0, size=64)
    ex = make_example(**base)
    for change in (dict(identity=6), dict(video=1), dict(frame=1), dict(device=3), dict(seed=SEED + 1)):
        assert not np.array_equal(make_example(**(base | change))["image"], ex["image"]), change
    # A frame is a small motion of the same session: much closer than another session.
    diff = lambda a, b: np.abs(a["image"].astype(np.float32) - b["image"].astype(np.float32)).mean()
    assert diff(make_example(**(base | dict(frame=1))), ex) < 0.5 * diff(make_example(**(base | dict(video=1))), ex)
    # Identity appearance is a function of (seed, identity) only.
    assert faces.identity(SEED, 5) is faces.identity(SEED, 5)
    t = faces._make_identity(rng_for(SEED, 0x1D, 5)).table
    np.testing.assert_array_equal(t, faces.identity(SEED, 5).table)


def test_spoof_shows_the_same_identity():
    """The spoof's face is the registered live face (high correlation), not another person's."""
    def grey(a):
        g = a.astype(np.float32).mean(-1)
        return (g - g.mean()) / (g.std() + 1e-6)
    for species in range(1, 5):
        spoof_a, live_a = make_registered_pair(seed=SEED, identity=1, species=species, device=0, video=0, size=64)
        _, live_b = make_registered_pair(seed=SEED, identity=2, species=species, device=0, video=0, size=64)
        same = (grey(spoof_a) * grey(live_a)).mean()
        other = (grey(spoof_a) * grey(live_b)).mean()
        assert same > 0.75 and same > other + 0.3, (species, same, other)


def _hf_peak(noise: np.ndarray, k: int) -> float:
    """Max FFT magnitude of noise [H, W, 3] outside the central k x k low band (the paper's H(F(N), k)
    of the repetitive loss), mean over channels."""
    f = np.abs(np.fft.fftshift(np.fft.fft2(noise, axes=(0, 1)), axes=(0, 1)))
    c = noise.shape[0] // 2
    f[c - k // 2: c + k // 2, c - k // 2: c + k // 2] = 0
    return float(f.max(axis=(0, 1)).mean())


def test_spoof_noise_has_high_frequency_peaks():
    """Fig. 2 case study: the high-band FFT peak of N = spoof - live is > 4x that of the null noise
    (a second live capture of the same scene minus the first), for every spoof species."""
    size, k, n = 128, 32, 5                                          # k = size / 4 (paper: 64 at 256)
    peaks = {}
    for species in range(5):
        vals = []
        for i in range(n):
            other, live = make_registered_pair(seed=SEED, identity=i, species=species, device=i % 6, video=0, size=size)
            vals.append(_hf_peak(other.astype(np.float32) - live.astype(np.float32), k))
        peaks[species] = np.mean(vals)
    for species in range(1, 5):
        assert peaks[species] > 4.0 * peaks[0], (SPECIES[species], peaks[species] / peaks[0])
    # The null noise itself is small: sensor noise and JPEG only.
    other, live = make_registered_pair(seed=SEED, identity=0, species=0, device=0, video=0, size=size)
    assert np.abs(other.astype(np.float32) - live.astype(np.float32)).mean() < 10


def test_difficulty_scales_artifacts():
    def noise(d):
        s, l = make_registered_pair(seed=SEED, identity=4, species=3, device=1, video=0, size=64, difficulty=d)
        return np.abs(s.astype(np.float32) - l.astype(np.float32)).mean()
    assert noise(0.5) > noise(1.0) > noise(3.0)


def _colour_features(img: np.ndarray) -> np.ndarray:
    im = img.astype(np.float32) / 255
    mx, mn = im.max(-1), im.min(-1)
    sat = (mx - mn) / np.maximum(mx, 1e-6)
    return np.concatenate([im.mean((0, 1)), im.std((0, 1)), [im.mean(), sat.mean()]])


def _hf_feature(img: np.ndarray) -> np.ndarray:
    g = img.astype(np.float32).mean(-1)
    lap = 4 * g - np.roll(g, 1, 0) - np.roll(g, -1, 0) - np.roll(g, 1, 1) - np.roll(g, -1, 1)
    return np.array([np.log(np.abs(np.fft.fft2(lap)).max())])


def test_global_colour_statistics_do_not_separate_live_from_spoof():
    """A linear classifier on global colour/brightness statistics stays above 15% cross-validated
    error (spoof colour distortion overlaps live lighting/camera variation), while a single
    high-frequency peak feature does clearly better (the spoof signal is in the texture)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    colour, hf, labels = [], [], []
    for i in range(160):   # (at 240 frames: colour error 0.19, high-frequency error 0.125)
        species = 0 if i % 2 == 0 else 1 + (i // 2) % 4                 # half live, spoofs balanced
        ex = make_example(seed=SEED, identity=i % 24, species=species, device=i % 6, video=i // 48,
                          frame=0, size=64)
        colour.append(_colour_features(ex["image"]))
        hf.append(_hf_feature(ex["image"]))
        labels.append(ex["label"])
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    err_colour = 1 - cross_val_score(clf, np.array(colour), np.array(labels), cv=5).mean()
    err_hf = 1 - cross_val_score(clf, np.array(hf), np.array(labels), cv=5).mean()
    assert err_colour > 0.15, err_colour
    assert err_hf < err_colour - 0.05, (err_hf, err_colour)


# ---- ground truth: the ideal-medium live reference and the true spoof noise N* ------------------

def _live_and_reference(monkeypatch, species: int, size: int, photo_is_scene: bool):
    """(live capture, ideal-medium reference, spoof capture) of one frame, the medium at rest in
    front of the camera (identity pose) showing the photo of the frame's head pose. With
    `photo_is_scene`, the ideal medium shows the scene itself, on the live capture's grid."""
    args = (SEED, 2, species, 3, 0, 0, size, 1.0)
    f = generator._frame(*args)
    if photo_is_scene:
        monkeypatch.setattr(generator, "SS_SPOOF", generator.SS_LIVE)
        monkeypatch.setattr(generator, "_ideal_radiance", lambda m, mx, my: faces.render_scene(
            f["ident"], f["scene"], f["head"], mx, my)[0])
    img, _, ref = generator._capture_spoof(
        f["ident"], species, f["scene"], f["head"], spoof.MediumPose(), f["session"],
        (f["noise_rng"],), f["profile"], f["settings"], size, 1.0)
    f = generator._frame(*args)          # fresh streams: the live capture's own noise draws
    live, _ = generator._capture_live(f["ident"], f["scene"], f["head"], f["profile"], f["settings"],
                                      f["noise_rng"], size)
    return live, ref, img


@pytest.mark.parametrize("species", [1, 3])
def test_ideal_medium_is_the_live_capture_pipeline(monkeypatch, species):
    """An ideal medium showing the scene itself, at rest, is a live capture bit for bit: the
    reference takes the same camera, session settings, sensor phase and sensor noise draws, and
    meters its own exposure and white balance as a live capture does."""
    live, ref, _ = _live_and_reference(monkeypatch, species, 64, photo_is_scene=True)
    np.testing.assert_array_equal(ref, live)


def test_ideal_medium_shows_the_photo_exposed_like_a_live_face(monkeypatch):
    """With the real attacker's photo on the ideal medium, the reference differs from the live
    capture only by the photo's own resampling: the same exposure and colour balance (channel
    means within 1.5 DN, contrast within 6 %) and a small fraction of the spoof's difference."""
    for species in range(1, 5):
        live, ref, img = _live_and_reference(monkeypatch, species, 64, photo_is_scene=False)
        live, ref, img = (a.astype(np.float64) for a in (live, ref, img))
        assert np.abs(ref.mean((0, 1)) - live.mean((0, 1))).max() < 1.5, species
        ratio = ref.std((0, 1)) / live.std((0, 1))
        assert (np.abs(ratio - 1) < 0.06).all(), (species, ratio)
        assert np.abs(ref - live).mean() < 0.5 * np.abs(img - live).mean(), species


def test_true_noise_is_large_and_high_frequency_for_spoofs():
    """N* = image - live_reference holds only spoof noise (no sensor noise: both share the draws),
    so for every medium it is large, carries a good share of its energy in the repetitive
    loss's high band, and its high-band FFT peak towers over that of the null noise of two live
    captures (sensor noise + JPEG), as in the paper's Fig. 2."""
    size, k = 64, 16                                                   # k = size / 4
    null = np.mean([_hf_peak(np.subtract(*make_registered_pair(
        seed=SEED, identity=i, species=0, device=i % 6, video=0, size=size), dtype=np.float32), k)
        for i in range(4)])
    for species in range(1, 5):
        mad, hf, peak = [], [], []
        for i in range(4):
            ex = make_example(seed=SEED, identity=i, species=species, device=(i + species) % 6,
                              video=i, frame=0, size=size)
            n = ex["image"].astype(np.float32) - ex["live_reference"]
            mad.append(np.abs(n).mean())
            hf.append(decomposition.high_frequency_fraction(n[None] / 255.0)[0])
            peak.append(_hf_peak(n, k))
        name = SPECIES[species]
        assert min(mad) > 5, (name, mad)
        assert np.mean(hf) > 0.3, (name, hf)
        assert np.mean(peak) > 2.5 * null, (name, np.mean(peak) / null)


def test_noise_stages_sum_to_the_true_noise_with_their_own_character():
    """spoof_noise_stages: the four Sec. 3.1 steps add up to N* exactly, the render chain ends
    in the record's own image and reference; colour distortion is mostly low-frequency, the
    medium's texture (display/print) and the camera's aliasing of it (imaging) high-frequency,
    and every medium aliases something."""
    assert STAGES == ("colour", "display", "presenting", "imaging")
    hf = {name: [] for name in STAGES}
    for species in range(5):
        for i in range(2):
            args = dict(seed=SEED, identity=i, species=species, device=(i + 2 * species) % 6,
                        video=i, frame=1, size=64)
            out, ex = spoof_noise_stages(**args), make_example(**args)
            np.testing.assert_array_equal(out["image"], ex["image"])
            np.testing.assert_array_equal(out["live_reference"], ex["live_reference"])
            total = sum(out["stages"].values())
            np.testing.assert_array_equal(total, ex["image"].astype(np.int16) - ex["live_reference"])
            if species == 0:
                assert not any(st.any() for st in out["stages"].values())
                continue
            for name, st in out["stages"].items():
                hf[name].append(decomposition.high_frequency_fraction(st[None] / 255.0)[0])
            assert np.abs(out["stages"]["imaging"]).mean() > 1.0, (SPECIES[species], i)
    assert np.mean(hf["colour"]) < 0.4, hf["colour"]
    assert np.mean(hf["display"]) > 0.7 and min(hf["imaging"]) > 0.7, (hf["display"], hf["imaging"])
