"""A decision threshold from the deployment's own bona fide captures (issue #14, after round 4).

    despoof calibrate --model pretrained --bona-fide CROPS_DIR [--bpcer 0.05]            # report
    despoof calibrate --model WORKDIR --bona-fide CROPS_DIR --bpcer 0.05 --write          # store
    despoof calibrate --model pretrained --bona-fide CROPS_DIR --out MY_MODEL               # a copy
    report = threshold_for(despoof_jax.load("pretrained"), crops)                           # library

Why: the shipped threshold comes from the synthetic world. On real photographs the model ranks
well (AUC 0.95-0.98 on three photo sets) but where live faces land depends on the photo
collection: candidate 7's mean live score was -1.94, -2.19 and -0.93 on three sets, a spread wider
than the gap between live faces and attacks on any one set (README, "Fourth round"). No fixed
threshold suits all three, and no simulator foresaw the collection's level. What a deployment
does have is bona fide captures from its own cameras. A threshold can be set from those alone: at
the highest score that rejects at most a `bpcer` fraction of them (ISO/IEC 30107-3's BPCER at a
fixed operating point), so the attacks that score above it are caught, and the user's faces pass.

Inputs are what `despoof score` takes (face crops: images, or videos frame by frame), each
scored once through the public API. The report gives the number of captures, the threshold, the
BPCER reached on them with a 95 % Clopper-Pearson upper bound (so a small folder says how little
it proves), and the BPCER the model's current threshold would have. Frames of one video or shots
of one person are not independent: the bound assumes they are, so it is optimistic for such folders.
`--held-out file|folder` measures what the bound cannot: the BPCER on people the threshold was not
set on. Each video (file) or each person's folder is left out in turn, the threshold set on the
others, and the share of the left-out captures it rejects pooled over the groups, with a 95 %
interval from resampling the groups (README, "A threshold from your own bona fide captures").
"""
from __future__ import annotations

import json
import math
import pathlib
import shutil
import sys

import numpy as np
from scipy import stats as scipy_stats

from despoof_jax.evaluation import metrics
from despoof_jax.serving import inputs
from despoof_jax.serving import model as serving_model
from despoof_jax.training.workdir import replace_text

CRITERION = "bona_fide_bpcer"
MIN_CAPTURES = 20   # fewer cannot tell a 5 % BPCER from 0 % or 20 %


def threshold_at_bpcer(live: np.ndarray, bpcer: float) -> float:
    """The threshold t (decision: attack iff score >= t) rejecting at most floor(bpcer * n) of the
    n bona fide scores `live`, and the lowest such: midway between the highest kept score and the
    lowest rejected one (just above the highest kept score when none may be rejected, or when
    ties at the cut leave nothing to split off)."""
    live = np.sort(np.asarray(live, np.float64))
    if live.ndim != 1 or live.size == 0 or not np.all(np.isfinite(live)):
        raise ValueError("bona fide scores: expected a non-empty vector of finite numbers")
    if not 0.0 <= bpcer < 1.0:
        raise ValueError(f"bpcer={bpcer}; expected a fraction in [0, 1)")
    n = live.size
    m = min(int(math.floor(bpcer * n + 1e-9)), n - 1)   # scores that may be rejected
    top = live[n - m - 1]                                 # the highest score that must pass
    # The library decides in float64 (`DespoofModel.score`), the exported program in float32:
    # the threshold stays above `top` in both (metrics.threshold_between).
    nxt = live[n - m:][live[n - m:] > top]
    if m == 0 or nxt.size == 0:   # none may be rejected, or ties at the cut cannot be split
        return metrics.threshold_between(top)
    return metrics.threshold_between(top, nxt[0])


HELD_OUT = ("file", "folder")


def capture_groups(files, by: str) -> list[str]:
    """The group of each capture, from the file it was read from (`read_captures`' `files`: a
    video's frames share one): by "file", that file (a video's frames together); by "folder",
    the folder holding it (one person's shots together, for captures kept one folder a person)."""
    if by not in HELD_OUT:
        raise ValueError(f"held-out groups by {by!r}; expected one of {HELD_OUT}")
    return [str(f) for f in files] if by == "file" else [str(pathlib.Path(f).parent)
                                                         for f in files]


def held_out_bpcer(score, groups, bpcer: float, *, draws: int = 1000, seed: int = 0) -> dict:
    """BPCER on captures of groups the threshold did not see: each group left out in turn, the
    threshold at `bpcer` set on the others (`threshold_at_bpcer`, attack iff score >= t), the
    share of the left-out group's captures it rejects; pooled over the groups (rejected / n),
    with a 95 % percentile interval from `draws` resamples of the groups (the thresholds kept).
    Every fold must keep MIN_CAPTURES captures to set its threshold on."""
    score = np.asarray(score, np.float64)
    groups = np.asarray([str(g) for g in groups])
    if score.ndim != 1 or groups.shape != score.shape:
        raise ValueError(f"held-out BPCER: {score.shape} scores but {groups.shape} group labels")
    names, idx = np.unique(groups, return_inverse=True)
    if names.size < 2:
        raise ValueError(f"held-out BPCER: one group ({names[0]!r}); leaving it out leaves no "
                         "captures to set the threshold on (pass captures of several videos or "
                         "people)")
    rejected = np.zeros(names.size, np.int64)
    counts = np.bincount(idx, minlength=names.size)
    thresholds = []
    for g in range(names.size):
        rest = score[idx != g]
        if rest.size < MIN_CAPTURES:
            raise ValueError(f"held-out BPCER: leaving out {names[g]!r} leaves {rest.size} "
                             f"captures; each fold needs at least {MIN_CAPTURES}")
        t = threshold_at_bpcer(rest, bpcer)
        thresholds.append(t)
        rejected[g] = int((score[idx == g] >= t).sum())
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, names.size, (draws, names.size))
    boot = rejected[draw].sum(1) / counts[draw].sum(1)
    return {"groups": int(names.size), "n": int(score.size),
            "bpcer": float(rejected.sum() / score.size),
            "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "fold_thresholds": [float(min(thresholds)), float(max(thresholds))],
            "worst_group": {"group": str(names[np.argmax(rejected / counts)]),
                            "bpcer": float(np.max(rejected / counts))}}


def bpcer_upper(rejected: int, n: int, level: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of a BPCER of `rejected` of `n`."""
    if not 0 <= rejected <= n or n < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"bpcer_upper({rejected}, {n}, level={level}): expected "
                         "0 <= rejected <= n, n >= 1 and a level in (0, 1)")
    if rejected == n:
        return 1.0
    return float(scipy_stats.beta.ppf(level, rejected + 1, n - rejected))


def read_captures(paths, *, every: int = 1, allow_gray: bool = False):
    """-> (names, list of uint8 RGB arrays, failures [(path, message)], files) of every image and
    kept video frame under `paths` (files or folders, as `despoof score` reads them): a name is
    the file's path, `path#frame` for a video frame; `files` the file each was read from."""
    paths_found, errors, skipped = inputs.expand_paths(list(paths))
    failures = list(errors)
    names, images, files = [], [], []
    for path in paths_found:
        try:
            for p, frame, img in inputs.iter_inputs(path, every=every, allow_gray=allow_gray):
                names.append(p if frame is None else f"{p}#{frame}")
                images.append(img)
                files.append(p)
        except inputs.InputError as e:
            failures.append((path, str(e)))
    for path in skipped:
        print(f"skipped {path}: not an image or video extension", file=sys.stderr)
    return names, images, failures, files


def _check(n: int, bpcer: float) -> None:
    if not 0.0 <= bpcer < 1.0:
        raise ValueError(f"bpcer={bpcer}; expected a fraction in [0, 1)")
    if n < MIN_CAPTURES:
        raise ValueError(f"{n} bona fide captures; need at least {MIN_CAPTURES} (a threshold set "
                         "on fewer says little about the BPCER it will have)")


def threshold_for(model, images, bpcer: float = 0.05, *, allow_upsample: bool = False,
                  allow_gray: bool = False, detect_faces: bool = False, groups=None) -> dict:
    """The library form: a loaded model (`despoof_jax.load`) and bona fide face crops (what
    `model.score` takes; photographs with `detect_faces`, as the model will then be used) ->
    a JSON-able report (`threshold`, `bpcer`, `bpcer_upper95`, `n`, the
    current threshold and its BPCER). Set `model.threshold = report["threshold"]` to use it.
    `groups` (a label per image: its video, its person) adds `held_out`, the BPCER on groups the
    threshold was not set on (`held_out_bpcer`)."""
    if groups is not None and len(groups) != len(images):
        raise ValueError(f"{len(groups)} group labels for {len(images)} bona fide captures")
    score = np.asarray(model.score(images, allow_upsample=allow_upsample, allow_gray=allow_gray,
                                   detect_faces=detect_faces).score, np.float64)
    _check(score.size, bpcer)
    t = threshold_at_bpcer(score, bpcer)
    n = score.size
    # Counted as the loaded model decides (`DespoofModel.score`: float64 scores against the
    # float threshold), so `bpcer_at_current` matches its `is_attack`; for the new threshold the
    # float32 count of an exported model is the same (threshold_at_bpcer).
    rejected = int((score >= t).sum())
    current = int((score >= float(model.threshold)).sum())
    report = {"criterion": CRITERION, "fusion": model.fusion, "target_bpcer": bpcer,
              "threshold": t, "n": n, "bpcer": rejected / n,
              "bpcer_upper95": bpcer_upper(rejected, n),
              "current_threshold": float(model.threshold), "bpcer_at_current": current / n,
              "score_quantiles": {q: float(np.quantile(score, q)) for q in (0.05, 0.5, 0.95)}}
    if groups is not None:
        report["held_out"] = held_out_bpcer(score, groups, bpcer)
    return report


def calibrate(model_path: str, paths, bpcer: float = 0.05, *, every: int = 1,
              allow_upsample: bool = False, allow_gray: bool = False,
              detect_faces: bool = False, held_out: str | None = None) -> dict:
    """`threshold_for` on the bona fide captures under `paths` (files or folders), with the model
    at `model_path`; the report also names the model and the captures. `held_out` ("file" or
    "folder", `capture_groups`) adds the BPCER on videos or people left out of the threshold."""
    names, images, failures, files = read_captures(paths, every=every, allow_gray=allow_gray)
    if failures:
        raise ValueError("bona fide captures that cannot be read: " + "; ".join(
            f"{p}: {m}" for p, m in failures))
    _check(len(images), bpcer)   # before loading the model
    groups = None if held_out is None else capture_groups(files, held_out)
    if groups is not None and len(set(groups)) < 2:
        raise ValueError(f"--held-out {held_out}: the captures are all of one {held_out} "
                         f"({groups[0]}); leave-one-out needs several")
    report = threshold_for(serving_model.load(model_path), images, bpcer,
                           allow_upsample=allow_upsample, allow_gray=allow_gray,
                           detect_faces=detect_faces, groups=groups)
    if groups is not None:
        report["held_out"] = {"by": held_out, **report["held_out"]}
    return {"model": model_path, **report, "detect_faces": detect_faces, "captures": names}


def store(report: dict, model_json) -> dict:
    """Makes the report's threshold the model's decision threshold in `model_json` (a path with
    read_text / write_text: `serving.model.model_json_path`); the threshold it replaces stays as
    `dev_threshold` if none is there yet."""
    return store_threshold(model_json, report, "captures", CRITERION, bona_fide={
        **{k: report[k] for k in ("target_bpcer", "n", "bpcer", "bpcer_upper95")},
        **({"held_out": report["held_out"]} if "held_out" in report else {}),
        "detect_faces": bool(report.get("detect_faces", False))})


def store_threshold(model_json, report: dict, scored: str, criterion: str, **record) -> dict:
    """Makes `report["threshold"]` the decision threshold in `model_json` under `criterion`, with
    `record` beside it; the threshold it replaces stays as `dev_threshold` if none is there yet.
    `scored` names what the report scored, for the error when its decision score is not the
    model's."""
    info = json.loads(model_json.read_text())
    if info.get("fusion") != report["fusion"]:
        raise ValueError(f"{model_json}: decision score {info.get('fusion')!r}, but the {scored} "
                         f"were scored with {report['fusion']!r}")
    info.setdefault("dev_threshold", info["threshold"])
    info.setdefault("dev_fusion", info["fusion"])
    info.update(threshold=report["threshold"], criterion=criterion, **record)
    # all at once: a kill mid-write must not leave a model whose model.json no longer parses
    replace_text(model_json, json.dumps(info, indent=1) + "\n")
    return info


def print_report(report: dict, json_path) -> None:
    """Prints a calibration report as JSON, and writes it to `json_path` too if one is given."""
    text = json.dumps(report, indent=1)
    print(text)
    if json_path:
        pathlib.Path(json_path).write_text(text + "\n")


def check_copy(model_path: str, out) -> pathlib.Path:
    """The folder of the packaged model ("pretrained" or a packaged folder) to copy to `out`;
    ValueError if it is not one or `out` holds files already."""
    src = serving_model.pretrained_dir() if model_path == serving_model.PRETRAINED else \
        pathlib.Path(model_path)
    if not serving_model.is_packaged(src):
        raise ValueError(f"--out copies a packaged model ('pretrained' or a folder holding "
                         f"{serving_model.PACKAGED_FILES}); {model_path!r} is not one (use "
                         "--write to store the threshold in a workdir)")
    if pathlib.Path(out).exists() and any(pathlib.Path(out).iterdir()):
        raise ValueError(f"--out {out}: exists and is not empty")
    return src


def copy_packaged(model_path: str, out) -> pathlib.Path:
    """Copies a packaged model to the new folder `out`, so that a threshold can be stored there
    without touching the original; -> the copy's model.json."""
    src = check_copy(model_path, out)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in serving_model.PACKAGED_FILES:
        shutil.copyfile(src / name, out / name)
    return out / "model.json"


def main(args) -> int:
    """`despoof calibrate --bona-fide ...`: prints the report; --write stores the threshold in the
    model, --out in a copy of it."""
    if (args.fusions or args.sources != "render" or args.data_dir
            or args.builder_config != "wide2_s128"):
        raise ValueError("--bona-fide sets the threshold of the model's own decision score from "
                         "real captures; --fusions, --sources, --data-dir and --builder-config "
                         "are the simulator's")
    if args.out and args.write:
        raise ValueError("--write stores the threshold in the model itself, --out in a copy: "
                         "give one of them")
    if args.out:   # fail before scoring, not after
        check_copy(args.model, args.out)
    report = calibrate(args.model, args.bona_fide, args.bpcer, every=args.every,
                       allow_upsample=args.allow_upsample, allow_gray=args.allow_gray,
                       detect_faces=args.detect_faces, held_out=args.held_out)
    text = json.dumps({k: v for k, v in report.items() if k != "captures"}, indent=1)
    print(text)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.write:
        store(report, serving_model.model_json_path(args.model))
    if args.out:
        store(report, copy_packaged(args.model, args.out))
        print(f"wrote {args.out}: the model with this threshold (load it with "
              f"despoof_jax.load({str(args.out)!r}))", file=sys.stderr)
    return 0
