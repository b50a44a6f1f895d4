"""Table 4: Oulu-NPU Protocols 1-4 at the paper's setting (256 px, Table 1 widths). P3 and P4
run all 6 folds (mean ± std).

    despoof train --config=configs/protocol_oulu.py:p1 --workdir=workdir/oulu_p1 \
        --config.data.manual_dir=/data/manual
    despoof train --config=configs/protocol_oulu.py:p2 --workdir=workdir/oulu_p2
    despoof train --config=configs/protocol_oulu.py:p3 --workdir=workdir/oulu_p3
    despoof train --config=configs/protocol_oulu.py:p4 --workdir=workdir/oulu_p4

Smoke runs (64 px builder config `s64`, narrow nets, a few steps):

    despoof train --config=configs/protocol_oulu.py:p1,smoke --workdir=/tmp/oulu_smoke

The `oulu_npu` builder (`despoof_jax/data/builders/oulu_npu/`) reads the manual download from
`data.manual_dir` (its root, or a folder holding `oulu_npu/`; default
`<data_dir>/downloads/manual`): Train_files/, Dev_files/, Test_files/ and Protocols/. Protocol
membership comes from the Protocols/ files (`oulu_npu.PROTOCOLS`).

APCER is per attack type, print or display (`eval.apcer_per = "medium"`): our reading of the
benchmark's convention, which its published Test lists support by labelling the two types -1 and
-2 (README, "Reading of the paper"). `--config.eval.apcer_per=species` gives the stricter worst
instrument (printer 1 or 2, display 1 or 2) instead; P2 and P4 test one instrument of each type,
so there the two agree.
"""
from despoof_jax import config as config_lib

VARIANTS = ("p1", "p2", "p3", "p4")


def get_config(arg: str = ""):
    name, smoke = config_lib.parse_variant(arg, VARIANTS, "configs/protocol_oulu.py")
    c = config_lib.base_config()
    if smoke:
        c = config_lib.smoke(c)
    c.data.dataset = "oulu_npu"
    c.data.builder_config = "s64" if smoke else "default"
    c.data.protocol = f"oulu_{name}"
    c.data.fold = -1 if name in ("p3", "p4") else 0
    c.eval.apcer_per = "medium"
    c.lock()
    return c
