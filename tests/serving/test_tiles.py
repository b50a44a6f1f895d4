"""The tiles input policy (README, Rule N): crops larger than the model's input read as
input-size tiles at their own resolution, on the packaged model (nothing trained here)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import despoof_jax
from despoof_jax import cli
from despoof_jax.data import faces
from despoof_jax.serving import model as api
from despoof_jax.tools import cross_simulator


@pytest.fixture(scope="module")
def model():
    return despoof_jax.load("pretrained")


def _crop(side, seed=0, w=None):
    """A textured RGB crop (not gray: the input policy refuses R = G = B pictures)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (side, w or side, 3), dtype=np.uint8)


def test_tile_origins_cover_the_side_evenly_and_are_capped():
    assert api.tile_origins(128, 128) == [0]
    assert api.tile_origins(256, 128) == [0, 128]
    assert api.tile_origins(300, 128) == [0, 86, 172]            # overlapping, covering
    assert api.tile_origins(129, 128) == [0, 1]
    far = api.tile_origins(3000, 128)
    assert len(far) == api.MAX_TILES_PER_SIDE and far[0] == 0 and far[-1] == 3000 - 128
    for side in (128, 200, 383, 1000):
        starts = api.tile_origins(side, 128)
        assert starts[0] == 0 and starts[-1] + 128 == side and starts == sorted(starts)
    with pytest.raises(ValueError, match="no tile"):
        api.tile_origins(100, 128)
    a = _crop(256, w=300)
    t = api.tiles(a, 128)
    assert t.shape == (2 * 3, 128, 128, 3)
    np.testing.assert_array_equal(t[4], a[128:256, 86:214])      # row 1, column 1


def test_a_crop_of_the_input_size_scores_alike_under_both_policies(model):
    """One tile: the issue's 128 px check and every crop-sized record are unchanged."""
    batch = np.stack([_crop(128, seed=s) for s in range(3)])
    a = model.score(batch, input_policy="resize")
    b = model.score(batch, input_policy="tiles")
    np.testing.assert_array_equal(a.score, b.score)
    for c in a.components:
        np.testing.assert_array_equal(a.components[c], b.components[c])


def test_a_larger_crop_scores_the_mean_of_its_tiles(model):
    """Each component score is the mean over the tiles cut at the crop's own resolution, and the
    decision is the model's rule on the fused mean; a shrunk crop scores otherwise."""
    big, small = _crop(256, seed=1, w=272), _crop(128, seed=2)   # 2 x 3 tiles
    out = model.score([big, small], input_policy="tiles")
    each = model.score(list(api.tiles(big, 128)), input_policy="resize")
    for c in out.components:
        assert out.components[c][0] == pytest.approx(np.mean(each.components[c]), rel=1e-5)
    assert out.score[1] == model.score(small).score[0]            # its neighbour is one tile
    assert out.is_attack[0] == (out.score[0] >= model.threshold)
    assert len(each.score) == 6
    shrunk = model.score(big, input_policy="resize")
    assert abs(shrunk.score[0] - out.score[0]) > 1e-4
    # A decomposition pictures the shrunk crop but decides as score() does, under either policy.
    d = model.decompose([big, small])
    assert model.input_policy == "tiles"
    np.testing.assert_array_equal(d.score, out.score)
    np.testing.assert_array_equal(d.is_attack, out.is_attack)
    for c in out.components:
        np.testing.assert_array_equal(d.components[c], out.components[c])
    r = model.decompose([big, small], input_policy="resize")     # the same pictures ...
    np.testing.assert_array_equal(r.noise, d.noise)
    assert r.score[0] == shrunk.score[0] != d.score[0]             # ... decided on the picture


def test_the_policy_is_the_models_and_is_checked(model, tmp_path):
    """model.json's `input_policy` is the default: "tiles" for the packaged model since Rule N,
    "resize" where it names none (packs and workdirs before it); a bad value is refused at load,
    at assignment and per call."""
    assert model.input_policy == "tiles"
    folder = tmp_path / "m"
    shutil.copytree(api.pretrained_dir(), folder)
    info = json.loads((folder / "model.json").read_text())
    older = {k: v for k, v in info.items() if not k.startswith("input_policy")}
    (folder / "model.json").write_text(json.dumps(older))
    resized = despoof_jax.load(str(folder))
    assert resized.input_policy == "resize" and "input_policy='resize'" in repr(resized)
    # `despoof crosscheck [--input-policy P]` scores with P, else with the model's own policy
    assert cross_simulator.scorer(str(folder), None).input_policy == "resize"
    assert cross_simulator.scorer(str(folder), "tiles").input_policy == "tiles"
    big = _crop(256, seed=3)
    want = model.score(big, input_policy="resize").score[0]
    model.input_policy = "resize"   # what the older folder's model does by default
    try:
        assert model.score(big).score[0] == want
    finally:
        model.input_policy = "tiles"
    assert model.score(big).score[0] == model.score(big, input_policy="tiles").score[0]
    (folder / "model.json").write_text(json.dumps({**info, "input_policy": "crop"}))
    with pytest.raises(api.ModelLoadError, match="input_policy 'crop'"):
        despoof_jax.load(str(folder))
    with pytest.raises(ValueError, match="input_policy"):
        model.score(big, input_policy="crop")
    with pytest.raises(ValueError, match="input_policy"):
        model.input_policy = "shrink"


def test_small_crops_follow_the_upsample_rule_under_tiles(model):
    small = _crop(100)
    with pytest.raises(api.InputError, match="smaller than the model's input"):
        model.score(small, input_policy="tiles")
    with pytest.warns(UserWarning, match="upsampled"):
        a = model.score(small, input_policy="tiles", allow_upsample=True)
    with pytest.warns(UserWarning, match="upsampled"):
        b = model.score(small, allow_upsample=True)
    assert a.score[0] == b.score[0]


def test_crop_native_cuts_whole_pixels():
    frame = _crop(400, seed=4)
    box = faces.FaceBox(200.0, 180.0, 100.0)
    cut = faces.crop_native(frame, box, scale=1.5)
    assert cut.shape == (150, 150, 3)
    np.testing.assert_array_equal(cut, frame[105:255, 125:275])
    edge = faces.crop_native(frame, faces.FaceBox(10.0, 10.0, 40.0), scale=1.5)
    assert edge.shape == (60, 60, 3) and not edge[:20, :20].any()   # black outside the frame


def test_score_command_takes_the_input_policy(model, tmp_path):
    """`despoof score --input-policy tiles` scores a larger crop (and, beside it, a crop-sized
    one) as the library does, also with --visualize (which pictures the shrunk crop)."""
    from PIL import Image   # noqa: PLC0415 (only this test writes files)
    big, small = _crop(256, seed=5), _crop(128, seed=6)
    Image.fromarray(big).save(tmp_path / "a.png")
    Image.fromarray(small).save(tmp_path / "b.png")
    path = tmp_path / "out.json"
    want = model.score([big, small], input_policy="tiles").score
    for extra in ([], ["--visualize", str(tmp_path / "vis")]):
        assert cli.main(["score", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--model",
                         "pretrained", "--input-policy", "tiles", "--json", str(path)]
                        + extra) == 0
        got = [r["score"] for r in json.loads(path.read_text())["results"]]
        np.testing.assert_allclose(got, want, rtol=1e-5)
    assert len(list((tmp_path / "vis").glob("*.png"))) == 2
    with pytest.raises(SystemExit):   # argparse: --input-policy takes resize or tiles
        cli.main(["score", str(tmp_path / "a.png"), "--model", "pretrained",
                  "--input-policy", "crop"])
