"""Pack a trained workdir into the small packaged form that `despoof_jax.load` reads.

    python -m despoof_jax.serving.pretrained WORKDIR [--out DIR] [--dtype float16]
                                             [--allow-changed-decisions] [--allow-runaway]

Default --out is the package's own `despoof_jax/serving/pretrained/` (what `load("pretrained")`
reads; the README's model card says which run it is). Written: config.json (the run's config),
model.json (eval/model.json: fusion, fusion statistics, dev threshold; plus provenance and the
float16 check below) and weights.npz (DS Net and DQ Net params and BatchNorm statistics; VQ Net and
optimizer state are training-only and left out).

float16 weights halve the size; `pack` scores a fixed set of synthetic crops with the float32
workdir model and with the packed one and records the largest score difference, whether any
decision changed and the probes' smallest distance to the threshold (`model.json: packed.
max_score_diff, decisions_changed, min_probe_margin`). A float16 copy that decides any probe
crop differently, or moves any probe's score by more than `MAX_SCORE_DIFF` (the probes may all
sit far from the threshold, so an unchanged decision alone proves little), is refused (nothing
is installed) unless --allow-changed-decisions says so; --dtype float32 keeps the weights exact.

The run's stage-2 log is checked for the noise runaway (`losses.noise_runaway`: a logged
noise_peak above sqrt(HW) or J_r below -sqrt(HW), DS Net's noise outside the image range) and
the result recorded
(`model.json: packed.training_check`); such a model is not eligible to ship (README, "Reading of
the paper": repetitive loss), so packing one into the package's own folder is refused unless
--allow-runaway says so. Packing it into another folder, to score it, records it and goes on.

The three files are bound together: model.json, written last, records the sha256 of the other
two (`packed.sha256`), and `load` refuses a folder whose files do not match, e.g. one left by a
pack killed between its file moves.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile

import jax
import numpy as np
from flax import traverse_util

from despoof_jax.serving import model as model_lib
from despoof_jax.training import losses, observe


def _flat(net) -> dict:
    tree = {"params": jax.device_get(net.params), "batch_stats": jax.device_get(net.batch_stats)}
    return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


def check_crops(size: int, n: int = 16, seed: int = 0) -> np.ndarray:
    """uint8 [n, size, size, 3]: smooth random colour fields with fine noise, a fixed probe set."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, (n, 4, 4, 3))
    cell = -(-size // 4)   # the 4 x 4 fields cover the crop at any size, then cut to it
    big = np.repeat(np.repeat(low, cell, 1), cell, 2)[:, :size, :size]
    return np.clip(big + rng.normal(0, 12, big.shape), 0, 255).astype(np.uint8)


# Largest fused-score change float16 may cause on a probe (fused scores are in dev standard
# deviations; the shipped model's float16 copy moves them by ~5e-4).
MAX_SCORE_DIFF = 0.01


class PackRefused(ValueError):
    """The packed weights decide differently from the workdir's, or the run's noise ran away
    and the target is the package itself; nothing was installed."""


def training_check(wd, image_size: int) -> dict:
    """What the workdir's stage-2 log says about DS Net's noise: {"log": its path in the workdir
    (None where there is none, e.g. a workdir made from a packed model: nothing was checked),
    "rows": rows read, "bound": sqrt(HW), "noise_runaway": None or the first row's {"step",
    "J_r"[, "noise_peak"]} with noise_peak above bound or J_r below -bound}
    (`losses.noise_runaway`)."""
    path = wd.metrics_log("ds")
    bound = losses.noise_peak_bound(image_size, image_size)
    if not path.exists():
        return {"log": None, "rows": 0, "bound": bound, "noise_runaway": None}
    rows = observe.read_rows(path)
    first = losses.noise_runaway(rows, bound)
    return {"log": "ds/metrics.jsonl", "rows": len(rows), "bound": bound,
            "noise_runaway": None if first is None else {
                "step": int(first["step"]),
                **{k: float(first[k]) for k in ("J_r", "noise_peak") if k in first}}}


def check_packed(packed: dict, *, allow_changed_decisions: bool = False) -> None:
    """Refuses (`PackRefused`) a packed copy whose `packed` record (model.json) says that its
    weights change a probe decision, unless they are float32 or `allow_changed_decisions`."""
    changed = int(packed["decisions_changed"])
    moved = float(packed["max_score_diff"]) > MAX_SCORE_DIFF
    if (changed > 0 or moved) and packed["weights_dtype"] != "float32" and \
            not allow_changed_decisions:
        raise PackRefused(
            f"{packed['weights_dtype']} weights change {changed} of the probe crops' decisions "
            f"and move their scores by up to {packed['max_score_diff']:.4g} (at most "
            f"{MAX_SCORE_DIFF} allowed; {packed['probe']}); nothing was installed. Pack with "
            "--dtype float32, or pass --allow-changed-decisions (allow_changed_decisions=True) "
            "to install it anyway")


def pack(workdir: str, out_dir=None, *, dtype: str = "float16",
         allow_changed_decisions: bool = False, allow_runaway: bool = False) -> dict:
    """Writes the packaged form of `workdir` to `out_dir` (default: the package's pretrained/);
    returns the model.json written. Raises `PackRefused`, leaving `out_dir` as it was, when the
    packed weights change a probe decision (`check_packed`), or when the run's noise ran away
    (`training_check`) and `out_dir` is the package's own folder."""
    final = pathlib.Path(out_dir) if out_dir else model_lib.pretrained_dir()
    source = model_lib.load(workdir)
    wd = model_lib.find_workdir(workdir)
    if final.resolve() == pathlib.Path(wd.root).resolve():
        raise ValueError(f"--out {final} is the workdir itself; pack into another folder")
    check = training_check(wd, source.image_size)
    runaway = check["noise_runaway"]
    if runaway is not None and not allow_runaway and \
            final.resolve() == model_lib.pretrained_dir().resolve():
        raise PackRefused(
            f"{wd.metrics_log('ds')}: DS Net's spoof noise left the image range at step "
            f"{runaway['step']} ({losses.runaway_reading(runaway)}, beyond "
            f"{check['bound']:.0f}); a model "
            "whose noise branch ran away is not eligible to ship (README, \"Reading of the "
            "paper\": repetitive loss), so nothing was installed. Pack it into another folder "
            "(--out) to score it, or pass --allow-runaway (allow_runaway=True)")
    # Written into a sibling folder and moved into place once checked: a failure leaves the
    # previous package whole, never new weights beside old metadata.
    final.parent.mkdir(parents=True, exist_ok=True)
    out = pathlib.Path(tempfile.mkdtemp(prefix=f".{final.name}-packing-", dir=final.parent))
    try:
        return _pack_into(source, wd, out, final, dtype, allow_changed_decisions, check)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _pack_into(source, wd, out: pathlib.Path, final: pathlib.Path, dtype: str,
               allow_changed_decisions: bool, check: dict) -> dict:
    arrays = {f"{net}/{k}": v.astype(dtype) for net, tree in (("ds", source.ds), ("dq", source.dq))
              for k, v in _flat(tree).items()}
    bad = [k for k, v in arrays.items() if not np.all(np.isfinite(v))]
    if bad:
        raise ValueError(f"{dtype} cannot hold these arrays (values overflow): {bad[:5]}; pack "
                         "with --dtype float32")
    with (out / "weights.npz").open("wb") as f:
        np.savez_compressed(f, **arrays)
    config = json.loads(wd.config_path.read_text())
    # Paths of the machine that trained it mean nothing where the package is installed.
    config["data"].update(data_dir="", manual_dir="")
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    info = json.loads(wd.model_json.read_text())
    info.pop("packed", None)   # a record of another pack (a workdir made from a packed model)
    (out / "model.json").write_text(json.dumps(info, indent=1) + "\n")
    packed = model_lib.load_packaged(out)
    crops = check_crops(source.image_size)
    a, b = source.score(crops), packed.score(crops)
    info["packed"] = {"weights_dtype": dtype, "source_workdir": str(wd.root),
                      "max_score_diff": float(np.max(np.abs(a.score - b.score))),
                      "decisions_changed": int(np.sum(a.is_attack != b.is_attack)),
                      "min_probe_margin": float(np.min(np.abs(a.score - source.threshold))),
                      "probe": "serving.pretrained.check_crops(image_size), 16 crops",
                      "training_check": check,
                      "sha256": {n: model_lib.sha256_file(out / n) for n in model_lib.BOUND_FILES}}
    check_packed(info["packed"], allow_changed_decisions=allow_changed_decisions)
    (out / "model.json").write_text(json.dumps(info, indent=1) + "\n")
    if final.exists():   # the package folder holds other files too: replace ours one by one,
        for name in model_lib.BOUND_FILES + ("model.json",):   # model.json (the hashes) last
            os.replace(out / name, final / name)
    else:
        out.rename(final)
    return info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir")
    ap.add_argument("--out", default="", help="default: the package's serving/pretrained/")
    ap.add_argument("--dtype", default="float16", choices=("float16", "float32"))
    ap.add_argument("--allow-changed-decisions", action="store_true",
                    help="install float16 weights even when they change a probe decision")
    ap.add_argument("--allow-runaway", action="store_true",
                    help="install a model whose stage-2 noise left the image range")
    args = ap.parse_args(argv)
    try:
        info = pack(args.workdir, args.out or None, dtype=args.dtype,
                    allow_changed_decisions=args.allow_changed_decisions,
                    allow_runaway=args.allow_runaway)
    except PackRefused as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(info["packed"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
