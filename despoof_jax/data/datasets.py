"""One door to every dataset: `load_split(data_config, split)` -> (source, metadata).

`source[i]` is a record dict (image uint8 [S, S, 3], depth uint8 [S, S, 1], label, species, device,
identity, video, frame) and `metadata` is {column: int32 [N]} in record order (for protocols).
The real datasets (Oulu-NPU, CASIA-FASD, Replay-Attack, MSU-MFSD) have the same record schema
plus provenance (`frame_index`, `source`); each is a TFDS builder package under
`despoof_jax/data/builders/`, built from the manual download in `data.manual_dir` (see
`despoof_jax/data/builders/real_common.py`).
"""
from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from despoof_jax.data import pipeline, protocols, synthetic
from despoof_jax.data.builders import (
    casia_fasd,
    msu_mfsd,
    oulu_npu,
    real_common,
    replay_attack,
    synthetic_spoof,
)

# Manual-download datasets (Tables 4 and 5): one builder package each under data/builders/.
REAL_DATASETS = ("oulu_npu", "casia_fasd", "replay_attack", "msu_mfsd")
DATASETS = ("synthetic_spoof",) + REAL_DATASETS
_BUILDER_MODULES = {"oulu_npu": oulu_npu, "casia_fasd": casia_fasd,
                    "replay_attack": replay_attack, "msu_mfsd": msu_mfsd}


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown data.dataset {name!r}; available: {DATASETS}")


def degradation(data_config: ml_collections.ConfigDict):
    """The config's Table 3 image degradation (`pipeline.Degradation`), or None when off."""
    d = pipeline.Degradation(size=int(data_config.get("degrade_size", 0) or 0),
                             blur_sigma=float(data_config.get("blur_sigma", 0.0) or 0.0))
    return d if d.active else None


def check_degradation(data_config: ml_collections.ConfigDict) -> None:
    """ValueError for a degradation the pipeline would refuse: a negative size or blur, or a
    degrade_size not below data.image_size."""
    d = degradation(data_config)
    if d is not None and d.size:
        d.check_size(int(data_config.image_size))


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


# `data.builder_config` of synthetic_spoof may name several builds joined by this: their splits
# are read as one (e.g. "wide2_s128_t60+wide4_s128_t60", two capture scales in one run).
UNION_SEP = "+"


def synthetic_builds(builder_config: str) -> tuple[str, ...]:
    """The synthetic_spoof builder configs that `data.builder_config` names: one, or several
    joined by UNION_SEP. ValueError on an empty or repeated member."""
    names = tuple(n.strip() for n in str(builder_config).split(UNION_SEP))
    if not all(names) or len(set(names)) != len(names):
        raise ValueError(f"data.builder_config={builder_config!r}: a union of synthetic_spoof "
                         f"builds names each once, joined by {UNION_SEP!r} (e.g. "
                         "'wide2_s128_t60+wide4_s128_t60')")
    return names


class ConcatSource:
    """Random access across several record sources, in order: records 0..len(a)-1 are a's, then
    b's, and so on. Picklable (grain ships sources to its workers) when the members are."""

    def __init__(self, sources):
        self._sources = tuple(sources)
        if len(self._sources) < 2:
            raise ValueError("ConcatSource joins at least two sources")
        self._ends = np.cumsum([len(src) for src in self._sources])

    def __len__(self) -> int:
        return int(self._ends[-1])

    def _locate(self, i: int) -> tuple[int, int]:
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"record {i} of a {len(self)}-record union")
        member = int(np.searchsorted(self._ends, i, side="right"))
        return member, i - (int(self._ends[member - 1]) if member else 0)

    def __getitem__(self, i: int):
        member, j = self._locate(i)
        return self._sources[member][j]

    def __getitems__(self, keys):
        """Batched reads, grouped by member (each member reads its keys in one call)."""
        where = [self._locate(k) for k in keys]
        out = [None] * len(where)
        for m, src in enumerate(self._sources):
            mine = [n for n, (member, _) in enumerate(where) if member == m]
            if not mine:
                continue
            local = [where[n][1] for n in mine]
            got = (list(src.__getitems__(local)) if hasattr(src, "__getitems__")
                   else [src[j] for j in local])
            for n, record in zip(mine, got):
                out[n] = record
        return out

    def __repr__(self) -> str:
        # Stable across processes (grain compares repr(source) when restoring an iterator).
        return f"ConcatSource({', '.join(repr(src) for src in self._sources)})"


def _load_synthetic(data_config: ml_collections.ConfigDict, split: str):
    d = data_dir(data_config)
    names = synthetic_builds(data_config.builder_config)
    if len(names) == 1:
        return (synthetic_spoof.load_source(names[0], d, split),
                synthetic_spoof.load_metadata(names[0], d, split))
    sources = [synthetic_spoof.load_source(n, d, split) for n in names]
    metas = [synthetic_spoof.load_metadata(n, d, split) for n in names]
    sizes = {n: int(np.asarray(src[0]["image"]).shape[0]) for n, src in zip(names, sources)}
    keys = {n: sorted(m) for n, m in zip(names, metas)}
    if len(set(sizes.values())) != 1 or len({tuple(k) for k in keys.values()}) != 1:
        raise ValueError(f"data.builder_config={data_config.builder_config!r}: the builds of a "
                         f"union must hold records of one size and one metadata schema; sizes "
                         f"{sizes}, columns {keys}")
    meta = {k: np.concatenate([m[k] for m in metas]) for k in metas[0]}
    # Which member a record comes from (0, 1, ... in the order named): `despoof subset --where
    # build=1` reads one capture scale of a union's split.
    meta["build"] = np.concatenate([np.full(len(src), m, np.int32)
                                    for m, src in enumerate(sources)])
    return ConcatSource(sources), meta


def load_split(data_config: ml_collections.ConfigDict, split: str):
    """(source, metadata) of `split`, building the dataset on first use when it is generated.
    A synthetic_spoof `data.builder_config` naming several builds ("a+b") reads their splits as
    one, in order, with a `build` metadata column (0 for a's records, 1 for b's)."""
    if data_config.dataset == "synthetic_spoof":
        source, meta = _load_synthetic(data_config, split)
        size = int(np.asarray(source[0]["image"]).shape[0])
        if size != data_config.image_size:
            raise ValueError(
                f"data.builder_config={data_config.builder_config!r} holds {size} px images but "
                f"data.image_size={data_config.image_size}; pick a builder config of that size")
        return source, meta
    if data_config.dataset in REAL_DATASETS:
        return _load_real(data_config, split)
    raise _unknown(data_config.dataset)


def _load_real(data_config: ml_collections.ConfigDict, split: str):
    builder = real_common.prepare(
        data_config.dataset, data_config.builder_config, data_dir(data_config),
        manual_dir=data_config.get("manual_dir", "") or None,
        skip_bad=bool(data_config.get("skip_bad", False)),
        partial=bool(data_config.get("partial_download", False)))
    size = builder.builder_config.size
    if size != data_config.image_size:
        raise ValueError(
            f"data.builder_config={data_config.builder_config!r} of {data_config.dataset} holds "
            f"{size} px images but data.image_size={data_config.image_size}; pick a builder config "
            "of that size")
    return real_common.data_source(builder, split), real_common.load_metadata(builder, split)


def get_protocol(data_config: ml_collections.ConfigDict) -> protocols.Protocol:
    """The config's protocol: the dataset's own when its builder defines one of that name (Oulu-NPU
    reads its protocols from the dataset's protocol files), else `protocols.get_protocol`."""
    if data_config.dataset in REAL_DATASETS:
        module = _BUILDER_MODULES[data_config.dataset]
        if data_config.protocol in module.PROTOCOLS:
            return module.PROTOCOLS[data_config.protocol]
    return protocols.get_protocol(data_config.protocol, data_config.dataset)


def species_names(data_config: ml_collections.ConfigDict):
    """Names of the dataset's species ids (0 = live), as `metrics.ScoreSet` takes them: the
    synthetic world's tuple, or a real dataset's {id: name} (ids keep the synthetic meaning:
    1-2 print, 3-4 display; each dataset uses a subset)."""
    if data_config.dataset in REAL_DATASETS:
        return dict(_BUILDER_MODULES[data_config.dataset].SPECIES_NAMES)
    return tuple(synthetic.SPECIES)


def prepare(data_config: ml_collections.ConfigDict) -> None:
    """Builds a generated dataset once before training. Multi-host: process 0 builds while the
    others wait at a barrier, since concurrent builds into one data_dir would race."""
    if jax.process_index() == 0:
        for split in ("train", "dev", "test"):
            load_split(for_split(data_config, split), split)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices("despoof_jax.data.prepare")


def protocol_indices(data_config, split: str, metadata) -> np.ndarray:
    """Record indices of `split` that the config's protocol and fold use (resolved on the
    dataset that serves `split`: `data.test_dataset` for test in a cross-dataset run)."""
    protocol = get_protocol(for_split(data_config, split))
    idx = protocols.select_indices(metadata, protocol, split, data_config.fold)
    if len(idx) == 0:
        raise ValueError(f"protocol {data_config.protocol!r} fold {data_config.fold} selects no "
                         f"record of split {split!r}")
    return idx
