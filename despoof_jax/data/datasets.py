"""One door to every dataset: `load_split(data_config, split)` -> (source, metadata).

`source[i]` is a record dict (image uint8 [S, S, 3], depth uint8 [S, S, 1], label, species, device,
identity, video, frame) and `metadata` is {column: int32 [N]} in record order (for protocols).
The real-dataset builders (Oulu-NPU, CASIA-FASD, Replay-Attack) slot in here with the same record
schema, each as its own package under `despoof_jax/data/`.
"""
from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from despoof_jax.data import pipeline, protocols
from despoof_jax.data.builders import synthetic_spoof

DATASETS = ("synthetic_spoof",)

# Licence-gated datasets that configs may name (Tables 4 and 5) before their builders exist: the
# files the (future) builder will read from `<data_dir>/downloads/manual/<name>/`.
MANUAL_LAYOUTS = {
    "oulu_npu": ("Oulu-NPU (request at https://sites.google.com/site/oulunpudatabase/): "
                 "Train_files/, Dev_files/, Test_files/ holding <phone>_<session>_<user>_<file>"
                 ".avi videos and their .txt eye positions, and Protocols/Protocol_{1,2,3,4}/"),
    "casia_fasd": ("CASIA-FASD (CASIA-MFSD): train_release/<subject>/{1,2,HR_1,...}.avi and "
                   "test_release/<subject>/*.avi"),
    "replay_attack": ("Replay-Attack (Idiap): train/, devel/, test/ each with real/ and "
                      "attack/{fixed,hand}/ .mov videos, and face-locations/ .face files"),
}


def _no_builder(name: str) -> ValueError:
    if name in MANUAL_LAYOUTS:
        return ValueError(
            f"data.dataset={name!r} has no builder yet: it is a manual-download dataset. Its "
            f"builder will read {MANUAL_LAYOUTS[name]} from <data_dir>/downloads/manual/{name}/; "
            f"add a TFDS builder package despoof_jax/data/{name}/ with the record schema of "
            "synthetic_spoof and register it in despoof_jax/data/datasets.py.")
    return ValueError(f"unknown data.dataset {name!r}; available: {DATASETS} (manual-download "
                      f"datasets without a builder yet: {sorted(MANUAL_LAYOUTS)})")


def degradation(data_config: ml_collections.ConfigDict):
    """The config's Table 3 image degradation (`pipeline.Degradation`), or None when off."""
    d = pipeline.Degradation(size=int(data_config.get("degrade_size", 0) or 0),
                             blur_sigma=float(data_config.get("blur_sigma", 0.0) or 0.0))
    return d if d.active else None


def for_split(data_config: ml_collections.ConfigDict, split: str) -> ml_collections.ConfigDict:
    """The data config that serves `split`: cross-dataset testing (Table 5) reads the test split
    from `data.test_dataset` and every other split from `data.dataset`."""
    test_dataset = data_config.get("test_dataset", "")
    if split != "test" or not test_dataset or test_dataset == data_config.dataset:
        return data_config
    c = ml_collections.ConfigDict(data_config.to_dict())
    c.dataset = test_dataset
    return c


def data_dir(data_config: ml_collections.ConfigDict) -> str:
    """The TFDS data directory: the config's, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    return (data_config.data_dir or os.environ.get("TFDS_DATA_DIR")
            or os.path.expanduser("~/tensorflow_datasets"))


def load_split(data_config: ml_collections.ConfigDict, split: str):
    """(source, metadata) of `split`, building the dataset on first use when it is generated."""
    if data_config.dataset == "synthetic_spoof":
        d = data_dir(data_config)
        source = synthetic_spoof.load_source(data_config.builder_config, d, split)
        meta = synthetic_spoof.load_metadata(data_config.builder_config, d, split)
        size = int(np.asarray(source[0]["image"]).shape[0])
        if size != data_config.image_size:
            raise ValueError(
                f"data.builder_config={data_config.builder_config!r} holds {size} px images but "
                f"data.image_size={data_config.image_size}; pick a builder config of that size")
        return source, meta
    raise _no_builder(data_config.dataset)


def prepare(data_config: ml_collections.ConfigDict) -> None:
    """Builds a generated dataset once before training. Multi-host: process 0 builds while the
    others wait at a barrier, since concurrent builds into one data_dir would race."""
    if jax.process_index() == 0:
        for split in ("train", "dev", "test"):
            load_split(for_split(data_config, split), split)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("despoof_jax.data.prepare")


def protocol_indices(data_config, split: str, metadata) -> np.ndarray:
    """Record indices of `split` that the config's protocol and fold use."""
    protocol = protocols.get_protocol(data_config.protocol, data_config.dataset)
    idx = protocols.select_indices(metadata, protocol, split, data_config.fold)
    if len(idx) == 0:
        raise ValueError(f"protocol {data_config.protocol!r} fold {data_config.fold} selects no "
                         f"record of split {split!r}")
    return idx
