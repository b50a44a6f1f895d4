"""The cross-simulator check (`despoof_jax.tools.cross_simulator`): its crops, its camera and its
summary. Plumbing only: the photos here are procedural (the synthetic world's live render), and
the detector is replaced by the documented central-crop fallback."""
import numpy as np
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
