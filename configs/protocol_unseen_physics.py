"""Unseen physics (issue #14): train on the wide world with one physics family of one stage held
out, test on that family alone. Three stages, each a multi-fold protocol (`data.fold = -1` runs
every fold, each in WORKDIR/fold<k>/ with its own dev threshold; WORKDIR/eval/table2.md reports
mean ± std over folds):

    despoof train --config=configs/protocol_unseen_physics.py:print_family --workdir=workdir/unseen_print
    despoof train --config=configs/protocol_unseen_physics.py:display_layout --workdir=workdir/unseen_display
    despoof train --config=configs/protocol_unseen_physics.py:camera_pipeline --workdir=workdir/unseen_camera

Variants: print_family (5 folds: am_dot, am_line, fm_bluenoise, inkjet, contone), display_layout
(5 folds: rgb_stripe, bgr_stripe, delta, pentile, diamond), camera_pipeline (4 folds: isp_jpeg,
bayer_jpeg, bayer_video, bayer_lowlight). Data: the `wide_s64` builder config (64 px, quickstart
nets and steps); append ",smoke" for `wide_smoke` and the smoke scale; `--config.data.fold=2` runs
one fold only. The binary-CNN baseline on the same folds: add `--config.method=binary_cnn
--config.eval.fusion=cnn`.
"""
from despoof_jax import config as config_lib
from despoof_jax.data import protocols

VARIANTS = ("print_family", "display_layout", "camera_pipeline")


def get_config(arg: str = ""):
    name, smoke = config_lib.parse_variant(arg, VARIANTS, "configs/protocol_unseen_physics.py")
    c = config_lib.quickstart_scale(config_lib.base_config())
    c.data.builder_config = "wide_s64"
    if smoke:
        c = config_lib.smoke(c)
        c.data.builder_config = "wide_smoke"
    c.data.protocol = f"unseen_{name}"
    c.data.fold = -1 if len(protocols.get_protocol(c.data.protocol).folds) > 1 else 0
    c.lock()
    return c
