"""The `replay_attack` TFDS dataset. Importing this package registers the builder with TFDS."""
from despoof_jax.data.builders.replay_attack.replay_attack import (
    SPECIES_NAMES,
    ReplayAttack,
)

BUILDER = ReplayAttack
PROTOCOLS: dict = {}   # the generic "intra" protocol (protocols.PROTOCOLS) serves it

__all__ = ["BUILDER", "PROTOCOLS", "SPECIES_NAMES", "ReplayAttack"]
