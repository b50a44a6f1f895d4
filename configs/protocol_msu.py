"""MSU-MFSD intra-dataset testing (train on the train list's clients, threshold on the held-out
dev clients, test on the test list's clients), 256 px.

    despoof train --config=configs/protocol_msu.py --workdir=workdir/msu \
        --config.data.manual_dir=/data/manual

Smoke run (64 px builder config `s64`):

    despoof train --config=configs/protocol_msu.py:smoke --workdir=/tmp/msu_smoke

The `msu_mfsd` builder (`despoof_jax/data/builders/msu_mfsd/`) reads the manual download from
`data.manual_dir` (its root, or a folder holding `msu_mfsd/`): real/, attack/ and the subject lists
train_sub_list.txt, test_sub_list.txt. MSU-MFSD has no development set: the last 3 clients of the
train list form "dev".
"""
from despoof_jax import config as config_lib

VARIANTS = ("intra",)


def get_config(arg: str = ""):
    _, smoke = config_lib.parse_variant(arg, VARIANTS, "configs/protocol_msu.py")
    c = config_lib.base_config()
    if smoke:
        c = config_lib.smoke(c)
    c.data.dataset = "msu_mfsd"
    c.data.builder_config = "s64" if smoke else "default"
    c.data.protocol = "intra"
    c.lock()
    return c
