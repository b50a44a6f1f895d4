"""The paper's setting (Sec. 4.1) on the embedded synthetic world, 256 px.

    despoof train --config=configs/default.py --workdir=/tmp/despoof

Variants: `--config=configs/default.py:smoke` (a one-minute run at 64 px with narrow nets, for
tests and a first look). Any field can be overridden: `--config.train.stage2_steps=5000`;
a misspelt field is an error (the config is locked).
"""
from despoof_jax import config as config_lib


def get_config(arg: str = ""):
    """The paper's setting (`despoof_jax.config.base_config`: every field, with its reason)."""
    c = config_lib.base_config()
    if arg == "smoke":
        c = config_lib.smoke(c)
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of configs/default.py; expected '' or 'smoke'")
    c.lock()   # a misspelt --config.field= override fails instead of being ignored
    return c
