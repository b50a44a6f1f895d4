"""One door to every dataset: `load_split(data_config, split)` -> (source, metadata).

`source[i]` is a record dict (image uint8 [S, S, 3], depth uint8 [S, S, 1], label, species, device,
identity, video, frame) and `metadata` is {column: int32 [N]} in record order (for protocols).
The real-dataset builders (Oulu-NPU, CASIA-FASD, Replay-Attack) slot in here with the same record
schema, each as its own package under `despoof_jax/data/`.
"""
from __future__ import annotations

import os

import ml_collections
import numpy as np

from despoof_jax.data import protocols

DATASETS = ("synthetic_spoof",)


def data_dir(data_config: ml_collections.ConfigDict) -> str:
    """The TFDS data directory: the config's, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    return (data_config.data_dir or os.environ.get("TFDS_DATA_DIR")
            or os.path.expanduser("~/tensorflow_datasets"))


def load_split(data_config: ml_collections.ConfigDict, split: str):
    """(source, metadata) of `split`, building the dataset on first use when it is generated."""
    if data_config.dataset == "synthetic_spoof":
        from despoof_jax.data import synthetic_spoof   # noqa: PLC0415 (registers the builder)
        d = data_dir(data_config)
        source = synthetic_spoof.load_source(data_config.builder_config, d, split)
        meta = synthetic_spoof.load_metadata(data_config.builder_config, d, split)
        size = int(np.asarray(source[0]["image"]).shape[0])
        if size != data_config.image_size:
            raise ValueError(
                f"data.builder_config={data_config.builder_config!r} holds {size} px images but "
                f"data.image_size={data_config.image_size}; pick a builder config of that size")
        return source, meta
    raise ValueError(f"unknown data.dataset {data_config.dataset!r}; available: {DATASETS}")


def prepare(data_config: ml_collections.ConfigDict) -> None:
    """Builds a generated dataset once before training. Multi-host: process 0 builds while the
    others wait at a barrier, since concurrent builds into one data_dir would race."""
    import jax   # noqa: PLC0415
    from jax.experimental import multihost_utils   # noqa: PLC0415
    if jax.process_index() == 0:
        for split in ("train", "dev", "test"):
            load_split(data_config, split)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("despoof_jax.data.prepare")


def protocol_indices(data_config, split: str, metadata) -> np.ndarray:
    """Record indices of `split` that the config's protocol and fold use."""
    protocol = protocols.get_protocol(data_config.protocol)
    idx = protocols.select_indices(metadata, protocol, split, data_config.fold)
    if len(idx) == 0:
        raise ValueError(f"protocol {data_config.protocol!r} fold {data_config.fold} selects no "
                         f"record of split {split!r}")
    return idx
