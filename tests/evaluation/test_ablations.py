"""Sec. 4.2 / Table 3 experiment configs: loss ablations, image degradations, dataset errors."""
import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from tests.util import config_module

ablation_loss = config_module("ablation_loss")
baseline_cnn = config_module("baseline_cnn")
baseline_depth = config_module("baseline_depth")
decomposition = config_module("decomposition")
default = config_module("default")
protocol_cross = config_module("protocol_cross")
protocol_oulu = config_module("protocol_oulu")
protocol_synthetic = config_module("protocol_synthetic")
resolution_blur = config_module("resolution_blur")
from despoof_jax.data import datasets, pipeline
from despoof_jax.training import losses
from despoof_jax.training import steps as train_step

PARTS = {"z": jnp.float32(2.0), "m": jnp.float32(3.0), "r": jnp.float32(5.0),
         "dq": jnp.float32(7.0), "vq": jnp.float32(11.0)}


def test_zero_one_map_weight_removes_its_term():
    paper = (3.0, 0.005, 0.1, 0.016)
    full = losses.total_ds_loss(PARTS, paper)
    # Eq. 7 has no lambda on J_z: the 4-tuple and the 5-tuple with weight 1 agree.
    np.testing.assert_allclose(losses.total_ds_loss(PARTS, (1.0,) + paper), full)
    np.testing.assert_allclose(losses.total_ds_loss(PARTS, (0.0,) + paper),
                               float(full) - float(PARTS["z"]), rtol=1e-6)


def test_ablation_variants_zero_exactly_one_weight():
    full = ablation_loss.get_config("full").loss
    for variant, field in ablation_loss.REMOVED.items():
        c = ablation_loss.get_config(variant)
        for name in ("zero_one_map", "magnitude", "repetitive", "dq", "vq"):
            expected = 0.0 if name == field else full[name]
            assert c.loss[name] == expected, (variant, name)
        # ...and the training step receives them in Eq. 7's order.
        lambdas = train_step.bind_stage2(c).keywords["lambdas"]
        assert lambdas == (c.loss.zero_one_map, c.loss.magnitude, c.loss.repetitive,
                           c.loss.dq, c.loss.vq, 0.0)   # noise_truth (not in the paper): off
    assert default.get_config().loss.zero_one_map == 1.0   # the paper's setting unchanged


@pytest.mark.parametrize("module,variants", [
    (ablation_loss, ablation_loss.VARIANTS), (resolution_blur, tuple(resolution_blur.DEGRADATIONS)),
    (protocol_synthetic, protocol_synthetic.VARIANTS), (protocol_oulu, protocol_oulu.VARIANTS),
    (protocol_cross, tuple(protocol_cross.PAIRS)), (baseline_cnn, ("",)),
    (baseline_depth, ("",)), (decomposition, decomposition.VARIANTS)])
def test_every_variant_has_a_smoke_scale_and_is_locked(module, variants):
    for v in variants:
        c = module.get_config(f"{v},smoke" if v else "smoke")
        assert c.data.image_size == 64 and c.train.stage2_steps == 20
        with pytest.raises(AttributeError):
            c.data.misspelt_field = 1
    with pytest.raises(ValueError, match="unknown variant"):
        module.get_config("no_such_variant")


def test_decomposition_variants_change_only_the_two_options():
    """configs/decomposition.py (issue #13 item 3): the quickstart with the input skip and/or the
    truth term, 1600 stage-2 steps; every weight of Eq. 7 stays the paper's."""
    quick = config_module("quickstart").get_config()
    want = {"truth_skip": (True, 30.0), "truth": (False, 30.0), "skip": (True, 0.0)}
    for name, (skip, truth) in want.items():
        c = decomposition.get_config(name)
        assert (c.model.ds_input_skip, c.loss.noise_truth) == (skip, truth)
        assert c.train.stage2_steps == 1600
        for field in ("zero_one_map", "magnitude", "repetitive", "dq", "vq"):
            assert c.loss[field] == quick.loss[field] == default.get_config().loss[field]
        # Stage 1 is the quickstart's, so its DQ Net can be reused.
        assert c.train.stage1_steps == quick.train.stage1_steps
        assert (c.model.dq_width, c.data.builder_config) == (quick.model.dq_width,
                                                             quick.data.builder_config)
        lambdas = train_step.bind_stage2(c).keywords["lambdas"]
        assert lambdas[-1] == truth
    assert decomposition.get_config() == decomposition.get_config("truth_skip")
    assert (quick.loss.noise_truth, quick.model.ds_input_skip) == (0.0, False)


def _high_frequency_energy(image):
    spec = np.abs(np.fft.fftshift(np.fft.fft2(image.astype(np.float64).mean(-1))))
    h = image.shape[0]
    spec[h // 4:3 * h // 4, h // 4:3 * h // 4] = 0   # drop the low band
    return spec.sum()


def test_degradations_remove_high_frequencies():
    r = np.random.RandomState(0)
    image = r.randint(0, 256, (64, 64, 3)).astype(np.uint8)
    assert pipeline.degrade(image, None) is image
    energies = {}
    for name, fields in resolution_blur.DEGRADATIONS.items():
        d = pipeline.Degradation(size=fields.get("degrade_size", 0),
                                 blur_sigma=fields.get("blur_sigma", 0.0))
        out = pipeline.degrade(image, d)
        assert out.shape == image.shape and out.dtype == np.uint8
        energies[name] = _high_frequency_energy(out)
    base = _high_frequency_energy(image)
    assert energies["res32"] < 0.5 * base and energies["blur1"] < 0.5 * base
    assert energies["res16"] < energies["res32"] and energies["blur2"] < energies["blur1"]
    c = resolution_blur.get_config("blur2,smoke")
    assert datasets.degradation(c.data) == pipeline.Degradation(blur_sigma=2.0)
    assert datasets.degradation(default.get_config("smoke").data) is None


@pytest.mark.parametrize("config,layout", [
    (protocol_oulu.get_config("p1,smoke"), ["Train_files/"]),
    (protocol_cross.get_config("casia_to_replay,smoke"), ["train_release/", "face-locations/"])])
def test_real_dataset_without_its_download_names_the_manual_layout(config, layout, tmp_path):
    from despoof_jax import experiment  # noqa: PLC0415 (loads lazily the training stack)
    config.data.data_dir = str(tmp_path / "tfds")
    with pytest.raises(FileNotFoundError, match="downloads/manual") as e:
        experiment.train_and_evaluate(config, str(tmp_path / "w"))
    assert layout[0] in str(e.value)
    for split, expected in zip(("train", "test"), layout + layout[-1:]):
        with pytest.raises(FileNotFoundError, match=expected):
            datasets.load_split(datasets.for_split(config.data, split), split)


def test_ablation_smoke_run_writes_its_tables(smoke_workdirs):
    """configs/ablation_loss.py:no_zero_one_map,smoke end to end (the shared tiny run)."""
    w = smoke_workdirs["ablation"]
    with open(os.path.join(w, "config.json")) as f:
        assert json.load(f)["loss"]["zero_one_map"] == 0.0
    rows = [json.loads(line) for line in open(os.path.join(w, "ds", "metrics.jsonl"))]
    assert len(rows) == 2 and all(r["finite"] == 1.0 for r in rows)
    table = open(os.path.join(w, "eval", "table2.md")).read()
    assert "frame level" in table and "video level" in table and "| average |" in table
    metrics = json.load(open(os.path.join(w, "eval", "metrics.json")))
    assert metrics["method"] == "despoof" and 0 <= metrics["fusions"]["average"]["frame"]["acer"]
