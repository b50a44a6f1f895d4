"""Decomposition metrics against the synthetic world's true spoof noise (despoof_jax.evaluation.decomposition)
on hand-made cases, and their hook into evaluation (metrics.json, sample sheet)."""
import json
import os

import numpy as np
import pytest

from despoof_jax.data import synthetic
from despoof_jax.evaluation import decomposition as dc
from despoof_jax.evaluation import evaluate, plots
from tests.util import tiny_config

H = 64


def _grating(fy: int, fx: int, amp: float = 0.05, n: int = 1) -> np.ndarray:
    """A cosine of fy, fx cycles per image in all three channels: [n, H, H, 3]."""
    y, x = np.mgrid[0:H, 0:H] / H
    g = amp * np.cos(2 * np.pi * (fy * y + fx * x))
    return np.broadcast_to(g[None, :, :, None], (n, H, H, 3)).copy()


def _scene(seed=0, n=3):
    """Hand-made (image I, live reference Î*, true noise N*): a smooth face-like reference plus
    a spoof noise of a colour shift, a halftone-like grating and some texture."""
    r = np.random.default_rng(seed)
    x = np.mgrid[0:H, 0:H][1] / H
    ref = 0.5 + 0.2 * np.sin(3 * x + seed)[None, :, :, None] * np.array([1.0, 0.8, 0.6])
    ref = np.broadcast_to(ref, (n, H, H, 3)).copy()
    true = 0.02 + _grating(21, 13, 0.04, n) + 0.01 * r.standard_normal((n, H, H, 3))
    return ref + true, ref, true


def test_psnr_gain_conventions():
    image, ref, true = _scene()
    base = dc.psnr(image, ref)
    assert (base > 20).all() and (base < dc.PSNR_MAX_DB).all()
    # N = N*: the whole distance of I from Î*, up to the cap; N = 0: nothing gained.
    np.testing.assert_allclose(dc.psnr_gain(image, true, ref), dc.PSNR_MAX_DB - base)
    np.testing.assert_array_equal(dc.psnr_gain(image, np.zeros_like(true), ref), 0.0)
    # Half the noise removed: the error's MSE drops 4x, +6.02 dB.
    np.testing.assert_allclose(dc.psnr_gain(image, true / 2, ref), 10 * np.log10(4), rtol=1e-9)
    # Live faces (I = Î*): PSNR(I, Î*) is the cap, any noise only does harm.
    live_gain = dc.psnr_gain(ref, true, ref)
    np.testing.assert_allclose(live_gain, dc.psnr(ref - true, ref) - dc.PSNR_MAX_DB)
    assert (live_gain < 0).all()
    assert dc.PSNR_MAX_DB == pytest.approx(58.92, abs=0.01)   # 8-bit quantisation noise


def test_correlation_conventions():
    _, _, true = _scene()
    np.testing.assert_allclose(dc.correlation(true, true), 1.0)
    np.testing.assert_allclose(dc.correlation(3 * true + 0.1, true), 1.0)   # scale and offset free
    np.testing.assert_allclose(dc.correlation(-true, true), -1.0)
    np.testing.assert_array_equal(dc.correlation(np.zeros_like(true), true), 0.0)   # N = 0
    assert np.isnan(dc.correlation(true, np.zeros_like(true))).all()               # N* = 0 (live)
    unrelated = np.random.default_rng(5).standard_normal(true.shape)
    assert (np.abs(dc.correlation(unrelated, true)) < 0.05).all()


def test_high_frequency_fraction():
    cut = int(dc.HIGH_FREQ_CUTOFF * H / 2)      # first bin of the high band (8 at 64 px)
    low = _grating(cut - 2, 1)
    high = _grating(3, cut + 2)
    np.testing.assert_allclose(dc.high_frequency_fraction(low), 0.0, atol=1e-12)
    np.testing.assert_allclose(dc.high_frequency_fraction(high), 1.0)
    np.testing.assert_allclose(dc.high_frequency_fraction(low + high), 0.5)
    # White noise spreads evenly: the band's share of the bins, 1 - (2 cut - 1)^2 / H^2.
    white = np.random.default_rng(0).standard_normal((8, H, H, 3))
    np.testing.assert_allclose(dc.high_frequency_fraction(white).mean(),
                               1 - (2 * cut - 1) ** 2 / H ** 2, atol=0.01)
    assert np.isnan(dc.high_frequency_fraction(np.zeros((1, H, H, 3)))).all()


def test_peak_match():
    _, _, true = _scene()
    two = _grating(21, 13, 0.04) + _grating(5, 27, 0.03)           # two peaks in the high band
    np.testing.assert_array_equal(dc.peak_match(true, true), 1.0)   # N = N*
    np.testing.assert_array_equal(dc.peak_match(two, two), 1.0)
    assert dc.spectral_peaks(two)[0].shape == (2, 2)                 # conjugates count once
    # A peak one bin off matches within the tolerance; one three bins off does not.
    np.testing.assert_array_equal(dc.peak_match(_grating(22, 13), _grating(21, 13)), 1.0)
    np.testing.assert_array_equal(dc.peak_match(_grating(24, 13), _grating(21, 13)), 0.0)
    # An unrelated grating, the right one at the wrong place, or half the peaks.
    np.testing.assert_array_equal(dc.peak_match(_grating(9, -30), two), 0.0)
    np.testing.assert_array_equal(dc.peak_match(_grating(21, 13), two), 0.5)
    # Conjugate-symmetric and periodic: (-21, -13) is the same peak as (21, 13).
    np.testing.assert_array_equal(dc.peak_match(_grating(-21, -13), _grating(21, 13)), 1.0)
    np.testing.assert_array_equal(dc.peak_match(np.zeros_like(two), two), 0.0)          # N = 0
    assert np.isnan(dc.peak_match(two, np.zeros_like(two))).all()                        # N* = 0
    # Peaks below the cutoff do not count (colour shifts and glare are not repetitive noise).
    assert np.isnan(dc.peak_match(two, _grating(3, 2))).all()


def test_bootstrap_interval():
    r = np.random.default_rng(0)

    def sample(n_ids, per_id=4):
        # Identity effects evenly spread over the same range, so only their number changes.
        ids = np.repeat(np.arange(n_ids), per_id)
        values = np.linspace(-1.5, 1.5, n_ids)[ids] + r.normal(0, 0.3, len(ids))
        return values, ids

    widths = []
    for n_ids in (4, 64):
        values, ids = sample(n_ids)
        lo, hi = dc.bootstrap_interval(values, ids)
        assert lo < values.mean() < hi
        widths.append(hi - lo)
        assert dc.bootstrap_interval(values, ids) == (lo, hi)          # seeded
    assert widths[1] < 0.5 * widths[0], widths                        # ~ 1 / sqrt(identities)
    values, ids = sample(6)
    with_nan = np.append(values, np.nan)
    assert dc.bootstrap_interval(with_nan, np.append(ids, 99)) == dc.bootstrap_interval(values, ids)
    assert dc.bootstrap_interval(np.array([1.0, 3.0]), np.array([7, 7])) == (2.0, 2.0)
    assert all(np.isnan(dc.bootstrap_interval(np.array([np.nan]), np.array([0]))))


def test_accumulator_summary():
    image, ref, true = _scene(n=4)
    acc = dc.Accumulator()
    assert acc.summary() is None                                      # no ground truth seen
    # Two batches: the attacks estimated perfectly, the live faces with a bit of noise.
    u8 = lambda a: np.clip(np.round(a * 255), 0, 255).astype(np.uint8)   # noqa: E731
    img8, ref8 = u8(image), u8(ref)
    exact = (img8.astype(np.float64) - ref8) / 255
    six = np.concatenate([exact, np.zeros_like(exact)], -1)           # DS Net's 6 channels
    acc.add(img8, six, ref8, species=[1, 1, 3, 3], identity=[0, 1, 0, 1])
    acc.add(ref8, 0.2 * true, ref8, species=[0, 0, 0, 0], identity=[0, 1, 2, 3])
    s = acc.summary(synthetic.SPECIES)
    assert json.loads(json.dumps(s)) == s                             # JSON-ready, no NaN
    assert set(s["per_species"]) == {"live", "print1", "replay1"}
    att = s["attacks"]
    assert att["n"] == 4 and att["identities"] == 2
    assert att["correlation"]["mean"] == pytest.approx(1.0)
    assert att["peak_match"]["mean"] == 1.0
    base = dc.psnr(img8 / 255, ref8 / 255)
    assert att["psnr_gain_db"]["mean"] == pytest.approx(np.mean(dc.PSNR_MAX_DB - base))
    live = s["per_species"]["live"]
    assert live["n"] == 4 and live["psnr_gain_db"]["mean"] < 0
    assert live["correlation"] is None and live["peak_match"] is None   # N* = 0: undefined
    assert live["hf_fraction_true"] is None and live["hf_fraction"]["mean"] > 0
    lo, hi = live["psnr_gain_db"]["ci95"]
    assert lo <= live["psnr_gain_db"]["mean"] <= hi
    assert s["settings"]["psnr_max_db"] == dc.PSNR_MAX_DB


# ---- the evaluation hook ------------------------------------------------------------------------

def _oracle_predict(sources):
    """A stand-in for the jitted DS/DQ predict that knows the truth: noise = N* of the record
    whose image the batch row is (zeros for padding), scores from the noise magnitude."""
    truth = {}
    for source in sources:
        for i in range(len(source)):
            r = source[i]
            truth[r["image"].tobytes()] = (r["image"].astype(np.float32) - r["live_reference"]) / 255

    def predict(ds, dq, rgb):
        rgb = np.asarray(rgb)
        n = np.stack([truth.get(x.tobytes(), np.zeros(x.shape, np.float32)) for x in rgb])
        x = rgb / 255.0
        s = np.abs(n).mean((1, 2, 3))
        return {"noise": np.concatenate([n, np.zeros_like(n)], -1),
                "live": np.concatenate([x - n, x], -1),
                "score_noise": s, "score_map": s, "score_depth": -s}
    return predict


@pytest.fixture(scope="module")
def eval_config(synthetic_data_dir):
    return tiny_config(64, **{"data.data_dir": synthetic_data_dir,
                              "data.builder_config": "s64_small"})


def test_evaluate_writes_decomposition_and_true_noise_column(eval_config, tmp_path, monkeypatch):
    """evaluate() with a perfect decomposition (N = N*): metrics.json's `decomposition` says so
    per species, and the sample sheet shows the true noise next to the estimate."""
    from despoof_jax.data import datasets
    sources = [datasets.load_split(eval_config.data, split)[0] for split in ("dev", "test")]
    predict = _oracle_predict(sources)
    monkeypatch.setattr(evaluate, "make_predict", lambda config: predict)
    titles = []
    grid = plots.image_grid

    def spy(rows, names, cols, path, **kw):
        titles.append(list(cols))
        return grid(rows, names, cols, path, **kw)
    monkeypatch.setattr(plots, "image_grid", spy)
    table = evaluate.evaluate(eval_config, str(tmp_path), ds=object(), dq=object())
    with open(tmp_path / "eval" / "metrics.json") as f:
        written = json.load(f)
    d = written["decomposition"]
    assert d == table["decomposition"]
    att = d["attacks"]
    assert att["n"] == 48 and att["identities"] == 4                 # s64_small test: 4 x 4 x 3
    assert att["correlation"]["mean"] == pytest.approx(1.0)
    assert att["peak_match"]["mean"] == 1.0
    assert att["hf_fraction"]["mean"] == pytest.approx(att["hf_fraction_true"]["mean"])
    assert att["psnr_gain_db"]["mean"] > 20
    for name in synthetic.SPECIES[1:]:
        lo, hi = d["per_species"][name]["psnr_gain_db"]["ci95"]
        assert lo <= d["per_species"][name]["psnr_gain_db"]["mean"] <= hi
    assert d["per_species"]["live"]["psnr_gain_db"]["mean"] == 0.0   # N = N* = 0 on live faces
    assert titles == [["input", "|FFT| input", "noise x5+128", "true N* x5+128", "|FFT| noise",
                       "live = I - N"]]
    assert os.path.getsize(tmp_path / "eval" / "sample_sheet.png") > 0
    md = (tmp_path / "eval" / "decomposition.md").read_text()
    assert "| all attacks | 48 |" in md and "+1.000 [+1.000, +1.000]" in md   # corr(N, N*)


class _WithoutReference:
    """A record source like a real dataset's: no `live_reference`."""

    def __init__(self, source):
        self._source = source

    def __len__(self):
        return len(self._source)

    def __getitem__(self, i):
        return {k: v for k, v in self._source[i].items() if k != "live_reference"}


def test_decomposition_skipped_without_ground_truth(eval_config, monkeypatch):
    from despoof_jax.data import datasets
    load = datasets.load_split
    monkeypatch.setattr(datasets, "load_split", lambda c, split: (
        _WithoutReference(load(c, split)[0]), load(c, split)[1]))
    zero = lambda ds, dq, rgb: {"noise": np.zeros(rgb.shape[:3] + (6,)), "score_noise":   # noqa: E731
                                np.zeros(len(rgb)), "score_map": np.zeros(len(rgb)),
                                "score_depth": np.zeros(len(rgb))}
    truth = dc.Accumulator()
    out = evaluate.score_split(eval_config, None, None, "test", zero, truth=truth)
    assert len(out["index"]) == 60 and truth.summary() is None
