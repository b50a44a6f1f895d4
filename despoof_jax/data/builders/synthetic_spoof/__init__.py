"""The `synthetic_spoof` TFDS dataset (ArrayRecord): builder, configs, loaders.

Importing this package registers the builder with TFDS under the name "synthetic_spoof".
"""
from despoof_jax.data.builders.synthetic_spoof.synthetic_spoof import (
    CONFIGS,
    METADATA_KEYS,
    SPLITS,
    WIDE_METADATA_KEYS,
    PlanEntry,
    SyntheticSpoof,
    SyntheticSpoofConfig,
    example_plan,
    load_metadata,
    load_source,
    metadata_path,
    physics_table,
    prepare,
)

__all__ = [
    "CONFIGS", "METADATA_KEYS", "SPLITS", "WIDE_METADATA_KEYS", "PlanEntry", "SyntheticSpoof", "SyntheticSpoofConfig",
    "example_plan", "load_metadata", "load_source", "metadata_path", "physics_table", "prepare",
]
