"""The command line on a folder mixing good and bad files: the good ones are scored (the same
scores as the library), each bad one is reported with its reason, the exit status is non-zero,
and --visualize writes readable PNGs. Also the image-reading policy of `despoof_jax.serving.inputs`."""
from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from despoof_jax import cli, commands
from despoof_jax.serving import inputs as imageio
from despoof_jax.serving import model as api


@pytest.fixture(scope="module")
def workdir(trained_workdir):
    return trained_workdir


@pytest.fixture(scope="module")
def model(workdir):
    return api.load(workdir)


def _write_inputs(root, size):
    r = np.random.default_rng(0)
    rgb = lambda h, w: r.integers(0, 256, (h, w, 3), dtype=np.uint8)  # noqa: E731
    os.makedirs(root / "sub")
    good = {"a_good.png": rgb(size + 16, size + 8), "sub/b_good.png": rgb(size, size)}
    for name, a in good.items():
        Image.fromarray(a).save(root / name)
    Image.fromarray(r.integers(0, 256, (size, size, 4), dtype=np.uint8)).save(root / "c_rgba.png")
    frames = [Image.fromarray(rgb(size, size)) for _ in range(4)]
    frames[0].save(root / "d_clip.gif", save_all=True, append_images=frames[1:])
    bad = {
        "e_gray.png": "grayscale",
        "f_16bit.png": "grayscale image (PIL mode I;16",
        "g_small.png": "smaller than the model's input",
        "h_text.jpg": "not an image",
        "i_truncated.png": "truncated or corrupt",
    }
    Image.fromarray(r.integers(0, 256, (size, size), dtype=np.uint8)).save(root / "e_gray.png")
    Image.fromarray(r.integers(0, 65535, (size, size), dtype=np.uint16)).save(root / "f_16bit.png")
    Image.fromarray(rgb(size // 2, size // 2)).save(root / "g_small.png")
    (root / "h_text.jpg").write_text("not a jpeg")
    data = (root / "a_good.png").read_bytes()
    (root / "i_truncated.png").write_bytes(data[: len(data) // 2])
    (root / "labels.csv").write_text("path,label\n")        # skipped, not an error
    return good, bad


def test_score_folder_mixing_good_and_bad_files(workdir, tmp_path, capsys):
    model = api.load(workdir)
    good, bad = _write_inputs(tmp_path / "in", model.image_size)
    os.makedirs(tmp_path / "empty")
    vis, out_csv, out_json = tmp_path / "vis", tmp_path / "s.csv", tmp_path / "s.json"
    rc = cli.main(["--cpu-kernels=default", "score", str(tmp_path / "in"), str(tmp_path / "empty"),
                   str(tmp_path / "missing.png"), "--model", workdir, "--csv", str(out_csv),
                   "--json", str(out_json), "--visualize", str(vis), "--every", "2"])
    err = capsys.readouterr().err
    assert rc == 1
    for name, reason in bad.items():
        line = [ln for ln in err.splitlines() if ln.startswith("FAILED") and name in ln]
        assert line and reason in line[0], (name, err)
    assert "empty: folder contains no image or video" in err
    assert "missing.png: no such file" in err
    assert "labels.csv: not an image or video extension" in err
    assert "transparent pixels" in err            # RGBA: scored, with a warning

    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    names = [os.path.relpath(r["path"], tmp_path / "in") + (f"#{r['frame']}" if r["frame"]
                                                             else "") for r in rows]
    assert names == ["a_good.png", "c_rgba.png", "d_clip.gif#0", "d_clip.gif#2",
                     "sub/b_good.png"]              # sorted by path, every 2nd frame
    ref = model.score([np.asarray(Image.open(tmp_path / "in" / n)) for n in good])
    got = {os.path.relpath(r["path"], tmp_path / "in"): float(r["score"]) for r in rows}
    np.testing.assert_allclose([got[n] for n in good], ref.score, rtol=0, atol=1e-5)
    assert {r["decision"] for r in rows} <= {"live", "attack"}

    with open(out_json) as f:
        report = json.load(f)
    assert len(report["results"]) == 5 and len(report["failures"]) == len(bad) + 2
    assert report["threshold"] == model.threshold

    pngs = sorted(os.listdir(vis))
    assert len(pngs) == 5
    for p in pngs:
        with Image.open(vis / p) as im:
            im.load()
            assert im.size[0] > 3 * im.size[1]     # one row of five panels


def test_table_output_and_exit_codes(workdir, tmp_path, capsys):
    img = tmp_path / "face.png"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(img)
    assert cli.main(["--cpu-kernels=default", "score", str(img), "--model", workdir]) == 0
    out = capsys.readouterr().out
    assert "threshold" in out and "face.png" in out
    # where the threshold came from: the run's dev EER, so the table says how to set one on the
    # user's own bona fide captures (a workdir is written in place: --write)
    header = [ln for ln in out.splitlines() if ln.startswith("#")]
    assert header[0].endswith("set by the EER on the training data's dev split"), header
    assert f"despoof calibrate --model {workdir} --bona-fide DIR --write" in header[1], header
    model = api.load(workdir)
    assert model.criterion == "eer"
    model.threshold = 0.5   # assigned on the object: no longer the method model.json names
    assert model.criterion == api.HAND_SET and model.threshold == 0.5
    assert commands.threshold_origin(model.criterion) == ("assigned by hand", False)
    assert commands.threshold_origin("apcer@0.05") == ("APCER 0.05 on the training data's dev split",
                                                  True)
    assert commands.threshold_origin(None) == ("not recorded", False)
    assert cli.main(["--cpu-kernels=default", "score", str(img), "--model", str(tmp_path)]) == 2     # no workdir there
    assert "config.json" in capsys.readouterr().err


def test_reading_policy(tmp_path):
    r = np.random.default_rng(1)
    gray = tmp_path / "gray.png"
    Image.fromarray(r.integers(0, 256, (9, 7), dtype=np.uint8)).save(gray)
    with pytest.raises(imageio.InputError, match="gray.png: grayscale"):
        imageio.read_image(str(gray))
    a = imageio.read_image(str(gray), allow_gray=True)
    assert a.shape == (9, 7, 3) and a.dtype == np.uint8 and np.all(a[..., 0] == a[..., 2])
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(deep)
    assert np.all(imageio.read_image(str(deep), allow_gray=True) == 255)   # 16 -> 8 bits
    # 32-bit ints carry no bit depth: values up to 255 are read as 8-bit, with a warning
    ints = Image.fromarray(np.full((4, 4), 200, np.int32), "I")
    with pytest.warns(UserWarning, match="mode I image with values up to 200, read as 8-bit"):
        assert np.all(imageio.to_rgb8(ints, "ints", allow_gray=True) == 200)
    opaque = tmp_path / "opaque.png"
    Image.fromarray(np.full((4, 4, 4), 255, np.uint8)).save(opaque)
    assert imageio.read_image(str(opaque)).shape == (4, 4, 3)
    with pytest.raises(imageio.InputError, match="video.mp4: no such file"):
        list(imageio.read_frames(str(tmp_path / "video.mp4")))
    # EXIF orientation 6 (stored sideways, shown rotated 90 degrees clockwise) is applied
    photo = r.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo).save(tmp_path / "sideways.png", exif=exif)
    upright = imageio.read_image(str(tmp_path / "sideways.png"))
    np.testing.assert_array_equal(upright, np.rot90(photo, k=-1))
    # an animated WebP is a video (every frame scored), a one-frame WebP an image
    frames = [Image.fromarray(np.full((8, 8, 3), 60 * k, np.uint8)) for k in range(3)]
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:],
                   lossless=True)
    frames[0].save(tmp_path / "still.webp", lossless=True)
    assert imageio.is_video(str(tmp_path / "anim.webp"))
    assert not imageio.is_video(str(tmp_path / "still.webp"))
    got = list(imageio.iter_inputs(str(tmp_path / "anim.webp")))
    assert [i for _, i, _ in got] == [0, 1, 2] and got[2][2][0, 0, 0] == 120


def test_grayscale_videos_are_refused_like_grayscale_images(tmp_path):
    av = pytest.importorskip("av")
    r = np.random.default_rng(2)
    path = str(tmp_path / "gray.avi")
    with av.open(path, "w") as out:
        stream = out.add_stream("ffv1", rate=5)       # lossless: R = G = B survives
        stream.width = stream.height = 16
        stream.pix_fmt = "bgr0"
        for _ in range(2):
            g = r.integers(0, 256, (16, 16, 1), dtype=np.uint8)
            rgb = np.repeat(g, 3, axis=-1)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    with pytest.raises(imageio.InputError, match="gray.avi frame 0: grayscale video"):
        list(imageio.read_frames(path))
    frames = list(imageio.read_frames(path, allow_gray=True))
    assert len(frames) == 2 and frames[0][1].shape == (16, 16, 3)


def test_pil_images_follow_the_file_policy_and_floats_score_as_their_8_bit_image(model):
    s = model.image_size
    r = np.random.default_rng(3)
    rgb = r.integers(0, 256, (s + 20, s + 12, 3), dtype=np.uint8)
    # 16-bit and float PIL modes were scored as all-white / all-black images before
    for img in (Image.fromarray(rgb[..., 0].astype(np.uint16) * 257),
                Image.fromarray(rgb[..., 0]).convert("L"),
                Image.fromarray(rgb[..., 0].astype(np.float32) / 255.0, "F")):
        with pytest.raises(api.InputError, match="grayscale PIL image"):
            model.score(img)
    with pytest.warns(UserWarning, match="transparent pixels"):
        alpha = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
        from_rgba = model.score(Image.fromarray(alpha, "RGBA")).score
    np.testing.assert_array_equal(from_rgba, model.score(rgb).score)
    with pytest.warns(UserWarning, match="not square; it is stretched"):
        model.score(rgb[:, : s + 1])
    # a float copy of a picture that needs resizing scores as the picture itself
    np.testing.assert_array_equal(model.score(rgb.astype(np.float32) / 255.0).score,
                                  model.score(rgb).score)


def _sideways_photo(tmp_path, suffix):
    """A colour photo saved with EXIF orientation 6 (stored sideways, shown rotated 90 degrees
    clockwise); square, so that only the orientation tells the two readings apart."""
    r = np.random.default_rng(4)
    photo = np.clip(r.normal(128, 60, (150, 150, 3)), 0, 255).astype(np.uint8)
    photo[:40] = (220, 40, 30)            # a red band on top of the stored image
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / f"sideways{suffix}"
    Image.fromarray(photo).save(path, exif=exif, **({"quality": 95} if suffix == ".jpg" else {}))
    return str(path)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_pil_images_get_the_exif_orientation_files_get(tmp_path, suffix):
    path = _sideways_photo(tmp_path, suffix)
    from_file = api.prepare_image(imageio.read_image(path), 128)
    with Image.open(path) as im:
        from_pil = api.prepare_image(im, 128)
    np.testing.assert_array_equal(from_pil, from_file)
    with Image.open(path) as im:
        stored = api.prepare_image(np.asarray(im.convert("RGB")), 128)
    assert not np.array_equal(from_pil, stored)          # the rotation was applied, not skipped
    assert from_pil[:, -5:, 0].mean() > 200 > from_pil[:, :5, 0].mean()   # red band: right


def test_gray_stored_as_rgb_is_refused_like_a_grayscale_file(tmp_path):
    r = np.random.default_rng(5)
    gray = np.repeat(r.integers(0, 256, (140, 140, 1), dtype=np.uint8), 3, axis=-1)
    path = tmp_path / "gray_rgb.png"
    Image.fromarray(gray, "RGB").save(path)
    # a file, a numpy array (uint8 and float) and a PIL image: each refused, each accepted with
    # allow_gray (the same option, and the same rule, as the video path)
    with pytest.raises(imageio.InputError, match=r"gray_rgb.png: grayscale image \(R = G = B\)"):
        imageio.read_image(str(path))
    np.testing.assert_array_equal(imageio.read_image(str(path), allow_gray=True), gray)
    for img in (gray, gray / 255.0, Image.fromarray(gray, "RGB")):
        with pytest.raises(api.InputError, match=r"crop: grayscale image \(R = G = B\).*allow_gray"):
            api.prepare_image(img, 128, name="crop")
        assert api.prepare_image(img, 128, allow_gray=True).shape == (128, 128, 3)
    # a flat (or black) crop says nothing about colour and is not refused, nor is colour
    api.prepare_image(np.full((128, 128, 3), 120, np.uint8), 128)
    gray[0, 0, 0] ^= 1
    api.prepare_image(gray, 128)


def test_the_command_line_passes_allow_gray_to_the_library(tmp_path, capsys):
    gray = np.repeat(np.random.default_rng(6).integers(0, 256, (128, 128, 1), np.uint8), 3, -1)
    Image.fromarray(gray, "RGB").save(tmp_path / "gray_rgb.png")
    argv = ["--cpu-kernels=default", "score", str(tmp_path / "gray_rgb.png"), "--model",
            "pretrained"]
    assert cli.main(argv) == 1
    assert "gray_rgb.png: grayscale image (R = G = B)" in capsys.readouterr().err
    assert cli.main(argv + ["--allow-gray"]) == 0
    assert "1 scored, 0 failed" in capsys.readouterr().err


def test_bad_files_are_input_errors_not_raw_exceptions(tmp_path, monkeypatch):
    good = np.random.default_rng(7).integers(0, 256, (140, 140, 3), np.uint8)
    Image.fromarray(good).save(tmp_path / "good.png")
    data = (tmp_path / "good.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    # a truncated file opened lazily by the user and handed to the model (an OSError before)
    model = api.load("pretrained")
    with Image.open(tmp_path / "cut.png") as im:
        with pytest.raises(api.InputError, match=r"images\[0\] \(.*cut.png\): truncated or corrupt"):
            model.score(im)
    # more pixels than PIL's decompression-bomb guard (a DecompressionBombError escaped before),
    # read as a file, through the command line's reader, or as one frame of a GIF
    frames = [Image.fromarray(good), Image.fromarray(good[::-1])]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 140 * 140 // 4)
    with pytest.raises(imageio.InputError, match="good.png: too many pixels.*MAX_IMAGE_PIXELS"):
        imageio.read_image(str(tmp_path / "good.png"))
    with pytest.raises(imageio.InputError, match="good.png: too many pixels"):
        list(imageio.iter_inputs(str(tmp_path / "good.png")))
    with pytest.raises(imageio.InputError, match="clip.gif: too many pixels"):
        list(imageio.iter_inputs(str(tmp_path / "clip.gif")))


def test_a_decoder_failing_mid_video_is_an_input_error(tmp_path, monkeypatch):
    """The imageio fallback (no OpenCV): a decoder error after the first frame is reported with
    the file, after the frames it did read, instead of escaping as the decoder's exception."""
    iio = pytest.importorskip("imageio.v3")
    frame = np.random.default_rng(8).integers(0, 256, (16, 16, 3), np.uint8)

    def imiter(path):
        yield frame
        yield frame
        raise OSError("Invalid data found when processing input")
    monkeypatch.setitem(sys.modules, "cv2", None)        # import cv2 -> ImportError
    monkeypatch.setattr(iio, "imiter", imiter)
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\0")
    got = []
    with pytest.raises(imageio.InputError, match="broken.mp4: truncated or corrupt video after "
                                                  "frame 1 .*OSError"):
        for i, f in imageio.read_frames(str(path)):
            got.append(i)
    assert got == [0, 1]


@pytest.mark.parametrize("reader", ["opencv", "imageio"])
def test_video_frames_come_back_in_rgb_order(tmp_path, monkeypatch, reader):
    """A lossless video of one colour, (250, 10, 60): R, G and B come back in that order from
    either reader (OpenCV decodes to BGR; inputs flips it)."""
    av = pytest.importorskip("av")
    if reader == "opencv":
        pytest.importorskip("cv2")
    else:
        pytest.importorskip("imageio.v3")
        monkeypatch.setitem(sys.modules, "cv2", None)    # import cv2 -> ImportError: imageio
    colour = np.array([250, 10, 60], np.uint8)
    path = str(tmp_path / "colour.avi")
    with av.open(path, "w") as out:
        stream = out.add_stream("ffv1", rate=5)          # lossless, as the gray video test
        stream.width = stream.height = 16
        stream.pix_fmt = "bgr0"
        for _ in range(2):
            rgb = np.broadcast_to(colour, (16, 16, 3)).copy()
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    frames = list(imageio.read_frames(path))
    assert len(frames) == 2
    for _, f in frames:
        assert f.shape == (16, 16, 3) and f.dtype == np.uint8
        np.testing.assert_allclose(f.reshape(-1, 3).mean(0), colour, atol=2)
