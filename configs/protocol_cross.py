"""Table 5: cross testing CASIA-MFSD <-> Replay-Attack (HTER). Train and choose the threshold on
the source dataset's train/dev splits; test on the target's test split (`data.test_dataset`).

    despoof train --config=configs/protocol_cross.py:casia_to_replay --workdir=workdir/casia_to_replay \
        --config.data.manual_dir=/data/manual
    despoof train --config=configs/protocol_cross.py:replay_to_casia --workdir=workdir/replay_to_casia \
        --config.data.manual_dir=/data/manual

Smoke runs: `:casia_to_replay,smoke`, `:replay_to_casia,smoke` (64 px builder config `s64`).

`data.manual_dir` holds both downloads, as `casia_fasd/` and `replay_attack/` (see the builders'
MANUAL_DOWNLOAD_INSTRUCTIONS). CASIA-FASD has no development set: its builder holds out the last 5
training subjects as "dev", where the threshold of casia_to_replay is chosen; replay_to_casia
chooses it on Replay-Attack's devel set. Read HTER in table2.md.
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
    c.data.builder_config = "s64" if smoke else "default"
    c.data.protocol = "intra"
    c.lock()
    return c
