"""The held-out calibration simulator (issue #14, rounds 3 and 4): its threshold rule, its physics
(none of them the cross simulator's, deterministic), its sources, and the calibration of a trained
model end to end, through the command line and as a run's last step (`eval.calibration`)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from despoof_jax import cli
from despoof_jax.serving import model as api
from despoof_jax.tools import calibration_simulator as cal
from despoof_jax.tools import cross_simulator as cs


def _brute_acer(score, species, t):
    live = score[species == 0]
    apcer = max(np.mean(score[species == k] < t) for k in np.unique(species[species > 0]))
    return (apcer + np.mean(live >= t)) / 2


def test_min_acer_threshold_is_the_minimum_and_the_middle_of_ties():
    rng = np.random.default_rng(0)
    species = rng.integers(0, 4, 200)
    score = rng.normal(0, 1, 200) + 0.8 * (species > 0) + 0.3 * species
    t = cal.min_acer_threshold(score, species)
    grid = np.linspace(score.min() - 1, score.max() + 1, 4001)
    assert _brute_acer(score, species, t) <= min(_brute_acer(score, species, g) for g in grid) + 1e-12
    # separable scores: every threshold in the gap is perfect; the middle one is chosen
    sp = np.array([0, 0, 1, 2])
    assert cal.min_acer_threshold(np.array([0.0, 1.0, 3.0, 5.0]), sp) == pytest.approx(2.0)
    # three equally good thresholds (ACER 1/3 at 0.5, 2.5 and 4.5): the middle one
    sp = np.array([0, 0, 0, 1, 1, 1])
    assert cal.min_acer_threshold(np.array([0.0, 2.0, 4.0, 1.0, 3.0, 5.0]), sp) == 2.5
    # adjacent float32 scores at the cut: the threshold separates them in float32 too
    one = np.float32(1.0)
    score = np.array([0.0, one, np.nextafter(one, np.float32(2)), 2.0], np.float32)
    t = cal.min_acer_threshold(score, np.array([0, 0, 1, 2]))
    assert list(score >= np.float32(t)) == [False, False, True, True]
    with pytest.raises(ValueError, match="finite"):
        cal.min_acer_threshold(np.array([0.0, np.nan, 1.0]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="one length"):
        cal.min_acer_threshold(np.array([0.0, 1.0, 2.0]), np.array([0, 1]))
    with pytest.raises(ValueError, match="live and attack"):
        cal.min_acer_threshold(np.array([0.0, 1.0]), np.array([1, 2]))


def _face(size=40, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.5 + 0.3 * np.sin(6 * xx), 0.4 + 0.2 * yy, 0.3 + 0.1 * xx * yy], -1)
    img = img + 0.02 * rng.standard_normal(img.shape)
    return cs.Face("synthetic", np.clip(img, 0, 1).astype(np.float32) ** 2.2, size / 2, size / 2,
                   size / cal.SOURCE_FRAMING, "record")


def test_physics_are_deterministic_and_not_the_cross_simulators():
    faces = [_face(seed=k) for k in range(3)]
    a = cs.make_crops(faces, 32, 3, 12, seed=5, physics=cal.CALIBRATION)
    b = cs.make_crops(faces, 32, 3, 12, seed=5, physics=cal.CALIBRATION)
    np.testing.assert_array_equal(a[0], b[0])
    crops, species, photo = a
    assert crops.shape == (15, 32, 32, 3) and crops.dtype == np.uint8
    # an odd number of sources shows every source on every medium exactly once
    assert sorted(zip(photo[3:], species[3:])) == [(p, s) for p in range(3) for s in range(1, 5)]
    assert not set(cal.CAL_ATTACKS) & set(cs.ATTACKS)
    other = cs.make_crops(faces, 32, 3, 12, seed=5)
    assert not np.array_equal(other[0][3:], crops[3:])
    # every medium leaves a mark: its crop differs from the live crop of the same source
    for k in range(3, 15):
        live = crops[photo == photo[k]][0].astype(float)
        assert np.abs(crops[k].astype(float) - live).mean() > 1.0


def test_every_medium_puts_texture_on_a_flat_photo():
    """A flat grey photo on each medium: the radiance must carry fine structure (dots, stripes,
    banding, sparkle) that a smooth glare cannot explain; the photo alone has none."""
    from scipy import ndimage   # noqa: PLC0415 (lazily: only this test filters)
    photo = np.full((48, 48, 3), 0.25, np.float32)
    for kind in cal.CAL_ATTACKS:
        rad = cal.cal_radiance(kind, photo, 32, np.random.default_rng(3))
        fine = rad - ndimage.gaussian_filter(rad, (3 * cs.SS, 3 * cs.SS, 0), mode="nearest")
        assert np.std(fine) > 0.02 * rad.mean(), kind   # glare alone: at most ~0.01


def test_hue_demosaic_keeps_a_flat_colour():
    n = 16
    yy, xx = np.mgrid[0:n, 0:n]
    ch = np.where((yy % 2 == 0) & (xx % 2 == 0), 2, np.where((yy % 2 == 1) & (xx % 2 == 1), 0, 1))
    colour = np.array([0.6, 0.3, 0.1], np.float32)
    out = cal.demosaic_hue(colour[ch], ch)
    np.testing.assert_allclose(out, np.broadcast_to(colour, out.shape), rtol=1e-2)


def test_sources_refuse_a_split_without_live_records(monkeypatch):
    monkeypatch.setattr(cal.synthetic_spoof, "load_metadata",
                        lambda *a, **k: {"species": np.array([1, 2, 0])})
    with pytest.raises(ValueError, match="live records"):
        cal.sources("s64_small", "/nonexistent", "dev", how="stored")


def test_rendered_sources_are_the_records_with_a_photographs_detail():
    """Sources re-rendered at the camera's sampling resolution (round 4): deterministic whatever the
    worker count, an odd number, the same scenes as the records' resolution shows them, and finer
    detail than a record upsampled to that resolution (what the stored sources gave the camera)."""
    from PIL import Image   # noqa: PLC0415 (lazily: only this test resizes)
    lo = cal.rendered_live("s64_small", "dev", 48, num_workers=1)
    hi = cal.rendered_live("s64_small", "dev", 144, num_workers=1)
    assert len(hi) % 2 == 1 and len(hi) == len(lo) >= 3
    assert hi[0][1].shape == (144, 144, 3) and hi[0][1].dtype == np.uint8
    again = cal.rendered_live("s64_small", "dev", 144, num_workers=2)
    assert [n for n, _ in again] == [n for n, _ in hi]
    for (_, a), (_, b) in zip(again, hi):
        np.testing.assert_array_equal(a, b)

    def detail(x):
        x = x.astype(np.float32)
        return np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean()

    other = np.roll(np.arange(len(lo)), 1)
    for k, ((_, small), (_, big)) in enumerate(zip(lo, hi)):
        shrunk = big.astype(np.float32).reshape(48, 3, 48, 3, 3).mean((1, 3))
        same = np.abs(shrunk - small).mean()
        assert same < 10.0 and same < np.abs(shrunk - lo[other[k]][1]).mean()
        upsampled = np.asarray(Image.fromarray(small).resize((144, 144), Image.BILINEAR))
        assert detail(big) > 1.4 * detail(upsampled)
    with pytest.raises(ValueError, match="calibration sources"):
        cal.sources("s64_small", "/nonexistent", "dev", how="upsampled")


def test_calibrate_and_write_through_the_command_line(trained_workdir, synthetic_data_dir,
                                                     tmp_path, capsys):
    from despoof_jax.serving import pretrained   # noqa: PLC0415 (lazily: only this test packs)
    packed = tmp_path / "packed"
    pretrained.pack(trained_workdir, packed)
    before = api.load(str(packed)).threshold
    out = tmp_path / "cal.json"
    # default sources: the records re-rendered (nothing read from a data dir)
    rc = cli.main(["--cpu-kernels=default", "calibrate", "--model", str(packed),
                   "--builder-config", "s64_small", "--draws", "50",
                   "--json", str(out), "--write"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["sources"] == "render"
    n_src = report["test"]["n"]["live"]
    assert n_src % 2 == 1 and report["test"]["n"]["spoof"] == 4 * n_src
    assert report["dev_threshold"] == pytest.approx(before)
    info = json.loads((packed / "model.json").read_text())
    assert info["criterion"] == "calibration_simulator"
    assert info["calibration"]["sources"] == "render"
    assert info["dev_threshold"] == pytest.approx(before)
    assert api.load(str(packed)).threshold == pytest.approx(report["threshold"])
    assert report["dev"]["acer"]["value"] <= report["dev"]["acer_at_dev_threshold"] + 1e-12
    # choosing the decision score too: the fusion of lowest dev ACER, each at its own threshold;
    # sources: the stored records (round 3), which need the data dir
    assert cli.main(["--cpu-kernels=default", "calibrate", "--model", str(packed),
                     "--sources", "stored", "--builder-config", "s64_small"]) == 2
    assert "--data-dir" in capsys.readouterr().err
    # the options of --bona-fide are refused without it, not ignored
    assert cli.main(["--cpu-kernels=default", "calibrate", "--model", str(packed),
                     "--out", str(tmp_path / "copy")]) == 2
    assert "--out: options of --bona-fide" in capsys.readouterr().err
    assert cli.main(["--cpu-kernels=default", "calibrate", "--model",
                     str(tmp_path / "missing")]) == 2                   # one line, no traceback
    assert capsys.readouterr().err.startswith("error: ")
    rc = cli.main(["--cpu-kernels=default", "calibrate", "--model", str(packed), "--data-dir",
                   synthetic_data_dir, "--builder-config", "s64_small", "--draws", "20",
                   "--sources", "stored", "--fusions", "map,noise", "--json", str(out), "--write"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["sources"] == "stored"
    cands = report["candidates"]
    assert set(cands) == {"map", "noise"}
    assert cands[report["fusion"]]["dev_acer"] == min(c["dev_acer"] for c in cands.values())
    model = api.load(str(packed))
    assert (model.fusion, model.threshold) == (report["fusion"], pytest.approx(report["threshold"]))
    info = json.loads((packed / "model.json").read_text())
    assert info["dev_threshold"] == pytest.approx(before)   # the first calibration's record kept
    with pytest.raises(ValueError, match="calibration fusions"):
        cal.parse_fusions("map,sharpness")


def test_calibration_as_a_runs_last_step(trained_workdir, tmp_path):
    """`eval.calibration`: what `experiment.train_and_evaluate` calls after the evaluation (here on
    a copy of the suite's trained workdir, its sources the suite's own `s64_small` records)."""
    import shutil   # noqa: PLC0415 (lazily: only this test copies)
    wd = tmp_path / "workdir"
    shutil.copytree(trained_workdir, wd)
    config = api.read_config(api.find_workdir(str(wd)))
    with config.unlocked():
        config.eval.calibration = cal.METHOD
        config.eval.calibration_fusions = "map,noise"
        config.eval.calibration_sources = "stored"   # the suite's records (the CLI test renders)
    cal.check_config(config)
    before = json.loads((wd / "eval" / "model.json").read_text())
    report = cal.calibrate_workdir(config, str(wd))
    info = json.loads((wd / "eval" / "model.json").read_text())
    assert json.loads((wd / "eval" / "calibration.json").read_text())["threshold"] == info["threshold"]
    assert (info["fusion"], info["threshold"]) == (report["fusion"], report["threshold"])
    assert (info["dev_fusion"], info["dev_threshold"]) == (before["fusion"], before["threshold"])
    model = api.load(str(wd))
    assert (model.fusion, model.threshold) == (report["fusion"], report["threshold"])


def test_calibration_config_is_checked_before_training():
    from despoof_jax import config as config_lib   # noqa: PLC0415 (lazily: config only)
    c = config_lib.base_config()
    c.eval.calibration = "somewhere"
    with pytest.raises(ValueError, match="eval.calibration"):
        cal.check_config(c)
    c.eval.calibration = cal.METHOD
    c.eval.calibration_sources = "upsampled"
    with pytest.raises(ValueError, match="calibration sources"):
        cal.check_config(c)
    c.eval.calibration_sources = "render"
    c.method = "binary_cnn"
    with pytest.raises(ValueError, match="de-spoofing method"):
        cal.check_config(c)
