"""Pack a trained workdir into the small packaged form that `despoof_jax.load` reads.

    python -m despoof_jax.serving.pretrained WORKDIR [--out DIR] [--dtype float16]

Default --out is the package's own `despoof_jax/serving/pretrained/` (what `load("pretrained")`
reads; the README's model card says which run it is). Written: config.json (the run's config),
model.json (eval/model.json: fusion, fusion statistics, dev threshold; plus provenance and the
float16 check below) and weights.npz (DS Net and DQ Net params and BatchNorm statistics; VQ Net and
optimizer state are training-only and left out).

float16 weights halve the size; `pack` scores a fixed set of synthetic crops with the float32
workdir model and with the packed one and records the largest score difference and whether any
decision changed (`model.json: packed.max_score_diff, packed.decisions_changed`).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import numpy as np
from flax import traverse_util

from despoof_jax.serving import model as model_lib


def _flat(net) -> dict:
    tree = {"params": jax.device_get(net.params), "batch_stats": jax.device_get(net.batch_stats)}
    return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def check_crops(size: int, n: int = 16, seed: int = 0) -> np.ndarray:
    """uint8 [n, size, size, 3]: smooth random colour fields with fine noise, a fixed probe set."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, (n, 4, 4, 3))
    big = np.repeat(np.repeat(low, size // 4, 1), size // 4, 2)
    return np.clip(big + rng.normal(0, 12, big.shape), 0, 255).astype(np.uint8)


def pack(workdir: str, out_dir=None, *, dtype: str = "float16") -> dict:
    """Writes the packaged form of `workdir` to `out_dir` (default: the package's pretrained/);
    returns the model.json written."""
    out = pathlib.Path(out_dir) if out_dir else model_lib.pretrained_dir()
    source = model_lib.load(workdir)
    wd = model_lib.find_workdir(workdir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {f"{net}/{k}": v.astype(dtype) for net, tree in (("ds", source.ds), ("dq", source.dq))
              for k, v in _flat(tree).items()}
    with (out / "weights.npz").open("wb") as f:
        np.savez_compressed(f, **arrays)
    config = json.loads(wd.config_path.read_text())
    # Paths of the machine that trained it mean nothing where the package is installed.
    config["data"].update(data_dir="", manual_dir="")
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    info = json.loads(wd.model_json.read_text())
    (out / "model.json").write_text(json.dumps(info, indent=1) + "\n")
    packed = model_lib.load_packaged(out)
    crops = check_crops(source.image_size)
    a, b = source.score(crops), packed.score(crops)
    info["packed"] = {"weights_dtype": dtype, "source_workdir": str(wd.root),
                      "max_score_diff": float(np.max(np.abs(a.score - b.score))),
                      "decisions_changed": int(np.sum(a.is_attack != b.is_attack)),
                      "probe": "serving.pretrained.check_crops(image_size), 16 crops"}
    (out / "model.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir")
    ap.add_argument("--out", default="", help="default: the package's serving/pretrained/")
    ap.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    args = ap.parse_args(argv)
    info = pack(args.workdir, args.out or None, dtype=args.dtype)
    print(json.dumps(info["packed"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
