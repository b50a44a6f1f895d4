"""The `oulu_npu` TFDS dataset. Importing this package registers the builder with TFDS."""
from despoof_jax.data.builders.oulu_npu.oulu_npu import (
    PROTOCOL_COLUMNS,
    PROTOCOLS,
    SPECIES_NAMES,
    OuluNpu,
    protocol_file,
    published_list_size,
)

BUILDER = OuluNpu

__all__ = ["BUILDER", "PROTOCOL_COLUMNS", "PROTOCOLS", "SPECIES_NAMES", "OuluNpu",
           "protocol_file", "published_list_size"]
