"""Standalone runner of an exported despoof model: imports only the standard library, numpy and
jax, never the rest of despoof_jax, so a serving process needs neither flax nor the training code.
`export.export_model` copies this file next to the artifact; use it from there or from the package:

    from serving_loader import load          # or: from despoof_jax.serving.serving_loader import load
    model = load("/path/to/export")          # the folder holding manifest.json
    out = model(rgb)                         # rgb: uint8 [N, S, S, 3] RGB face crops
    out["score"], out["is_attack"]           # float32 [N], bool [N]; plus score_noise/map/depth

    python serving_loader.py /path/to/export crops.npy     # prints JSON lines (a smoke test)
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

import numpy as np
import jax
from jax import export as jax_export

FORMAT = "despoof_jax.serving.export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class ServingError(RuntimeError):
    """A broken or incompatible export folder, or an input that does not match its spec."""


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class ServingModel:
    """Calls the exported program: uint8 [N, S, S, 3] -> dict of numpy arrays [N] (see manifest
    "outputs"). N may be any size when the export has a symbolic batch, else one of
    manifest["batch_sizes"] (other sizes are padded to the next exported size and chunked)."""

    def __init__(self, directory: str):
        self.directory = directory
        path = os.path.join(directory, MANIFEST)
        try:
            with open(path) as f:
                self.manifest = json.load(f)
        except (OSError, ValueError) as e:
            raise ServingError(f"{path}: cannot read the export manifest ({e})") from e
        m = self.manifest
        if m.get("format") != FORMAT or m.get("format_version") != FORMAT_VERSION:
            raise ServingError(f"{path}: format {m.get('format')!r} version "
                               f"{m.get('format_version')!r}; this loader reads {FORMAT!r} "
                               f"version {FORMAT_VERSION}")
        self.image_size = int(m["image_size"])
        self.threshold = float(m["threshold"])
        if not m.get("artifacts"):
            raise ServingError(f"{path}: lists no artifact; export the model again")
        backend = jax.default_backend()
        platforms = [str(x).lower() for x in m.get("platforms", [])]
        if platforms and backend not in platforms and not (backend == "gpu" and
                                                             {"cuda", "rocm"} & set(platforms)):
            raise ServingError(f"{path}: exported for {platforms}, but JAX runs on {backend!r} "
                               "here; set JAX_PLATFORMS to one of them, or export again with "
                               f"platforms including {backend!r} (despoof export --platforms)")
        self._exported = {}
        for art in m["artifacts"]:
            apath = os.path.join(directory, art["file"])
            if not os.path.isfile(apath):
                raise ServingError(f"{apath}: artifact listed in the manifest is missing")
            digest = _sha256(apath)
            if digest != art["sha256"]:
                raise ServingError(f"{apath}: sha256 {digest} does not match the manifest's "
                                   f"{art['sha256']}; the file is corrupt or was replaced")
            with open(apath, "rb") as f:
                self._exported[art["batch"]] = jax_export.deserialize(bytearray(f.read()))
        self._symbolic = "N" in self._exported
        self._sizes = sorted(b for b in self._exported if b != "N")

    def _check(self, rgb) -> np.ndarray:
        a = np.asarray(rgb)
        s = self.image_size
        if a.ndim == 3:
            a = a[None]
        if a.ndim != 4 or a.shape[1:] != (s, s, 3) or a.dtype != np.uint8:
            raise ServingError(f"input {a.dtype}{list(a.shape)}; expected uint8 [N, {s}, {s}, 3] "
                               "RGB face crops (resize them to the model's image_size first)")
        if len(a) == 0:
            raise ServingError("input has no images (N = 0)")
        return a

    def __call__(self, rgb) -> dict:
        a = self._check(rgb)
        if self._symbolic:
            return {k: np.asarray(v) for k, v in self._exported["N"].call(a).items()}
        parts, biggest = [], self._sizes[-1]
        for start in range(0, len(a), biggest):
            chunk = a[start:start + biggest]
            n = len(chunk)
            b = next(size for size in self._sizes if size >= n)
            if b > n:
                chunk = np.concatenate([chunk, np.zeros((b - n,) + chunk.shape[1:], np.uint8)])
            out = self._exported[b].call(chunk)
            parts.append({k: np.asarray(v)[:n] for k, v in out.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def load(directory: str) -> ServingModel:
    """The exported model in `directory` (checks the format version and the sha256)."""
    return ServingModel(directory)


def main(argv) -> int:
    if len(argv) != 3:
        print("usage: python serving_loader.py EXPORT_DIR CROPS.npy  (uint8 [N, S, S, 3])",
              file=sys.stderr)
        return 2
    model = load(argv[1])
    out = model(np.load(argv[2]))
    for i in range(len(out["score"])):
        print(json.dumps({k: v[i].item() for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

__all__ = ["load", "ServingModel", "ServingError"]
