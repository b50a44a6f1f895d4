"""Rule N (README, "Native-resolution tiles ... registered"): one model's two input policies on
crops captured by a sensor finer than its input.

World wide4 draws each session's capture scale (1-3x the crop) and renders and captures the whole
frame at that size before shrinking it to the crop (`synthetic.capture_example`). This tool takes
the sessions of a wide4 build's split *before* the shrink, as a user's larger crop would arrive,
and scores each one twice through the public API: with the input policy "resize" (`score`
shrinks it, giving exactly the wide4 record) and with "tiles" (S x S tiles at its own resolution,
`serving.model.tiles`). Both at the model's own threshold; the report holds each policy's
metrics with identity-bootstrap intervals and the paired ACER difference (tiles - resize,
`metrics.paired_acer_difference`) on the whole split and on its direct subset (a person, no photo
source: `photo_source = -1`, `scene_content = -1`).

    python -m despoof_jax.tools.capture_tiles --model pretrained --out DIR \\
        [--builder-config wide4_s128_h60] [--split test] [--workers 2] [--limit N]

Scores go to DIR/scores.csv row by row as they are made, and a run killed half way goes on from
the rows already there; DIR/report.json holds the figures. Rendering costs ~460 CPU-s per 1000
sessions at 128 px (the capture sizes average ~2x the crop), scoring the tiles ~5 forward
passes a session.
"""
from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import pathlib
import sys
from typing import Optional, Sequence

import numpy as np

from despoof_jax.data import synthetic
from despoof_jax.data.builders import synthetic_spoof as ss
from despoof_jax.evaluation import metrics, subsets
from despoof_jax.serving import model as model_lib

COLUMNS = ("index", "identity", "species", "label", "photo_source", "scene_content", "side",
           "n_tiles", "score_resize", "score_tiles")
CHUNK = 32          # sessions scored together
DIRECT = {"photo_source": -1, "scene_content": -1}


def _capture(job) -> tuple[int, dict]:
    """(plan index, capture_example of the entry): module level for worker processes."""
    config, index, entry = job
    ex = synthetic.capture_example(seed=config.seed, size=config.size,
                                   difficulty=config.difficulty, **entry._asdict())
    keep = {k: int(ex[k]) for k in synthetic.WIDE_FIELDS}
    return index, {"image": np.asarray(ex["image"], np.uint8), **keep}


def _done(path: pathlib.Path) -> dict[int, dict]:
    """Rows already in scores.csv (a killed run goes on from them)."""
    if not path.exists():
        return {}
    with path.open() as f:
        rows = list(csv.DictReader(f))
    if rows and list(rows[0]) != list(COLUMNS):
        raise ValueError(f"{path} has columns {list(rows[0])}, not {list(COLUMNS)}: another "
                         "tool's file? Pass an empty --out")
    return {int(r["index"]): r for r in rows}


def score_split(model, config, split: str, out: pathlib.Path, *, workers: int = 1,
                limit: Optional[int] = None, log=print) -> list[dict]:
    """Scores `config`'s `split` at its sessions' capture sizes by both policies; rows in plan
    order (see the module docstring)."""
    if config.world != "wide4":
        raise ValueError(f"builder config {config.name!r} is world {config.world!r}; the capture "
                         "sizes are world wide4's (a wide4 build, e.g. wide4_s128_h60)")
    if int(config.size) != model.image_size:
        raise ValueError(f"{config.name} makes {config.size} px crops; the model reads "
                         f"{model.image_size} px")
    plan = ss.example_plan(config, split)[:limit]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "scores.csv"
    done = _done(path)
    todo = [(config, i, e) for i, e in enumerate(plan) if i not in done]
    log(f"{config.name} {split}: {len(plan)} sessions, {len(done)} scored before, "
        f"{len(todo)} to go")
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        if new:
            writer.writeheader()
        pool = (multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None)
        try:
            it = (pool.imap(_capture, todo, chunksize=4) if pool else map(_capture, todo))
            pending = []
            for k, item in enumerate(it, 1):
                pending.append(item)
                if len(pending) == CHUNK or k == len(todo):
                    for row in _score_chunk(model, plan, pending):
                        writer.writerow(row)
                        done[row["index"]] = row
                    f.flush()
                    pending = []
                    log(f"  {len(done)}/{len(plan)}")
        finally:
            if pool:
                pool.terminate()
    return [done[i] for i in range(len(plan))]


def _score_chunk(model, plan, pending) -> list[dict]:
    images = [p[1]["image"] for p in pending]
    resize = model.score(images, input_policy="resize").score
    tiled = model.score(images, input_policy="tiles").score
    rows = []
    for j, (index, ex) in enumerate(pending):
        e = plan[index]
        side = ex["image"].shape[0]
        n = len(model_lib.tile_origins(side, model.image_size)) ** 2
        rows.append({"index": index, "identity": e.identity, "species": e.species,
                     "label": int(e.species > 0), "photo_source": ex["photo_source"],
                     "scene_content": ex["scene_content"], "side": side, "n_tiles": n,
                     "score_resize": repr(float(resize[j])), "score_tiles": repr(float(tiled[j]))})
    return rows


def report(rows: Sequence[dict], threshold: float, *, n_boot: int = 2000) -> dict:
    """Each policy's metrics and the paired difference, on the whole split and the direct
    subset, at one `threshold` (the model's)."""
    col = {k: np.asarray([float(r[k]) for r in rows]) for k in COLUMNS}
    labels, species = col["label"].astype(int), col["species"].astype(int)
    identity = col["identity"].astype(int)
    names = dict(enumerate(synthetic.SPECIES))
    out = {"threshold": threshold, "sessions": len(rows),
           "side_median": float(np.median(col["side"])),
           "tiles_mean": float(np.mean(col["n_tiles"]))}
    direct = np.all([col[k] == v for k, v in DIRECT.items()], axis=0)
    for name, keep in (("whole", np.ones(len(rows), bool)), ("direct", direct)):
        sets = {p: metrics.ScoreSet(col[f"score_{p}"][keep], labels[keep], species[keep],
                                    species_names=names) for p in ("resize", "tiles")}
        part = {p: subsets.at_threshold(s, identity[keep], threshold, n_boot=1000)
                for p, s in sets.items()}
        part["paired_tiles_minus_resize"] = metrics.paired_acer_difference(
            sets["tiles"], sets["resize"], identity[keep], threshold, threshold, n_boot=n_boot)
        part["records"] = int(keep.sum())
        out[name] = part
    return out


def rule_n(r: dict) -> dict:
    """Rule N's two parts as registered: (a) whole split, one-sided upper bound < 0; (b) direct
    subset, upper bound <= +2.0 points."""
    a = r["whole"]["paired_tiles_minus_resize"]["upper_one_sided"]
    b = r["direct"]["paired_tiles_minus_resize"]["upper_one_sided"]
    return {"a_upper": a, "a_passes": a < 0, "b_upper": b, "b_passes": b <= 0.02,
            "ships": bool(a < 0 and b <= 0.02)}


def _line(name: str, part: dict) -> str:
    p = part["paired_tiles_minus_resize"]
    f = {k: part[k] for k in ("resize", "tiles")}
    return (f"{name} ({part['records']} records): ACER resize {100 * f['resize']['acer']:.1f} % "
            f"(AUC {f['resize']['auc']:.3f}), tiles {100 * f['tiles']['acer']:.1f} % (AUC "
            f"{f['tiles']['auc']:.3f}, APCER {100 * f['tiles']['apcer']:.1f}, BPCER "
            f"{100 * f['tiles']['bpcer']:.1f}); tiles - resize {100 * p['diff']:+.1f} points "
            f"[{100 * p['ci'][0]:+.1f}, {100 * p['ci'][1]:+.1f}], one-sided upper "
            f"{100 * p['upper_one_sided']:+.1f} (tiles lower in {100 * p['p_a_better']:.1f} %)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--builder-config", default="wide4_s128_h60")
    ap.add_argument("--split", default="test")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--limit", type=int, default=None, help="the first N sessions only")
    args = ap.parse_args(argv)
    config = ss.synthetic_spoof.as_config(args.builder_config)
    model = model_lib.load(args.model)
    out = pathlib.Path(args.out)
    rows = score_split(model, config, args.split, out, workers=args.workers, limit=args.limit)
    r = report(rows, model.threshold)
    r.update(model=args.model, builder_config=args.builder_config, split=args.split,
             rule_n=rule_n(r))
    (out / "report.json").write_text(json.dumps(r, indent=1))
    print(_line("whole", r["whole"]))
    print(_line("direct", r["direct"]))
    print(f"Rule N: {r['rule_n']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
