"""Table 4: Oulu-NPU Protocols 1-4 at the paper's setting (256 px, Table 1 widths). P3 and P4
run all 6 folds (mean ± std).

    python -m despoof_jax.main --config=configs/protocol_oulu.py:p1 --workdir=workdir/oulu_p1
    python -m despoof_jax.main --config=configs/protocol_oulu.py:p3 --workdir=workdir/oulu_p3

Needs an `oulu_npu` TFDS builder, which does not exist yet: the run stops at once with the
manual-download layout the builder will expect (`despoof_jax/data/datasets.py`,
MANUAL_LAYOUTS). The protocols themselves are defined (`protocols.PROTOCOLS["oulu_p1"...]`).
"""
from configs import default

VARIANTS = ("p1", "p2", "p3", "p4")


def get_config(arg: str = ""):
    name, smoke = default.parse_variant(arg, VARIANTS, "configs/protocol_oulu.py")
    c = default.base_config()
    if smoke:
        c = default.smoke(c)
    c.data.dataset = "oulu_npu"
    c.data.builder_config = "default"
    c.data.protocol = f"oulu_{name}"
    c.data.fold = -1 if name in ("p3", "p4") else 0
    c.lock()
    return c
