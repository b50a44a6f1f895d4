"""A threshold from the deployment's own bona fide captures (`despoof calibrate --bona-fide`): the
operating-point rule, its bound, and the command end to end on a trained model."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from despoof_jax import cli
from despoof_jax.serving import model as api
from despoof_jax.tools import bona_fide


def test_threshold_rejects_at_most_the_allowed_share_and_is_the_lowest_that_does():
    rng = np.random.default_rng(0)
    for n, bpcer in ((50, 0.05), (50, 0.1), (37, 0.0), (200, 0.2), (21, 0.05)):
        live = rng.normal(0, 1, n)
        t = bona_fide.threshold_at_bpcer(live, bpcer)
        allowed = int(np.floor(bpcer * n + 1e-9))
        assert (live >= t).sum() == allowed
        # any lower threshold rejects more: the next score below t is rejected too
        below = live[live < t]
        assert (live >= below.max()).sum() > allowed
    # ties at the cut cannot be split: the threshold passes all of them, with a margin that
    # float32 (the exported program's precision) keeps
    live = np.array([0.0, 1.0, 2.0, 2.0, 2.0])
    t = bona_fide.threshold_at_bpcer(live, 0.2)
    assert (live >= t).sum() == 0 and np.float32(t) > np.float32(2.0)
    # adjacent float32 scores at the cut: their float64 midpoint rounds onto the kept one in
    # float32, where the model decides; the threshold must still keep it
    one = np.float32(1.0)
    live = np.array([0.0] * 19 + [one, np.nextafter(one, np.float32(2))], np.float32)
    t = bona_fide.threshold_at_bpcer(live, 0.05)
    assert (live >= np.float32(t)).sum() == 1 and (live.astype(np.float64) >= t).sum() == 1
    # a share so close to 1 that every score but one may go: the lowest must still pass
    assert bona_fide.threshold_at_bpcer(np.arange(1000.0), 1 - 1e-12) == 0.5
    for bad in (np.array([]), np.array([0.0, np.nan])):
        with pytest.raises(ValueError, match="finite"):
            bona_fide.threshold_at_bpcer(bad, 0.05)
    with pytest.raises(ValueError, match="bpcer"):
        bona_fide.threshold_at_bpcer(np.zeros(30), 1.0)


def test_bpcer_bound_is_clopper_pearson():
    assert bona_fide.bpcer_upper(0, 60) == pytest.approx(1 - 0.05 ** (1 / 60))   # ~ 3 / n
    assert bona_fide.bpcer_upper(0, 20) > bona_fide.bpcer_upper(0, 200)
    assert bona_fide.bpcer_upper(1, 20) > bona_fide.bpcer_upper(0, 20)
    assert bona_fide.bpcer_upper(20, 20) == 1.0
    # in between, by definition: the BPCER p at which seeing <= k rejections has probability
    # 1 - level; (1 - p)^20 + 20 p (1 - p)^19 = 0.05 at p = 0.2161
    assert bona_fide.bpcer_upper(1, 20) == pytest.approx(0.2161, abs=1e-4)
    for k, n, level in ((3, 60, 0.9), (7, 45, 0.95)):
        p = bona_fide.bpcer_upper(k, n, level=level)
        assert sum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k + 1)) == \
            pytest.approx(1 - level, abs=1e-9)
    for bad in ((-1, 20), (21, 20), (0, 0)):
        with pytest.raises(ValueError, match="bpcer_upper"):
            bona_fide.bpcer_upper(*bad)


def test_calibrate_on_bona_fide_crops_through_the_command_line(trained_workdir, synthetic_data_dir,
                                                               tmp_path, capsys):
    from despoof_jax.data.builders.synthetic_spoof import synthetic_spoof   # noqa: PLC0415
    from despoof_jax.serving import pretrained   # noqa: PLC0415 (lazily: only this test packs)
    packed = tmp_path / "packed"
    pretrained.pack(trained_workdir, packed)
    before = api.load(str(packed)).threshold
    images = []   # the live records of dev and test (12 each) as a user's captures
    for split in ("dev", "test"):
        meta = synthetic_spoof.load_metadata("s64_small", synthetic_data_dir, split)
        src = synthetic_spoof.load_source("s64_small", synthetic_data_dir, split)
        images += [np.asarray(src[int(i)]["image"])
                   for i in np.flatnonzero(np.asarray(meta["species"]) == 0)]
    assert len(images) == 24
    crops = tmp_path / "crops"
    crops.mkdir()
    for k, img in enumerate(images):
        Image.fromarray(img).save(crops / f"user{k:02d}.png")
    out = tmp_path / "bf.json"
    rc = cli.main(["--cpu-kernels=default", "calibrate", "--model", str(packed), "--bona-fide",
                   str(crops), "--bpcer", "0.1", "--json", str(out), "--write"])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["n"] == len(images) and len(report["captures"]) == len(images)
    assert report["current_threshold"] == pytest.approx(before)
    model = api.load(str(packed))
    assert model.threshold == pytest.approx(report["threshold"])
    again = bona_fide.threshold_for(model, images, 0.1)   # the library form, from arrays
    assert again["threshold"] == pytest.approx(report["threshold"]) and again["n"] == 24
    with pytest.raises(ValueError, match="need at least"):
        bona_fide.threshold_for(model, images[:5])
    # gray captures stored as RGB: refused like the model's other inputs, accepted with allow_gray
    gray = [np.repeat(img.mean(-1, keepdims=True).astype(np.uint8), 3, -1) for img in images]
    with pytest.raises(ValueError, match="gray"):
        bona_fide.threshold_for(model, gray, 0.1)
    assert bona_fide.threshold_for(model, gray, 0.1, allow_gray=True)["n"] == 24
    decided = np.asarray(model.score(images).score) >= model.threshold
    assert decided.sum() == int(np.floor(0.1 * len(images))) == round(report["bpcer"] * len(images))
    assert report["bpcer_upper95"] > report["bpcer"]
    info = json.loads((packed / "model.json").read_text())
    assert info["criterion"] == bona_fide.CRITERION and info["dev_threshold"] == pytest.approx(before)
    # --out: a copy of the packaged model with the new threshold; the model itself untouched
    copy = tmp_path / "mine"
    rc = cli.main(["--cpu-kernels=default", "calibrate", "--model", str(packed), "--bona-fide",
                   str(crops), "--bpcer", "0.05", "--out", str(copy)])
    assert rc == 0
    assert json.loads((packed / "model.json").read_text()) == info
    mine = api.load(str(copy))
    assert mine.threshold >= model.threshold   # rejecting fewer of the same captures
    assert (np.asarray(mine.score(images).score) >= mine.threshold).sum() == 1   # floor(0.05 * 24)
    # too few captures, an unreadable one, simulator options, a non-empty --out: each a clear
    # error, nothing written
    few = tmp_path / "few"
    few.mkdir()
    for k in range(3):
        Image.fromarray(images[k]).save(few / f"{k}.png")
    (crops / "broken.png").write_bytes(b"not a png")
    for argv, message in ((["--bona-fide", str(few), "--write"], "need at least"),
                          (["--bona-fide", str(crops), "--write"], "cannot be read"),
                          (["--bona-fide", str(few), "--fusions", "map", "--write"], "simulator"),
                          (["--bona-fide", str(few), "--out", str(copy)], "not empty")):
        rc = cli.main(["--cpu-kernels=default", "calibrate", "--model", str(packed), *argv])
        assert rc == 2 and message in capsys.readouterr().err
    assert json.loads((packed / "model.json").read_text()) == info


def test_the_current_threshold_is_counted_as_the_loaded_model_decides():
    """The library decides in float64 (`DespoofModel.score`); a live score just below the
    current threshold but float32-equal to it passes there, so it is not counted rejected."""
    from types import SimpleNamespace  # noqa: PLC0415
    live = np.r_[np.linspace(-3.0, -1.0, 29), 0.1 - 1e-10]
    assert np.float32(live[-1]) >= np.float32(0.1)          # float32 would call it an attack
    model = SimpleNamespace(threshold=0.1, fusion="map", score=lambda images, **kw:
                            SimpleNamespace(score=live[:len(images)]))
    report = bona_fide.threshold_for(model, [None] * live.size, 0.05)
    assert report["bpcer_at_current"] == 0.0
    assert report["bpcer"] == 1 / 30 and report["threshold"] < live[-1]
