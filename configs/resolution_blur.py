"""Table 3: ACER under lower image resolution and blur ("the spoof noise pattern is less
discriminative for the lower-resolution or blurry images"). On the synthetic world at the
quickstart scale (64 px input): every split's images are degraded the same way
(`pipeline.Degradation`): down-sampled to R x R and back up (bilinear), or Gaussian-blurred with
std sigma px; the model is trained and tested on the degraded images.

    despoof train --config=configs/resolution_blur.py:res32 --workdir=workdir/table3_res32
    despoof train --config=configs/resolution_blur.py:res16 --workdir=workdir/table3_res16
    despoof train --config=configs/resolution_blur.py:blur1 --workdir=workdir/table3_blur1
    despoof train --config=configs/resolution_blur.py:blur2 --workdir=workdir/table3_blur2
    despoof report workdir/quickstart workdir/table3_* --out workdir/report_table3

Variants: res32, res16 (effective resolution 1/2, 1/4 of the input), blur1, blur2 (sigma 1, 2 px);
append ",smoke" for the smoke scale.
"""
from despoof_jax import config as config_lib

DEGRADATIONS = {"res32": dict(degrade_size=32), "res16": dict(degrade_size=16),
                "blur1": dict(blur_sigma=1.0), "blur2": dict(blur_sigma=2.0)}


def get_config(arg: str = ""):
    name, smoke = config_lib.parse_variant(arg, tuple(DEGRADATIONS), "configs/resolution_blur.py")
    c = config_lib.quickstart_scale(config_lib.base_config())
    if smoke:
        c = config_lib.smoke(c)
    for k, v in DEGRADATIONS[name].items():
        c.data[k] = v
    c.lock()
    return c
