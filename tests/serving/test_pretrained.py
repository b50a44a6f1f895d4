"""The packaged model form (issue #14): `pack` writes a small folder that `load` restores without
orbax, whose float16 scores match the float32 workdir's; `load("pretrained")` loads the model
shipped inside the package, with no network and no training, and its exported StableHLO artifact
gives the library's scores; the reproduction config exists in its smoke form."""
from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest

from despoof_jax.serving import export, serving_loader
from despoof_jax.serving import model as api
from despoof_jax.serving import pretrained
from tests.util import config_module

# Largest |score difference| accepted between float16-packed and float32 weights, in units of the
# fused score (dev-standardised components; the dev threshold sits on the same scale).
FLOAT16_TOLERANCE = 0.02


def test_pack_round_trip_float16(trained_workdir, tmp_path):
    info = pretrained.pack(trained_workdir, tmp_path / "packed")
    assert api.is_packaged(tmp_path / "packed")
    packed = api.load(str(tmp_path / "packed"))
    source = api.load(trained_workdir)
    assert (packed.threshold, packed.fusion, packed.image_size) == (
        source.threshold, source.fusion, source.image_size)
    crops = pretrained.check_crops(source.image_size, n=6, seed=1)
    diff = np.max(np.abs(packed.score(crops).score - source.score(crops).score))
    assert diff <= FLOAT16_TOLERANCE
    assert info["packed"]["max_score_diff"] <= pretrained.MAX_SCORE_DIFF
    assert info["packed"]["min_probe_margin"] > 0
    assert (tmp_path / "packed" / "weights.npz").stat().st_size < 10e6
    # The files are bound to model.json: weights from another pack beside it are refused.
    assert set(info["packed"]["sha256"]) == {"weights.npz", "config.json"}
    other = pretrained.pack(trained_workdir, tmp_path / "f32", dtype="float32")
    assert other["packed"]["sha256"]["weights.npz"] != info["packed"]["sha256"]["weights.npz"]
    mixed = tmp_path / "mixed"
    shutil.copytree(tmp_path / "packed", mixed)
    shutil.copy(tmp_path / "f32" / "weights.npz", mixed / "weights.npz")
    with pytest.raises(api.ModelLoadError, match="weights.npz is not the file its model.json was "
                                                 "packed with .* mixes two packs"):
        api.load(str(mixed))
    shutil.rmtree(mixed)
    shutil.rmtree(tmp_path / "f32")
    with pytest.raises(api.ModelLoadError, match="not a packaged model"):
        api.load_packaged(tmp_path)
    # Packing again over it replaces the three files together, or leaves them as they were: a
    # failing check (here the probe's scoring) keeps the previous package whole.
    before = (tmp_path / "packed" / "model.json").read_text()
    original = api.DespoofModel.score
    calls = []

    def fail_second(self, *a, **k):   # the first score is the source's, the second the copy's
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("probe failed")
        return original(self, *a, **k)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(api.DespoofModel, "score", fail_second)
        with pytest.raises(RuntimeError, match="probe failed"):
            pretrained.pack(trained_workdir, tmp_path / "packed", dtype="float32")
    assert (tmp_path / "packed" / "model.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packed"]   # no temporary folder left
    with pytest.raises(ValueError, match="is the workdir itself"):
        pretrained.pack(trained_workdir, trained_workdir)
    # probe crops of any size, not only multiples of 4
    assert pretrained.check_crops(130, n=2).shape == (2, 130, 130, 3)


def test_pretrained_loads_from_the_package_and_exports(tmp_path):
    if not api.is_packaged(api.pretrained_dir()):
        pytest.fail(f"the package ships no pretrained model in {api.pretrained_dir()}")
    model = api.load("pretrained")
    info = json.loads((api.pretrained_dir() / "model.json").read_text())
    assert model.threshold == info["threshold"] and model.image_size == 128
    assert info["packed"]["max_score_diff"] <= FLOAT16_TOLERANCE
    crops = pretrained.check_crops(model.image_size, n=3, seed=2)
    out = model.score(crops)
    assert np.all(np.isfinite(out.score))
    # Pins the shipped weights and the preprocessing (resize, RGB + HSV, fusion): measured
    # with the suite's XLA settings, for the model shipped since 2026-12-06 (the rerun, Rule R;
    # candidate 8 gave 0.014431, -1.737569, -1.008721); XLA's optimised programs and YNNPACK
    # kernels differ by ~2e-6. A change here means the shipped model now scores differently:
    # re-pack on purpose and update the model card, or find what changed the inputs.
    np.testing.assert_allclose(out.score, [-0.890931, -0.906282, -2.120849], rtol=0, atol=1e-3)
    np.testing.assert_array_equal(out.is_attack, [False, False, False])
    export.export_model(model, str(tmp_path / "export"), batch_sizes=[3])
    served = serving_loader.load(str(tmp_path / "export"))(crops)
    np.testing.assert_allclose(served["score"], out.score, atol=1e-4)
    np.testing.assert_array_equal(served["is_attack"], out.is_attack)


def test_a_packaged_model_that_does_not_hold_together_is_refused_at_load(tmp_path):
    import shutil  # noqa: PLC0415

    from despoof_jax import cli  # noqa: PLC0415

    def copy(name):
        d = tmp_path / name
        shutil.copytree(api.pretrained_dir(), d)
        return d

    def edit(d, file, change):
        data = json.loads((d / file).read_text())
        change(data)
        (d / file).write_text(json.dumps(data))
        return str(d)

    cases = {
        # weights trained at 128 px under a config edited to 64: scored at 64 before, silently
        "config.json was edited": (lambda d: edit(d, "config.json", lambda c: c["data"].update(
            image_size=64)), r"model.json was written for image_size 128 but .* says 64"),
        "ds width": (lambda d: edit(d, "config.json", lambda c: c["model"].update(
            ds_width=0.5)), r"the DS Net arrays do not fit config.json"),
        "no threshold": (lambda d: edit(d, "model.json", lambda m: m.pop("threshold")),
                         r"missing \['threshold'\]"),
        "null threshold": (lambda d: edit(d, "model.json", lambda m: m.update(threshold=None)),
                           "expected a finite number"),
        "a rule, not a score": (lambda d: edit(d, "model.json", lambda m: m.update(
            fusion="dev_eer")), "'dev_eer' is not a decision score"),
        "stats": (lambda d: edit(d, "model.json", lambda m: m["fusion_stats"].pop("depth")),
                  "fusion_stats must give"),
        "bad json": (lambda d: (d / "model.json").write_text("{") and str(d),
                     "cannot read the model's decision rule"),
    }
    for k, (make, match) in enumerate(cases.values()):
        path = make(copy(f"m{k}"))
        with pytest.raises(api.ModelLoadError, match=match):
            api.load(path)
    # the command line says so in one line and exits 2 (a traceback and 1 before)
    face = tmp_path / "face.npy"
    np.save(face, np.zeros((128, 128, 3), np.uint8))
    assert cli.main(["score", str(face), "--model", str(tmp_path / "m4")]) == 2
    assert cli.main(["score", str(face), "--model", "pretrained", "--max-batch", "0"]) == 2


def test_reproduction_config():
    module = config_module("pretrained")
    full, smoke = module.get_config(), module.get_config("smoke")
    assert (full.data.builder_config, full.data.image_size) == ("wide2_s128", 128)
    assert (full.model.ds_width, full.train.stage2_steps) == (1.0, 3600)
    assert (full.train.lr_decay_step, full.train.lr_decay_factor) == (2400, 0.1)
    # the shipped model was trained with this recipe (its packaged config.json)
    from despoof_jax.serving import model as serving_model   # noqa: PLC0415
    shipped = json.loads((serving_model.pretrained_dir() / "config.json").read_text())
    for group, key in (("train", "stage2_steps"), ("train", "learning_rate"),
                       ("train", "lr_decay_step"), ("train", "lr_decay_factor"),
                       ("model", "ds_width"), ("data", "builder_config")):
        assert shipped[group][key] == full[group][key], (group, key)
    # the shipped run's recipe (model card): input skip, truth term at lambda_1, dev-chosen fusion
    assert (full.model.ds_input_skip, full.loss.noise_truth, full.eval.fusion) == (
        True, 3.0, "dev_eer")
    assert (smoke.model.ds_input_skip, smoke.loss.noise_truth) == (True, 3.0)
    # Rule N: the recipe writes the shipped input policy into model.json, which pack copies
    shipped_info = json.loads((serving_model.pretrained_dir() / "model.json").read_text())
    assert full.eval.input_policy == smoke.eval.input_policy == shipped_info["input_policy"] \
        == "tiles"
    assert smoke.data.builder_config == "wide2_smoke" and smoke.train.stage2_steps <= 4
    with pytest.raises(ValueError, match="variant"):
        module.get_config("huge")


def test_reproduction_config_runs_at_smoke_scale(synthetic_data_dir, tmp_path):
    """configs/pretrained.py:smoke end to end: both stages trained with its recipe (input skip,
    truth term), evaluated with its dev-chosen decision score, packed and loaded (XLA's
    optimisations off: compile time dominates). Its data is swapped for the suite's shared
    `s64_small` set (same size, same fields): building `wide2_smoke` would add ~17 CPU-seconds, and
    the wide builder has its own test (tests/data/test_wide.py)."""
    import jax   # noqa: PLC0415

    from despoof_jax import experiment   # noqa: PLC0415
    from despoof_jax.evaluation import scores   # noqa: PLC0415
    config = config_module("pretrained").get_config("smoke")
    assert config.data.builder_config == "wide2_smoke"
    root = tmp_path
    with config.unlocked():
        config.data.data_dir = synthetic_data_dir
        config.data.builder_config = "s64_small"
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        experiment.train_and_evaluate(config, str(root / "workdir"))
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)
    info = json.loads((root / "workdir" / "eval" / "model.json").read_text())
    assert info["fusion"] in scores.FUSIONS and np.isfinite(info["threshold"])
    assert info["input_policy"] == "tiles"   # the recipe's, with nothing added by hand
    pretrained.pack(str(root / "workdir"), root / "packed")
    model = api.load(str(root / "packed"))
    assert model.fusion == info["fusion"] and model.image_size == config.data.image_size
    assert model.input_policy == api.load(str(root / "workdir")).input_policy == "tiles"
    assert np.all(np.isfinite(model.score(pretrained.check_crops(model.image_size, n=2)).score))


def _fake_workdir(root):
    """A workdir's config.json and eval/model.json (the shipped model's): what `pack` reads from
    a workdir beside the model itself, which the tests below hand it directly."""
    import shutil  # noqa: PLC0415
    (root / "eval").mkdir(parents=True)
    shutil.copyfile(api.pretrained_dir() / "config.json", root / "config.json")
    shutil.copyfile(api.pretrained_dir() / "model.json", root / "eval" / "model.json")
    return str(root)


def test_pack_refuses_weights_that_change_a_decision(tmp_path, monkeypatch, capsys):
    """The probe's decisions are forced apart (the float32 source says live for every crop, the
    packed copy attack for one): `pack` installs nothing, unless it is told to."""
    work = _fake_workdir(tmp_path / "work")
    monkeypatch.setattr(api, "load", lambda path, **k: api.load_packaged(api.pretrained_dir()))
    calls = []

    def fake_score(self, images, **k):   # the source's scores first, then the packed copy's
        calls.append(1)
        n = len(images)
        score = np.full(n, -1.0) + (np.arange(n) == 0) * (len(calls) % 2 == 0) * 3.0
        return api.Scores(score=score, is_attack=score >= self.threshold, components={},
                          threshold=self.threshold, fusion=self.fusion)
    monkeypatch.setattr(api.DespoofModel, "score", fake_score)
    out = tmp_path / "packed"
    out.mkdir()
    (out / "model.json").write_text("previous")
    with pytest.raises(pretrained.PackRefused, match=r"float16 weights change 1 of the probe.*"
                                                     r"--dtype float32.*--allow-changed-decisions"):
        pretrained.pack(work, out)
    assert (out / "model.json").read_text() == "previous"        # nothing installed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["packed", "work"]   # no temporary left
    assert pretrained.main([work, "--out", str(out)]) == 2
    assert "error: float16 weights change 1" in capsys.readouterr().err
    info = pretrained.pack(work, out, allow_changed_decisions=True)
    assert info["packed"]["decisions_changed"] == 1 and api.is_packaged(out)
    assert pretrained.pack(work, tmp_path / "f32", dtype="float32")["packed"]["decisions_changed"] == 1
    # the rule alone
    record = dict(weights_dtype="float16", decisions_changed=0, max_score_diff=0.0, probe="p")
    pretrained.check_packed(record)
    pretrained.check_packed(dict(record, decisions_changed=2), allow_changed_decisions=True)
    pretrained.check_packed(dict(record, weights_dtype="float32", decisions_changed=2))
    with pytest.raises(pretrained.PackRefused):
        pretrained.check_packed(dict(record, decisions_changed=2))
    # no decision changed, but the scores moved more than float16 should move them: refused too
    # (the probes may all sit far from the threshold)
    pretrained.check_packed(dict(record, max_score_diff=0.5 * pretrained.MAX_SCORE_DIFF))
    with pytest.raises(pretrained.PackRefused, match="move their scores by up to 0.05"):
        pretrained.check_packed(dict(record, max_score_diff=0.05))


def test_pack_records_a_noise_runaway_and_refuses_to_install_it(tmp_path, monkeypatch, capsys):
    """A run whose stage-2 log has a J_r below -sqrt(HW) or a noise_peak above it (DS Net's noise
    outside the image range) is packed into another folder with the row recorded, and refused as
    the package's own model unless told; a clean log, and a workdir without one, are recorded as
    such."""
    shipped, work = api.pretrained_dir(), _fake_workdir(tmp_path / "work")
    monkeypatch.setattr(api, "load", lambda path, **k: api.load_packaged(shipped))
    package = tmp_path / "package"    # stands in for the package's own folder: never the real one
    monkeypatch.setattr(api, "pretrained_dir", lambda: package)
    wd = api.find_workdir(work)
    assert pretrained.training_check(wd, 128) == {"log": None, "rows": 0, "bound": 128.0,
                                                  "noise_runaway": None}
    log = pathlib.Path(work) / "ds" / "metrics.jsonl"
    log.parent.mkdir()
    rows = [{"step": 1, "J_r": -5.0}, {"step": 2, "J_z": 0.2}, {"step": 3, "J_r": -127.0},
            {"step": 4, "J_r": -3.0, "noise_peak": 127.9}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert pretrained.training_check(wd, 128) == {"log": "ds/metrics.jsonl", "rows": 4,
                                                  "bound": 128.0, "noise_runaway": None}
    # one sample's peak beyond the bound, the batch mean well inside it
    log.write_text("".join(json.dumps(r) + "\n" for r in rows + [
        {"step": 5, "J_r": -3.0, "noise_peak": 129.0}]))
    assert pretrained.training_check(wd, 128)["noise_runaway"] == {
        "step": 5, "J_r": -3.0, "noise_peak": 129.0}
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with log.open("a") as f:
        f.write(json.dumps({"step": 6, "J_r": -129.5}) + "\n")
    info = pretrained.pack(work, tmp_path / "scored", dtype="float32")
    assert info["packed"]["training_check"]["noise_runaway"] == {"step": 6, "J_r": -129.5}
    assert json.loads((tmp_path / "scored" / "model.json").read_text())["packed"][
        "training_check"]["noise_runaway"]["step"] == 6
    with pytest.raises(pretrained.PackRefused, match="left the image range at step 6.*not "
                                                     "eligible.*--allow-runaway"):
        pretrained.pack(work, dtype="float32")
    assert not package.exists()
    assert pretrained.main([work, "--dtype", "float32"]) == 2
    assert "not eligible to ship" in capsys.readouterr().err and not package.exists()
    assert pretrained.main([work, "--dtype", "float32", "--allow-runaway"]) == 0
    assert api.is_packaged(package)


def test_a_folder_named_pretrained_is_loaded_by_its_path_and_never_written(tmp_path, monkeypatch,
                                                                           capsys):
    import shutil  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    from despoof_jax import cli  # noqa: PLC0415
    shipped_json = (api.pretrained_dir() / "model.json").read_bytes()
    shipped = json.loads(shipped_json)["threshold"]
    local = tmp_path / "pretrained"
    shutil.copytree(api.pretrained_dir(), local)
    info = json.loads((local / "model.json").read_text())
    info["threshold"] = shipped + 1.0                        # tells the two models apart
    (local / "model.json").write_text(json.dumps(info))
    monkeypatch.chdir(tmp_path)
    # the bare name stays the shipped model, and says that a folder of that name is here
    with pytest.warns(UserWarning, match=r"shipped inside despoof_jax.*'\./pretrained'"):
        assert api.load("pretrained").threshold == shipped
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert api.load("./pretrained").threshold == shipped + 1.0
        assert api.load(str(local)).threshold == shipped + 1.0
    assert api.model_json_path("./pretrained") == pathlib.Path("pretrained") / "model.json"
    # --write never writes into the installed package, by name or by path; it says what to do,
    # before anything is scored
    for model in ("pretrained", str(api.pretrained_dir())):
        for extra in ([], ["--bona-fide", str(tmp_path)]):
            rc = cli.main(["--cpu-kernels=default", "calibrate", "--model", model, "--write",
                           *extra])
            err = capsys.readouterr().err
            assert rc == 2 and "is never written to" in err and "Copy it to a folder" in err
            assert model != "pretrained" or "pass './pretrained'" in err
    with pytest.raises(api.ModelLoadError, match="never written to.*'./pretrained'"):
        api.model_json_path("pretrained")
    assert (api.pretrained_dir() / "model.json").read_bytes() == shipped_json
