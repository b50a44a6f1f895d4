"""The `despoof` subcommands' bodies (`cli.py` parses the arguments and picks the XLA:CPU
kernels before this module, and with it JAX, is imported)."""
from __future__ import annotations

import csv
import json
import os
import re
import sys
import warnings
from typing import Optional

import jax
import numpy as np
from absl import logging
from etils import epath

from despoof_jax import config as config_lib
from despoof_jax import experiment
from despoof_jax.data import faces
from despoof_jax.evaluation import analysis, plots
from despoof_jax.evaluation import medium as medium_lib
from despoof_jax.evaluation import report as report_lib
from despoof_jax.evaluation import subsets as subsets_lib
from despoof_jax.serving import export as export_lib
from despoof_jax.serving import inputs
from despoof_jax.serving import model as api
from despoof_jax.serving.inputs import InputError
from despoof_jax.tools import benchmark as benchmark_lib
from despoof_jax.tools import bona_fide, calibration_simulator, cross_simulator, pooled_dev
from despoof_jax.training import loop, observe
from despoof_jax.training.workdir import Workdir, WorkdirNotWritable

# Exit statuses of `despoof train` and `python -m despoof_jax.main` (README, "Pods and faults").
# A stop by a signal or a preemption notice exits with the shell's 128 + signal number after the
# checkpoint is saved: 143 (SIGTERM, preemption) or 130 (SIGINT); rerunning resumes.
EXIT_OK = 0
EXIT_USAGE = 2          # a bad config, or a workdir that cannot take the run (before training)
EXIT_NON_FINITE = 3     # a loss became NaN/inf; the checkpoints before it are kept
EXIT_SIGINT = 128 + 2


class QuietLibraries:
    """Drops orbax's and TFDS's INFO chatter from the log; their warnings still show."""

    def filter(self, record):
        noisy = ("orbax", "tensorflow_datasets", "etils")
        return record.levelno >= 30 or not any(n in record.pathname for n in noisy)


def train(args) -> int:
    """`despoof train`: `experiment.train_and_evaluate` of a config file with overrides."""
    logging.set_verbosity(logging.INFO)
    logging.use_absl_handler()
    logging.get_absl_handler().addFilter(QuietLibraries())
    try:
        config = config_lib.load_file(args.config, args.overrides)
    except (FileNotFoundError, KeyError, ValueError, TypeError, AttributeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    status = join_processes(args.multihost, args.coordinator, args.num_processes,
                            args.process_id, flag_sep="-")
    return status if status != EXIT_OK else run_training(config, args.workdir)


def join_processes(multihost: bool, coordinator: Optional[str], num_processes: Optional[int],
                   process_id: Optional[int], flag_sep: str = "_") -> int:
    """`jax.distributed.initialize` for both training entry points, before any computation.
    coordinator (host:port), num_processes, process_id: None takes them from the environment (a
    TPU pod, SLURM). `flag_sep`: how the entry point spells the flags in its error message
    ("_": --num_processes, main.py; "-": --num-processes, `despoof train`). Returns EXIT_OK, or
    EXIT_USAGE with the reason on stderr when any of them comes without `multihost`."""
    given = {"coordinator": coordinator, "num_processes": num_processes,
             "process_id": process_id}
    named = [f"--{n.replace('_', flag_sep)}" for n, v in given.items() if v is not None]
    if named and not multihost:
        print(f"error: {', '.join(named)} given without --multihost: each process would train "
              "alone into the same workdir", file=sys.stderr)
        return EXIT_USAGE
    if multihost:
        jax.distributed.initialize(coordinator_address=coordinator,
                                   num_processes=num_processes, process_id=process_id)
    return EXIT_OK


def run_training(config, workdir) -> int:
    """`experiment.train_and_evaluate` for the entry points: the summary line on success; one
    line on stderr and the exit status above when the run stops early, not a traceback."""
    logging.info("devices: %d (%d local), process %d of %d", jax.device_count(),
                 jax.local_device_count(), jax.process_index(), jax.process_count())
    loop.route_sigint_to_preemption()
    try:
        out = experiment.train_and_evaluate(config, workdir)
    except loop.Interrupted as e:
        print(f"despoof: {e}", file=sys.stderr, flush=True)
        return e.exit_status
    except KeyboardInterrupt:    # SIGINT outside a training stage (data preparation, evaluation)
        print("despoof: interrupted (SIGINT) outside a training stage; the checkpoints are kept; "
              "run the same command again to resume", file=sys.stderr, flush=True)
        return EXIT_SIGINT
    except loop.NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_NON_FINITE
    except (WorkdirNotWritable, config_lib.ConfigError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    if "eval" in out and jax.process_index() == 0:
        print(json.dumps(summary_line(config, out["eval"])))
    return EXIT_OK


def summary_line(config, table: dict) -> dict:
    """The one-line result a run prints: the default score's test metrics at the dev threshold."""
    how = table.get("default_fusion") or config.eval.fusion
    r = table["fusions"][how]["frame"]
    cell = (lambda v: v["mean"] if isinstance(v, dict) else v)
    return {"protocol": config.data.protocol, "fusion": how,
            **{k: cell(r[k]) for k in ("apcer", "bpcer", "acer", "hter", "auc")}}


def report(args) -> int:
    """`despoof report`: report.md of one or more workdirs."""
    out = args.out or (str(Workdir(args.workdirs[0]).root / "report")
                       if len(args.workdirs) == 1 else "report")
    print(report_lib.build(args.workdirs, out, medium=args.medium))
    return 0


def medium(args) -> int:
    """`despoof medium`: the Sec. 4.4 analysis of each workdir, into its eval/medium/."""
    for w in args.workdirs:
        wd = Workdir(w)
        r = medium_lib.analyze(wd.read_config(), wd, max_per_species=args.max_per_species)
        print(json.dumps({"workdir": w, **{k: r[k].get("accuracy") for k in ("svm_3", "svm_5")}}))
    return 0


def crosscheck(args) -> int:
    """`despoof crosscheck`: the cross-simulator check on real photographs."""
    try:
        return cross_simulator.check(args)
    except (ValueError, FileNotFoundError, api.ModelLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def calibrate(args) -> int:
    """`despoof calibrate`: the decision threshold from the held-out calibration simulator, or
    (--bona-fide) from the deployment's own bona fide captures. --write into the model shipped
    inside the package is refused before anything is scored (`api.model_json_path`)."""
    try:
        if args.write:
            path = api.model_json_path(args.model)
            if not path.exists():   # e.g. a baseline's workdir: no decision to store a threshold in
                raise api.ModelLoadError(f"{path} is missing: --write stores the threshold in an "
                                         "evaluated de-spoofing model's model.json")
        if args.bona_fide is not None and args.dev_splits is not None:
            raise ValueError("--bona-fide and --dev-splits are two ways to set the threshold: "
                             "give one of them")
        if args.scores_dir and args.dev_splits is None:
            raise ValueError("--scores-dir keeps the scores of --dev-splits")
        if args.where and args.dev_splits is None:
            raise ValueError("--where selects the records of --dev-splits")
        if args.held_out and args.bona_fide is None:
            raise ValueError("--held-out leaves videos or people out of a --bona-fide threshold")
        if args.bona_fide is not None:
            return bona_fide.main(args)
        if args.dev_splits is not None:
            return pooled_dev.main(args)
        return calibration_simulator.main(args)
    except (ValueError, FileNotFoundError, api.ModelLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _with_policy(model, args):
    """`model` with --input-policy applied, where one was given."""
    if args.input_policy:
        model.input_policy = args.input_policy
    return model


def subset(args) -> int:
    """`despoof subset`: a run's decision on the test records its metadata selects."""
    try:
        bins = subsets_lib.parse_bins(args.bins)
        subsets_lib.check_options(args.workdir, args.model, args.by, args.builder_config,
                                  args.data_dir, args.scores, args.versus, args.versus_scores,
                                  bins, args.input_policy)
        r = subsets_lib.run(args.workdir, args.where, args.by, args.split, args.draws,
                            model=args.model and _with_policy(api.load(args.model), args),
                            builder_config=args.builder_config, data_dir=args.data_dir,
                            scores_path=args.scores,
                            versus=args.versus and _with_policy(api.load(args.versus), args),
                            versus_scores=args.versus_scores, model_name=args.model or "",
                            versus_name=args.versus or "", bins=bins)
    except (ValueError, FileNotFoundError, api.ModelLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(subsets_lib.format_report(r))
    if args.json:
        epath.Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


def benchmark(args) -> int:
    """`despoof benchmark`: prints the figures (and writes --json)."""
    benchmark_lib.run(args)
    return 0


COLUMNS = ("path", "frame", "score", "decision", "score_noise", "score_map", "score_depth")
FACE_COLUMNS = ("face_cx", "face_cy", "face_side")   # --detect-faces: the square scored
CHUNK = 64   # crops held in memory before a batch is scored


def _name(path: str, frame: Optional[int]) -> str:
    return path if frame is None else f"{path}#frame={frame}"


def _png_name(index: int, path: str, frame: Optional[int]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.splitext(os.path.basename(path))[0])
    return f"{index:05d}_{stem}" + ("" if frame is None else f"_f{frame:06d}") + ".png"


def _visualize(d, i: int, title: str, path: str) -> None:
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
        self.pending = []   # (path, frame, prepared [S, S, 3], face square or None)
        self.count = 0

    def add(self, path: str, frame: Optional[int], img: np.ndarray):
        name = _name(path, frame)
        options = dict(name=name, allow_upsample=self.args.allow_upsample,
                       allow_gray=self.args.allow_gray)
        tiled = self.model.input_policy == "tiles"   # larger crops kept at their resolution
        try:
            if self.args.detect_faces:
                prepared, box = api.prepare_face(img, self.model.image_size, native=tiled,
                                                 **options)
            else:
                prepare = api.prepare_native if tiled else api.prepare_image
                prepared, box = prepare(img, self.model.image_size, **options), None
        except InputError as e:
            self.fail(name, str(e))
            return
        self.pending.append((path, frame, prepared, box))
        if len(self.pending) >= CHUNK:
            self.flush()

    def fail(self, name: str, message: str):
        message = message if message.startswith(name) else f"{name}: {message}"
        self.failures.append((name, message))
        print(f"FAILED {message}", file=sys.stderr)

    def flush(self):
        if not self.pending:
            return
        items = [p[2] for p in self.pending]   # [S, S, 3] each, or larger under tiles
        batch = np.stack(items) if len({a.shape for a in items}) == 1 else items
        vis = self.args.visualize
        # prepared in add(), with --allow-gray already applied: the same option here. A
        # decomposition shows the crop resized to S; its scores are score()'s under any policy.
        with warnings.catch_warnings():   # each input was warned about in add(), by its name
            warnings.simplefilter("ignore")
            d = (self.model.decompose if vis else self.model.score)(
                batch, allow_gray=self.args.allow_gray)
        for i, (path, frame, _, box) in enumerate(self.pending):
            row = {"path": path, "frame": frame, "score": float(d.score[i]),
                   "decision": "attack" if d.is_attack[i] else "live",
                   **{f"score_{c}": float(d.components[c][i]) for c in ("noise", "map", "depth")}}
            if box is not None:
                row.update(zip(FACE_COLUMNS, (round(float(v), 1) for v in box)))
            self.rows.append(row)
            if vis:
                out = epath.Path(vis) / _png_name(self.count, path, frame)
                _visualize(d, i, f"{os.path.basename(_name(path, frame))}: "
                           f"{row['decision']} ({row['score']:.3g})", out)
            self.count += 1
        self.pending = []


def threshold_origin(criterion: Optional[str]) -> tuple[str, bool]:
    """A model's `criterion` (model.json's) -> (how its threshold was set, in words; whether it
    was set on the training data rather than on captures of the user's cameras)."""
    if criterion == bona_fide.CRITERION:
        return "a BPCER on bona fide captures (despoof calibrate --bona-fide)", False
    if criterion == api.HAND_SET:
        return "assigned by hand", False
    if criterion == "eer":
        return "the EER on the training data's dev split", True
    if isinstance(criterion, str) and criterion.startswith("apcer@"):
        return f"APCER {criterion.split('@', 1)[1]} on the training data's dev split", True
    if criterion == pooled_dev.CRITERION:
        return "the EER of several training worlds' dev splits pooled", True
    if criterion == calibration_simulator.METHOD:
        return "the calibration simulator's rendered captures", True
    return (f"criterion {criterion!r}" if criterion else "not recorded"), False


def _print_table(rows: list[dict], model, model_arg: str, detect_faces: bool) -> None:
    origin, synthetic = threshold_origin(model.criterion)
    print(f"# model {model.workdir}: fusion={model.fusion}, threshold={model.threshold:.6g} "
          f"(attack iff score >= threshold), set by {origin}")
    if synthetic:
        # README, model card: on real faces the training world's threshold sits far above
        # the live scores and passes unseen attacks; only bona fide captures can place it.
        packaged = model_arg == api.PRETRAINED or api.is_packaged(model_arg)
        # A threshold set on crops cut another way would not fit these scores: the calibration
        # cuts its captures as this run did.
        print(f"# a threshold from the training data, not from your cameras: `despoof calibrate "
              f"--model {model_arg} --bona-fide DIR{' --detect-faces' if detect_faces else ''} "
              f"{'--out COPY' if packaged else '--write'}` sets one on bona fide captures of "
              "your own (README, model card)")
    width = max([len(_name(r["path"], r["frame"])) for r in rows] + [5])
    face = any("face_side" in r for r in rows)
    print(f"{'input':<{width}}  {'score':>9}  {'decision':<8}  {'noise':>9}  {'map':>9}  "
          f"{'depth':>9}" + ("  face square (cx, cy, side px)" if face else ""))
    for r in rows:
        print(f"{_name(r['path'], r['frame']):<{width}}  {r['score']:>9.4f}  {r['decision']:<8}  "
              f"{r['score_noise']:>9.4f}  {r['score_map']:>9.4f}  {r['score_depth']:>9.4f}"
              + (f"  {r['face_cx']:.0f}, {r['face_cy']:.0f}, {r['face_side']:.0f}"
                 if "face_side" in r else ""))


def _write_outputs(args, rows, failures, skipped, model):
    if args.csv:
        with epath.Path(args.csv).open("w") as f:
            columns = COLUMNS + (FACE_COLUMNS if args.detect_faces else ())
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            for r in rows:
                w.writerow({k: ("" if r[k] is None else r[k]) for k in columns})
    if args.json:
        with epath.Path(args.json).open("w") as f:
            json.dump({"model": model.workdir, "fusion": model.fusion,
                       "threshold": model.threshold, "criterion": model.criterion,
                       "results": rows,
                       "failures": [{"input": n, "error": m} for n, m in failures],
                       "skipped": skipped}, f, indent=2)
    if not (args.csv or args.json):
        _print_table(rows, model, args.model, args.detect_faces)


def score(args) -> int:
    """`despoof score`: every input scored, failures reported, outputs written."""
    try:
        model = api.load(args.model, max_batch=args.max_batch)
    except (api.ModelLoadError, ValueError) as e:   # ValueError: --max-batch < 1
        print(f"error: {e}", file=sys.stderr)
        return 2
    _with_policy(model, args)
    if args.detect_faces:
        try:
            faces.detector()   # before any input: without MediaPipe, one error, not one per file
        except (ImportError, RuntimeError, OSError) as e:
            print(f"error: --detect-faces: {e}", file=sys.stderr)
            return 2
    if args.visualize:
        epath.Path(args.visualize).mkdir(parents=True, exist_ok=True)
    files, errors, skipped = inputs.expand_paths(args.paths)
    scorer = _Scorer(model, args)
    for path, message in errors:
        scorer.fail(path, message)
    for path in skipped:
        print(f"skipped {path}: not an image or video extension", file=sys.stderr)
    for path in observe.progress_bar(files, desc="scoring", unit="file"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                for p, frame, img in inputs.iter_inputs(path, every=args.every,
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


def parse_batch_sizes(text: str) -> Optional[list[int]]:
    """--batch-sizes "1,8,32" -> [1, 8, 32]; "" -> None (one symbolic batch). ValueError naming
    the bad entry for an empty, non-integer or non-positive one."""
    if not text.strip():
        return None
    sizes = []
    for part in text.split(","):
        try:
            b = int(part.strip())
        except ValueError:
            b = 0
        if b < 1:
            raise ValueError(f"--batch-sizes {text!r}: {part.strip()!r} is not a positive "
                             "integer; expected comma-separated batch sizes, e.g. 1,8,32")
        sizes.append(b)
    return sizes


def export(args) -> int:
    """`despoof export`: the StableHLO serving artifact of an evaluated workdir."""
    try:
        sizes = parse_batch_sizes(args.batch_sizes)
    except ValueError as e:   # before the model is loaded: a typo costs nothing
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        model = api.load(args.model)
    except api.ModelLoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    manifest = export_lib.export_model(model, args.out, batch_sizes=sizes,
                                   platforms=args.platforms.split(","))
    print(json.dumps({k: manifest[k] for k in ("image_size", "fusion", "threshold", "batch_mode",
                                               "batch_sizes", "platforms")}))
    print(f"wrote {args.out}: " + ", ".join(a["file"] for a in manifest["artifacts"]) +
          ", manifest.json, serving_loader.py", file=sys.stderr)
    return 0
