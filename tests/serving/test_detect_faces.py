"""`detect_faces` / `despoof score --detect-faces`: whole photographs in, the square around the
detected face scored. The photo is `skimage.data.astronaut()` (a reserved evaluation photo: used
here for plumbing only, the face crop, never to choose anything) through the shipped model."""
from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest
from PIL import Image
from skimage import data

from despoof_jax import cli
from despoof_jax.data import faces
from despoof_jax.serving import model as api


@pytest.fixture(scope="module")
def model():
    return api.load("pretrained")


@pytest.fixture(scope="module")
def photo():
    return data.astronaut()   # 512 x 512, one face near (225, 130)


def test_the_scored_crop_is_the_builders_crop_of_the_detected_face(model, photo):
    s = model.score(photo, detect_faces=True, input_policy="resize")
    (square,) = s.face_boxes
    box = faces.detector().detect(photo)
    # The square scored is CROP_SCALE x the detector's box, around its centre, on the face.
    assert square == faces.FaceBox(box.cx, box.cy, faces.CROP_SCALE * box.side)
    assert 190 < square.cx < 260 and 100 < square.cy < 170 and 128 <= square.side < 220
    manual = faces.crop(photo, box, scale=faces.CROP_SCALE, size=model.image_size)
    np.testing.assert_array_equal(model.prepare(photo, detect_faces=True)[0], manual)
    assert s.score[0] == model.score(manual).score[0]
    assert model.score(manual).face_boxes is None
    # The tiles policy (the packaged model's) scores the same square at the photo's resolution.
    native = faces.crop_native(photo, box, scale=faces.CROP_SCALE)
    assert abs(native.shape[0] - square.side) <= 1
    tiled = model.score(photo, detect_faces=True, input_policy="tiles")
    assert tiled.face_boxes == s.face_boxes
    assert tiled.score[0] == model.score(native, input_policy="tiles").score[0]
    # Moving the face in a larger frame moves the square with it. The
    # detector sees the frame at 128 px, so its box moves by up to ~15 % of the face (measured:
    # 1, 12 and 21 px here).
    frame = np.zeros((700, 800, 3), np.uint8)
    frame[150:662, 60:572] = photo
    moved = model.decompose([frame], detect_faces=True)
    (m,) = moved.face_boxes
    assert abs(m.cx - square.cx - 60) < 0.1 * square.side
    assert abs(m.cy - square.cy - 150) < 0.1 * square.side
    assert abs(m.side / square.side - 1) < 0.2
    assert moved.noise.shape == (1, model.image_size, model.image_size, 6)


def test_a_face_too_far_for_the_short_range_detector_is_found_by_the_full_range_one(model,
                                                                                     photo):
    frame = np.full((1000, 1000, 3), 90, np.uint8)
    frame[300:812, 400:912] = photo
    assert faces.detector().detect(frame) is None   # measured: the short-range model misses it
    (square,) = model.score(frame, detect_faces=True).face_boxes
    near = model.score(photo, detect_faces=True).face_boxes[0]
    # Mapped onto the short-range box: the same square as the photo's own, within ~10 %.
    assert abs(square.cx - near.cx - 400) < 0.1 * near.side
    assert abs(square.cy - near.cy - 300) < 0.1 * near.side
    assert abs(square.side / near.side - 1) < 0.1
    raw = faces.FaceDetector.detect(faces.far_detector(), frame)   # the unmapped box
    assert square.cy > raw.cy and square.side < faces.CROP_SCALE * raw.side


def test_no_face_and_small_faces_are_refused_by_name(model, photo):
    with pytest.raises(api.InputError, match=r"images\[1\]: no face found"):
        model.score([photo, data.coffee()], detect_faces=True)
    small = np.asarray(Image.fromarray(photo).resize((160, 160), Image.BILINEAR))
    with pytest.raises(api.InputError, match=r"the face crop \(\d+ px\) is smaller than the "
                                             r"model's input 128x128"):
        model.score(small, detect_faces=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = model.score(small, detect_faces=True, allow_upsample=True)
    assert s.face_boxes[0].side < 128
    # Attributed to the caller's line, not to the library's internals.
    assert [w.filename for w in caught] == [__file__]


def test_a_whole_photo_without_detection_warns_towards_it(model, photo):
    for policy in ("resize", "tiles"):
        with pytest.warns(UserWarning, match="not square.*detect_faces=True / --detect-faces"):
            model.score(photo[:, :380], input_policy=policy)


def test_cli_detect_faces_writes_the_square_and_reports_faceless_images(model, photo, tmp_path,
                                                                        capsys):
    Image.fromarray(photo).save(tmp_path / "a_face.png")
    Image.fromarray(data.coffee()).save(tmp_path / "b_no_face.png")
    out = tmp_path / "scores.csv"
    rc = cli.main(["--cpu-kernels=default", "score", str(tmp_path / "a_face.png"),
                   str(tmp_path / "b_no_face.png"), "--model", "pretrained", "--detect-faces",
                   "--csv", str(out)])
    assert rc == 1   # one input failed
    assert "b_no_face.png: no face found" in capsys.readouterr().err
    (row,) = list(csv.DictReader(out.open()))
    square = model.score(photo, detect_faces=True).face_boxes[0]
    assert row["path"].endswith("a_face.png")
    assert abs(float(row["face_cx"]) - square.cx) < 0.1 and abs(float(row["face_side"]) -
                                                                square.side) < 0.1
    assert float(row["score"]) == pytest.approx(model.score(photo, detect_faces=True).score[0],
                                                abs=1e-6)
    # Without --detect-faces the CSV keeps its columns.
    cli.main(["--cpu-kernels=default", "score", str(tmp_path / "a_face.png"), "--model",
              "pretrained", "--csv", str(out)])
    assert "face_cx" not in out.read_text().splitlines()[0]
    # The table: the shipped threshold is the training world's, and the calibration it points
    # to cuts the captures as this run did (the installed model is copied, never written).
    capsys.readouterr()
    assert cli.main(["--cpu-kernels=default", "score", str(tmp_path / "a_face.png"), "--model",
                     "pretrained", "--detect-faces"]) == 0
    header = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("#")]
    assert "`despoof calibrate --model pretrained --bona-fide DIR --detect-faces --out COPY`" \
        in header[1], header


def test_cli_detect_faces_without_mediapipe_is_one_clear_error(tmp_path, capsys, monkeypatch):
    def missing():
        raise ImportError("Face detection and pseudo-depth need MediaPipe: pip install "
                          "'despoof_jax[faces]'")
    monkeypatch.setattr(faces, "detector", missing)
    Image.fromarray(data.astronaut()).save(tmp_path / "a.png")
    rc = cli.main(["--cpu-kernels=default", "score", str(tmp_path / "a.png"), "--model",
                   "pretrained", "--detect-faces"])
    assert rc == 2
    assert "error: --detect-faces: Face detection and pseudo-depth need MediaPipe: pip install " \
           "'despoof_jax[faces]'" in capsys.readouterr().err


def test_calibrate_detect_faces_sets_the_threshold_of_the_crops_it_cuts(model, photo, tmp_path,
                                                                        capsys):
    from despoof_jax.tools import bona_fide   # noqa: PLC0415
    rng = np.random.default_rng(0)
    frames = []   # 20 framings of the one photo (plumbing, not a calibration set)
    for _ in range(bona_fide.MIN_CAPTURES):
        f = np.zeros((640, 640, 3), np.uint8)
        y, x = rng.integers(0, 129, 2)
        f[y:y + 512, x:x + 512] = photo
        frames.append(f)
    # what the detected crops call for, read by the model's input policy
    report = bona_fide.threshold_for(model, frames, 0.1, detect_faces=True)
    folder = tmp_path / "captures"
    folder.mkdir()
    for k, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{k:02d}.png")
    # the command line (through bona_fide.calibrate(detect_faces=True)) cuts the same crops
    rc = cli.main(["--cpu-kernels=default", "calibrate", "--model", "pretrained", "--bona-fide",
                   str(folder), "--bpcer", "0.1", "--detect-faces", "--out", str(tmp_path / "m")])
    assert rc == 0, capsys.readouterr().err
    mine = api.load(str(tmp_path / "m"))
    assert mine.threshold == pytest.approx(report["threshold"])
    info = json.loads((tmp_path / "m" / "model.json").read_text())
    assert info["bona_fide"]["detect_faces"] is True
