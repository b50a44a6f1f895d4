"""Face crops and the pseudo-depth labeler (Sec. 3.3) on a real face photograph, the z-buffer,
the video reader's rotation handling, and the optional-dependency errors."""
import os
import subprocess
import sys

import numpy as np
import pytest

from despoof_jax.data import faces, video
from tests.data import fake_trees

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOSE_TIP, CHEEKS = 1, (234, 454)   # MediaPipe face mesh landmark ids


def _photo_window(dx: int, dy: int, size: int = 128) -> np.ndarray:
    """A size x size window of the astronaut photo (256 px) with her face shifted by (dx, dy)."""
    x0, y0 = 48 - dx, 10 - dy
    return np.ascontiguousarray(fake_trees.photo()[y0:y0 + size, x0:x0 + size])


def test_depth_of_a_real_face_is_face_shaped_and_follows_it():
    size = 128
    maps, noses = [], []
    for dx, dy in ((0, 0), (14, 9)):
        image = _photo_window(dx, dy, size)
        lm = faces.mesher().landmarks(image)
        assert lm is not None and lm.shape == (faces.N_LANDMARKS, 3)
        depth = faces.depth_map(lm, size)[..., 0]
        assert depth.dtype == np.uint8 and depth.max() == 255
        on = depth > 0
        # Face-shaped: one blob about the size of the face mesh's outline, zero elsewhere.
        hull = faces.zbuffer(np.c_[lm[:, :2], np.ones(len(lm))], faces.triangulate(lm[:, :2]),
                             size)[1]
        assert np.array_equal(on, hull)
        assert 0.08 < on.mean() < 0.25   # the mesh outline: 46 x 53 px
        assert not on[:8].any() and not on[-8:].any() and not on[:, :8].any()
        # Nose nearer than the cheeks.
        at = {k: depth[int(lm[k, 1]), int(lm[k, 0])] for k in (NOSE_TIP,) + CHEEKS}
        assert at[NOSE_TIP] > 200 and all(at[NOSE_TIP] > at[c] + 60 for c in CHEEKS), at
        maps.append(depth)
        noses.append(lm[NOSE_TIP, :2])
    # Shifting the photo by (14, 9) px shifts the depth map (and the fitted nose) with it.
    np.testing.assert_allclose(noses[1] - noses[0], (14, 9), atol=1.5)
    shifted = np.zeros_like(maps[0])
    shifted[9:, 14:] = maps[0][:-9, :-14]
    overlap = (shifted > 0) & (maps[1] > 0)
    assert overlap.sum() > 0.95 * (maps[1] > 0).sum()
    assert np.abs(shifted.astype(int) - maps[1])[overlap].mean() < 12


def test_a_turned_face_keeps_its_near_side():
    """The mesh's own triangles, z-buffered: turned 40 degrees, the face keeps a near nose. A
    Delaunay triangulation of the image positions joined landmarks hidden behind the nose to
    visible ones and cut dark notches into the near side."""
    from despoof_jax.data.synthetic import faces as synthetic_faces  # noqa: PLC0415
    size = 128
    lm = faces.mesher().landmarks(_photo_window(0, 0, size)).astype(np.float64)
    assert faces.mesh_triangles().shape[0] > 800 and faces.mesh_triangles().max() < 468
    c, yaw = lm.mean(0), np.deg2rad(40)
    x, z = lm[:, 0] - c[0], lm[:, 2] - c[2]
    turned = lm.copy()
    turned[:, 0] = c[0] + x * np.cos(yaw) + z * np.sin(yaw)
    turned[:, 2] = c[2] - x * np.sin(yaw) + z * np.cos(yaw)
    new = faces.depth_map(turned, size)[..., 0].astype(int)
    height, covered = faces.zbuffer(np.c_[turned[:, :2], -turned[:, 2]],
                                    faces.triangulate(turned[:, :2]), size)
    old = np.round(synthetic_faces.depth_label(height, covered.astype(np.float32)) * 255)
    assert np.array_equal(new > 0, covered)           # the same outline
    nose = (int(turned[NOSE_TIP, 1]), int(turned[NOSE_TIP, 0]))
    assert new[nose] > old[nose] + 10, (new[nose], old[nose])
    assert ((new - old) > 40).sum() > 20 and ((old - new) > 40).sum() < ((new - old) > 40).sum()


def test_the_detector_fallback_takes_the_face_nearest_the_annotation():
    from types import SimpleNamespace as NS  # noqa: PLC0415

    def det(score, xmin):
        return NS(score=[score], location_data=NS(relative_bounding_box=NS(
            xmin=xmin, ymin=0.2, width=0.2, height=0.2)))
    d = faces.FaceDetector.__new__(faces.FaceDetector)
    d.min_score = 0.5
    d._graph = lambda rgb: [det(0.95, 0.05), det(0.7, 0.7), det(0.3, 0.4)]
    rgb = np.zeros((100, 100, 3), np.uint8)
    assert d.detect(rgb).cx == 15.0                                    # the best score
    assert d.detect(rgb, near=faces.FaceBox(78.0, 30.0, 20.0)).cx == 80.0   # the nearest
    d._graph = lambda rgb: [det(0.3, 0.4)]
    assert d.detect(rgb) is None and d.detect(rgb, near=faces.FaceBox(50, 30, 20)) is None


def test_face_sample_crops_around_the_box_at_any_size():
    frame = fake_trees.frames(1)[0]
    box = faces.FaceBox(*frame.centre, fake_trees.FACE_SIDE)
    for size in (64, 256):
        sample = faces.face_sample(frame.rgb, box, size=size)
        assert sample.image.shape == (size, size, 3) and sample.depth.shape == (size, size, 1)
        ii, jj = np.nonzero(sample.depth[..., 0])
        # The face sits in the middle of the crop at either size.
        assert abs(jj.mean() - size / 2) < 0.1 * size and abs(ii.mean() - size / 2) < 0.1 * size
    # A box without a face in it: no sample (the builder then asks the detector, then skips).
    assert faces.face_sample(np.full((128, 160, 3), 128, np.uint8), box, size=64) is None


def test_eye_box_matches_the_detector_box():
    """EYE_BOX_SIDE / EYE_BOX_DROP turn the fitted iris centres into the detector's box, within
    the spread of the faces they were measured on: the astronaut's box is the narrowest of them
    (2.21 eye distances against the median 2.48, `faces` docstring)."""
    image = fake_trees.photo()
    detected = faces.detector().detect(image)
    lm = faces.mesher().landmarks(image)
    from_eyes = faces.box_from_eyes(*lm[468, :2], *lm[473, :2])
    assert 0.06 < from_eyes.side / detected.side - 1 < 0.18
    assert np.hypot(from_eyes.cx - detected.cx, from_eyes.cy - detected.cy) < 0.06 * detected.side
    assert faces.detector().detect(np.zeros((128, 128, 3), np.uint8)) is None


def test_zbuffer_nearest_surface_wins():
    # Two overlapping triangles at heights 1 and 2, in either order: the overlap shows 2.
    v = np.array([[2, 2, 1], [30, 2, 1], [2, 30, 1], [10, 10, 2], [30, 10, 2], [10, 30, 2.0]])
    for tris in ([[0, 1, 2], [3, 4, 5]], [[3, 4, 5], [0, 1, 2]]):
        height, covered = faces.zbuffer(v, np.array(tris), 32)
        assert height[12, 12] == 2 and height[4, 4] == 1 and height[28, 28] == 0
        assert covered[12, 12] and not covered[28, 28]
    # A sloped triangle interpolates its vertices' heights.
    height, _ = faces.zbuffer(np.array([[0, 0, 0], [32, 0, 32], [0, 32, 0.0]]),
                              np.array([[0, 1, 2]]), 32)
    np.testing.assert_allclose(height[3, :20], np.arange(20) + 0.5, atol=1e-5)


@pytest.mark.parametrize("rotation", [90, 180, -90])
def test_video_frames_are_upright_through_the_display_matrix(tmp_path, rotation):
    upright = [f.rgb for f in fake_trees.frames(4)]
    path = str(tmp_path / "v.mp4")
    fake_trees.write_video(path, upright, rotation=rotation)
    frames = video.sample_frames(path, stride=3)
    got = list(frames)
    assert [i for i, _ in got] == [0, 3] and frames.n_frames == 4
    for (i, rgb) in got:
        assert rgb.shape == upright[i].shape
        assert np.abs(rgb.astype(int) - upright[i]).mean() < 6
    # Without the metadata, the extra rotation flag turns them upright.
    fake_trees.write_video(path, upright, rotation=rotation, metadata=False)
    (_, rgb), = list(video.sample_frames(path, max_frames=1, extra_rotation=rotation))
    assert np.abs(rgb.astype(int) - upright[0]).mean() < 6


def test_core_modules_import_without_the_faces_extra():
    """despoof_jax.data.{datasets,faces,video} and the builders import without mediapipe / av;
    using them without it names the extra to install."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('mediapipe', 'av'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from despoof_jax.data import datasets, faces, video\n"
        "from despoof_jax.data.builders import real_common, oulu_npu\n"
        "for f in (faces.detector, lambda: list(video.sample_frames('x.avi'))):\n"
        "    try:\n"
        "        f()\n"
        "    except ImportError as e:\n"
        "        assert \"pip install 'despoof_jax[faces]'\" in str(e), e\n"
        "    else:\n"
        "        raise AssertionError('no ImportError')\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
