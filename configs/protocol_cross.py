"""Table 5: cross testing CASIA-MFSD <-> Replay-Attack (HTER). Train and choose the threshold on
the source dataset's train/dev splits; test on the target's test split (`data.test_dataset`).

    despoof train --config=configs/protocol_cross.py:casia_to_replay --workdir=workdir/casia_to_replay
    despoof train --config=configs/protocol_cross.py:replay_to_casia --workdir=workdir/replay_to_casia

Needs `casia_fasd` and `replay_attack` TFDS builders, which do not exist yet: the run stops at
once with the manual-download layout each builder will expect. Read HTER in table2.md.
"""
from despoof_jax import config as config_lib

PAIRS = {"casia_to_replay": ("casia_fasd", "replay_attack"),
         "replay_to_casia": ("replay_attack", "casia_fasd")}


def get_config(arg: str = ""):
    name, smoke = config_lib.parse_variant(arg, tuple(PAIRS), "configs/protocol_cross.py")
    c = config_lib.base_config()
    if smoke:
        c = config_lib.smoke(c)
    c.data.dataset, c.data.test_dataset = PAIRS[name]
    c.data.builder_config = "default"
    c.data.protocol = "intra"
    c.lock()
    return c
