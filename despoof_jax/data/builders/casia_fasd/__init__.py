"""The `casia_fasd` TFDS dataset. Importing this package registers the builder with TFDS."""
from despoof_jax.data.builders.casia_fasd.casia_fasd import SPECIES_NAMES, CasiaFasd

BUILDER = CasiaFasd
PROTOCOLS: dict = {}   # the generic "intra" protocol (protocols.PROTOCOLS) serves it

__all__ = ["BUILDER", "PROTOCOLS", "SPECIES_NAMES", "CasiaFasd"]
