"""The real-dataset builders on miniature trees in the published layouts (tests/data/fake_trees.py):
frames per video and split, labels, species, identities, protocol membership read from the files,
crops that follow the face, resumable preparation, every kind of bad input, and a smoke training run
through configs/protocol_oulu.py."""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from despoof_jax import experiment
from despoof_jax.data import datasets, faces, protocols
from despoof_jax.data.builders import real_common
from tests.data import fake_trees
from tests.util import config_module

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# 64 px crops of every 2nd frame: the face moves 6 px right and 2 px down between kept frames.
T64 = real_common.RealConfig(name="t64", size=64, stride=2)
# Oulu-NPU: one user per split, phones 1-2, sessions 1 and 3, all five files: 60 videos.
OULU_VIDEOS = [(p, s, u, f) for u in (1, 21, 36) for p in (1, 2) for s in (1, 3)
               for f in range(1, 6)]


def _build(name, root, data_dir, config=T64, **kwargs):
    kwargs.setdefault("num_workers", 1)
    kwargs.setdefault("partial", True)   # the miniature trees hold a few of the videos
    return real_common.prepare(name, config, data_dir, manual_dir=root, **kwargs)


def _records(builder, split):
    source = real_common.data_source(builder, split)
    return [source[i] for i in range(len(source))]


def _crop_error(record, frame: fake_trees.Frame, box: faces.FaceBox, config=T64) -> float:
    """Mean absolute difference between a record's image and the crop of the true (unencoded)
    frame around `box`."""
    want = faces.crop(frame.rgb, box, scale=config.crop_scale, size=config.size).astype(float)
    return float(np.abs(record["image"].astype(float) - want).mean())


def _depth_centroid(record) -> np.ndarray:
    d = record["depth"][..., 0].astype(float)
    ii, jj = np.nonzero(d)
    return np.array([jj.mean(), ii.mean()])


def _check_crops_follow_the_face(records, written, box_of, config=T64, tol=5.0,
                                 steady=lambda r: True):
    """Each record is the crop around its frame's face box `box_of(record, frame)` (computed on
    the unencoded frame); the face stays put in the crop (its depth centroid moves < 1.5 px over
    the `steady` records of a video, whose boxes come from one source) while it moves 6 px per
    kept frame in the video."""
    by_video = {}
    for r in records:
        fr = written[r["source"].decode()][r["frame_index"]]
        assert _crop_error(r, fr, box_of(r, fr), config) < tol, (r["source"], r["frame_index"])
        if steady(r):
            by_video.setdefault(r["source"], []).append(_depth_centroid(r))
    for source, centroids in by_video.items():
        assert np.abs(np.array(centroids) - centroids[0]).max() < 1.5, source
        assert np.abs(centroids[0] - config.size / 2).max() < 0.15 * config.size, source


# ---------------------------------------------------------------------------------------------
# Oulu-NPU.


@pytest.fixture(scope="module")
def oulu(tmp_path_factory):
    """A miniature Oulu-NPU tree (under manual/oulu_npu/) whose Protocol_1/Train.txt omits one
    video the published rule would list, so that reading the files is observable."""
    manual = tmp_path_factory.mktemp("manual")
    root = manual / "oulu_npu"
    written = fake_trees.oulu_tree(str(root), OULU_VIDEOS, n_frames=5)
    p1_train = root / "Protocols" / "Protocol_1" / "Train.txt"
    lines = p1_train.read_text().splitlines()
    assert "-1,2_1_01_5" in lines
    # the published Test lists write -2 for display attacks (files 4, 5): the build must take it
    assert "-2,2_3_36_5" in (root / "Protocols" / "Protocol_1" / "Test.txt").read_text().split()
    p1_train.write_text("\n".join(line for line in lines if line != "-1,2_1_01_5") + "\n")
    return {"manual": str(manual), "root": str(root), "written": written}


@pytest.fixture(scope="module")
def oulu_t64(oulu, tmp_path_factory):
    return _build("oulu_npu", oulu["manual"], tmp_path_factory.mktemp("tfds"))


def test_oulu_records_follow_the_names_and_the_faces(oulu, oulu_t64):
    builder = oulu_t64
    assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
    assert real_common.skipped(builder) == []
    for split, folder in fake_trees.OULU_FOLDERS.items():
        records = _records(builder, split)
        names = sorted(n for n in oulu["written"]
                       if fake_trees.oulu_split(int(n.split("_")[2])) == split)
        assert len(records) == 3 * len(names) == 60   # frames 0, 2, 4 of each 5-frame video
        for k, name in enumerate(names):
            p, s, u, f = (int(x) for x in name.split("_"))
            for j, r in enumerate(records[3 * k:3 * k + 3]):
                assert r["source"].decode() == f"{folder}/{name}.avi"
                assert (r["frame"], r["frame_index"]) == (j, 2 * j)
                assert (r["label"], r["species"], r["device"], r["identity"], r["session"]) == (
                    int(f != 1), f - 1, p - 1, u, s - 1)
                assert r["video"] == int(name.replace("_", ""))
                assert r["image"].shape == (64, 64, 3) and r["depth"].shape == (64, 64, 1)
        written = {f"{folder}/{n}.avi": fr for n, fr in oulu["written"].items()}
        _check_crops_follow_the_face(
            records, written, lambda r, fr: faces.box_from_eyes(*fake_trees.eyes_of(fr)))


def test_oulu_protocols_are_read_from_the_protocol_files(oulu, oulu_t64):
    from despoof_jax.data.builders import oulu_npu
    data = {split: real_common.load_metadata(oulu_t64, split) for split in real_common.SPLITS}
    sources = {split: np.array([r["source"].decode() for r in _records(oulu_t64, split)])
               for split in real_common.SPLITS}
    listed_in = {}
    for path in glob.glob(os.path.join(oulu["root"], "Protocols", "*", "*.txt")):
        rel = os.path.relpath(path, os.path.join(oulu["root"], "Protocols"))
        listed_in[rel] = {line.split(",")[1] for line in open(path).read().split()}
    split_stem = {"train": "Train", "dev": "Dev", "test": "Test"}
    for name, protocol in oulu_npu.PROTOCOLS.items():
        number = int(name[-1])
        rule = protocols.get_protocol(name, "oulu_npu")   # protocols.py's reading of the paper
        assert len(protocol.folds) == len(rule.folds) == (6 if number > 2 else 1)
        for fold in range(len(protocol.folds)):
            for split in real_common.SPLITS:
                meta = data[split]
                got = protocols.select_indices(meta, protocol, split, fold)
                stem = split_stem[split] + (f"_{fold + 1}" if number > 2 else "")
                listed = listed_in[f"Protocol_{number}/{stem}.txt"]
                want = [i for i, s in enumerate(sources[split])
                        if os.path.basename(s)[:-4] in listed]
                np.testing.assert_array_equal(got, want)
                # The files follow the published rules, except the line removed from
                # Protocol_1/Train.txt: the file wins.
                ruled = protocols.select_indices(meta, rule, split, fold)
                dropped = np.flatnonzero(sources[split] == "Train_files/2_1_01_5.avi")
                if (name, split) == ("oulu_p1", "train"):
                    np.testing.assert_array_equal(np.setdiff1d(ruled, got), dropped)
                else:
                    np.testing.assert_array_equal(got, ruled)
    # The training door (datasets.protocol_indices) selects by the files too.
    config = _oulu_config("p1", oulu, "unused")
    idx = datasets.protocol_indices(config.data, "train", data["train"])
    assert len(idx) == 27 and "Train_files/2_1_01_5.avi" not in set(sources["train"][idx])


def test_oulu_builds_the_tfds_way_and_resumes_after_a_kill(oulu, tmp_path):
    """tfds.builder(...).download_and_prepare(DownloadConfig(manual_dir=M)) with the default
    config; a preparation killed half-way keeps the videos it finished."""
    data_dir = str(tmp_path / "tfds")
    script = ("import despoof_jax.data.builders.oulu_npu, tensorflow_datasets as tfds; "
              f"b = tfds.builder('oulu_npu', data_dir={data_dir!r}, num_workers=1, "
              "partial=True); "
              "b.download_and_prepare(download_config=tfds.download.DownloadConfig("
              f"manual_dir={oulu['manual']!r}))")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = os.path.join(data_dir, "downloads", "despoof_frames", "oulu_npu", "*", "*", "*.npz")
    deadline = time.time() + 120
    while len(glob.glob(cache)) < 5 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(glob.glob(cache))
    assert 5 <= done < len(OULU_VIDEOS), "the preparation was not stopped half-way"

    import despoof_jax.data.builders.oulu_npu  # noqa: F401 (registers the builder)
    builder = tfds.builder("oulu_npu", data_dir=data_dir, num_workers=1, partial=True)
    assert builder.builder_config.name == "default"
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=oulu["manual"]))
    assert builder.stats == {"videos": len(OULU_VIDEOS), "cached": done}
    assert not glob.glob(cache)   # the frame cache goes once the dataset is written
    source = builder.as_data_source("test")
    assert len(source) == 20   # stride 10: frame 0 of each 5-frame video
    assert source[0]["image"].shape == (256, 256, 3) and source[0]["frame_index"] == 0


def _oulu_config(variant, oulu, data_dir):
    protocol_oulu = config_module("protocol_oulu")
    c = protocol_oulu.get_config(variant)
    c.data.data_dir = str(data_dir)
    c.data.manual_dir = oulu["manual"]
    c.data.partial_download = True
    return c


def test_oulu_p1_smoke_training_run(oulu, tmp_path):
    """configs/protocol_oulu.py:p1,smoke end to end (2 + 2 steps) on the miniature tree."""
    c = _oulu_config("p1,smoke", oulu, tmp_path / "tfds")
    c.train.stage1_steps = c.train.stage2_steps = 2
    c.train.checkpoint_every = 2
    c.eval.batch_size = 32
    out = experiment.train_and_evaluate(c, str(tmp_path / "work"))
    assert out["dq"]["step"] == 2 and out["ds"]["step"] == 2
    metrics = json.load(open(tmp_path / "work" / "eval" / "metrics.json"))
    assert 0 <= metrics["fusions"]["average"]["frame"]["acer"] <= 1
    scores = open(tmp_path / "work" / "eval" / "scores_test.csv").read().splitlines()
    assert len(scores) == 1 + 10   # P1 test: session 3, 10 videos, 1 frame each (stride 30)


# ---------------------------------------------------------------------------------------------
# CASIA-FASD, Replay-Attack, MSU-MFSD.


def test_casia_uses_the_detector_and_holds_out_dev_subjects(tmp_path):
    root = str(tmp_path / "casia")
    written = fake_trees.casia_tree(root, {"train": [1, 2], "test": [1]}, n_frames=3)
    config = real_common.RealConfig(name="t64dev1", size=64, stride=2, dev_subjects=1)
    builder = _build("casia_fasd", root, tmp_path / "tfds", config)
    species = dict(zip(fake_trees.CASIA_VIDEOS, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]))
    quality = dict(zip(fake_trees.CASIA_VIDEOS, [0, 1, 2] * 4))
    for split, (release, subject, identity) in {"train": ("train", 1, 1), "dev": ("train", 2, 2),
                                                "test": ("test", 1, 101)}.items():
        records = _records(builder, split)
        assert len(records) == 12 * 2   # 12 videos, frames 0 and 2
        assert {r["identity"] for r in records} == {identity}
        for r in records:
            rel = r["source"].decode()
            v = os.path.basename(rel)[:-4]
            assert rel == f"{release}_release/{subject}/{v}.avi"
            assert (r["species"], r["device"], r["label"]) == (species[v], quality[v],
                                                              int(species[v] > 0))
        # No annotation: every crop is around the face detector's box.
        _check_crops_follow_the_face(records, written, _detected)
    videos = [r["video"] for s in real_common.SPLITS for r in _records(builder, s)]
    assert len(set(videos)) == 36


def _true_box(record, fr: fake_trees.Frame) -> faces.FaceBox:
    del record
    return faces.box_from_rect(*fake_trees.box_of(fr))


def _detected(record, fr: fake_trees.Frame) -> faces.FaceBox:
    del record
    return faces.detector().detect(fr.rgb)


def test_replay_attack_ids_columns_and_the_no_face_fallback(tmp_path):
    root = str(tmp_path / "replay")
    written = fake_trees.replay_tree(root, {"train": [1], "devel": [3], "test": [5]}, n_frames=5,
                                     no_face_frames=(2,))
    builder = _build("replay_attack", root, tmp_path / "tfds")
    for split, folder, client in (("train", "train", 1), ("dev", "devel", 3),
                                  ("test", "test", 5)):
        records = _records(builder, split)
        assert len(records) == 4 * 3
        got = {(r["source"].decode(), int(r["frame_index"])): r for r in records}
        assert {k[1] for k in got} == {0, 2, 4}   # frame 2 says "no face": the detector found it
        for (rel, _), r in got.items():
            assert rel.startswith(folder + "/") and r["identity"] == client
            kind = "live" if "/real/" in rel else os.path.basename(rel).split("_")[1]
            assert r["species"] == {"live": 0, "print": 1, "mobile": 3, "highdef": 4}[kind]
            assert r["label"] == int(kind != "live")
            assert r["light"] == int("adverse" in rel)
            assert r["support"] == (0 if kind == "live" else 1 if "/fixed/" in rel else 2)
        _check_crops_follow_the_face(  # the annotated box, the detector's where there is none
            records, written, lambda r, fr: (_detected if r["frame_index"] == 2 else _true_box)(
                r, fr), steady=lambda r: r["frame_index"] != 2)


@pytest.mark.parametrize("metadata", [True, False])
def test_msu_splits_and_upright_android_videos(tmp_path, metadata):
    """Android videos stored upside down: upright through their display matrix, or, for copies
    that lost it, through the builder config's android_rotation flag."""
    root = str(tmp_path / "msu")
    train, test = ([1, 2], [3]) if metadata else ([1], [2])
    written = fake_trees.msu_tree(root, train, test, n_frames=3, android_metadata=metadata)
    config = real_common.RealConfig(name=f"t64m{int(metadata)}", size=64, stride=2,
                                    dev_subjects=1 if metadata else 0,
                                    android_rotation=0 if metadata else 180)
    builder = _build("msu_mfsd", root, tmp_path / "tfds", config)
    splits = {"train": [1], "dev": [2], "test": [3]} if metadata else {"train": [1], "test": [2]}
    if not metadata:
        with pytest.raises(ValueError, match="no 'dev' records: .*dev_subjects=0"):
            real_common.data_source(builder, "dev")
    for split, clients in splits.items():
        records = _records(builder, split)
        assert len(records) == 8 * 2 * len(clients)
        assert {r["identity"] for r in records} == set(clients)
        for r in records:
            name = os.path.basename(r["source"].decode())
            kind = "live" if name.startswith("real") else name.split("_SD_")[1][:-12]
            assert r["species"] == {"live": 0, "printed_photo": 1, "iphone_video": 3,
                                    "ipad_video": 4}[kind]
            assert r["device"] == int("android" in name)
        _check_crops_follow_the_face(records, written, _true_box)


# ---------------------------------------------------------------------------------------------
# Bad input: a clear error naming the file, or (skip_bad) a recorded, logged skip.


@pytest.fixture
def small_oulu(tmp_path):
    """Three videos (live, one per split) and protocol files; returns the tree's root."""
    root = tmp_path / "oulu"
    fake_trees.oulu_tree(str(root), [(1, 1, 1, 1), (1, 1, 21, 1), (1, 3, 36, 1)], n_frames=5)
    return root


def _skip_then_strict(name, root, data_dir, reason):
    """Building with skip_bad lists exactly one problem matching `reason`; loading that dataset
    without skip_bad is refused, naming it."""
    builder = _build(name, root, data_dir, skip_bad=True)
    left_out = real_common.skipped(builder)
    assert len(left_out) == 1 and reason in left_out[0]["reason"], left_out
    meta = json.load(open(os.path.join(builder.data_dir, "metadata.json")))
    assert meta["skipped"] == left_out
    with pytest.raises(real_common.BadInputError, match="leaves out 1 bad input"):
        _build(name, root, data_dir)
    return builder, left_out[0]


def test_missing_folder_is_named(small_oulu, tmp_path):
    shutil.rmtree(small_oulu / "Dev_files")
    with pytest.raises(FileNotFoundError, match=str(small_oulu / "Dev_files")):
        _build("oulu_npu", small_oulu, tmp_path / "tfds")


def test_missing_manual_download_names_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_release/<subject>"):
        _build("casia_fasd", tmp_path / "nothing", tmp_path / "tfds")


def test_missing_annotation_file(small_oulu, tmp_path):
    (small_oulu / "Dev_files" / "1_1_21_1.txt").unlink()
    with pytest.raises(real_common.BadInputError,
                       match=str(small_oulu / "Dev_files" / "1_1_21_1.txt")):
        _build("oulu_npu", small_oulu, tmp_path / "strict")
    builder, entry = _skip_then_strict("oulu_npu", small_oulu, tmp_path / "skip", "missing")
    assert (entry["split"], entry["source"], entry["frames"]) == (
        "dev", "Dev_files/1_1_21_1.avi", "all")
    with pytest.raises(ValueError, match="no 'dev' records: all its videos were left out"):
        real_common.data_source(builder, "dev")
    assert len(real_common.data_source(builder, "test")) == 3


@pytest.mark.parametrize("stem, label, kind", [("1_3_36_2", "-2", "a print attack"),
                                               ("1_3_36_1", "-1", "live"),
                                               ("1_3_36_4", "+1", "a display attack")])
def test_protocol_label_that_contradicts_its_file(tmp_path, stem, label, kind):
    root = tmp_path / "oulu"
    fake_trees.oulu_tree(str(root), [(1, 1, 1, 1), (1, 1, 21, 1), (1, 3, 36, 1), (1, 3, 36, 2),
                                     (1, 3, 36, 4)], n_frames=2)
    listing = root / "Protocols" / "Protocol_1" / "Test.txt"
    lines = listing.read_text().splitlines()
    number = [line.split(",")[1] for line in lines].index(stem) + 1
    lines[number - 1] = f"{label},{stem}"
    listing.write_text("\n".join(lines) + "\n")
    with pytest.raises(real_common.BadInputError, match=rf"Test\.txt line {number}: label "
                       rf"{re.escape(label)} contradicts {stem} \(file {stem[-1]} is {kind}\)"):
        _build("oulu_npu", root, tmp_path / "tfds")


def test_an_incomplete_download_is_refused_unless_partial(small_oulu, tmp_path):
    # 3 of the published 4950 videos: refused before any video is decoded
    # (and its miniature protocol lists are shorter than the published ones)
    with pytest.raises(real_common.BadInputError, match=r"holds 3 of the 4950 videos of the "
                       r"published dataset and has 42 list file\(s\) of another length than the "
                       r"published one .*: the download looks incomplete"):
        _build("oulu_npu", small_oulu, tmp_path / "strict", partial=False)
    assert not glob.glob(str(tmp_path / "strict" / "downloads" / "despoof_frames" / "**" / "*.npz"),
                         recursive=True)
    builder = _build("oulu_npu", small_oulu, tmp_path / "partial")
    assert builder.info.metadata["videos"] == {"found": 3, "published": 4950, "missing": 0}
    # once built that way, a load that does not say partial is refused, naming the setting
    with pytest.raises(real_common.BadInputError, match="data.partial_download=True"):
        _build("oulu_npu", small_oulu, tmp_path / "partial", partial=False)


def test_partial_download_with_the_published_protocol_lists(tmp_path, caplog):
    """The protocol files list all 4950 videos, 3 are there: an incomplete download, not bad
    input. Refused (naming a missing video and its line) unless partial; with partial, a strict
    build leaves the missing videos out with one warning, and counts them in the metadata."""
    root = tmp_path / "oulu"
    fake_trees.oulu_tree(str(root), [(1, 1, 1, 1), (1, 1, 21, 1), (1, 3, 36, 1)], n_frames=3,
                         listed=fake_trees.OULU_ALL)
    lines = (root / "Protocols" / "Protocol_1" / "Train.txt").read_text().splitlines()
    assert len(lines) == 6 * 2 * 20 * 5 and lines[1] == "-1,1_1_01_2"
    with pytest.raises(real_common.BadInputError, match=r"holds 3 of the 4950 videos of the "
                       r"published dataset and lacks 4947 video\(s\) that the dataset's own lists "
                       r"name \(e\.g\. Train_files/1_1_01_2\.avi, listed in "
                       r"Protocols/Protocol_1/Train\.txt line 2\)"):
        _build("oulu_npu", root, tmp_path / "strict", partial=False)
    with caplog.at_level("WARNING"):
        builder = _build("oulu_npu", root, tmp_path / "partial")
    assert sum("lacks 4947 video(s)" in r.getMessage() for r in caplog.records) == 1
    assert real_common.skipped(builder) == []
    assert builder.info.metadata["videos"] == {"found": 3, "published": 4950, "missing": 4947}
    assert [len(real_common.data_source(builder, s)) for s in real_common.SPLITS] == [2, 2, 2]
    with pytest.raises(real_common.BadInputError, match="4947 listed one"):
        _build("oulu_npu", root, tmp_path / "partial", partial=False)


def test_casia_subject_folder_missing_a_video(tmp_path):
    """A video missing from a subject folder is incompleteness (partial decides); one that is there
    but unreadable stays bad input with partial too."""
    root = tmp_path / "casia"
    fake_trees.casia_tree(str(root), {"train": [1], "test": [1]}, n_frames=1,
                          videos=fake_trees.CASIA_VIDEOS[:-1])
    with pytest.raises(real_common.BadInputError, match=r"lacks 2 video\(s\) .*"
                       r"train_release/1/HR_4\.avi, one of the 12 videos of train_release/1/"):
        _build("casia_fasd", root, tmp_path / "strict", partial=False)
    builder = _build("casia_fasd", root, tmp_path / "partial")
    assert builder.info.metadata["videos"] == {"found": 22, "published": 600, "missing": 2}
    assert len(real_common.data_source(builder, "test")) == 11 and not real_common.skipped(builder)
    (root / "test_release" / "1" / "1.avi").write_bytes(b"not a video" * 100)
    with pytest.raises(real_common.BadInputError, match=r"test_release/1/1\.avi: cannot open"):
        _build("casia_fasd", root, tmp_path / "broken")


def test_replay_video_without_its_face_file(tmp_path):
    """Bad input (the video is there), not an incomplete download: it still counts as found."""
    root = tmp_path / "replay"
    fake_trees.replay_tree(str(root), {"train": [1], "devel": [3], "test": [5]}, n_frames=1,
                           attacks=())
    rel = "devel/real/client003_session01_webcam_authenticate_controlled_1"
    (root / "face-locations" / (rel + ".face")).unlink()
    with pytest.raises(real_common.BadInputError, match=str(root / rel) + r"\.mov: its face file "
                       rf"face-locations/{rel}\.face is missing"):
        _build("replay_attack", root, tmp_path / "strict")
    builder, entry = _skip_then_strict("replay_attack", root, tmp_path / "skip", "face file")
    assert entry["source"] == rel + ".mov" and entry["frames"] == "all"
    assert builder.info.metadata["videos"] == {"found": 3, "published": 1200, "missing": 0}


def test_unreadable_video(small_oulu, tmp_path):
    (small_oulu / "Train_files" / "1_1_01_1.avi").write_bytes(b"not a video" * 100)
    with pytest.raises(real_common.BadInputError, match=str(
            small_oulu / "Train_files" / "1_1_01_1.avi") + ": cannot open"):
        _build("oulu_npu", small_oulu, tmp_path / "strict")
    builder, _ = _skip_then_strict("oulu_npu", small_oulu, tmp_path / "skip", "cannot open")
    assert "train" not in builder.info.splits and len(_records(builder, "dev")) == 3


def test_truncated_video(small_oulu, tmp_path):
    path = small_oulu / "Test_files" / "1_3_36_1.avi"
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * 0.8)])
    with pytest.raises(real_common.BadInputError, match=str(path) + ": truncated"):
        _build("oulu_npu", small_oulu, tmp_path / "strict")
    _skip_then_strict("oulu_npu", small_oulu, tmp_path / "skip", "truncated")


def test_annotation_shorter_than_the_video(small_oulu, tmp_path):
    txt = small_oulu / "Train_files" / "1_1_01_1.txt"
    txt.write_text("\n".join(txt.read_text().splitlines()[:3]) + "\n")   # frames 0-2 of 5
    with pytest.raises(real_common.BadInputError, match=r"1_1_01_1\.avi: annotation file "
                       r"Train_files/1_1_01_1\.txt covers frames 0\.\.2 but the video has 5"):
        _build("oulu_npu", small_oulu, tmp_path / "strict")
    builder, entry = _skip_then_strict("oulu_npu", small_oulu, tmp_path / "skip", "covers")
    assert entry["frames"] == [4]
    assert [r["frame_index"] for r in _records(builder, "train")] == [0, 2]


def test_annotation_shorter_than_the_video_covering_every_sampled_frame(small_oulu, tmp_path):
    """Frames 0..3 of 5 annotated, stride 3 samples 0 and 3: nothing is lost, so no error."""
    txt = small_oulu / "Train_files" / "1_1_01_1.txt"
    txt.write_text("\n".join(txt.read_text().splitlines()[:4]) + "\n")
    config = real_common.RealConfig(name="t64s3", size=64, stride=3)
    builder = _build("oulu_npu", small_oulu, tmp_path / "tfds", config)
    assert real_common.skipped(builder) == []
    assert [r["frame_index"] for r in _records(builder, "train")] == [0, 3]


def test_oulu_annotation_files_counted_from_1(tmp_path):
    """Files numbering frames 1..5 of 5-frame videos (the last number is the video's length, so
    counting from 0 cannot fit): every crop is around its own frame's eyes, not the next one's."""
    root = tmp_path / "oulu"
    written = fake_trees.oulu_tree(str(root), [(1, 1, 1, 1), (1, 1, 21, 1), (1, 3, 36, 1)],
                                   n_frames=5, first_frame=1)
    assert (root / "Train_files" / "1_1_01_1.txt").read_text().startswith("1,")
    builder = _build("oulu_npu", root, tmp_path / "tfds")
    assert real_common.skipped(builder) == []
    for split, folder in fake_trees.OULU_FOLDERS.items():
        records = _records(builder, split)
        assert [r["frame_index"] for r in records] == [0, 2, 4]
        fr = written[os.path.basename(records[0]["source"].decode())[:-4]]
        for r in records:
            k = r["frame_index"]
            right = _crop_error(r, fr[k], faces.box_from_eyes(*fake_trees.eyes_of(fr[k])))
            assert right < 5.0, (split, k, right)
            if k:   # read from 0, line k (frame k - 1's eyes) would have been used
                shifted = _crop_error(r, fr[k], faces.box_from_eyes(*fake_trees.eyes_of(fr[k - 1])))
                assert shifted > 5.0, (split, k, shifted)


def test_annotation_numbering_that_cannot_be_told(small_oulu, tmp_path):
    """Frames 1..4 annotated in a 5-frame video: counted from 0 with frame 0's line missing, or
    from 1 with the last one's missing. Not guessed: bad input, the whole video."""
    txt = small_oulu / "Train_files" / "1_1_01_1.txt"
    txt.write_text("\n".join(txt.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(real_common.BadInputError, match=str(txt) + r": cannot tell whether the "
                       r"annotation file counts frames from 0 or from 1: it names frames 1\.\.4 "
                       r"and the video decodes to 5 frames"):
        _build("oulu_npu", small_oulu, tmp_path / "strict")
    _, entry = _skip_then_strict("oulu_npu", small_oulu, tmp_path / "skip", "cannot tell")
    assert (entry["source"], entry["frames"]) == ("Train_files/1_1_01_1.avi", "all")


def test_annotation_base_rules(tmp_path):
    assert real_common.annotation_base([0, 1, 2], 5, "f") == 0
    assert real_common.annotation_base([3, 0], 2, "f") == 0     # lines past the end: logged
    assert real_common.annotation_base([1, 2, 3, 4, 5], 5, "f") == 1
    assert real_common.annotation_base([2, 5], 5, "f") == 1
    for numbers, fits in (([1, 2, 3, 4], "both"), ([2, 6], "neither")):
        with pytest.raises(real_common.BadInputError, match=f"f: cannot tell.*fits {fits}"):
            real_common.annotation_base(numbers, 5, "f")
    path = tmp_path / "a.txt"
    path.write_text("0,1,2,3,4\n1,1,2,3,4\n\n1,5,6,7,8\n")
    with pytest.raises(real_common.BadInputError, match=str(path) + r" lines 2 and 4: frame 1 is "
                       "annotated twice"):
        real_common.read_annotation(str(path), "eyes")


def test_replay_face_file_without_frame_0_is_read_from_0(tmp_path, caplog):
    """Replay-Attack's files count from 0 (documented): one lacking frame 0's line is not
    ambiguous; frame 0 is cropped from the detector, and the fallback is counted in the log."""
    root = tmp_path / "replay"
    written = fake_trees.replay_tree(str(root), {"train": [1], "devel": [3], "test": [5]},
                                     n_frames=5, attacks=())
    rel = "train/real/client001_session01_webcam_authenticate_controlled_1"
    face = root / "face-locations" / (rel + ".face")
    face.write_text("\n".join(face.read_text().splitlines()[1:]) + "\n")
    with caplog.at_level("WARNING"):
        builder = _build("replay_attack", root, tmp_path / "tfds")
    assert real_common.skipped(builder) == []
    fallbacks = [r.getMessage() for r in caplog.records if "have no line" in r.getMessage()]
    assert len(fallbacks) == 1 and "1 sampled frame(s) [0] have no line" in fallbacks[0]
    records = _records(builder, "train")
    assert [r["frame_index"] for r in records] == [0, 2, 4]
    _check_crops_follow_the_face(records, written, lambda r, fr: (
        _detected if r["frame_index"] == 0 else _true_box)(r, fr),
        steady=lambda r: r["frame_index"] != 0)


def test_avi_with_dropped_frames_is_not_truncated(tmp_path, caplog):
    """An AVI counting an empty chunk for a dropped frame declares one frame more than it decodes:
    logged, not truncation; more than 2 frames and 2 % short is."""
    from despoof_jax.data import video
    path = str(tmp_path / "dropped.avi")
    rgbs = [f.rgb for f in fake_trees.frames(8)]
    fake_trees.write_video(path, rgbs, dropped=(4,))
    frames = video.sample_frames(path, stride=3)
    with caplog.at_level("WARNING"):
        assert [k for k, _ in frames] == [0, 3, 6]
    assert (frames.n_frames, frames.declared) == (8, 9)
    assert any("declares 9; taken for dropped frames" in r.getMessage() for r in caplog.records)
    fake_trees.write_video(path, rgbs, dropped=(2, 4, 6))
    with pytest.raises(video.VideoError, match="truncated: decoded 8 frames, the container "
                       "declares 11"):
        list(video.sample_frames(path))


def test_frame_without_a_face(tmp_path):
    """Replay-Attack frame 2 annotated "no face" and blank: neither the file nor the detector
    finds one."""
    root = tmp_path / "replay"
    fake_trees.replay_tree(str(root), {"train": [1], "devel": [3], "test": [5]}, n_frames=5,
                           attacks=(), no_face_frames=(2,))
    rel = "train/real/client001_session01_webcam_authenticate_controlled_1.mov"
    rgbs = [f.rgb for f in fake_trees.frames(5)]
    rgbs[2] = np.full_like(rgbs[2], 128)
    fake_trees.write_video(str(root / rel), rgbs)
    with pytest.raises(real_common.BadInputError, match=str(root / rel) + r": no face found in "
                       r"frame\(s\) \[2\]"):
        _build("replay_attack", root, tmp_path / "strict")
    builder, entry = _skip_then_strict("replay_attack", root, tmp_path / "skip", "no face")
    assert entry["frames"] == [2]
    assert [r["frame_index"] for r in _records(builder, "train")] == [0, 4]


def test_cross_config_trains_on_one_dataset_and_tests_on_the_other(tmp_path):
    """configs/protocol_cross.py:casia_to_replay,smoke: train and dev (the threshold's split, the
    last 5 CASIA training subjects) from casia_fasd, test from replay_attack, both found under
    data.manual_dir/<name>/ and built with the named config s64."""
    protocol_cross = config_module("protocol_cross")
    manual = tmp_path / "manual"
    fake_trees.casia_tree(str(manual / "casia_fasd"), {"train": range(1, 7), "test": [1]},
                          n_frames=1)
    fake_trees.replay_tree(str(manual / "replay_attack"), {"train": [1], "devel": [2],
                                                           "test": [3, 4]}, n_frames=1)
    c = protocol_cross.get_config("casia_to_replay,smoke")
    c.data.data_dir, c.data.manual_dir = str(tmp_path / "tfds"), str(manual)
    c.data.partial_download = True
    want = {"train": ("train_release/", {1}), "dev": ("train_release/", {2, 3, 4, 5, 6}),
            "test": ("test/", {3, 4})}
    for split, (prefix, identities) in want.items():
        source, meta = datasets.load_split(datasets.for_split(c.data, split), split)
        assert set(meta["identity"]) == identities
        assert source[0]["image"].shape == (64, 64, 3)
        assert all(source[i]["source"].decode().startswith(prefix) for i in range(len(source)))
        assert len(datasets.protocol_indices(c.data, split, meta)) == len(source)


def test_protocol_lists_of_another_length_than_the_published_ones(tmp_path, caplog):
    """Every protocol list of the published rules has the published length (Table 2 of the
    Oulu-NPU paper, e.g. P1 1200/900/600); a truncated list would shrink its protocol without a
    word, so it is incompleteness that `partial` decides about, and a line listed twice is bad
    input."""
    from despoof_jax.data.builders import oulu_npu   # noqa: PLC0415
    names = [f"{p}_{s}_{u:02d}_{f}" for p, s, u, f in fake_trees.OULU_ALL]
    for rel, members in fake_trees.oulu_protocol_lists(names).items():
        p, stem = int(rel.split("/")[0][-1]), os.path.basename(rel)[:-4].split("_")[0]
        split = {"Train": "train", "Dev": "dev", "Test": "test"}[stem]
        assert len(members) == oulu_npu.published_list_size(p, split), rel
    assert [oulu_npu.published_list_size(p, s) for p in (1, 2, 3, 4)
            for s in ("train", "dev", "test")] == [1200, 900, 600, 1080, 810, 1080,
                                                    1500, 1125, 300, 600, 450, 60]
    root = tmp_path / "oulu"
    fake_trees.oulu_tree(str(root), [(1, 1, 1, 1), (1, 1, 21, 1), (1, 3, 36, 1)], n_frames=3,
                         listed=fake_trees.OULU_ALL)
    with caplog.at_level("WARNING"):
        _build("oulu_npu", root, tmp_path / "complete_lists")
    assert not any("list file" in r.getMessage() for r in caplog.records)
    dev2 = root / "Protocols" / "Protocol_3" / "Dev_2.txt"
    lines = dev2.read_text().splitlines()
    dev2.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(real_common.BadInputError, match=r"has 1 list file\(s\) of another length "
                       r"than the published one \(e\.g\. Protocols/Protocol_3/Dev_2\.txt lists "
                       r"1124 videos, the published list 1125\)"):
        _build("oulu_npu", root, tmp_path / "strict", partial=False)
    dev2.write_text("\n".join(lines[:-1] + [lines[0]]) + "\n")
    with pytest.raises(real_common.BadInputError, match=rf"Dev_2\.txt: lists "
                       rf"{lines[0].split(',')[1]} twice \(lines 1 and 1125\)"):
        _build("oulu_npu", root, tmp_path / "twice")
