"""Command line: score face crops, or export a model for serving.

    python -m despoof_jax.cli score PATH... --model WORKDIR [--csv OUT] [--json OUT]
                                  [--visualize DIR] [--every N] [--allow-upsample] [--allow-gray]
    python -m despoof_jax.cli export --model WORKDIR --out DIR [--batch-sizes 1,8,32]

PATH is an image, a folder (walked recursively in sorted order; files with unknown extensions
are listed as skipped) or a video / animated GIF (every N-th frame is scored, `--every`). Without
--csv/--json a table is printed. A bad input (not an image, truncated, grayscale, too small, ...)
is reported on stderr with the reason and the others are still scored; the exit status is 1 if
any input failed, 2 if the model cannot be loaded, 0 otherwise.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import warnings
from typing import Optional

import numpy as np

from despoof_jax import imageio
from despoof_jax.imageio import InputError

COLUMNS = ("path", "frame", "score", "decision", "score_noise", "score_map", "score_depth")
CHUNK = 64   # crops held in memory before a batch is scored


def _name(path: str, frame: Optional[int]) -> str:
    return path if frame is None else f"{path}#frame={frame}"


def _png_name(index: int, path: str, frame: Optional[int]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(path))[0])
    return f"{index:05d}_{stem}" + ("" if frame is None else f"_f{frame:06d}") + ".png"


def _visualize(d, i: int, title: str, path: str) -> None:
    from despoof_jax import analysis, plots  # noqa: PLC0415 (matplotlib only when asked)
    noise = d.noise_rgb[i]
    depth = d.depth[i, ..., 0]
    row = [d.input_rgb[i], plots.noise_to_image(noise), d.live_image[i],
           np.clip(depth, 0.0, 1.0), analysis.fft_log_magnitude(noise)]
    plots.image_grid([row], [title], ["input", "noise x5+128", "live = I - N", "depth",
                                      "|FFT| noise"], path)


class _Scorer:
    """Scores crops in chunks, keeps rows and failures, writes visualisations."""

    def __init__(self, model, args):
        self.model, self.args = model, args
        self.rows, self.failures = [], []
        self.pending = []   # (path, frame, prepared [S, S, 3])
        self.count = 0

    def add(self, path: str, frame: Optional[int], img: np.ndarray):
        name = _name(path, frame)
        try:
            prepared = self.model.prepare([img], names=[name],
                                          allow_upsample=self.args.allow_upsample)[0]
        except InputError as e:
            self.fail(name, str(e))
            return
        self.pending.append((path, frame, prepared))
        if len(self.pending) >= CHUNK:
            self.flush()

    def fail(self, name: str, message: str):
        message = message if message.startswith(name) else f"{name}: {message}"
        self.failures.append((name, message))
        print(f"FAILED {message}", file=sys.stderr)

    def flush(self):
        if not self.pending:
            return
        batch = np.stack([p[2] for p in self.pending])
        vis = self.args.visualize
        d = self.model.decompose(batch) if vis else self.model.score(batch)
        for i, (path, frame, _) in enumerate(self.pending):
            row = {"path": path, "frame": frame, "score": float(d.score[i]),
                   "decision": "attack" if d.is_attack[i] else "live",
                   **{f"score_{c}": float(d.components[c][i]) for c in ("noise", "map", "depth")}}
            self.rows.append(row)
            if vis:
                out = os.path.join(vis, _png_name(self.count, path, frame))
                _visualize(d, i, f"{os.path.basename(_name(path, frame))}: {row['decision']} "
                                 f"({row['score']:.3g})", out)
            self.count += 1
        self.pending = []


def _print_table(rows: list[dict], model) -> None:
    print(f"# model {model.workdir}: fusion={model.fusion}, threshold={model.threshold:.6g} "
          "(attack iff score >= threshold)")
    width = max([len(_name(r["path"], r["frame"])) for r in rows] + [5])
    print(f"{'input':<{width}}  {'score':>9}  {'decision':<8}  {'noise':>9}  {'map':>9}  "
          f"{'depth':>9}")
    for r in rows:
        print(f"{_name(r['path'], r['frame']):<{width}}  {r['score']:>9.4f}  {r['decision']:<8}  "
              f"{r['score_noise']:>9.4f}  {r['score_map']:>9.4f}  {r['score_depth']:>9.4f}")


def _write_outputs(args, rows, failures, skipped, model):
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if r[k] is None else r[k]) for k in COLUMNS})
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": model.workdir, "fusion": model.fusion,
                       "threshold": model.threshold, "results": rows,
                       "failures": [{"input": n, "error": m} for n, m in failures],
                       "skipped": skipped}, f, indent=2)
    if not (args.csv or args.json):
        _print_table(rows, model)


def cmd_score(args) -> int:
    from despoof_jax import api  # noqa: PLC0415 (jax and the nets load after argument parsing)
    try:
        model = api.load(args.model, max_batch=args.max_batch)
    except api.ModelLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.visualize:
        os.makedirs(args.visualize, exist_ok=True)
    files, errors, skipped = imageio.expand_paths(args.paths)
    scorer = _Scorer(model, args)
    for path, message in errors:
        scorer.fail(path, message)
    for path in skipped:
        print(f"skipped {path}: not an image or video extension", file=sys.stderr)
    for path in files:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                for p, frame, img in imageio.iter_inputs(path, every=args.every,
                                                         allow_gray=args.allow_gray):
                    scorer.add(p, frame, img)
            except InputError as e:
                scorer.fail(path, str(e))
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
    scorer.flush()
    _write_outputs(args, scorer.rows, scorer.failures, skipped, model)
    print(f"{len(scorer.rows)} scored, {len(scorer.failures)} failed, {len(skipped)} skipped",
          file=sys.stderr)
    return 1 if scorer.failures else 0


def cmd_export(args) -> int:
    from despoof_jax import api, export  # noqa: PLC0415
    try:
        model = api.load(args.model)
    except api.ModelLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sizes = None
    if args.batch_sizes:
        sizes = [int(b) for b in args.batch_sizes.split(",")]
    manifest = export.export_model(model, args.out, batch_sizes=sizes,
                                   platforms=args.platforms.split(","))
    print(json.dumps({k: manifest[k] for k in ("image_size", "fusion", "threshold", "batch_mode",
                                               "batch_sizes", "platforms")}))
    print(f"wrote {args.out}: " + ", ".join(a["file"] for a in manifest["artifacts"]) +
          ", manifest.json, serving_loader.py", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m despoof_jax.cli",
                                     description="Face de-spoofing: score crops, export models.")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="score images, folders and videos")
    s.add_argument("paths", nargs="+", metavar="PATH")
    s.add_argument("--model", required=True, help="a training workdir (evaluated)")
    s.add_argument("--csv", help="write results as CSV here instead of printing a table")
    s.add_argument("--json", help="write results (and failures) as JSON here")
    s.add_argument("--visualize", metavar="DIR",
                   help="write one PNG per input: input, noise, live, depth, |FFT| noise")
    s.add_argument("--every", type=int, default=1, help="score every N-th video frame")
    s.add_argument("--allow-upsample", action="store_true",
                   help="score crops smaller than the model's input (upsampled; less reliable)")
    s.add_argument("--allow-gray", action="store_true",
                   help="score grayscale images (gray replicated into RGB; less reliable)")
    s.add_argument("--max-batch", type=int, default=32, help="largest compiled batch")
    s.set_defaults(func=cmd_score)
    e = sub.add_parser("export", help="export a StableHLO serving artifact")
    e.add_argument("--model", required=True, help="a training workdir (evaluated)")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--batch-sizes", default="",
                   help="comma-separated fixed batch sizes (default: one symbolic batch)")
    e.add_argument("--platforms", default="cpu", help="comma-separated, e.g. cpu,cuda")
    e.set_defaults(func=cmd_export)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "every", 1) < 1:
        print(f"error: --every {args.every}; expected a positive frame step", file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    from despoof_jax.xla_flags import use_cpu_kernels
    use_cpu_kernels("ynn")   # before the JAX backend starts; see despoof_jax/xla_flags.py
    sys.exit(main())
