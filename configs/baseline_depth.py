"""Baseline: depth-only auxiliary supervision: DQ Net after stage 1, scored by its depth alone
(-mean(DQ(I))), no DS or VQ Net (`despoof_jax/baselines.py`).

    python -m despoof_jax.main --config=configs/baseline_depth.py --workdir=workdir/baseline_depth

Variants: "" (quickstart scale, 400 stage-1 steps), "smoke". A finished de-spoofing workdir's
dq/ is this baseline's model: copy it and run `--config.mode=eval` to skip training.
"""
from configs import default, quickstart


def get_config(arg: str = ""):
    _, smoke = default.parse_variant(arg, ("depth",), "configs/baseline_depth.py")
    c = quickstart.get_config()
    if smoke:
        c = default.smoke(c)
    c.method = "depth_only"
    c.eval.fusion = "depth"    # the score `baselines.py` writes (main.py prints it)
    return c
