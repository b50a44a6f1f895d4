"""How well can DS Net's architecture decompose at all? A supervised upper bound (issue #13 item 3).

The paper trains DS Net without ever seeing the true noise. Before asking why its losses do not
reach the true decomposition, this tool asks whether the *network* could represent it: the same
DS Net (Table 1, the config's width and resolution) trained by plain regression on the
simulator's ground truth, L1(N, N*) with N* = model_input(I) - model_input(Î*) (6 channels; zero
for live faces), with Adam at the config's learning rate and batch size on the training split,
then scored on the test split with the decomposition metrics of `evaluation/decomposition.py`.
If this oracle's PSNR gain stays at or below zero, the architecture (not the losses) is the limit.

    python -m despoof_jax.tools.oracle_decomposition --config=configs/quickstart.py \\
        --workdir=OUT [--steps 400] [--channels all|rgb] [--config.x=y ...]

Writes OUT/oracle.json (the decomposition summary, the config and the loss curve) and prints the
markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from despoof_jax import config as config_lib
from despoof_jax.data import datasets, pipeline, synthetic
from despoof_jax.data.color import model_input, true_noise
from despoof_jax.evaluation import decomposition, evaluate
from despoof_jax.training import state as state_lib


def _batches(config, split: str, rng: np.random.Generator, shuffle: bool):
    """Batches of `split` with their live references (uint8), in random order if `shuffle`."""
    source, meta = datasets.load_split(datasets.for_split(config.data, split), split)
    indices = datasets.protocol_indices(config.data, split, meta)
    if shuffle:
        indices = rng.permutation(indices)
    bs = config.train.batch_size if shuffle else config.eval.batch_size
    degradation = datasets.degradation(config.data)
    for batch in pipeline.eval_batches(source, indices, batch_size=bs,
                                       size=config.data.image_size, degradation=degradation):
        ref = evaluate.live_references(source, batch, degradation)
        if ref is None:
            raise ValueError("the oracle needs the synthetic world's live_reference")
        if shuffle and not np.all(batch["valid"]):
            return   # a short last batch: skip it in training
        full = batch["rgb"].copy()
        full[batch["valid"]] = ref
        yield batch, full


def train_oracle(config, steps: int, log_every: int = 50, channels: int = 6):
    """DS Net trained on L1(N, N*) for `steps` -> (FrozenNet, loss curve). `channels=3` regresses
    the RGB half only (what the decomposition metrics score; the HSV half's hue wraps around, so
    its N* jumps by up to 1 where a colour crosses red)."""
    ds_model, _, _ = state_lib.make_models(config)
    tx = optax.adam(config.train.learning_rate, eps=config.train.adam_eps)
    net = state_lib.init_net(ds_model, jax.random.key(config.seed), config, tx)

    @jax.jit
    def step(net, rgb, ref):
        x, target = model_input(rgb), true_noise(rgb, ref)

        def loss_fn(params):
            out, new = ds_model.apply({"params": params, "batch_stats": net.batch_stats}, x,
                                      train=True, mutable=["batch_stats"])
            err = (out["noise"] - target)[..., :channels]
            return jnp.mean(jnp.abs(err)), new["batch_stats"]

        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(net.params)
        updates, opt = tx.update(grads, net.opt_state, net.params)
        return state_lib.NetState(optax.apply_updates(net.params, updates), stats, opt), loss

    rng = np.random.default_rng(config.seed)
    curve, t0, done = [], time.time(), 0
    while done < steps:
        before = done
        for batch, ref in _batches(config, "train", rng, shuffle=True):
            net, loss = step(net, batch["rgb"], ref)
            done += 1
            if done % log_every == 0 or done == steps:
                curve.append((done, float(loss)))
                print(f"oracle step {done}/{steps}  L1 {float(loss):.5f}  "
                      f"{done / (time.time() - t0):.2f} steps/s", flush=True)
            if done >= steps:
                break
        if done == before:   # an epoch without one full batch would loop forever
            raise ValueError(f"the train split yields no full batch of train.batch_size="
                             f"{config.train.batch_size}: lower it or use more records")
    return state_lib.FrozenNet(net.params, net.batch_stats), curve


def score(config, ds) -> dict:
    """Decomposition metrics of `ds` on the test split (per species, with intervals)."""
    ds_model, _, _ = state_lib.make_models(config)
    noise_of = jax.jit(lambda rgb: ds_model.apply(ds.variables(), model_input(rgb),
                                                  train=False)["noise"])
    acc = decomposition.Accumulator()
    for batch, ref in _batches(config, "test", np.random.default_rng(0), shuffle=False):
        v = batch["valid"]
        acc.add(batch["rgb"][v], np.asarray(noise_of(batch["rgb"]))[v, ..., :3], ref[v],
                batch["species"][v], batch["identity"][v])
    return acc.summary(synthetic.SPECIES)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="configs/FILE.py[:VARIANT]")
    p.add_argument("--workdir", required=True)
    p.add_argument("--steps", type=int, default=None,
                   help="training steps (default: the config's stage-2 steps)")
    p.add_argument("--channels", choices=("all", "rgb"), default="all",
                   help="regress all 6 channels of N* (default) or its RGB half only")
    args, overrides = p.parse_known_args(argv)
    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        p.error(f"unknown arguments {bad}")
    config = config_lib.load_file(args.config, [o[len("--config."):] for o in overrides])
    if args.steps is not None and args.steps < 1:
        raise SystemExit(f"--steps {args.steps}: expected at least 1 (leave it out for the "
                         "config's stage-2 steps)")
    steps = args.steps or config.train.stage2_steps
    ds, curve = train_oracle(config, steps, channels=6 if args.channels == "all" else 3)
    summary = score(config, ds)
    os.makedirs(args.workdir, exist_ok=True)
    with open(os.path.join(args.workdir, "oracle.json"), "w") as f:
        json.dump({"steps": steps, "channels": args.channels, "curve": curve, "decomposition": summary,
                   "config": json.loads(config.to_json())}, f, indent=2)
    print(decomposition.markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
