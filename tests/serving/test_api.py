"""The library API on a model trained for a few steps here: shapes, ranges, live = I - N, the same
scores as the evaluation path, one compile per batch bucket, and errors naming the bad input."""
from __future__ import annotations

import json
import os
import shutil
import warnings

import numpy as np
import pytest

from despoof_jax.data import datasets
from despoof_jax.evaluation import evaluate, scores
from despoof_jax.serving import model as api


@pytest.fixture(scope="module")
def workdir(trained_workdir):
    return trained_workdir


@pytest.fixture(scope="module")
def model(workdir):
    return api.load(workdir)


def _images(seed=0):
    r = np.random.default_rng(seed)
    return [r.integers(0, 256, (80, 70, 3), dtype=np.uint8),
            r.random((100, 96, 3)).astype(np.float32),
            r.integers(0, 256, (64, 64, 3), dtype=np.uint8)]


def test_decompose_shapes_ranges_and_live_identity(model):
    s = model.image_size
    d = model.decompose(_images())
    assert d.input.shape == d.noise.shape == d.live.shape == (3, s, s, 6)
    assert d.depth.shape == d.map.shape == (3, s // 8, s // 8, 1)
    assert d.input_rgb.shape == d.noise_rgb.shape == d.live_rgb.shape == (3, s, s, 3)
    assert 0.0 <= d.input.min() and d.input.max() <= 1.0
    assert 0.0 <= d.live_image.min() and d.live_image.max() <= 1.0
    np.testing.assert_array_equal(d.live, d.input - d.noise)        # Eq. 1, exactly
    assert d.score.shape == d.is_attack.shape == (3,) and d.is_attack.dtype == bool
    np.testing.assert_array_equal(d.is_attack, d.score >= model.threshold)
    for c in scores.COMPONENTS:
        assert d.components[c].shape == (3,) and np.all(np.isfinite(d.components[c]))
    # The 64x64 uint8 crop needs no resize: its input is model_input of its pixels (to float32
    # rounding: the program scales by 1/255), and the float crop is scored as its 8-bit image.
    np.testing.assert_allclose(d.input_rgb[2], _images()[2] / np.float32(255.0), atol=1e-7)
    assert np.allclose(d.input_rgb * 255.0, np.round(d.input_rgb * 255.0), atol=1e-4)
    # score() agrees with decompose() on the same (uint8) inputs.
    sc = model.score([_images()[0], _images()[2]])
    # Same batch, two programs (score keeps fewer outputs): XLA may fuse the reductions
    # differently. Tolerance: float32 means over 64 x 64 x 6 values in another order differ by
    # ~1e-7 relative; fused scores are O(1); 1e-5 leaves a margin of 10x over the largest
    # difference measured across programs (1.3e-6, see test_compiles_once_per_bucket_and_chunks).
    np.testing.assert_allclose(sc.score, model.decompose([_images()[0], _images()[2]]).score,
                               rtol=0, atol=1e-5)


def test_same_scores_as_the_evaluation_path(model, workdir):
    config = model.config
    dev = evaluate.score_split(config, model.ds, model.dq, "dev")
    source, _ = datasets.load_split(config.data, "dev")
    pick = np.arange(min(11, len(dev["index"])))        # 11: a padded bucket (16) on our side
    images = np.stack([np.asarray(source[int(dev["index"][i])]["image"]) for i in pick])
    out = model.score(images)
    for c in scores.COMPONENTS:
        # Batch 16 (our bucket) against the evaluation's batch: other programs, other
        # summation orders (see the tolerance note above).
        np.testing.assert_allclose(out.components[c], dev[f"score_{c}"][pick], rtol=0, atol=1e-5)
    with open(os.path.join(workdir, "eval", "model.json")) as f:
        info = json.load(f)
    expected = scores.fuse({k: v[pick] for k, v in dev.items()}, info["fusion_stats"],
                           info["fusion"])
    np.testing.assert_allclose(out.score, expected, rtol=0, atol=1e-5)
    assert out.threshold == info["threshold"] and out.fusion == info["fusion"]


def test_compiles_once_per_bucket_and_chunks(workdir):
    m = api.load(workdir, max_batch=4)
    assert m.compile_count == 0
    r = np.random.default_rng(1)
    batch = r.integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    for n in (1, 2, 3, 4, 3, 1, 2, 4):
        m.score(batch[:n])
    assert m.compile_count == 3                      # buckets 1, 2, 4
    whole = m.score(batch)                           # chunks 4 + 4 + 1: no new program
    assert m.compile_count == 3
    single = np.concatenate([m.score(batch[i]).score for i in range(9)])
    # Batch 4 against batch 1 programs: a user's machine measured 1.26e-6 (atol was 1e-6 then);
    # float32 reductions in another order carry ~1e-7 relative error on O(1) fused scores.
    np.testing.assert_allclose(whole.score, single, rtol=0, atol=1e-5)
    # Float inputs are scored as the 8-bit images they round to: the same program, the same
    # scores as the uint8 copy.
    as_float = m.score(batch[:3].astype(np.float32) / 255.0)
    assert m.compile_count == 3
    np.testing.assert_array_equal(as_float.score, m.score(batch[:3]).score)


def test_bad_arrays_are_named(model):
    s = model.image_size
    good = np.zeros((s, s, 3), np.uint8)
    cases = {
        "[H, W, 3]": np.zeros((s, s), np.uint8),
        "alpha": np.zeros((s, s, 4), np.uint8),
        "expected [0, 1]": np.full((s, s, 3), 2.0, np.float32),
        "1 NaN or infinite": np.where(np.arange(s * s * 3).reshape(s, s, 3) == 5, np.nan,
                                      0.5).astype(np.float32),
        "dtype uint16": np.zeros((s, s, 3), np.uint16),
        "smaller than the model's input": np.zeros((s - 8, s + 8, 3), np.uint8),
    }
    for expect, bad in cases.items():
        with pytest.raises(api.InputError, match=r"images\[1\].*") as e:
            model.score([good, bad])
        assert expect in str(e.value), (expect, str(e.value))
    with pytest.raises(api.InputError, match="empty"):
        model.score([])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = model.score(np.zeros((s // 2, s // 2, 3), np.uint8), allow_upsample=True)
    assert out.score.shape == (1,) and any("upsampled" in str(w.message) for w in caught)


def test_load_errors_say_what_to_do(workdir, tmp_path):
    with pytest.raises(api.ModelLoadError, match="no such folder"):
        api.load(str(tmp_path / "missing"))
    never = tmp_path / "never_evaluated"
    shutil.copytree(workdir, never)
    shutil.rmtree(never / "eval")
    with pytest.raises(api.ModelLoadError, match="never evaluated.*config.mode=eval"):
        api.load(str(never / "ds" / "checkpoints"))     # a path inside the workdir is accepted
    wrong = tmp_path / "wrong_config"
    shutil.copytree(workdir, wrong)
    with open(wrong / "config.json") as f:
        cfg = json.load(f)
    cfg["model"]["ds_width"] = 1.0                      # the checkpoint was trained at 0.5
    with open(wrong / "config.json", "w") as f:
        json.dump(cfg, f)
    with pytest.raises(api.ModelLoadError, match=r"do not fit config.json.*ds_width=1\.0.*arrays "
                                                 r"saved in .*differ from what the config builds, "
                                                 r"e\.g\. ds/.* saved \(\d+,\), built"):
        api.load(str(wrong))   # told from the metadata: orbax's reads never start
    cfg["model"]["ds_width"] = 0.5
    cfg["train"]["stage2_steps"] += 10                  # as if stopped 10 steps before its end
    with open(wrong / "config.json", "w") as f:
        json.dump(cfg, f)
    with pytest.raises(api.ModelLoadError) as e:
        api.load(str(wrong))
    assert "stage2_steps" in str(e.value) or "resume" in str(e.value)
    assert "do not fit" not in str(e.value)


def test_resuming_a_workdir_with_another_width_exits_2_naming_an_array(workdir, tmp_path,
                                                                        capsys):
    from despoof_jax import cli, commands  # noqa: PLC0415
    from tests.util import CONFIGS  # noqa: PLC0415
    shutil.copytree(workdir, tmp_path / "run")
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    capsys.readouterr()
    rc = cli.main(["--cpu-kernels=default", "train", f"--config={CONFIGS}/default.py:smoke",
                   f"--workdir={tmp_path}/run", f"--config.data.data_dir={cfg['data']['data_dir']}",
                   "--config.train.stage1_steps=4", "--config.train.stage2_steps=4",
                   "--config.loss.noise_truth=3.0", "--config.model.ds_width=1.0",
                   "--config.mode=ds"])
    err = capsys.readouterr().err
    assert rc == commands.EXIT_USAGE, err
    assert "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert line.startswith("error: ds: cannot resume: ") and "differ from what the config " \
        "builds, e.g. ds/" in line and line.endswith("or train in a new workdir"), line
    # refused before anything was written: the record still names the run's own model, and the
    # workdir still loads
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == cfg
    assert api.load(str(tmp_path / "run")).config.model.ds_width == cfg["model"]["ds_width"]


def test_load_errors_for_workdirs_that_hold_no_servable_model(tmp_path):
    """A multi-fold run's root and a baseline's workdir both lack eval/model.json, but running
    the evaluation again would not help either: the error says what would (only the files the
    check reads are written here)."""
    config = json.loads((api.pretrained_dir() / "config.json").read_text())
    model_json = (api.pretrained_dir() / "model.json").read_text()
    root = tmp_path / "folds"
    for k in range(3):
        (root / f"fold{k}" / "eval").mkdir(parents=True)
        (root / f"fold{k}" / "config.json").write_text(json.dumps(config))
        if k:                                           # fold0 was not evaluated yet
            (root / f"fold{k}" / "eval" / "model.json").write_text(model_json)
    (root / "eval").mkdir()
    (root / "eval" / "metrics_folds.json").write_text("{}")
    (root / "config.json").write_text(json.dumps(dict(config, data=dict(config["data"], fold=-1))))
    with pytest.raises(api.ModelLoadError, match=r"root of a multi-fold run.*fold0, fold1, "
                                                 r"fold2/.*--model .*fold1`") as e:
        api.load(str(root))
    assert "never evaluated" not in str(e.value)
    for method in ("binary_cnn", "depth_only"):
        wd = tmp_path / method
        (wd / "eval").mkdir(parents=True)
        (wd / "config.json").write_text(json.dumps(dict(config, method=method)))
        (wd / "eval" / "metrics.json").write_text("{}")
        with pytest.raises(api.ModelLoadError, match=f"'{method}' baseline run.*not servable"):
            api.load(str(wd / "eval"))
    # a de-spoofing workdir without eval/model.json is still one to evaluate
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text(json.dumps(config))
    with pytest.raises(api.ModelLoadError, match="never evaluated.*config.mode=eval"):
        api.load(str(tmp_path / "plain"))
