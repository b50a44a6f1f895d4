"""The `despoof` command: one entry point, one subcommand per job.

    despoof train --config=configs/quickstart.py --workdir=W [--config.train.stage2_steps=100 ...]
    despoof score PATH... --model pretrained|W [--csv OUT] [--json OUT] [--visualize DIR]
                  [--every N] [--detect-faces]
    despoof export --model pretrained|W --out DIR [--batch-sizes 1,8,32] [--platforms cpu,cuda]
    despoof report W [W ...] [--out DIR] [--medium]
    despoof medium W [W ...]
    despoof benchmark [--sizes 128 256] [--only stage2,infer] [--vs-peer] [--json OUT]
    despoof crosscheck FACES_DIR --model pretrained|W [--json OUT]
    despoof calibrate --model pretrained|W [--sources stored --data-dir DIR] [--write]
    despoof calibrate --model pretrained|W --bona-fide CROPS... [--bpcer 0.05] [--write]
    despoof calibrate --model M --dev-splits CONFIG... --data-dir DIR [--where COLUMN=VALUE ...]
                      [--out COPY | --write]
    despoof subset W [--where COLUMN=VALUE ...] [--by COLUMN [--bins EDGES]] [--json OUT]
    despoof subset --model M [--builder-config C] [--data-dir D] [--scores CSV] [--where ...]
                   [--versus M2 [--versus-scores CSV2]]

`despoof SUBCOMMAND --help` lists each one's options. `--cpu-kernels` (before the subcommand)
chooses XLA:CPU's convolution kernels (`xla_flags.py`); it is applied here, before JAX starts,
which is why this module imports nothing heavy and `commands` is imported only after it.
`python -m despoof_jax.main` stays as the absl launcher that the pod scripts use; `despoof train`
takes the same `--config` and `--config.field=value` arguments.
"""
from __future__ import annotations

import argparse
import sys

from despoof_jax.config import INPUT_POLICIES
from despoof_jax.xla_flags import CPU_KERNELS, use_cpu_kernels


# What `despoof_jax.load` takes (`serving/model.py`).
MODEL_HELP = ("'pretrained' (the model shipped in the package; './pretrained' is a folder of that "
              "name), a packaged model folder, or an evaluated training workdir (one fold<k>/ of "
              "a multi-fold run)")


def _train(sub):
    t = sub.add_parser("train", help="train and evaluate one experiment config",
                       description="Stage 1 (DQ Net), stage 2 (DS + VQ Net) and the evaluation of "
                       "a configs/*.py file, resuming whatever a killed run had finished. Any "
                       "config field can be overridden: --config.train.stage2_steps=100.")
    t.add_argument("--config", required=True, metavar="FILE[:VARIANT]",
                   help="an experiment config, e.g. configs/default.py:smoke")
    t.add_argument("--workdir", required=True, help="checkpoints, metrics and reports (a local "
                   "folder or a gs:// URL)")
    t.add_argument("--multihost", action="store_true",
                   help="call jax.distributed.initialize() first (pods, SLURM)")
    t.add_argument("--coordinator", default=None, help="host:port of process 0 (multi-host)")
    t.add_argument("--num-processes", type=int, default=None)
    t.add_argument("--process-id", type=int, default=None)
    t.set_defaults(command="train")


def _score(sub):
    s = sub.add_parser("score", help="score images, folders and videos",
                       description="PATH is an image, a folder (walked recursively in sorted "
                       "order) or a video / animated GIF (every N-th frame). A bad input is "
                       "reported with its reason and the others are still scored; exit status "
                       "1 if any input failed, 2 if the model cannot be loaded.")
    s.add_argument("paths", nargs="+", metavar="PATH")
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument("--csv", help="write results as CSV here instead of printing a table")
    s.add_argument("--json", help="write results (and failures) as JSON here")
    s.add_argument("--visualize", metavar="DIR",
                   help="write one PNG per input: input, noise, live, depth, |FFT| noise")
    s.add_argument("--every", type=int, default=1, help="score every N-th video frame")
    s.add_argument("--detect-faces", action="store_true",
                   help="PATHs are photographs or videos, not face crops: score the square "
                   "around the most confident face MediaPipe finds in each image or frame "
                   "(needs pip install 'despoof_jax[faces]'; its box is written in the "
                   "face_cx, face_cy, face_side columns)")
    s.add_argument("--allow-upsample", action="store_true",
                   help="score crops smaller than the model's input (upsampled; less reliable)")
    s.add_argument("--allow-gray", action="store_true",
                   help="score grayscale images (gray replicated into RGB; less reliable)")
    s.add_argument("--max-batch", type=int, default=32, help="largest compiled batch")
    s.add_argument("--input-policy", choices=INPUT_POLICIES, default=None,
                   help="how crops (or, with --detect-faces, face squares) larger than the "
                   "model's input are read: shrunk to it, or cut into input-size tiles at their "
                   "own resolution whose scores are averaged (default: the model's own, "
                   "model.json: input_policy)")
    s.set_defaults(command="score")


def _export(sub):
    e = sub.add_parser("export", help="export a StableHLO serving artifact")
    e.add_argument("--model", required=True, help=MODEL_HELP)
    e.add_argument("--out", required=True, help="output folder (local or a URL)")
    e.add_argument("--batch-sizes", default="",
                   help="comma-separated fixed batch sizes (default: one symbolic batch)")
    e.add_argument("--platforms", default="cpu", help="comma-separated, e.g. cpu,cuda")
    e.set_defaults(command="export")


def _report(sub):
    r = sub.add_parser("report", help="Markdown report of workdirs: tables, curves, figures",
                       description="Reads what training and evaluation left in each workdir and "
                       "writes OUT/report.md with its images (default OUT: W/report for one "
                       "workdir, ./report for several).")
    r.add_argument("workdirs", nargs="+", metavar="WORKDIR")
    r.add_argument("--out", default=None, help="output folder")
    r.add_argument("--medium", action="store_true",
                   help="run the Sec. 4.4 analysis where it is missing (loads the models)")
    r.set_defaults(command="report")


def _medium(sub):
    m = sub.add_parser("medium", help="spoof-medium analysis (Sec. 4.4: Fig. 4, Table 6, Fig. 5)",
                       description="t-SNE of the noise, SVMs on it, Fig. 5 and failure cases, "
                       "into WORKDIR/eval/medium/.")
    m.add_argument("workdirs", nargs="+", metavar="WORKDIR")
    m.add_argument("--max-per-species", type=int, default=40,
                   help="test videos per species (one frame each)")
    m.set_defaults(command="medium")


def _benchmark(sub):
    b = sub.add_parser("benchmark", help="throughput of the train and inference steps",
                       description="Images/s, compile time, peak memory and GFLOP/s of the real "
                       "steps per image size; --vs-peer interleaves the PyTorch peer "
                       "(shared/bench/peer_torch.py) and prints median ratios.")
    b.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    b.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    b.add_argument("--warmup", type=int, default=1, help="untimed steps after the first call")
    b.add_argument("--batch", type=int, default=6, help="train batch (each of the two batches)")
    b.add_argument("--infer-batch", type=int, default=32)
    b.add_argument("--widths", default="1,1,1", help="DS,DQ,VQ width multipliers")
    b.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="config.model.compute_dtype (params stay float32)")
    b.add_argument("--only", default="stage2,stage2_shared,stage1,infer",
                   help="comma list of stage2, stage2_shared, stage1, infer, data")
    b.add_argument("--vs-peer", action="store_true", help="interleave with peer_torch.py")
    b.add_argument("--peer-python", default=None,
                   help="interpreter with torch for the peer (default: this one)")
    b.add_argument("--peer-script", default=None,
                   help="default: ../shared/bench/peer_torch.py beside the checkout")
    b.add_argument("--pairs", type=int, default=2, help="A/B pairs per measurement with --vs-peer")
    b.add_argument("--data", default=None, help="TFDS data dir for the input-pipeline rate")
    b.add_argument("--data-batches", type=int, default=50)
    b.add_argument("--json", default=None, help="write all results here")
    b.set_defaults(command="benchmark")


def _simulator_options(c):
    """The options `crosscheck` and `calibrate` share."""
    c.add_argument("--model", required=True, help="a training workdir, a packaged model folder, "
                   "or 'pretrained'")
    c.add_argument("--draws", type=int, default=1000, help="bootstrap draws")
    c.add_argument("--json", default="", help="also write the report here")


def _crosscheck(sub):
    c = sub.add_parser("crosscheck", help="score real face photos under attacks the training "
                       "world never uses (cross-simulator check, issue #14)",
                       description="Live crops and cross-simulator attacks (ordered-dither and "
                       "clustered-dot prints, RGBW/S-stripe displays, another camera pipeline) "
                       "made from a folder of face photographs, scored through the public API "
                       "with the model's own threshold; ACER/AUC with bootstrap intervals.")
    c.add_argument("faces_dir", help="folder of face photographs (kept outside the repository)")
    _simulator_options(c)
    c.add_argument("--size", type=int, default=0, help="crop side (default: the model's input)")
    c.add_argument("--n-live", type=int, default=120)
    c.add_argument("--n-spoof", type=int, default=120)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--cache", default="", help="crops cache (.npz, kept outside the repository)")
    c.add_argument("--save-crops", default="", help="write a PNG sheet of some crops here")
    c.add_argument("--area-sampled", action="store_true", help="average the attack media over "
                   "each camera sample's footprint instead of point-sampling them (no aliased "
                   "moire; the check of issue #14 is the point-sampled default)")
    c.add_argument("--input-policy", choices=INPUT_POLICIES, default=None,
                   help="how crops larger than the model's input (--size) are read: shrunk, or "
                   "as input-size tiles at their own resolution (default: the model's own)")
    c.add_argument("--bona-fide-bpcer", type=float, default=None, metavar="B",
                   help="also judge each photo's crops at the threshold `despoof calibrate "
                   "--bona-fide --bpcer B` sets on the other photos' live crops (leave one photo "
                   "out; a deployment's procedure, not the check's shipped threshold)")
    c.set_defaults(command="crosscheck")


def _calibrate(sub):
    c = sub.add_parser("calibrate", help="set the decision threshold on a held-out simulator's "
                       "attacks (issue #14)",
                       description="Attacks of physics neither the training world nor the "
                       "cross-simulator check uses (dye-sublimation and green-noise prints, "
                       "aperture-grille CRT, horizontal-stripe LCD, another camera) made from a "
                       "synthetic split's live records: the threshold of lowest ACER on the dev "
                       "split's crops, measured on the test split's.")
    _simulator_options(c)
    c.add_argument("--builder-config", default="wide2_s128",
                   help="synthetic_spoof config whose live records are the sources")
    c.add_argument("--sources", choices=("render", "stored"), default="render",
                   help="render: the live records re-rendered at the camera's sampling resolution "
                   "(nothing read from disk); stored: the built records in --data-dir (round 3)")
    c.add_argument("--data-dir", default="", help="TFDS data_dir holding the synthetic dataset "
                   "(--sources stored only)")
    c.add_argument("--fusions", default="", help="decision scores to choose among, e.g. "
                   "map,noise (de-spoofing models; default: the model's own)")
    c.add_argument("--write", action="store_true", help="store the threshold in the model's "
                   "model.json (the dev threshold is kept as dev_threshold)")
    own = c.add_argument_group("on your own bona fide captures (instead of the simulator)")
    own.add_argument("--bona-fide", nargs="+", default=None, metavar="PATH",
                     help="face crops of real users (images, videos or folders, as `despoof "
                     "score` reads them): the threshold rejecting at most --bpcer of them")
    own.add_argument("--bpcer", type=float, default=0.05, help="the BPCER to allow on them")
    own.add_argument("--out", default="", help="write a copy of the (packaged) model with the new "
                     "threshold here, leaving the model itself as it is")
    own.add_argument("--held-out", choices=("file", "folder"), default=None,
                     help="also measure the BPCER on videos (file) or people (folder: one a "
                     "person) left out of the threshold in turn, with a 95 %% interval over them")
    own.add_argument("--every", type=int, default=1, help="keep every N-th video frame")
    own.add_argument("--allow-upsample", action="store_true",
                     help="accept crops smaller than the model's input")
    own.add_argument("--allow-gray", action="store_true", help="accept grayscale images")
    own.add_argument("--detect-faces", action="store_true",
                     help="the captures are photographs or videos: score the detected face's "
                     "square, as `despoof score --detect-faces` will")
    pooled = c.add_argument_group("at the EER of synthetic dev splits pooled (instead of the "
                                  "simulator)")
    pooled.add_argument("--dev-splits", nargs="+", default=None, metavar="CONFIG",
                        help="synthetic_spoof configs (in --data-dir) whose dev splits, pooled, "
                        "set the threshold at their EER, e.g. wide2_s128 wide4_s128_t60 (two "
                        "capture scales); --out / --write as above")
    pooled.add_argument("--scores-dir", default="", help="keep each dev split's scores here "
                        "(<config>_dev.csv), read again by a later call with the same model")
    pooled.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                        help="only the dev records whose metadata match (repeatable; all must "
                        "hold), e.g. scene_content=-1: the face sessions")
    c.set_defaults(command="calibrate")


def _subset(sub):
    s = sub.add_parser("subset", help="a run's decision on part of its test split (by metadata)",
                       description="APCER/BPCER/ACER/AUC with identity-bootstrap intervals at the "
                       "run's own decision score and threshold, on the test records whose "
                       "metadata columns match every --where; --by breaks them down by a column. "
                       "Reads the run's eval/ (nothing is scored again); with --model, scores "
                       "a split with any model instead, e.g. on a larger build of its dataset.")
    s.add_argument("workdir", metavar="WORKDIR", nargs="?", default=None,
                   help="an evaluated training workdir (or give --model)")
    s.add_argument("--model", default=None,
                   help="score the split with this model (`pretrained`, a packed folder or a "
                   "workdir) at its own decision score and threshold")
    s.add_argument("--builder-config", default=None,
                   help="with --model: another build of its dataset, e.g. wide2_s128_t60 "
                   "(wide2_s128 with 5x the test identities; built on first use)")
    s.add_argument("--data-dir", default=None, help="with --model: the TFDS data directory")
    s.add_argument("--input-policy", choices=INPUT_POLICIES, default=None,
                   help="with --model: how records larger than its input are read, for it and "
                   "--versus (default: each model's own, model.json: input_policy)")
    s.add_argument("--scores", default=None, metavar="CSV",
                   help="with --model: keep the scores here (and CSV.json, what made them); a "
                   "later call with the same model and data reads them instead of scoring")
    s.add_argument("--versus", default=None, metavar="MODEL",
                   help="with --model: also score this model on the same records and report the "
                   "paired (identity-bootstrap) difference of the two ACERs")
    s.add_argument("--versus-scores", default=None, metavar="CSV",
                   help="--scores for the --versus model")
    s.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                   help="keep records with this metadata value, e.g. photo_source=-1 "
                   "(repeatable; all must hold)")
    s.add_argument("--by", default=None, metavar="COLUMN",
                   help="per value of this column: APCER of its attacks, BPCER of its bona "
                   "fide; on the wide worlds also a physics column replayed from the generator "
                   "(display_pitch, display_aperture, display_contrast, print_period, "
                   "print_dot, print_contrast, camera_gain, camera_quality, source_res, "
                   "source_quality), with --bins")
    s.add_argument("--bins", default=None, metavar="EDGES",
                   help="with --by PHYSICS_COLUMN: increasing bin edges, e.g. 1.2,2,3")
    s.add_argument("--split", default="test", choices=("dev", "test"))
    s.add_argument("--draws", type=int, default=1000, help="bootstrap draws")
    s.add_argument("--json", default="", help="also write the report here")
    s.set_defaults(command="subset")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="despoof", description="Face De-Spoofing (ECCV 2018) in JAX: train, score, export, "
        "report.", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `despoof SUBCOMMAND --help` for a subcommand's options.")
    parser.add_argument("--cpu-kernels", default="ynn", choices=CPU_KERNELS,
                        help="XLA:CPU convolution kernels: ynn (YNNPACK, faster on CPU) or XLA's "
                        "default; ignored when XLA_FLAGS already chooses")
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    for add in (_train, _score, _export, _report, _medium, _benchmark, _crosscheck,
                _calibrate, _subset):
        add(sub)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # `--config.field=value` overrides belong to `train`; argparse would reject them.
    overrides = [a[len("--config."):] for a in argv if a.startswith("--config.")]
    rest = [a for a in argv if not a.startswith("--config.")]
    args = build_parser().parse_args(rest)
    if overrides and args.command != "train":
        print("error: --config.* overrides apply to `despoof train` only", file=sys.stderr)
        return 2
    args.overrides = overrides
    if getattr(args, "every", 1) < 1:
        print(f"error: --every {args.every}; expected a positive frame step", file=sys.stderr)
        return 2
    use_cpu_kernels(args.cpu_kernels)
    from despoof_jax import commands  # noqa: PLC0415 (XLA flags before JAX starts)
    return getattr(commands, args.command)(args)


if __name__ == "__main__":
    sys.exit(main())
