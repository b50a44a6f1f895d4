"""The cross-simulator check (`despoof_jax.tools.cross_simulator`): its crops, its camera and its
summary. Plumbing only: the photos here are procedural (the synthetic world's live render), and
the detector is replaced by the documented central-crop fallback."""
import json

import numpy as np
import pytest
from PIL import Image

from despoof_jax.data.synthetic import make_example
from despoof_jax.tools import cross_simulator as cs


def test_crops_labels_and_photos(tmp_path, monkeypatch):
    for i in range(2):
        ex = make_example(seed=1, identity=i, species=0, device=0, video=0, frame=0, size=160)
        Image.fromarray(ex["image"]).save(tmp_path / f"face{i}.png")
    monkeypatch.setattr(cs, "_detector", lambda: None)
    faces = cs.load_faces(tmp_path)
    assert [f.found_by for f in faces] == ["central", "central"]
    crops, species, photo = cs.make_crops(faces, 32, n_live=4, n_spoof=4, seed=0)
    assert crops.shape == (8, 32, 32, 3) and crops.dtype == np.uint8
    assert list(species) == [0, 0, 0, 0, 1, 2, 3, 4] and set(photo) == {0, 1}
    again, _, _ = cs.make_crops(faces, 32, n_live=4, n_spoof=4, seed=0)
    np.testing.assert_array_equal(crops, again)                       # seeded: reproducible


def _flat_faces(n):
    return [cs.Face(f"p{i}", np.full((48, 48, 3), 0.2 + 0.05 * i, np.float32), 24, 24, 30, "x")
            for i in range(n)]


def test_every_photo_meets_every_medium_whatever_the_number_of_photos():
    for n in (2, 6, 7, 8):
        _, species, photo = cs.make_crops(_flat_faces(n), 8, n_live=n, n_spoof=4 * n, seed=0)
        pairs = {(int(p), int(k)) for p, k in zip(photo[n:], species[n:])}
        assert pairs == {(p, k) for p in range(n) for k in range(1, 5)}, n
        assert list(photo[:n]) == list(range(n))
    # coprime counts keep the plain cycle (the calibration simulator's odd source counts, whose
    # crops must not change): photo k % F, medium k % 4
    _, species, photo = cs.make_crops(_flat_faces(7), 8, n_live=7, n_spoof=28, seed=0)
    k = np.arange(7, 35)
    assert list(photo[7:]) == list(k % 7) and list(species[7:]) == list(1 + (k - 7) % 4)


def test_photos_the_input_policy_refuses_or_too_small_are_left_out(tmp_path, monkeypatch, capsys):
    ex = make_example(seed=1, identity=0, species=0, device=0, video=0, frame=0, size=160)
    Image.fromarray(ex["image"]).save(tmp_path / "a_colour.png")
    Image.fromarray(ex["image"][..., 1]).save(tmp_path / "b_gray.png")
    deep = (ex["image"][..., 0].astype(np.uint16) * 257)        # 16-bit grayscale PNG
    Image.fromarray(deep).save(tmp_path / "c_deep.png")
    Image.fromarray(ex["image"][:40, :40]).save(tmp_path / "d_small.png")
    monkeypatch.setattr(cs, "_detector", lambda: None)
    faces = cs.load_faces(tmp_path, min_side=32)
    assert [f.name for f in faces] == ["a_colour.png"]
    err = capsys.readouterr().err
    assert "b_gray.png: skipped" in err and "grayscale" in err and "c_deep.png: skipped" in err
    assert "d_small.png: face crop 24 px < 32 px" in err
    # the linear image is the photo's, not a saturated or rescaled one
    np.testing.assert_allclose(faces[0].linear, (ex["image"][3:157, 3:157] / 255.0) ** 2.2,
                               atol=1e-6)   # the face's neighbourhood: 80 -+ ceil(0.8 * 96)


def test_malvar_demosaic_keeps_a_flat_colour():
    r, g, b = 0.3, 0.5, 0.2
    yy, xx = np.mgrid[0:16, 0:16]
    m = np.where((yy + xx) % 2 == 0, g, np.where(yy % 2 == 0, r, b)).astype(np.float32)  # GRBG
    out = cs.demosaic_malvar(m)
    np.testing.assert_allclose(out[4:-4, 4:-4], np.broadcast_to([r, g, b], (8, 8, 3)), atol=1e-6)


def test_summary_at_the_threshold():
    species = np.array([0] * 6 + [1, 2, 3, 4] * 2)
    photo = np.arange(14) % 3
    score = np.where(species > 0, 2.0, -2.0)
    score[0] = 3.0                                   # one live crop rejected
    s = cs.summarise(score, species, photo, threshold=0.0, draws=50)
    assert s["bpcer"]["value"] == 1 / 6 and s["apcer"]["value"] == 0.0
    assert s["acer"]["value"] == 1 / 12
    lo, hi = s["acer"]["ci95"]
    assert lo <= s["acer"]["value"] <= hi
    assert s["n"] == {"live": 6, "spoof": 8, "photos": 3}
    assert s["draws"]["kept"] == 50
    # two photos, one all live, one all attack: half the resamples lack a class and are drawn
    # again, not dropped; a photo without live crops reports None
    species = np.array([0, 0, 0, 1, 1, 2])
    photo = np.array([0, 0, 0, 1, 1, 1])
    s = cs.summarise(np.where(species > 0, 1.0, -1.0), species, photo, 0.0, draws=40,
                     attacks=("a", "b"))
    assert s["draws"]["kept"] == 40 and s["draws"]["redrawn"] > 0
    assert s["bpcer_per_photo"][1] is None
    json.dumps(s, allow_nan=False)                   # valid JSON
    # an attack of the check without crops: refused (the worst-attack APCER would silently be
    # over fewer media); so is a species the check does not name, and a draw count below 1
    with pytest.raises(ValueError, match=r"attacks without crops \['rgbw_quad', 's_stripe'\]"):
        cs.summarise(np.where(species > 0, 1.0, -1.0), species, photo, 0.0, draws=40)
    with pytest.raises(ValueError, match=r"unknown species ids \[2\]"):
        cs.summarise(np.where(species > 0, 1.0, -1.0), species, photo, 0.0, attacks=("a",))
    with pytest.raises(ValueError, match="draws=0"):
        cs.summarise(np.where(species > 0, 1.0, -1.0), species, photo, 0.0, draws=0,
                     attacks=("a", "b"))
    # one photo: no interval (resampling it would give one of no width)
    one = cs.summarise(np.where(species > 0, 1.0, -1.0), species, np.zeros(6, int), 0.0,
                       attacks=("a", "b"))
    assert one["acer"] == {"value": 0.0, "ci95": None} and one["draws"]["kept"] == 0
    # the photo is the unit resampled, its crops kept whole: four photos alike (one of two live
    # crops rejected in each) give every resample BPCER 1/2, an interval of no width
    species = np.tile([0, 0, 1, 2, 3, 4], 4)
    photo = np.repeat(np.arange(4), 6)
    score = np.where(species > 0, 1.0, -1.0)
    score[::6] = 1.0
    s = cs.summarise(score, species, photo, 0.0, draws=60)
    assert s["bpcer"]["ci95"] == [0.5, 0.5] and s["draws"]["redrawn"] == 0
    with pytest.raises(ValueError, match="live and attack"):
        cs.summarise(np.zeros(3), np.ones(3, int), np.zeros(3, int), 0.0)
    with pytest.raises(ValueError, match="one length"):
        cs.summarise(np.zeros(3), np.zeros(2, int), np.zeros(3, int), 0.0)
    with pytest.raises(ValueError, match="finite"):
        cs.summarise(np.array([0.0, np.nan]), np.array([0, 1]), np.zeros(2, int), 0.0)


def test_bona_fide_leave_one_photo_out_judges_each_photo_at_the_others_threshold():
    # three photos whose live crops sit at three levels, each attack 0.5 above its photo's level
    species = np.tile([0, 0, 1, 2, 3, 4], 3)
    photo = np.repeat(np.arange(3), 6)
    score = photo + np.tile([0.0, 0.1, 0.5, 0.5, 0.5, 0.5], 3)
    r = cs.bona_fide_leave_one_photo_out(score, species, photo, 0.0, draws=50)
    # at BPCER 0 a fold's threshold passes every live crop of the other photos: photos 0 and 1
    # are judged just above 2.1 (their attacks pass), photo 2 just above 1.1 (its live crops are
    # refused, its attacks caught)
    assert r["fold_thresholds"] == [pytest.approx(1.1, abs=1e-4), pytest.approx(2.1, abs=1e-4)]
    assert r["bpcer"]["value"] == pytest.approx(2 / 6)
    assert r["apcer_per_attack"] == {a: pytest.approx(2 / 3) for a in cs.ATTACKS}
    assert r["acer"]["value"] == pytest.approx(0.5) and r["target_bpcer"] == 0.0
    assert r["threshold"] == 0.0 and r["n"]["photos"] == 3
    with pytest.raises(ValueError, match="two or more"):
        cs.bona_fide_leave_one_photo_out(score[:6], species[:6], photo[:6], 0.05)
    no_live = species.copy()
    no_live[12:14] = 1          # photo 2 without live crops
    with pytest.raises(ValueError, match="every photo needs live crops"):
        cs.bona_fide_leave_one_photo_out(score, no_live, photo, 0.05)


def _photos(folder):
    folder.mkdir()
    for i in range(2):
        ex = make_example(seed=1, identity=i, species=0, device=0, video=0, frame=0, size=160)
        Image.fromarray(ex["image"]).save(folder / f"face{i}.png")
    return folder


def _expected(report, score, species):
    assert report["n"] == {"live": 4, "spoof": 4, "photos": 2}
    np.testing.assert_allclose(report["mean_score"]["live"], score[species == 0].mean(), rtol=1e-5)
    np.testing.assert_allclose(report["bpcer"]["value"],
                               np.mean(score[species == 0] >= report["threshold"]))


def test_run_decides_with_the_models_own_threshold(tmp_path, monkeypatch, trained_workdir):
    import despoof_jax  # noqa: PLC0415 (after the XLA flags of conftest)
    monkeypatch.setattr(cs, "_detector", lambda: None)
    model = despoof_jax.load(trained_workdir)
    report = cs.run(_photos(tmp_path / "faces"), trained_workdir, n_live=4, n_spoof=4, draws=20)
    assert report["threshold"] == model.threshold and report["fusion"] == model.fusion
    crops, species, photo = cs.make_crops(cs.load_faces(tmp_path / "faces"), model.image_size, 4, 4)
    _expected(report, np.asarray(model.score(list(crops)).score), species)
    # --cache without ".npz": written where np.savez writes it, and read back the second time
    cache = str(tmp_path / "crops")
    first = cs.run(tmp_path / "faces", trained_workdir, n_live=4, n_spoof=4, draws=20, cache=cache)
    monkeypatch.setattr(cs, "make_crops", lambda *a, **k: pytest.fail("cache not used"))
    second = cs.run(tmp_path / "faces", trained_workdir, n_live=4, n_spoof=4, draws=20, cache=cache)
    assert (tmp_path / "crops.npz").exists() and first == second == report
    # --bona-fide-bpcer: the same report, and beside it the leave-one-photo-out figures
    third = cs.run(tmp_path / "faces", trained_workdir, n_live=4, n_spoof=4, draws=20, cache=cache,
                   bona_fide_bpcer=0.0)
    lopo = third.pop("bona_fide_leave_one_photo_out")
    assert third == report
    assert lopo == cs.bona_fide_leave_one_photo_out(np.asarray(model.score(list(crops)).score),
                                                    species, photo, 0.0, draws=20)
    with pytest.raises(ValueError, match="bona_fide_bpcer"):
        cs.run(tmp_path / "faces", trained_workdir, n_live=4, n_spoof=4, cache=cache,
               bona_fide_bpcer=1.0)


def test_run_judges_the_binary_cnn_by_the_same_crops_and_rule(tmp_path, monkeypatch,
                                                              smoke_workdirs):
    import json  # noqa: PLC0415

    import pytest  # noqa: PLC0415

    from despoof_jax.evaluation import baselines  # noqa: PLC0415
    from despoof_jax.serving import model as serving_model  # noqa: PLC0415
    from despoof_jax.training.workdir import as_workdir  # noqa: PLC0415
    monkeypatch.setattr(cs, "_detector", lambda: None)
    wd = smoke_workdirs["cnn"]
    report = cs.run(_photos(tmp_path / "faces"), wd, n_live=4, n_spoof=4, draws=20)
    table = json.loads(as_workdir(wd).metrics_json.read_text())
    assert report["fusion"] == "cnn"
    assert report["threshold"] == table["fusions"]["cnn"]["frame"]["threshold"]
    config = as_workdir(wd).read_config()
    size = config.data.image_size
    crops, species, _ = cs.make_crops(cs.load_faces(tmp_path / "faces"), size, 4, 4)
    _expected(report, np.asarray(baselines.make_score_fn(config, wd)(crops)), species)
    with pytest.raises(ValueError, match="px crops only"):
        cs.run(tmp_path / "faces", wd, size=size + 8, n_live=2, n_spoof=4, draws=5)
    # A baseline that was never evaluated has no threshold: refused, not guessed.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text(as_workdir(wd).config_path.read_text())
    (bare / "cnn").symlink_to(as_workdir(wd).root / "cnn")
    with pytest.raises(serving_model.ModelLoadError, match="never evaluated"):
        cs.scorer(str(bare))


@pytest.mark.parametrize("kind", cs.ATTACKS)
def test_area_sampled_media_converge_and_keep_the_draws(kind):
    """`--area-sampled`: averaged over each sample's footprint, a flat photo on every medium comes
    out close to a far denser rendering (footprint 8), while the point-sampled check's hard-edged
    patterns alias away from it; both draw the same random numbers (same photo, pose, medium)."""
    flat = np.full((60, 60, 3), 0.4, np.float32)

    def pixels(footprint):
        rng = np.random.default_rng(0)
        rad = cs.attack_radiance(kind, flat, 32, rng, footprint=footprint)
        n = rad.shape[0] // cs.SS
        return rad.reshape(n, cs.SS, n, cs.SS, 3).mean((1, 3)), rng.bit_generator.state

    dense, state = pixels(8)
    point, point_state = pixels(1)
    area, area_state = pixels(cs.AREA_FOOTPRINT)
    assert point_state == area_state == state
    assert np.abs(area - dense).mean() < 0.3 * np.abs(point - dense).mean()
