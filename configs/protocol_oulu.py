"""Table 4: Oulu-NPU Protocols 1-4 at the paper's setting (256 px, Table 1 widths). P3 and P4
run all 6 folds (mean ± std).

    despoof train --config=configs/protocol_oulu.py:p1 --workdir=workdir/oulu_p1
    despoof train --config=configs/protocol_oulu.py:p3 --workdir=workdir/oulu_p3

Needs an `oulu_npu` TFDS builder, which does not exist yet: the run stops at once with the
manual-download layout the builder will expect (`despoof_jax/data/datasets.py`,
MANUAL_LAYOUTS). The protocols themselves are defined (`protocols.PROTOCOLS["oulu_p1"...]`).
"""
from despoof_jax import config as config_lib

VARIANTS = ("p1", "p2", "p3", "p4")


def get_config(arg: str = ""):
    name, smoke = config_lib.parse_variant(arg, VARIANTS, "configs/protocol_oulu.py")
    c = config_lib.base_config()
    if smoke:
        c = config_lib.smoke(c)
    c.data.dataset = "oulu_npu"
    c.data.builder_config = "default"
    c.data.protocol = f"oulu_{name}"
    c.data.fold = -1 if name in ("p3", "p4") else 0
    c.lock()
    return c
