"""Baseline: depth-only auxiliary supervision: DQ Net after stage 1, scored by its depth alone
(-mean(DQ(I))), no DS or VQ Net (`despoof_jax/training/baselines.py`, `evaluation/baselines.py`).

    despoof train --config=configs/baseline_depth.py --workdir=workdir/baseline_depth

Variants: "" (quickstart scale, 400 stage-1 steps), "smoke". A finished de-spoofing workdir's
dq/ is this baseline's model: copy it and run `--config.mode=eval` to skip training.
"""
from despoof_jax import config as config_lib


def get_config(arg: str = ""):
    _, smoke = config_lib.parse_variant(arg, ("depth",), "configs/baseline_depth.py")
    c = config_lib.quickstart_scale(config_lib.base_config())
    if smoke:
        c = config_lib.smoke(c)
    c.method = "depth_only"
    c.eval.fusion = "depth"    # the score `baselines.py` writes (main.py prints it)
    c.lock()
    return c
