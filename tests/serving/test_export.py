"""The exported StableHLO artifact: run in a fresh process that never imports the training code,
it gives the library's scores; the manifest is complete; a tampered artifact is refused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from despoof_jax.serving import export, serving_loader
from despoof_jax.serving import model as api
from tests import fake_gcs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def model(trained_workdir):
    return api.load(trained_workdir)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """The model exported to a gs:// folder (tests/fake_gcs.py); yields the local folder behind
    it, where every file was written through the gs:// filesystem."""
    root = tmp_path_factory.mktemp("gcs")
    with fake_gcs.served(root):
        manifest = export.export_model(model, "gs://bucket/export")
        written = set(fake_gcs.FakeGCS.written)
    out = root / "bucket" / "export"
    assert {str(p) for p in out.iterdir()} == written
    return str(out), manifest


def _crops(model, n=5, seed=3):
    s = model.image_size
    return np.random.default_rng(seed).integers(0, 256, (n, s, s, 3), dtype=np.uint8)


def test_manifest(exported, model):
    out, manifest = exported
    with open(os.path.join(out, "manifest.json")) as f:
        assert json.load(f) == json.loads(json.dumps(manifest))
    assert manifest["format_version"] == serving_loader.FORMAT_VERSION
    assert manifest["batch_mode"] == "symbolic" and manifest["batch_sizes"] == ["N"]
    assert manifest["image_size"] == model.image_size
    assert manifest["threshold"] == model.threshold and manifest["fusion"] == model.fusion
    assert manifest["despoof_jax_version"] != "unknown" and manifest["jax_version"]
    assert manifest["inputs"][0]["shape"] == ["N", model.image_size, model.image_size, 3]
    assert set(manifest["outputs"]) == {"score", "is_attack", "score_noise", "score_map",
                                        "score_depth"}
    art = manifest["artifacts"][0]
    assert os.path.getsize(os.path.join(out, art["file"])) == art["bytes"]
    assert os.path.isfile(os.path.join(out, "serving_loader.py"))
    # what a deployment must do before the program, and how it decides
    pre = manifest["preprocessing"]
    assert pre["min_side"] == model.image_size and "BILINEAR" in pre["resize"]
    assert "antialiased" in pre["resize"] and "1.5 x" in pre["face_square"]
    assert pre["input_policy"] == model.input_policy and "shrunk" in pre["larger_crops"]
    assert manifest["decision"]["threshold_float32"] == float(np.float32(model.threshold))


def test_fresh_process_without_training_code_matches_the_api(exported, model, tmp_path):
    out, _ = exported
    crops = _crops(model, n=5)
    np.save(tmp_path / "crops.npy", crops)
    copied = os.path.join(out, "serving_loader.py")
    # Two ways in: the copy next to the artifact (no despoof_jax on the path at all), then the
    # package module (which must keep `despoof_jax/__init__.py` free of eager heavy imports).
    script = textwrap.dedent(f"""
        import importlib.util, json, sys
        import numpy as np
        spec = importlib.util.spec_from_file_location("loader", {copied!r})
        loader = importlib.util.module_from_spec(spec); spec.loader.exec_module(loader)
        crops = np.load({str(tmp_path / "crops.npy")!r})
        a = loader.load({out!r})(crops)
        a3 = loader.load({out!r})(crops[:3])          # another batch size, same program
        sys.path.insert(0, {REPO!r})
        from despoof_jax.serving import serving_loader
        b = serving_loader.load({out!r})(crops)
        heavy = [m for m in ("despoof_jax.models", "despoof_jax.training.loop", "despoof_jax.training.state",
                             "despoof_jax.serving.model", "flax", "optax", "orbax") if m in sys.modules]
        print(json.dumps({{"heavy": heavy, "a": {{k: v.tolist() for k, v in a.items()}},
                           "a3": a3["score"].tolist(), "b": b["score"].tolist()}}))
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=str(tmp_path), env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["heavy"] == [], f"the serving process imported {res['heavy']}"
    ref = model.score(crops)
    np.testing.assert_allclose(res["a"]["score"], ref.score, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(res["a"]["is_attack"], ref.is_attack)
    for c in ("noise", "map", "depth"):
        np.testing.assert_allclose(res["a"][f"score_{c}"], ref.components[c], rtol=0, atol=1e-5)
    np.testing.assert_allclose(res["a3"], ref.score[:3], rtol=0, atol=1e-5)
    np.testing.assert_allclose(res["b"], ref.score, rtol=0, atol=1e-5)


def test_bucketed_export_and_bad_inputs(model, tmp_path):
    out = str(tmp_path / "bucketed")
    for bad in ([], [0], [-1], [2.5]):   # an export no call could use
        with pytest.raises(ValueError, match="batch_sizes"):
            export.export_model(model, str(tmp_path / "bad"), batch_sizes=bad)
    manifest = export.export_model(model, out, batch_sizes=[2])
    assert manifest["batch_sizes"] == [2] and manifest["batch_mode"] == "bucketed"
    served = serving_loader.load(out)
    crops = _crops(model, n=3, seed=4)
    np.testing.assert_allclose(served(crops)["score"], model.score(crops).score, rtol=0,
                               atol=1e-5)                     # 3 = chunk of 2 + padded 1
    with pytest.raises(serving_loader.ServingError, match="expected uint8"):
        served(crops.astype(np.float32))
    with pytest.raises(serving_loader.ServingError, match="expected uint8"):
        served(crops[:, :8])
    art = os.path.join(out, manifest["artifacts"][0]["file"])
    with open(art, "ab") as f:
        f.write(b"tampered")
    with pytest.raises(serving_loader.ServingError, match="sha256"):
        serving_loader.load(out)
    # exported for another platform, or listing no artifact: refused at load, with the fix
    path = os.path.join(out, "manifest.json")
    for change, message in (({"platforms": ["tpu"]}, r"exported for \['tpu'\], but JAX runs "
                                                      r"on 'cpu' here; set JAX_PLATFORMS"),
                            ({"artifacts": []}, "lists no artifact")):
        with open(path, "w") as f:
            json.dump(dict(manifest, **change), f)
        with pytest.raises(serving_loader.ServingError, match=message):
            serving_loader.load(out)


def test_bad_batch_sizes_are_one_line_errors(tmp_path, capsys):
    from despoof_jax import cli, commands  # noqa: PLC0415
    assert commands.parse_batch_sizes("") is None
    assert commands.parse_batch_sizes(" 1, 8,32 ") == [1, 8, 32]
    for bad, named in (("1,,8", "''"), ("a", "'a'"), ("0", "'0'"), ("4,-2", "'-2'"),
                       ("2.5", "'2.5'")):
        rc = cli.main(["--cpu-kernels=default", "export", "--model", "pretrained", "--out",
                       str(tmp_path / "out"), "--batch-sizes", bad])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error: --batch-sizes") and named in err, (bad, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
