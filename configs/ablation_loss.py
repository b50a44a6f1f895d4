"""Sec. 4.2 "Advantage of each loss function": leave one loss of Eq. 7 out (paper, Oulu P1:
ACER 5.24 without the magnitude loss, 2.34 without the 0\\1 map loss, 1.50 without the
repetitive loss, vs. 1.5 with all). Here on the synthetic world, `intra` protocol, at the
quickstart scale (64 px, narrow nets, 400 + 400 steps, batch 8). At 64 px the repetitive loss
counts about 4x less than the paper's 0.005 at 256 px (its orthonormal FFT peak grows with the
image side; README, "Reading of the paper"), so `no_repetitive` removes a weaker term than the
paper's ablation did:

    despoof train --config=configs/ablation_loss.py:no_magnitude --workdir=workdir/ablation_no_magnitude
    despoof train --config=configs/ablation_loss.py:no_zero_one_map --workdir=workdir/ablation_no_zero_one_map
    despoof train --config=configs/ablation_loss.py:no_repetitive --workdir=workdir/ablation_no_repetitive
    despoof report workdir/quickstart workdir/ablation_* --out workdir/report_ablation

Variants: full (all losses, = configs/quickstart.py), no_magnitude, no_zero_one_map,
no_repetitive; append ",smoke" for the 64 px / 20-step smoke scale (s64_small). The stage-1 DQ
Net does not depend on the ablated loss, so `--config.mode=ds` after copying a finished
workdir's dq/ saves the first stage.
"""
from despoof_jax import config as config_lib

VARIANTS = ("full", "no_magnitude", "no_zero_one_map", "no_repetitive")
# The config.loss weight each variant sets to 0 (a weight of 0 removes the term from Eq. 7).
REMOVED = {"full": None, "no_magnitude": "magnitude", "no_zero_one_map": "zero_one_map",
           "no_repetitive": "repetitive"}


def get_config(arg: str = ""):
    name, smoke = config_lib.parse_variant(arg, VARIANTS, "configs/ablation_loss.py")
    c = config_lib.quickstart_scale(config_lib.base_config())
    if smoke:
        c = config_lib.smoke(c)
    if REMOVED[name]:
        c.loss[REMOVED[name]] = 0.0
    c.lock()
    return c
