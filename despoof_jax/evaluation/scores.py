"""Presentation-attack scores from DS Net's and DQ Net's outputs (paper Sec. 4.2, Table 2).

Convention everywhere in the project: a score is *higher for an attack*. The three component
scores are L1 norms (means of absolute values) as in the paper:
  noise: ||N||_1, large for spoof (the magnitude loss drives live noise to zero);
  map:   ||M||_1 of the 0\\1 map, near 1 for spoof, 0 for live;
  depth: minus the mean of DQ Net's depth of the input, small (flat) for spoof.
Fusions put the components on one scale first (`fusion_stats`, from the dev split).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from despoof_jax.data.color import model_input

COMPONENTS = ("map", "noise", "depth")
FUSIONS = ("map", "noise", "depth", "max", "average", "max_all", "average_all")


def component_scores(noise, depth, zmap) -> dict:
    """noise [B, H, W, 6], depth [B, h, w, 1] (DQ Net on the input), map [B, h, w, 1] -> [B] each.

    The depth score is the *negated* mean depth: DQ Net answers a face-shaped depth for live faces
    and a flat zero map for spoofs, so less depth means more attack. The paper writes the fused
    score as (||N||_1 + ||D||_1)/2; with ||D|| large for live and ||N|| large for spoof that sum
    is not monotone in either, so we read ||D|| as entering with the sign that makes it an attack
    score (README, "Reading of the paper").
    """
    return {
        "score_noise": jnp.mean(jnp.abs(noise), axis=(1, 2, 3)),
        "score_map": jnp.mean(jnp.abs(zmap), axis=(1, 2, 3)),
        "score_depth": -jnp.mean(depth, axis=(1, 2, 3)),
    }


def fusion_stats(components: dict) -> dict:
    """Per-component (mean, std) over a reference set (the dev split), used to put the components
    on one scale before fusing: the paper averages raw L1 norms whose units differ (image
    intensity for N, depth for D), which lets whichever has the larger spread decide alone."""
    out = {}
    for name in COMPONENTS:
        v = np.asarray(components[f"score_{name}"], np.float64)
        out[name] = (float(v.mean()), float(max(v.std(), 1e-12)))
    return out


def fuse(components: dict, stats: dict, how: str = "average", xp=np):
    """Fused attack score [B] from component scores (dict of [B]) and `fusion_stats` of dev.

    how: a single component ("map", "noise", "depth"), or "max"/"average" of the standardised
    noise and depth scores (the paper's Table 2 fusions of N and D, the default being the
    average), or "max_all"/"average_all" over all three components.
    xp: the array module, numpy (float64, evaluation) or jax.numpy (float32, inside the exported
    serving program), so both paths share this one formula.
    """
    if how not in FUSIONS:
        raise ValueError(f"unknown fusion {how!r}; expected one of {FUSIONS}")
    dtype = np.float64 if xp is np else xp.float32
    z = {n: (xp.asarray(components[f"score_{n}"], dtype) - stats[n][0]) / stats[n][1]
         for n in COMPONENTS}
    if how in COMPONENTS:
        return z[how]
    names = ("noise", "depth") if how in ("max", "average") else COMPONENTS
    stack = xp.stack([z[n] for n in names])
    return stack.max(0) if how.startswith("max") else stack.mean(0)


def predict(ds, dq, rgb, *, ds_model, dq_model) -> dict:
    """Inference on a batch: rgb [b, H, W, 3] (uint8 or float in [0, 1]) -> dict of
    noise [b, H, W, 6], live [b, H, W, 6], map [b, H/8, W/8, 1], depth [b, H/8, W/8, 1] and the
    per-sample component scores of `component_scores`.

    `depth` is DQ Net applied to the *input* image: DQ Net was pretrained to answer zero depth for
    spoof inputs, and DS Net is trained so that DQ(I - N) is face-shaped for every input, so only
    DQ(I) carries the live/spoof evidence the paper's depth score needs (see README, "Reading").
    """
    x = model_input(rgb)
    out = ds_model.apply(ds.variables(), x, train=False)
    depth = dq_model.apply(dq.variables(), x, train=False)
    return dict(out, depth=depth, **component_scores(out["noise"], depth, out["map"]))
