"""Rule N's measurement (`tools/capture_tiles.py`): wide4 sessions before the shrink, scored by
both input policies through the public API, on the packaged model (nothing trained here)."""
from __future__ import annotations

import numpy as np
import pytest

import despoof_jax
from despoof_jax.data import synthetic
from despoof_jax.data.builders import synthetic_spoof as ss
from despoof_jax.evaluation import metrics
from despoof_jax.serving import model as api
from despoof_jax.tools import capture_tiles


def test_the_wide4_record_is_the_capture_shrunk():
    """`capture_example` is what world wide4's sensor recorded; the record is it shrunk by the
    resize `score` gives a larger crop, so policy "resize" on the capture scores the record."""
    args = dict(seed=3, identity=5, species=3, device=1, video=7, frame=0, size=64)
    cap = synthetic.capture_example(**args)
    rec = synthetic.make_example(world="wide4", **args)
    side = cap["image"].shape[0]
    assert side == synthetic.generator.capture_size(
        **{k: args[k] for k in ("seed", "identity", "species", "device", "video", "size")})
    np.testing.assert_array_equal(api.prepare_image(cap["image"], 64), rec["image"])
    assert {k: cap[k] for k in synthetic.WIDE_FIELDS} == {k: rec[k]
                                                           for k in synthetic.WIDE_FIELDS}


def test_both_policies_scored_resumed_and_reported(tmp_path):
    """Rows in plan order with the capture side and tile count; "resize" scores equal the
    packaged model's scores of the wide4 records; a second call scores nothing again; the report
    pairs the two policies on the same records."""
    model = despoof_jax.load("pretrained")
    config = ss.SyntheticSpoofConfig(name="t", size=128, world="wide4", train_identities=4,
                                     dev_identities=4, test_identities=4, test_first_identity=900)
    logs = []
    rows = capture_tiles.score_split(model, config, "test", tmp_path, limit=3, log=logs.append)
    plan = ss.example_plan(config, "test")[:3]
    assert [int(r["index"]) for r in rows] == [0, 1, 2]
    records = [synthetic.make_example(seed=config.seed, size=128, world="wide4", **e._asdict())
               for e in plan]
    want = model.score([r["image"] for r in records]).score
    np.testing.assert_allclose([float(r["score_resize"]) for r in rows], want, rtol=1e-5)
    for r, e in zip(rows, plan):
        side = int(r["side"])
        assert 128 <= side <= 384 and int(r["identity"]) == e.identity
        assert int(r["n_tiles"]) == len(api.tile_origins(side, 128)) ** 2
    again = capture_tiles.score_split(model, config, "test", tmp_path, limit=3, log=logs.append)
    assert "0 to go" in logs[-1] and [r["score_tiles"] for r in again] == [
        str(r["score_tiles"]) for r in rows]
    with pytest.raises(ValueError, match="world 'wide2'"):
        capture_tiles.score_split(model, ss.synthetic_spoof.as_config("wide2_s128_h60"), "test",
                                  tmp_path / "x")


def test_the_report_pairs_the_policies_and_applies_rule_n():
    """Synthetic scores where tiles separate better: the paired difference is negative and Rule
    N's two parts are read from its one-sided bounds."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(400):
        ident, label = i // 20, int(i % 5 != 0)
        species = (i % 5) if label else 0
        direct = -1 if i % 2 else 3
        base = rng.normal(1.0 if label else -1.0, 1.0)
        rows.append({"index": i, "identity": ident, "species": species, "label": label,
                     "photo_source": direct, "scene_content": -1, "side": 256, "n_tiles": 4,
                     "score_resize": base, "score_tiles": base + (0.8 if label else -0.8)})
    r = capture_tiles.report(rows, threshold=0.0, n_boot=200)
    whole = r["whole"]
    assert whole["tiles"]["acer"] < whole["resize"]["acer"]
    p = whole["paired_tiles_minus_resize"]
    assert p["diff"] == pytest.approx(whole["tiles"]["acer"] - whole["resize"]["acer"])
    assert r["direct"]["records"] == 200
    rule = capture_tiles.rule_n(r)
    assert rule["ships"] == (p["upper_one_sided"] < 0 and rule["b_upper"] <= 0.02)
    assert rule["ships"]
    s = metrics.ScoreSet(np.asarray([float(x["score_tiles"]) for x in rows]),
                         [x["label"] for x in rows], [x["species"] for x in rows])
    assert whole["tiles"]["acer"] == pytest.approx(metrics.acer(s.scores, s.labels, s.species, 0.0))
