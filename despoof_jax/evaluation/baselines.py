"""Scoring and evaluating the baselines (`training.baselines`) exactly like the de-spoofing model.

Both write `<workdir>/eval/` like `evaluate.evaluate`: scores_{dev,test}.csv (column
score_<name>), metrics.json ({"fusions": {<name>: {"frame", "video"}}}, no fusion statistics)
and table2.md.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from despoof_jax.data import datasets, pipeline
from despoof_jax.data.color import model_input
from despoof_jax.evaluation import evaluate, metrics, scores
from despoof_jax.training import baselines, checkpoint, loop
from despoof_jax.training import state as state_lib
from despoof_jax.training.workdir import as_workdir


def _first_device():
    return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])


def make_score_fn(config, workdir):
    """`score(rgb uint8 [B, H, W, 3]) -> [B]` attack scores of the config's baseline."""
    if config.method == "binary_cnn":
        directory = as_workdir(workdir).checkpoints("cnn")
        st, step = checkpoint.restore_state_only(directory,
                                                 state_lib.abstract(baselines.init_cnn, config),
                                                 _first_device())
        final = baselines.baseline_steps(config)
        if step != final:   # the rule of `loop.require_final_step`, for the CNN's own stage
            raise loop.UnfinishedStage(
                f"the evaluation needs the binary CNN's final step ({final}), but the latest "
                f"checkpoint in {directory} is step {step}: "
                + ("it was stopped before its end (or its last checkpoint cannot be read); run "
                   "the training command again to resume it" if step < final else
                   "it was trained for more steps than train.baseline_steps says; pass "
                   f"--config.train.baseline_steps={step}"))
        model, variables = baselines.make_cnn(config), st.cnn.variables()

        @jax.jit
        def score(rgb):
            logits = model.apply(variables, model_input(rgb), train=False)
            return logits[:, 1] - logits[:, 0]
        return score
    if config.method == "depth_only":
        dq = loop.load_frozen_dq(config, workdir, _first_device())
        _, dq_model, _ = state_lib.make_models(config)

        @jax.jit
        def score(rgb):
            depth = dq_model.apply(dq.variables(), model_input(rgb), train=False)
            return scores.component_scores(jnp.zeros((1,) * 4), depth,
                                           jnp.zeros((1,) * 4))["score_depth"]
        return score
    raise ValueError(f"config.method={config.method!r}; baselines are {baselines.METHODS}")


def score_split(config, score_fn, split: str) -> dict:
    """{index, label, species, device, identity, video, score_<name>: [N]} of `split`."""
    name = f"score_{baselines.SCORE_NAME[config.method]}"
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


def evaluate_baseline(config, workdir) -> dict:
    """Scores dev and test, thresholds on dev, writes the eval files; returns the metrics."""
    score_fn = make_score_fn(config, workdir)
    dev, test = score_split(config, score_fn, "dev"), score_split(config, score_fn, "test")
    name = baselines.SCORE_NAME[config.method]
    criterion = evaluate.threshold_criterion(config.eval.threshold)
    # Each split named by its own dataset (a cross-dataset protocol's dev is the source's).
    named = []
    for x, split in ((dev, "dev"), (test, "test")):
        names = datasets.species_names(datasets.for_split(config.data, split))
        if config.eval.get("apcer_per", "species") == "medium":
            x, names = evaluate.by_medium(x, names)
        named.append(evaluate.scoreset(x, x[f"score_{name}"], names))
    d, t = named
    table = {"fusions": {name: {
        "frame": metrics.evaluate_protocol(d, t, criterion),
        "video": metrics.evaluate_protocol(metrics.video_level(d),
                                                    metrics.video_level(t), criterion)}},
             "protocol": config.data.protocol, "fold": config.data.fold,
             "criterion": config.eval.threshold, "default_fusion": name,
             "method": config.method}
    evaluate.add_intervals(table["fusions"][name], t, test)
    evaluate.write_tables(workdir, dev, test, table)
    if jax.process_index() == 0:
        evaluate.log_to_tensorboard(workdir, table, config)
    r = table["fusions"][name]["frame"]
    logging.info("eval %s (%s): APCER %.2f%%  BPCER %.2f%%  ACER %.2f%%  AUC %.4f",
                 config.method, config.data.protocol, 100 * r["apcer"], 100 * r["bpcer"],
                 100 * r["acer"], r["auc"])
    return table


