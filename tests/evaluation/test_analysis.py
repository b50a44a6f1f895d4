"""Tests for despoof_jax.evaluation.analysis (Sec. 4.4) and despoof_jax.evaluation.plots."""
import numpy as np
import pytest
from PIL import Image

from despoof_jax.evaluation import analysis as A
from despoof_jax.evaluation import metrics as M
from despoof_jax.evaluation import plots as P


def _grating(h, w, fy, fx, phase=0.0):
    """[h, w] cosine with fy, fx cycles per image along rows / columns."""
    y, x = np.mgrid[0:h, 0:w]
    return np.cos(2 * np.pi * (fy * y / h + fx * x / w) + phase)


def test_high_pass_removes_low_and_keeps_high_frequency():
    h = w = 32
    low = _grating(h, w, 1, 2, phase=0.3)     # inside the central 7 x 7 (offsets <= 3)
    high = _grating(h, w, 0, 12) + 0.5 * _grating(h, w, 9, 5)
    noise = np.stack([low + high, low, high], axis=-1)[None]  # [1, H, W, 3]
    out = A.high_pass(noise, k=7)
    assert out.shape == noise.shape and out.dtype == np.float64
    np.testing.assert_allclose(out[0, ..., 0], high, atol=1e-10)  # low part stripped
    np.testing.assert_allclose(out[0, ..., 1], 0.0, atol=1e-10)
    np.testing.assert_allclose(out[0, ..., 2], high, atol=1e-10)
    # Channels and images are filtered independently, DC included.
    const = np.full((2, h, w, 1), 3.0)
    np.testing.assert_allclose(A.high_pass(const, 1), 0.0, atol=1e-12)
    np.testing.assert_allclose(A.high_pass(noise, 0), noise, atol=1e-12)  # k = 0: identity
    # A block too small to reach the low grating's frequency keeps it.
    assert np.abs(A.high_pass(low[None, ..., None], 3)).max() > 0.99


def test_central_mask_and_errors():
    m = A.central_mask(8, 8, 3)
    assert m.sum() == 64 - 9 and m[4, 4] == 0 and m[3:6, 3:6].sum() == 0
    m = A.central_mask(8, 8, 2)  # even k: one extra negative-frequency row/column
    assert m[3:5, 3:5].sum() == 0 and m.sum() == 60
    with pytest.raises(ValueError, match="k must be"):
        A.central_mask(8, 8, 9)
    with pytest.raises(ValueError, match="N, H, W, C"):
        A.high_pass(np.zeros((8, 8, 3)), 3)


def test_fft_log_magnitude_peaks_at_grating_frequency():
    img = _grating(32, 32, 0, 8)
    mag = A.fft_log_magnitude(np.stack([img] * 3, -1))
    assert mag.shape == (32, 32) and mag.min() == 0.0 and mag.max() == 1.0
    assert mag[16, 16 + 8] == 1.0 and mag[16, 16 - 8] == 1.0


def _clusters(n_per, n_classes, dim=20, sep=8.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * sep
    y = np.repeat(np.arange(n_classes), n_per)
    x = centres[y] + rng.normal(size=(y.size, dim))
    return x, y


def test_species_to_medium():
    np.testing.assert_array_equal(A.species_to_medium([0, 1, 2, 3, 4, 2]), [0, 1, 1, 2, 2, 1])
    assert [A.MEDIUM_NAMES[i] for i in A.species_to_medium(np.array([0, 2, 4]))] == [
        "live", "print", "replay"]
    with pytest.raises(ValueError, match="Oulu-NPU"):
        A.species_to_medium([0, 5])


@pytest.mark.parametrize("n_classes", [3, 5])
def test_medium_classification_separable_clusters(n_classes):
    x, y = _clusters(20, n_classes)
    res = A.medium_classification(x, y, n_folds=4, seed=0)
    assert res["accuracy"] > 0.9
    conf = np.asarray(res["confusion"])
    assert conf.shape == (n_classes, n_classes)
    np.testing.assert_array_equal(conf.sum(axis=1), np.bincount(y))  # rows = true class
    assert np.trace(conf) / conf.sum() == pytest.approx(res["accuracy"])
    assert len(res["fold_accuracies"]) == 4
    assert res["classes"] == list(range(n_classes))


def test_medium_classification_confusion_rows_are_true_class():
    # 8 "b" samples are near-copies of "a" samples, outnumbered 3:1, so the SVM predicts "a"
    # for them: the errors sit in row b (true), column a (predicted), and not the reverse.
    x, _ = _clusters(24, 2, seed=1)
    rng = np.random.default_rng(1)
    xa, xc = x[:24], x[24:40]
    xb = xa[:8] + 1e-3 * rng.normal(size=(8, xa.shape[1]))
    y = np.array(["a"] * 24 + ["b"] * 8 + ["c"] * 16)
    res = A.medium_classification(np.concatenate([xa, xb, xc]), y, n_folds=4, seed=0,
                                  class_names=["a", "b", "c"])
    conf = res["confusion"]
    assert conf.sum(axis=1).tolist() == [24, 8, 16]
    assert conf[2].tolist() == [0, 0, 16]
    assert conf[1, 0] >= 6 and conf[0, 1] <= 2


def test_medium_classification_random_labels_near_chance_and_groups():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 20))
    y = rng.permutation(np.repeat([0, 1, 2], 20))
    assert A.medium_classification(x, y, n_folds=5, seed=0)["accuracy"] < 0.6
    # Grouped folds: every group's samples are predicted by a model that never saw that group.
    xc, yc = _clusters(12, 3)
    groups = np.tile(np.arange(6), 6)
    res = A.medium_classification(xc, yc, n_folds=3, seed=0, groups=groups)
    assert res["accuracy"] > 0.9
    with pytest.raises(ValueError, match="n_folds"):
        A.medium_classification(xc, yc, n_folds=13)


def test_tsne_embed_small_n_keeps_clusters():
    x, y = _clusters(8, 3, dim=10, sep=10.0)
    emb = A.tsne_embed(x, seed=0)
    assert emb.shape == (24, 2) and np.all(np.isfinite(emb))
    np.testing.assert_allclose(A.tsne_embed(x, seed=0), emb)  # seeded -> reproducible
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert np.mean(y[d.argmin(axis=1)] == y) > 0.9  # nearest neighbour is of the same class
    # [N, H, W, C] noise is flattened; N = 5 is below sklearn's default perplexity of 30.
    assert A.tsne_embed(np.random.default_rng(0).normal(size=(5, 4, 4, 6)), seed=1).shape == (5, 2)


def _read_png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()
        arr = np.asarray(im)
    assert arr.shape[0] > 50 and arr.shape[1] > 50
    assert arr.std() > 0  # something was drawn
    return arr


def test_plots_write_readable_pngs(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array([0] * 30 + [1] * 60)
    species = np.concatenate([np.zeros(30, int), np.repeat([1, 2, 3, 4], 15)])
    ss = M.ScoreSet(rng.normal(size=90) + 1.5 * labels, labels, species,
                    species_names=M.OULU_SPECIES_NAMES)
    perfect = M.ScoreSet(labels.astype(float), labels, species)  # rates hit 0 and 1 on the DET
    paths = [
        P.plot_roc_det({"dev": ss, "perfect": perfect}, tmp_path / "roc_det.png"),
        P.plot_score_histograms(ss, 0.75, tmp_path / "hist.png"),
        P.plot_tsne(rng.normal(size=(90, 2)), species, M.OULU_SPECIES_NAMES,
                    tmp_path / "sub" / "tsne.png"),
        P.plot_confusion(np.array([[59, 1, 0], [2, 88, 32], [13, 99, 8]]),
                         ["live", "print", "display"], tmp_path / "conf.png"),
        P.image_grid(
            [[rng.random((16, 16, 3)), rng.integers(0, 256, (16, 16), dtype=np.uint8)],
             [P.noise_to_image(0.02 * rng.normal(size=(16, 16, 3))), rng.random((16, 16, 1))],
             [A.fft_log_magnitude(rng.random((16, 16, 3)))]],
            ["input", "noise x5 + 128", "FFT"], ["print", "replay"], tmp_path / "grid.png"),
    ]
    for p in paths:
        assert isinstance(p, str)
        _read_png(p)
    with pytest.raises(ValueError, match="col_titles"):
        P.image_grid([[np.zeros((4, 4))]], None, ["a", "b"], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="K, K"):
        P.plot_confusion(np.zeros((2, 3)), ["a", "b"], tmp_path / "bad.png")


def test_tsne_colours_follow_fig4():
    names = M.OULU_SPECIES_NAMES
    got = [P.species_color(i, n) for i, n in enumerate(names)]
    assert got == ["black", "green", "blue", "magenta", "red"]
    assert P.species_color(3, "display1") == "magenta"
    assert P.species_color(4, "display2") == "red"
    np.testing.assert_allclose(P.noise_to_image(np.zeros(3)), 128 / 255)


def test_the_medium_svm_never_drops_the_identity_grouping():
    """Features that carry a per-person signature and nothing of the medium: grouped by identity
    the SVM is near chance; with too few people per class it is skipped, not run ungrouped
    (which scored 100 % on the same features)."""
    from despoof_jax.evaluation import medium  # noqa: PLC0415
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(12), 6)
    classes = np.tile(np.arange(3), 24)
    person = rng.normal(size=(12, 40))
    feats = person[ids] * 3 + 0.1 * rng.normal(size=(72, 40))
    names = ("live", "print", "replay")
    r = medium._svm(feats, classes, names, ids, seed=0)
    assert r["grouped_by_identity"] and r["n_classes"] == 3 and r["chance_uniform"] == 1 / 3
    assert r["accuracy"] < 0.6, r["accuracy"]
    one_person = np.where(classes == 2, 0, ids)   # every replay video from one person
    skipped = medium._svm(feats, classes, names, one_person, seed=0)
    assert "skipped" in skipped and "1 person" in skipped["skipped"]


def test_the_medium_analysis_draws_its_videos_across_the_stored_order():
    """Stored in order (here by identity, as the synthetic world; Oulu-NPU by phone), the first
    40 videos of a species would come from a few people: the draw spreads over all of them, is
    seeded, keeps one frame per video, and a cap below 1 is refused."""
    from despoof_jax.evaluation import medium  # noqa: PLC0415
    identity = np.repeat(np.arange(20), 30)              # 20 people x 30 records, in order
    video = np.arange(600) // 3                          # 3 frames per video
    species = (video % 5)
    meta = {"video": video, "species": species, "identity": identity}
    idx = np.arange(600)
    picked = medium._one_frame_per_video(meta, idx, 8, seed=0)
    assert len(picked) == 5 * 8 and len(np.unique(video[picked])) == 40
    assert all((species[picked] == s).sum() == 8 for s in range(5))
    assert len(np.unique(identity[picked])) >= 15      # the first 8 per species: 4 people
    first = np.concatenate([idx[::3][species[::3] == s][:8] for s in range(5)])
    assert len(np.unique(identity[first])) == 4
    np.testing.assert_array_equal(picked, medium._one_frame_per_video(meta, idx, 8, seed=0))
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="max_per_species"):
            medium._one_frame_per_video(meta, idx, bad)


def test_fig5_shows_live_columns_first(monkeypatch, tmp_path):
    from despoof_jax.evaluation import medium, plots  # noqa: PLC0415
    seen = {}
    monkeypatch.setattr(plots, "image_grid", lambda rows, row_titles, col_titles, path:
                        seen.update(cols=col_titles) or path)
    names = ("live", "print1", "print2", "replay1", "replay2")
    out = {"species": np.array([3, 0, 1, 0, 2, 4, 1]), "rgb": np.zeros((7, 8, 8, 3)),
           "noise": np.zeros((7, 8, 8, 6)), "live": np.zeros((7, 8, 8, 6))}
    medium.fig5(out, names, str(tmp_path / "f.png"))
    assert seen["cols"] == ["live", "live", "print1", "print1", "print2", "replay1", "replay2"]
