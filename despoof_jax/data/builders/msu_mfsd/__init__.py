"""The `msu_mfsd` TFDS dataset. Importing this package registers the builder with TFDS."""
from despoof_jax.data.builders.msu_mfsd.msu_mfsd import SPECIES_NAMES, MsuMfsd

BUILDER = MsuMfsd
PROTOCOLS: dict = {}   # the generic "intra" protocol (protocols.PROTOCOLS) serves it

__all__ = ["BUILDER", "PROTOCOLS", "SPECIES_NAMES", "MsuMfsd"]
