"""Baseline: binary softmax CNN (DS Net's encoder + a 2-way head, cross-entropy) on the same
data, protocol, threshold rule and report as the de-spoofing method (`despoof_jax/training/baselines.py`, `evaluation/baselines.py`).

    despoof train --config=configs/baseline_cnn.py --workdir=workdir/baseline_cnn

Variants: "" (quickstart scale: 64 px, 800 steps = the method's 400 + 400), "smoke". Any
protocol: `--config.data.protocol=unseen_medium`.
"""
from despoof_jax import config as config_lib


def get_config(arg: str = ""):
    _, smoke = config_lib.parse_variant(arg, ("cnn",), "configs/baseline_cnn.py")
    c = config_lib.quickstart_scale(config_lib.base_config())
    if smoke:
        c = config_lib.smoke(c)
    c.method = "binary_cnn"
    c.eval.fusion = "cnn"      # the score `baselines.py` writes (main.py prints it)
    c.lock()
    return c
