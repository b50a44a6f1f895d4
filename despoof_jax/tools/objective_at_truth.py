"""Does the paper's objective prefer the true decomposition? (issue #13 item 3.)

DS Net is trained with Eq. 7 alone; nothing in it names the true spoof noise N*. This tool asks
whether Eq. 7 — with the run's own frozen DQ Net and its trained VQ Net — ranks the truth above
what DS Net found. For every test record of a synthetic run it evaluates the terms of Eq. 7 that
depend on the noise, per sample, at three noises:

  zero   N = 0             the input left as it is
  ds     N = DS Net's      what training reached
  truth  N = N*            model_input(I) - model_input(Î*), the 6-channel true noise of the
                           simulator (`live_reference`), the input of DQ/VQ Net then being Î*

and the weighted sum lambda_2 J_r + lambda_3 J_DQ + lambda_4 J_VQ (the magnitude loss is zero on
spoofs at every noise, and the 0\\1 map term does not depend on N). VQ Net runs in inference
mode (running statistics, no dropout). If `truth` scores worse than `ds`, DS Net is doing what
Eq. 7 asks and the fault is in the objective (or in the nets that define it); if `truth` scores
better, training has not reached the better minimum (steps, capacity, resolution).

`--gradients` also measures, on training batches, how hard each weighted term of Eq. 7 pulls on
DS Net's parameters at the run's final state: the norm of the gradient of lambda_i J_i, over all
of DS Net and over the noise decoder alone (the layers that shape N), and the cosine between the
J_DQ pull and the others' on the decoder.

    python -m despoof_jax.tools.objective_at_truth WORKDIR [--split test] [--json OUT] [--gradients]
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from despoof_jax.data import datasets, pipeline
from despoof_jax.data.color import model_input, true_noise
from despoof_jax.data.synthetic import SPECIES
from despoof_jax.evaluation import evaluate
from despoof_jax.models.vq_net import REAL
from despoof_jax.training import checkpoint, losses, steps
from despoof_jax.training import state as state_lib
from despoof_jax.training.workdir import Workdir

NOISES = ("zero", "ds", "truth")
TERMS = ("r", "dq", "vq", "weighted")


def per_sample_terms(noise, x, depth_target, *, dq, vq, dq_model, vq_model, k: int,
                     lambdas) -> dict:
    """Eq. 7's noise-dependent terms for spoof samples, per sample -> {term: [b]}.

    noise, x: [b, H, W, 6]; depth_target: [b, h, w, 1] (the face depth: stage 2's target for every
    input). J_r is the spoof sign (-peak); J_VQ is -log p(real) of the reconstruction.

    VQ Net runs in inference mode, on its running BatchNorm statistics, so that a sample's term
    does not depend on the others in its batch. Training only ever runs VQ Net on batch
    statistics (of the discriminator's mixed batch, steps.py), so J_VQ here is a close relative
    of the function DS Net was trained against, not that function itself (README, table note)."""
    live = x - noise
    depth = dq_model.apply(dq.variables(), live, train=False)
    logits = vq_model.apply(vq.variables(), live, train=False)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    terms = {
        "r": -losses.high_frequency_peak(noise, k),
        "dq": jnp.mean(jnp.abs(depth - depth_target), axis=(1, 2, 3)),
        "vq": -logp[:, REAL],
    }
    _, _, l_r, l_dq, l_vq = lambdas
    terms["weighted"] = l_r * terms["r"] + l_dq * terms["dq"] + l_vq * terms["vq"]
    return terms


def _load(workdir) -> dict:
    """A trained workdir's config, its DS/DQ/VQ Nets (inference trees; `s2` the whole stage-2
    state), the config's models, lambdas of Eq. 7 and k of the repetitive loss."""
    wd = Workdir.find(workdir)
    config = wd.read_config()
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    ds, dq = evaluate.load_model(config, wd, sharding)
    s2, _ = checkpoint.restore_state_only(
        wd.checkpoints("ds"), state_lib.abstract(state_lib.init_stage2, config), sharding)
    lc = config.loss
    return {"wd": wd, "config": config, "ds": ds, "dq": dq, "s2": s2,
            "vq": state_lib.FrozenNet(s2.vq.params, s2.vq.batch_stats),
            "models": state_lib.make_models(config),
            "lambdas": (lc.zero_one_map, lc.magnitude, lc.repetitive, lc.dq, lc.vq),
            "noise_truth": float(lc.get("noise_truth", 0.0)),
            "k": losses.repetitive_kernel_size(config.data.image_size, lc.repetitive_k_at_256)}


def measure(workdir, split: str = "test", max_batches: Optional[int] = None) -> dict:
    """{species: {noise: {term: mean}}} over the split's records (live rows use N* = 0, so their
    `truth` equals `zero`), plus `n` per species and `truth_wins`: the share of samples where the
    truth's weighted objective is lower than DS Net's."""
    run = _load(workdir)
    wd, config, ds, dq, vq = run["wd"], run["config"], run["ds"], run["dq"], run["vq"]
    ds_model, dq_model, vq_model = run["models"]
    lambdas, k = run["lambdas"], run["k"]

    @jax.jit
    def step(rgb, ref, depth):
        x = model_input(rgb)
        n_ds = ds_model.apply(ds.variables(), x, train=False)["noise"]
        kw = dict(dq=dq, vq=vq, dq_model=dq_model, vq_model=vq_model, k=k, lambdas=lambdas)
        noises = (("zero", jnp.zeros_like(x)), ("ds", n_ds), ("truth", true_noise(rgb, ref)))
        return {name: per_sample_terms(n, x, depth, **kw) for name, n in noises}

    source, meta = datasets.load_split(datasets.for_split(config.data, split), split)
    indices = datasets.protocol_indices(config.data, split, meta)
    degradation = datasets.degradation(config.data)
    rows = {name: {t: [] for t in TERMS} for name in NOISES}
    species = []
    for b, batch in enumerate(pipeline.eval_batches(
            source, indices, batch_size=config.eval.batch_size, size=config.data.image_size,
            degradation=degradation)):
        if max_batches is not None and b >= max_batches:
            break
        ref = evaluate.live_references(source, batch, degradation)
        if ref is None:
            raise ValueError(f"{wd.root}: the {split} split has no live_reference; this tool "
                             "needs the synthetic world's ground truth")
        valid = np.asarray(batch["valid"])
        full_ref = np.zeros_like(batch["rgb"])
        full_ref[valid] = ref
        full_ref[~valid] = batch["rgb"][~valid]
        out = step(batch["rgb"], full_ref, batch["depth"])
        for name in NOISES:
            for t in TERMS:
                rows[name][t].append(np.asarray(out[name][t])[valid])
        species.append(np.asarray(batch["species"])[valid])
    species = np.concatenate(species)
    rows = {n: {t: np.concatenate(v) for t, v in d.items()} for n, d in rows.items()}
    result = {}
    groups = [(name, species == s) for s, name in enumerate(SPECIES)]
    groups.append(("all attacks", species > 0))
    for name, sel in groups:
        if not sel.any():
            continue
        result[name] = {n: {t: float(rows[n][t][sel].mean()) for t in TERMS} for n in NOISES}
        result[name]["n"] = int(sel.sum())
        result[name]["truth_wins"] = float(
            np.mean(rows["truth"]["weighted"][sel] < rows["ds"]["weighted"][sel]))
    return {"workdir": str(wd.root), "split": split, "lambdas": list(lambdas), "k": k,
            "species": result}


PARTS = ("z", "m", "r", "dq", "vq")


def gradient_pulls(workdir, split: str = "train", batches: int = 20) -> dict:
    """Mean over `batches` training batches of ||grad_theta lambda_i J_i|| per term i of Eq. 7,
    over all DS Net params (`all`) and over the noise decoder (`decoder`: conv2-1..conv2-8), plus
    the mean cosine between the decoder gradients of lambda_3 J_DQ and of each other term.
    A run trained with `loss.noise_truth` also gets the pull of its truth term J_t ("t")."""
    run = _load(workdir)
    config, s2, dq = run["config"], run["s2"], run["dq"]
    ds_model, dq_model, vq_model = run["models"]
    weights, k = dict(zip(PARTS, run["lambdas"])), run["k"]
    names = PARTS + (("t",) if run["noise_truth"] > 0 else ())
    weights["t"] = run["noise_truth"]

    def decoder(tree):
        return {n: v for n, v in tree.items() if n in ("decoder", "conv2-8")}

    def flat(tree):
        return jnp.concatenate([x.ravel() for x in jax.tree.leaves(tree)])

    @jax.jit
    def pulls(batch, rng):
        def weighted(params):   # [5 or 6]: lambda_i J_i, one reverse pass per entry (jacrev)
            parts, _ = steps.ds_loss_parts(params, s2, dq, batch, rng, ds_model=ds_model,
                                           dq_model=dq_model, vq_model=vq_model, k=k)
            return jnp.stack([weights[name] * parts[name] for name in names])

        jac = jax.jacrev(weighted)(s2.ds.params)   # leaves [5 or 6, ...]
        out = {}
        dec = {}
        for i, name in enumerate(names):
            g = jax.tree.map(lambda a, i=i: a[i], jac)
            dec[name] = flat(decoder(g))
            out[f"all/{name}"] = jnp.linalg.norm(flat(g))
            out[f"decoder/{name}"] = jnp.linalg.norm(dec[name])
        for name in names:
            if name != "dq":
                a, b = dec["dq"], dec[name]
                out[f"cos_dq/{name}"] = a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-30)
        return out

    source, meta = datasets.load_split(datasets.for_split(config.data, split), split)
    indices = datasets.protocol_indices(config.data, split, meta)
    rng = np.random.default_rng(0)
    indices = rng.permutation(indices)[:batches * config.train.batch_size]
    acc = []
    degradation = datasets.degradation(config.data)
    for b, batch in enumerate(pipeline.eval_batches(
            source, indices, batch_size=config.train.batch_size, size=config.data.image_size,
            degradation=degradation)):
        if not np.all(batch["valid"]):
            break
        feed = {k_: batch[k_] for k_ in ("rgb", "depth", "label")}
        if "t" in names:
            feed["live_reference"] = evaluate.live_references(source, batch, degradation)
        acc.append({k_: float(v) for k_, v in pulls(feed, jax.random.key(b)).items()})
    return {k_: float(np.mean([a[k_] for a in acc])) for k_ in acc[0]} | {"batches": len(acc)}


def gradient_markdown(g: dict) -> str:
    lines = ["| term (weighted) | grad norm, all DS Net | grad norm, noise decoder | "
             "cosine with lambda_3 J_DQ on the decoder |", "|---|---|---|---|"]
    for name in PARTS + (("t",) if "all/t" in g else ()):
        cos = "1" if name == "dq" else f"{g[f'cos_dq/{name}']:+.3f}"
        lines.append(f"| J_{name} | {g[f'all/{name}']:.3g} | {g[f'decoder/{name}']:.3g} | {cos} |")
    return "\n".join(lines) + f"\n\n(mean over {g['batches']} training batches)\n"


def markdown(result: dict) -> str:
    lines = ["| species | noise | lambda_2 J_r | lambda_3 J_DQ | lambda_4 J_VQ | sum | J_DQ | J_VQ |",
             "|---|---|---|---|---|---|---|---|"]
    _, _, l_r, l_dq, l_vq = result["lambdas"]
    for sp, d in result["species"].items():
        for n in NOISES:
            t = d[n]
            lines.append(f"| {sp} | {n} | {l_r * t['r']:+.4f} | {l_dq * t['dq']:.4f} | "
                         f"{l_vq * t['vq']:.4f} | {t['weighted']:+.4f} | {t['dq']:.4f} | "
                         f"{t['vq']:.3f} |")
        lines.append(f"| {sp} | truth below ds | {100 * d['truth_wins']:.0f} % of {d['n']} "
                     "samples | | | | | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workdir")
    p.add_argument("--split", default="test")
    p.add_argument("--max-batches", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the numbers here")
    p.add_argument("--gradients", action="store_true",
                   help="also measure each term's pull on DS Net's parameters")
    args = p.parse_args(argv)
    result = measure(args.workdir, args.split, args.max_batches)
    print(markdown(result))
    if args.gradients:
        result["gradients"] = gradient_pulls(args.workdir)
        print(gradient_markdown(result["gradients"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
