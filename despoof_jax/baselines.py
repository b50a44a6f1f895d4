"""Baselines on the de-spoofing pipeline (same data, protocols, thresholds and reports).

config.method:
  "binary_cnn"  `models.baselines.BinaryCNN` (DS Net's encoder + a 2-way head) trained with
                softmax cross-entropy on live/spoof labels, the black-box formulation the paper
                argues against (Sec. 1-2). Score: the spoof log-odds, logit[1] - logit[0].
                Trained for `train.baseline_steps` steps (0 = stage1_steps + stage2_steps, the
                de-spoofing method's number of optimizer steps) in `<workdir>/cnn/`.
  "depth_only"  the auxiliary-supervision model alone: stage 1 (DQ Net on pseudo-depth) and no
                DS/VQ Net. Score: the depth score of `scores.component_scores`, -mean(DQ(I)).
Both write `<workdir>/eval/` like `evaluate.evaluate`: scores_{dev,test}.csv (column
score_<name>), metrics.json ({"fusions": {<name>: {"frame", "video"}}}, no fusion statistics)
and table2.md.
"""
from __future__ import annotations

import functools
import os

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from despoof_jax import checkpoint, evaluate, scores, state as state_lib, train, train_step
from despoof_jax.data import datasets, pipeline
from despoof_jax.data.color import model_input
from despoof_jax.models.baselines import BinaryCNN

METHODS = ("binary_cnn", "depth_only")
SCORE_NAME = {"binary_cnn": "cnn", "depth_only": "depth"}


@flax.struct.dataclass
class CNNState:
    step: jnp.ndarray
    cnn: state_lib.NetState


def make_cnn(config, axis_name=None) -> BinaryCNN:
    return BinaryCNN(width=config.model.ds_width, axis_name=axis_name,
                     bn_momentum=config.model.bn_momentum)


def init_cnn(config, rng) -> CNNState:
    return CNNState(jnp.zeros((), jnp.int32),
                    state_lib.init_net(make_cnn(config), rng, config,
                                       state_lib.make_optimizer(config)))


def cnn_step(state: CNNState, batch, rng, *, model, tx, axis_name=None):
    """One cross-entropy step of the binary CNN (pmap-style, like `train_step.stage1_step`)."""
    del rng   # no dropout
    model = model.clone(axis_name=axis_name)
    x = model_input(batch["rgb"])

    def loss_fn(params):
        logits, new = model.apply({"params": params, "batch_stats": state.cnn.batch_stats}, x,
                                  train=True, mutable=["batch_stats"])
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        acc = jnp.mean((jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32))
        return jnp.mean(ce), (new["batch_stats"], acc)

    (loss, (stats, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.cnn.params)
    # Equal per-device batches: the mean of per-device means is the global mean.
    grads = train_step._pmean(grads, axis_name)
    cnn = train_step._apply_update(state.cnn, grads, stats, tx)
    metrics = train_step._pmean({"cross_entropy": loss, "accuracy": acc}, axis_name)
    return CNNState(state.step + 1, cnn), train_step._check_finite(metrics)


def baseline_steps(config) -> int:
    return int(config.train.get("baseline_steps", 0) or
               config.train.stage1_steps + config.train.stage2_steps)


def train_cnn(config, workdir: str, dp) -> dict:
    step = functools.partial(cnn_step, model=make_cnn(config),
                             tx=state_lib.make_optimizer(config))
    return train._run_stage("cnn", config, workdir, dp, init_fn=init_cnn,
                            total_steps=baseline_steps(config), batches_per_step=1,
                            make_step=lambda: dp.wrap(step, batch_args=(1,), n_args=3))


def _first_device():
    return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])


def make_score_fn(config, workdir: str):
    """`score(rgb uint8 [B, H, W, 3]) -> [B]` attack scores of the config's baseline."""
    if config.method == "binary_cnn":
        st, _ = checkpoint.restore_state_only(os.path.join(workdir, "cnn", "checkpoints"),
                                              state_lib.abstract(init_cnn, config),
                                              _first_device())
        model, variables = make_cnn(config), st.cnn.variables()

        @jax.jit
        def score(rgb):
            logits = model.apply(variables, model_input(rgb), train=False)
            return logits[:, 1] - logits[:, 0]
        return score
    if config.method == "depth_only":
        dq = train.load_frozen_dq(config, workdir, _first_device())
        _, dq_model, _ = state_lib.make_models(config)

        @jax.jit
        def score(rgb):
            depth = dq_model.apply(dq.variables(), model_input(rgb), train=False)
            return scores.component_scores(jnp.zeros((1,) * 4), depth,
                                           jnp.zeros((1,) * 4))["score_depth"]
        return score
    raise ValueError(f"config.method={config.method!r}; baselines are {METHODS}")


def score_split(config, score_fn, split: str) -> dict:
    """{index, label, species, device, identity, video, score_<name>: [N]} of `split`."""
    name = f"score_{SCORE_NAME[config.method]}"
    source, meta = datasets.load_split(datasets.for_split(config.data, split), split)
    indices = datasets.protocol_indices(config.data, split, meta)
    keep = {k: [] for k in ("index",) + evaluate.META_COLUMNS + (name,)}
    for batch in pipeline.eval_batches(source, indices, batch_size=config.eval.batch_size,
                                       size=config.data.image_size,
                                       degradation=datasets.degradation(config.data)):
        s = np.asarray(score_fn(batch["rgb"]))
        for k in keep:
            keep[k].append((s if k == name else np.asarray(batch[k]))[batch["valid"]])
    return {k: np.concatenate(v) for k, v in keep.items()}


def evaluate_baseline(config, workdir: str, out_dir: str | None = None) -> dict:
    """Scores dev and test, thresholds on dev, writes the eval files; returns the metrics."""
    out_dir = out_dir or os.path.join(workdir, "eval")
    score_fn = make_score_fn(config, workdir)
    dev, test = score_split(config, score_fn, "dev"), score_split(config, score_fn, "test")
    name = SCORE_NAME[config.method]
    criterion = evaluate.threshold_criterion(config.eval.threshold)
    d, t = (evaluate._scoreset(x, x[f"score_{name}"]) for x in (dev, test))
    table = {"fusions": {name: {
        "frame": evaluate.metrics.evaluate_protocol(d, t, criterion),
        "video": evaluate.metrics.evaluate_protocol(evaluate.metrics.video_level(d),
                                                    evaluate.metrics.video_level(t), criterion)}},
             "protocol": config.data.protocol, "fold": config.data.fold,
             "criterion": config.eval.threshold, "default_fusion": name,
             "method": config.method}
    evaluate.write_tables(out_dir, dev, test, table)
    r = table["fusions"][name]["frame"]
    logging.info("eval %s (%s): APCER %.2f%%  BPCER %.2f%%  ACER %.2f%%  AUC %.4f",
                 config.method, config.data.protocol, 100 * r["apcer"], 100 * r["bpcer"],
                 100 * r["acer"], r["auc"])
    return table


def train_and_evaluate(config, workdir: str, dp) -> dict:
    """`train.train_and_evaluate` for `config.method` in METHODS (modes all | dq | eval)."""
    if config.method not in METHODS:
        raise ValueError(f"config.method={config.method!r}; expected 'despoof' or one of "
                         f"{METHODS}")
    allowed = ("all", "eval") + (("dq",) if config.method == "depth_only" else ())
    if config.mode not in allowed:
        raise ValueError(f"config.mode={config.mode!r} does not apply to method "
                         f"{config.method!r}; expected one of {allowed}")
    out = {}
    if config.mode in ("all", "dq"):
        out["train"] = (train.train_dq(config, workdir, dp) if config.method == "depth_only"
                        else train_cnn(config, workdir, dp))
    if config.mode in ("all", "eval"):
        out["eval"] = evaluate_baseline(config, workdir)
    return out
