"""Eq. 7 at DS Net's noise and at the simulator's true noise (tools/objective_at_truth.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from despoof_jax.data.color import model_input
from despoof_jax.tools import objective_at_truth
from despoof_jax.training import losses
from despoof_jax.training import state as state_lib
from tests.util import random_batch, tiny_config


def test_terms_are_eq7_per_sample():
    config = tiny_config(32, **{"model.vq_dropout": 0.0})
    _, dq_model, vq_model = state_lib.make_models(config)
    dq = state_lib.frozen_dq_from_stage1(state_lib.init_stage1(config, jax.random.key(1)))
    s2 = state_lib.init_stage2(config, jax.random.key(0))
    vq = state_lib.FrozenNet(s2.vq.params, s2.vq.batch_stats)
    batch = random_batch(0, 4, 32)
    x = model_input(batch["rgb"])
    noise = 0.05 * jax.random.normal(jax.random.key(3), x.shape)
    lambdas = (1.0, 3.0, 0.005, 0.1, 0.016)
    t = objective_at_truth.per_sample_terms(noise, x, batch["depth"], dq=dq, vq=vq,
                                            dq_model=dq_model, vq_model=vq_model, k=8,
                                            lambdas=lambdas)
    depth = dq_model.apply(dq.variables(), x - noise, train=False)
    np.testing.assert_allclose(np.mean(t["dq"]), losses.depth_loss(depth, batch["depth"]),
                               rtol=1e-5)
    np.testing.assert_allclose(t["r"], -losses.high_frequency_peak(noise, 8), rtol=1e-6)
    logits = vq_model.apply(vq.variables(), x - noise, train=False)
    np.testing.assert_allclose(np.mean(t["vq"]), losses.vq_generator_loss(logits, jnp.ones(4)),
                               rtol=1e-5)
    np.testing.assert_allclose(t["weighted"], 0.005 * t["r"] + 0.1 * t["dq"] + 0.016 * t["vq"],
                               rtol=1e-6)
    # no noise: no high-frequency peak to reward
    zero = objective_at_truth.per_sample_terms(jnp.zeros_like(x), x, batch["depth"], dq=dq, vq=vq,
                                               dq_model=dq_model, vq_model=vq_model, k=8,
                                               lambdas=lambdas)
    assert np.all(np.abs(zero["r"]) < 1e-5)


def test_measure_on_a_trained_workdir(trained_workdir, capsys):
    result = objective_at_truth.measure(trained_workdir, max_batches=1)
    species = result["species"]
    assert "all attacks" in species and "live" in species
    # live faces carry no spoof noise: the truth is the zero noise there
    for term in objective_at_truth.TERMS:
        assert species["live"]["truth"][term] == pytest.approx(species["live"]["zero"][term])
    assert species["all attacks"]["n"] == sum(
        d["n"] for name, d in species.items() if name not in ("live", "all attacks"))
    for d in species.values():
        assert 0.0 <= d["truth_wins"] <= 1.0
    assert "truth below ds" in objective_at_truth.markdown(result)


def test_gradient_pulls_on_a_trained_workdir(trained_workdir):
    g = objective_at_truth.gradient_pulls(trained_workdir, batches=3)
    assert g["batches"] == 3
    for name in objective_at_truth.PARTS:
        assert np.isfinite(g[f"all/{name}"]) and g[f"all/{name}"] >= g[f"decoder/{name}"] >= 0
    # the 0\1 map head does not feed the noise decoder: J_z pulls on the encoder only
    assert g["decoder/z"] == 0.0 and g["all/z"] > 0
    # every term that depends on N pulls on the decoder
    for name in ("m", "r", "dq", "vq"):
        assert g[f"decoder/{name}"] > 0, name
    # the shared run trains with loss.noise_truth: its term's pull is measured too
    assert g["decoder/t"] > 0 and -1.0 <= g["cos_dq/t"] <= 1.0
    for name in ("z", "m", "r", "vq"):
        assert -1.0 <= g[f"cos_dq/{name}"] <= 1.0
    assert "J_dq" in objective_at_truth.gradient_markdown(g)
