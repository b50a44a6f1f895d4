"""The README's main job: the whole method on the embedded synthetic world in ~15 min on 2 CPU cores.

    despoof train --config=configs/quickstart.py --workdir=workdir/quickstart

Builds the `s64_quick` synthetic dataset (cached under $TFDS_DATA_DIR or ~/tensorflow_datasets),
pretrains DQ Net, trains DS Net + VQ Net, evaluates on the `intra` protocol and writes
workdir/quickstart/eval/ (metrics.json, table2.md, sample_sheet.png, scores_*.csv).

What differs from the paper's setting (configs/default.py), and why: 64 px instead of 256 and
narrower DQ/DS/VQ nets, because XLA's weight-gradient convolutions run at ~5 GFLOP/s on a CPU
(the full stage-2 step is ~1.3 TFLOP at 256 px); a larger learning rate (1e-3) so the short run
converges; batch 8 instead of 6 (it divides over 8 devices) and BatchNorm momentum 0.9 (a short
run's running averages). The losses, their weights (3, 0.005, 0.1, 0.016), k (scaled: 16 at
64 px) and the two-stage schedule are the paper's; the repetitive loss's peak grows with the
image side, so at 64 px its weight counts about 4x less than at 256 px (README, "Reading").
"""
from despoof_jax import config as config_lib


def get_config(arg: str = ""):
    if arg:
        raise ValueError(f"configs/quickstart.py has no variant {arg!r}")
    c = config_lib.quickstart_scale(config_lib.base_config())
    c.lock()
    return c
