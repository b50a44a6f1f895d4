"""The per-record metadata table every builder caches beside its records (`metadata-<split>.npz`):
the columns protocols filter on, read from the records themselves once, so it can never disagree
with them, and then loaded without decoding a single image."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from etils import epath

CHUNK = 256   # records read per call of the data source


def read_or_build(path: epath.Path, source, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """{key: int32 [N]} in record order, from the cached table at `path`, built from `source`
    (random-access records) first if missing. Written then renamed, so a reader never sees half
    a file; when two processes build it at once, the first rename wins and the other's copy is
    dropped (both read the same records)."""
    path = epath.Path(path)
    if not path.exists():
        columns = {k: np.empty(len(source), np.int32) for k in keys}
        for start in range(0, len(source), CHUNK):
            records = source.__getitems__(range(start, min(start + CHUNK, len(source))))
            for k in keys:
                columns[k][start:start + len(records)] = [r[k] for r in records]
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
        with tmp.open("wb") as f:
            np.savez(f, **columns)
        try:
            tmp.rename(path)
        except FileExistsError:
            tmp.unlink()
    with path.open("rb") as f, np.load(f) as table:
        return {k: table[k] for k in keys}
