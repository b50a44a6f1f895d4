"""Baseline: binary softmax CNN (DS Net's encoder + a 2-way head, cross-entropy) on the same
data, protocol, threshold rule and report as the de-spoofing method (`despoof_jax/baselines.py`).

    python -m despoof_jax.main --config=configs/baseline_cnn.py --workdir=workdir/baseline_cnn

Variants: "" (quickstart scale: 64 px, 800 steps = the method's 400 + 400), "smoke". Any
protocol: `--config.data.protocol=unseen_medium`.
"""
from configs import default, quickstart


def get_config(arg: str = ""):
    _, smoke = default.parse_variant(arg, ("cnn",), "configs/baseline_cnn.py")
    c = quickstart.get_config()
    if smoke:
        c = default.smoke(c)
    c.method = "binary_cnn"
    c.eval.fusion = "cnn"      # the score `baselines.py` writes (main.py prints it)
    return c
