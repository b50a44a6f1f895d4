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


def test_held_out_bpcer_leaves_each_group_out_of_its_threshold():
    # By hand: three groups; each fold's threshold at BPCER 0 passes every score of the others.
    score = np.r_[np.zeros(20), np.ones(20), 0.5 + np.zeros(20)]
    groups = ["a"] * 20 + ["b"] * 20 + ["c"] * 20
    r = bona_fide.held_out_bpcer(score, groups, 0.0, draws=200)
    # left out: a -> t just above 1 (rejects none of a), b -> t just above 0.5 (all of b),
    # c -> t just above 1 (none of c)
    assert r["groups"] == 3 and r["n"] == 60 and r["bpcer"] == pytest.approx(20 / 60)
    assert r["worst_group"] == {"group": "b", "bpcer": 1.0}
    assert r["ci95"][0] <= r["bpcer"] <= r["ci95"][1] and r["ci95"][1] == 1.0
    # People who differ: the threshold set on all of them (in-sample) rejects the allowed 5 %;
    # people it did not see are rejected more often, and how much depends on who they are, so
    # the interval over people is wide. With no person effect the two agree, and it is narrow.
    rng = np.random.default_rng(0)
    people = np.repeat(np.arange(12), 15)
    got = {}
    for person_sd in (1.0, 0.0):
        s = rng.normal(0, 1, 12)[people] * person_sd + rng.normal(0, 0.2, people.size)
        assert (s >= bona_fide.threshold_at_bpcer(s, 0.05)).mean() == pytest.approx(9 / 180)
        got[person_sd] = bona_fide.held_out_bpcer(s, people, 0.05)
    width = {k: r["ci95"][1] - r["ci95"][0] for k, r in got.items()}
    assert got[1.0]["bpcer"] > 9 / 180 and width[1.0] > 2 * width[0.0]
    assert got[1.0]["worst_group"]["bpcer"] > 0.5
    assert 0.5 * 9 / 180 <= got[0.0]["bpcer"] <= 2 * 9 / 180
    with pytest.raises(ValueError, match="one group"):
        bona_fide.held_out_bpcer(np.zeros(30), ["a"] * 30, 0.05)
    with pytest.raises(ValueError, match="needs at least"):
        bona_fide.held_out_bpcer(np.zeros(30), ["a"] * 15 + ["b"] * 15, 0.05)
    with pytest.raises(ValueError, match="group labels"):
        bona_fide.held_out_bpcer(np.zeros(30), ["a"] * 29, 0.05)
    # the groups of captures, from the file each was read from: a video's frames are one file,
    # a folder is one person
    files = ["p1/x.png", "p1/y.png", "p2/v.avi", "p2/v.avi", "p3/odd#3"]
    assert bona_fide.capture_groups(files, "folder") == ["p1", "p1", "p2", "p2", "p3"]
    with pytest.raises(ValueError, match="held-out groups"):
        bona_fide.capture_groups(files, "person")


def test_read_captures_names_each_frame_and_keeps_its_file(tmp_path):
    # a clip's frames are named path#frame and grouped by their file, as is an image whose own
    # name ends in "#<digits>" (a name is never parsed back into a file)
    r = np.random.default_rng(0)
    frames = [Image.fromarray(r.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    (tmp_path / "p1").mkdir()
    (tmp_path / "p2").mkdir()
    frames[0].save(tmp_path / "p1" / "clip.gif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "p2" / "odd#1.png")
    names, images, failures, files = bona_fide.read_captures([tmp_path])
    clip, odd = str(tmp_path / "p1" / "clip.gif"), str(tmp_path / "p2" / "odd#1.png")
    assert failures == [] and len(images) == 4
    assert names == [f"{clip}#0", f"{clip}#1", f"{clip}#2", odd]
    assert bona_fide.capture_groups(files, "file") == [clip, clip, clip, odd]
    assert bona_fide.capture_groups(files, "folder") == [str(tmp_path / "p1")] * 3 + [
        str(tmp_path / "p2")]


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
    assert report["bpcer_upper95"] > report["bpcer"] and "held_out" not in report
    # --held-out file: each crop a group (leave one out); the library form with the same groups
    # gives the same figure
    rc = cli.main(["--cpu-kernels=default", "calibrate", "--model", str(packed), "--bona-fide",
                   str(crops), "--bpcer", "0.1", "--held-out", "file", "--json", str(out)])
    assert rc == 0
    held = json.loads(out.read_text())
    assert held["threshold"] == pytest.approx(report["threshold"])
    assert held["held_out"]["by"] == "file" and held["held_out"]["groups"] == 24
    assert held["held_out"] == {"by": "file", **bona_fide.threshold_for(
        model, images, 0.1, groups=bona_fide.capture_groups(held["captures"], "file"))["held_out"]}
    # --held-out folder: one folder a person, found in the folder's subfolders (6 of 4 captures)
    people = tmp_path / "people"
    for k, img in enumerate(images):
        (people / f"p{k // 4}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(people / f"p{k // 4}" / f"{k:02d}.png")
    rc = cli.main(["--cpu-kernels=default", "calibrate", "--model", str(packed), "--bona-fide",
                   str(people), "--bpcer", "0.1", "--held-out", "folder", "--json", str(out)])
    assert rc == 0
    by_person = json.loads(out.read_text())
    assert by_person["held_out"]["groups"] == 6 and by_person["held_out"]["n"] == 24
    assert by_person["held_out"]["worst_group"]["group"].startswith(str(people))
    assert by_person["held_out"] == {"by": "folder", **bona_fide.held_out_bpcer(
        np.asarray(model.score(images).score), [k // 4 for k in range(24)], 0.1)} | {
        "worst_group": by_person["held_out"]["worst_group"]}
    capsys.readouterr()
    for argv, message in ((["--bona-fide", str(crops), "--held-out", "folder"], "all of one folder"),
                          (["--held-out", "file"], "--held-out leaves")):
        rc = cli.main(["--cpu-kernels=default", "calibrate", "--model", str(packed), *argv])
        assert rc == 2 and message in capsys.readouterr().err
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
    assert mine.criterion == bona_fide.CRITERION
    # the copy's score table says where its threshold came from, and no longer asks for one
    capsys.readouterr()
    assert cli.main(["--cpu-kernels=default", "score", str(crops / "user00.png"), "--model",
                     str(copy)]) == 0
    header = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("#")]
    assert header == [header[0]] and header[0].endswith(
        "set by a BPCER on bona fide captures (despoof calibrate --bona-fide)"), header
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
