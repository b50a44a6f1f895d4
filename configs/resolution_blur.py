"""Table 3: ACER under lower image resolution and blur ("the spoof noise pattern is less
discriminative for the lower-resolution or blurry images"). On the synthetic world at the
quickstart scale (64 px input): every split's images are degraded the same way
(`pipeline.Degradation`): down-sampled to R x R and back up (bilinear), or Gaussian-blurred with
std sigma px; the model is trained and tested on the degraded images.

    python -m despoof_jax.main --config=configs/resolution_blur.py:res32 --workdir=workdir/table3_res32
    python -m despoof_jax.main --config=configs/resolution_blur.py:res16 --workdir=workdir/table3_res16
    python -m despoof_jax.main --config=configs/resolution_blur.py:blur1 --workdir=workdir/table3_blur1
    python -m despoof_jax.main --config=configs/resolution_blur.py:blur2 --workdir=workdir/table3_blur2
    python -m despoof_jax.report workdir/quickstart workdir/table3_* --out workdir/report_table3

Variants: res32, res16 (effective resolution 1/2, 1/4 of the input), blur1, blur2 (sigma 1, 2 px);
append ",smoke" for the smoke scale.
"""
from configs import default, quickstart

DEGRADATIONS = {"res32": dict(degrade_size=32), "res16": dict(degrade_size=16),
                "blur1": dict(blur_sigma=1.0), "blur2": dict(blur_sigma=2.0)}


def get_config(arg: str = ""):
    name, smoke = default.parse_variant(arg, tuple(DEGRADATIONS), "configs/resolution_blur.py")
    c = quickstart.get_config()
    if smoke:
        c = default.smoke(c)
    for k, v in DEGRADATIONS[name].items():
        c.data[k] = v
    return c
