"""Experiment configs' shared parts: the paper's setting and the scales the configs build on.

The files in `configs/` (one per experiment, `get_config(arg)`) import only from here, so any
config file loads from anywhere, also after a non-editable install:

    base_config()        the paper's setting (Sec. 4.1) on the synthetic world, 256 px
    smoke(c)             64 px, narrow nets, 20 + 20 steps: every code path in about a minute
    quickstart_scale(c)  the README's main job: 64 px, narrower nets, 400 + 400 steps
    parse_variant(...)   "name" / "name,smoke" variant strings of the experiment configs
"""
from __future__ import annotations

import ast
import importlib.util
import os
from typing import Sequence

import ml_collections


# How a served model reads a crop larger than its input (`serving.model`, `config.eval.
# input_policy`): "resize" shrinks it to the input, "tiles" scores input-sized tiles at the
# crop's own resolution (README, "Native-resolution tiles"). Here, with the config, so that the
# command line can offer the choices without importing JAX.
INPUT_POLICIES = ("resize", "tiles")


class ConfigError(ValueError):
    """A config the run cannot take (an unknown mode or method, a batch that does not split over
    the devices): the entry points print it in one line and exit 2 (`commands.EXIT_USAGE`)."""


def base_config() -> ml_collections.ConfigDict:
    """Every field of an experiment config, at the paper's values where the paper gives one."""
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.dataset = "synthetic_spoof"     # a TFDS builder (despoof_jax/data/builders/<name>)
    c.data.builder_config = "s256"         # builder config: size and number of identities
    c.data.data_dir = ""                   # "" = ~/tensorflow_datasets (or $TFDS_DATA_DIR)
    # Real datasets (data/builders/): where their manual download lies, the dataset's root or a
    # folder holding <dataset name>/ ("" = <data_dir>/downloads/manual).
    c.data.manual_dir = ""
    # Real datasets: leave bad videos/frames out (listed in the dataset's metadata) instead of
    # stopping at the first one; a dataset built that way is refused while this is False.
    c.data.skip_bad = False
    # Real datasets: build from a download with fewer videos than the published dataset (refused
    # while this is False, so a partial download is never taken for the whole).
    c.data.partial_download = False
    c.data.image_size = 256                # the network input, H = W (multiple of 8)
    c.data.protocol = "intra"
    c.data.fold = 0                        # -1 = every fold of the protocol (mean +- std)
    c.data.test_dataset = ""               # cross-dataset testing (Table 5): "" = data.dataset
    # Table 3 degradations, applied to every split's images (labels untouched): 0 = off.
    c.data.degrade_size = 0                # down-sample to this side, then back up (resolution)
    c.data.blur_sigma = 0.0                # Gaussian blur, std in pixels of the input size
    c.data.worker_count = 0                # grain worker processes (0 = in the main process)
    c.data.prefetch = 2                    # this host's batches kept ready ahead of the step

    c.model = ml_collections.ConfigDict()
    c.model.ds_width = 1.0                 # channel multipliers of Table 1 (1.0 = the paper)
    c.model.dq_width = 1.0
    c.model.vq_width = 1.0
    c.model.vq_dropout = 0.2
    # Activations and matmuls in "float32" or "bfloat16" (params, optimizer state, BatchNorm
    # statistics and losses stay float32). bfloat16 is the accelerator path; on CPU it is slower.
    c.model.compute_dtype = "float32"
    # BatchNorm running averages (used at evaluation): the paper is silent; 0.99 suits long runs.
    # Short runs need a faster average: after n steps the initial (0, 1) statistics still weigh
    # momentum**n, 0.22 after 150 steps at 0.99, and evaluation sees skewed features.
    c.model.bn_momentum = 0.99
    # Not in the paper (off = Table 1): the noise decoder also reads the input image itself at
    # full resolution, beside the resized short-cut features. Table 1's decoder sees only the
    # short-cut, whose pooled features are resized to the H/8 grid (`layers.multiscale_shortcut`),
    # so it cannot reproduce the phase of texture finer than ~16 px at 256 px; measured with a
    # supervised oracle (tools/oracle_decomposition.py, README "Decomposition").
    c.model.ds_input_skip = False

    c.loss = ml_collections.ConfigDict()
    # Eq. 7: J_T = J_z + l1 J_m + l2 J_r + l3 J_DQ + l4 J_VQ (Sec. 4.1: 3, 0.005, 0.1, 0.016).
    # J_z has no lambda in Eq. 7; its weight (1 = the paper) exists so the ablation of Sec. 4.2
    # can remove it. Any weight 0 removes its term.
    c.loss.zero_one_map = 1.0
    c.loss.magnitude = 3.0
    c.loss.repetitive = 0.005
    c.loss.dq = 0.1
    c.loss.vq = 0.016
    c.loss.repetitive_k_at_256 = 64        # k of the repetitive loss, scaled with image_size
    # Not in the paper (0 = off; issue #13 item 3): weight of J_t = ||N - N*||_1, DS Net's noise
    # (RGB half) against the simulator's true noise N* = I - live_reference, on every record
    # (live ones too, where N* = 0). The magnitude loss J_m is this term restricted to live
    # faces, the only ones whose noise the paper knows; the synthetic world knows it for spoofs
    # too. Needs a dataset with `live_reference` (the synthetic world); 3.0 = lambda_1.
    c.loss.noise_truth = 0.0

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 6                 # global batch (Sec. 4.1)
    c.train.learning_rate = 3e-5           # Sec. 4.1; the optimizer (Adam) is not in the paper
    c.train.adam_eps = 1e-8                # the paper is silent; TensorFlow's default
    # Not in the paper: from this update on (0: never), the rate is multiplied by lr_decay_factor
    # (`state.step_decay`; each stage's optimizers count their own updates).
    c.train.lr_decay_step = 0
    c.train.lr_decay_factor = 0.1
    # The paper gives no step or epoch count (Sec. 4.1: batch, rate, k, lambdas only): these are
    # this implementation's choice (README, "Reading of the paper").
    c.train.stage1_steps = 20000           # DQ Net pretraining
    c.train.stage2_steps = 40000           # DS + VQ; each step consumes two batches
    # "separate": VQ update and DS update on two batches, as the paper says (Sec. 3.3);
    # "shared": one batch and one DS forward for both halves (what the PyTorch peer computes,
    # ~7 % faster at 256 px on CPU, half the data per step). See training.steps.stage2_step_one_batch.
    c.train.vq_batch = "separate"
    # Not in the paper (0 = off): stage 1 shows DQ Net every image under a random smooth colour
    # change of this strength (std of the log-gain), so that DS Net cannot fool the frozen DQ
    # Net by painting colour (README, "Reading of the paper"; issue #13's ablation).
    c.train.dq_colour_jitter = 0.0
    c.train.baseline_steps = 0             # binary-CNN baseline; 0 = stage1 + stage2 steps
    c.train.log_every = 50                 # a progress line; a NaN loss stops the run by then
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3           # >= 1: the newest checkpoints kept (orbax's max_to_keep)
    c.train.progress_every_secs = 30.0    # a progress line at least this often (wall clock)
    c.train.profile_steps = 0             # > 0: a jax.profiler trace of this many steps
    c.train.tensorboard = True            # event files beside metrics.jsonl

    c.eval = ml_collections.ConfigDict()
    c.eval.batch_size = 32
    # Table 2: average of the noise and depth scores; any of scores.FUSIONS, or "dev_eer": the
    # fusion of lowest EER on the dev split (`evaluate.choose_fusion`).
    c.eval.fusion = "average"
    # Chosen on dev: "eer" or "apcer@0.05"-style target. The paper does not say how its
    # threshold was set; the EER on dev is this implementation's choice (README, "Reading").
    c.eval.threshold = "eer"
    # APCER (and so ACER) per "species" (each printer or screen) or per "medium" (print vs
    # display: Oulu-NPU's attack types, which its published Test lists label -1 and -2).
    c.eval.apcer_per = "species"
    # "" or "calibration_simulator": after the evaluation, move the decision threshold to the one
    # of lowest ACER on a held-out simulator's attacks (`tools/calibration_simulator.py`; synthetic
    # datasets only); the dev threshold stays in eval/model.json as `dev_threshold`.
    c.eval.calibration = ""
    c.eval.calibration_data = ""           # synthetic_spoof config of its sources; "" = data's
    c.eval.calibration_fusions = ""        # "map,noise": it also chooses the score; "" = fusion's
    # "render": its sources are the live records re-rendered at the calibration camera's sampling
    # resolution (crop x 3, as a photo has more pixels than its crop); "stored": the records.
    c.eval.calibration_sources = "render"
    # Written to eval/model.json for the served model (`despoof_jax.load`): how it reads a crop
    # larger than image_size. "resize" (PIL's antialiased shrink to image_size) or "tiles"
    # (image_size tiles at the crop's own resolution, component scores averaged; README,
    # "Native-resolution tiles"). Not in the paper. Records are scored at image_size either way.
    c.eval.input_policy = "resize"

    # "despoof" (the paper), or a baseline on the same pipeline (`training/baselines.py`):
    # "binary_cnn" (softmax CNN, cross-entropy) or "depth_only" (stage 1, depth score alone).
    c.method = "despoof"
    c.parallel = "pmap"                    # or "shard_map": the same step under jit(shard_map)
    c.mode = "all"                         # all | train (no evaluation) | dq | ds | eval
    return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """64 px, narrow nets, a few dozen steps: exercises every code path in about a minute. Not
    only smaller: batch 8 (not the paper's 6: it divides over the suite's 8 fake devices), rate
    1e-3 (so a few steps move) and BatchNorm momentum 0.9 (see base_config)."""
    c.data.builder_config = "s64_small"
    c.data.image_size = 64
    c.model.ds_width = 0.5
    c.model.dq_width = 0.125
    c.model.vq_width = 0.5
    c.model.bn_momentum = 0.9
    c.train.batch_size = 8
    c.train.learning_rate = 1e-3
    c.train.stage1_steps = 20
    c.train.stage2_steps = 20
    c.train.log_every = 5
    c.train.checkpoint_every = 10
    c.eval.batch_size = 16
    return c


def parse_variant(arg: str, variants, config_file: str) -> tuple[str, bool]:
    """"name" or "name,smoke" -> (name, smoke?) for the experiment configs; "" is variants[0]."""
    parts = [p for p in (arg or "").split(",") if p]
    smoke_flag = "smoke" in parts
    names = [p for p in parts if p != "smoke"]
    if len(names) > 1 or (names and names[0] not in variants):
        raise ValueError(f"unknown variant {arg!r} of {config_file}; expected one of "
                         f"{list(variants)}, optionally followed by ',smoke'")
    return (names[0] if names else variants[0]), smoke_flag


def quickstart_scale(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The README's main job (`configs/quickstart.py`): 64 px, narrower DQ/DS/VQ nets, 400 + 400
    steps, a larger learning rate, batch 8 (not the paper's 6: it divides over 8 devices, and
    the short run sees more images) and BatchNorm momentum 0.9, so the whole method runs in
    minutes on 2 CPU cores. The losses, their weights, k (scaled: 16 at 64 px) and the two-stage
    schedule stay the paper's (but see `configs/ablation_loss.py` on J_r's weight at 64 px)."""
    c.data.builder_config = "s64_quick"
    c.data.image_size = 64
    c.model.ds_width = 0.5
    c.model.dq_width = 0.25
    c.model.vq_width = 0.5
    c.model.bn_momentum = 0.9    # a few hundred steps: see base_config
    c.train.batch_size = 8
    c.train.learning_rate = 1e-3
    c.train.stage1_steps = 400
    c.train.stage2_steps = 400
    c.train.log_every = 25
    c.train.checkpoint_every = 100
    c.eval.batch_size = 60
    return c


# ------------------------------------------------------------------ config files and overrides
def load_file(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """`path/to/config.py[:arg]` -> that file's `get_config(arg)`, with `field.sub=value`
    overrides applied (what `--config=...` and `--config.field=value` mean on the command line).

    The file is loaded by path, as ml_collections' `config_flags` does, so it works from any
    directory and after a non-editable install (config files import only from `despoof_jax`)."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} not found (expected a configs/*.py file, "
                                "optionally followed by ':variant')")
    name = "despoof_config_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} has no get_config(arg) function")
    config = module.get_config(arg) if arg else module.get_config()
    for o in overrides:
        apply_override(config, o)
    return config


def apply_override(config: ml_collections.ConfigDict, assignment: str) -> None:
    """`"train.stage2_steps=100"` -> config.train.stage2_steps = 100, parsed as the field's type
    (bool: true/false/1/0; int; float; str; tuples and lists as Python literals). An unknown
    field is an error, as with a locked config."""
    key, sep, text = assignment.partition("=")
    if not sep:
        raise ValueError(f"config override {assignment!r}: expected field.sub=value")
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
        if p not in node or not isinstance(node[p], ml_collections.ConfigDict):
            raise KeyError(f"config override {assignment!r}: no config section {p!r}")
        node = node[p]
    if leaf not in node:
        raise KeyError(f"config override {assignment!r}: no field {key!r} (fields of "
                       f"{'.'.join(parents) or 'the config'}: {sorted(node.keys())})")
    node[leaf] = _parse_like(node[leaf], text, key)


def _parse_like(current, text: str, key: str):
    try:
        if isinstance(current, bool):
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError("expected true or false")
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
        if isinstance(current, (tuple, list)):
            return type(current)(ast.literal_eval(text))
        if current is None:
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return text
        return text
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"--config.{key}={text!r}: cannot be read as "
                         f"{type(current).__name__} ({e})") from e
