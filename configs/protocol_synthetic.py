"""The synthetic world's protocols, the analogues of Oulu-NPU P1-P4 (Table 4): intra (P1-like,
all conditions seen), unseen_medium (P2), unseen_device (P3, 6 folds, leave one capture device
out) and unseen_medium_device (P4, 6 folds). Multi-fold protocols run every fold
(`data.fold = -1`), each in WORKDIR/fold<k>/ with its own dev threshold, and report mean ± std in
WORKDIR/eval/table2.md.

    despoof train --config=configs/protocol_synthetic.py:unseen_medium --workdir=workdir/p2_unseen_medium
    despoof train --config=configs/protocol_synthetic.py:unseen_device --workdir=workdir/p3_unseen_device
    despoof train --config=configs/protocol_synthetic.py:unseen_medium_device --workdir=workdir/p4_unseen_medium_device

Append ",smoke" for the smoke scale; `--config.data.fold=2` runs one fold only.
"""
from despoof_jax import config as config_lib
from despoof_jax.data import protocols

VARIANTS = ("intra", "unseen_medium", "unseen_device", "unseen_medium_device")


def get_config(arg: str = ""):
    name, smoke = config_lib.parse_variant(arg, VARIANTS, "configs/protocol_synthetic.py")
    c = config_lib.quickstart_scale(config_lib.base_config())
    if smoke:
        c = config_lib.smoke(c)
    c.data.protocol = name
    c.data.fold = -1 if len(protocols.get_protocol(name).folds) > 1 else 0
    c.lock()
    return c
