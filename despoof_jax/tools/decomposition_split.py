"""The decomposition metrics of a trained run on any split (issue #13 item 3).

Evaluation writes them for the test split (`eval/decomposition.md`). A setting chosen by its
decomposition (the weight of `loss.noise_truth`, say) must be chosen on the dev split, not on the
test split it is then reported on; this prints the same table for `--split` (default dev).

    python -m despoof_jax.tools.decomposition_split WORKDIR [--split dev] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys

from despoof_jax.data import datasets
from despoof_jax.evaluation import decomposition, evaluate
from despoof_jax.training.workdir import Workdir


def measure(workdir, split: str = "dev") -> dict:
    """The `decomposition` block of metrics.json for `split` of the run's protocol."""
    wd = Workdir.find(workdir)
    config = wd.read_config()
    ds, dq = evaluate.load_model(config, wd)
    truth = decomposition.Accumulator()
    evaluate.score_split(config, ds, dq, split, truth=truth)
    summary = truth.summary(datasets.species_names(config.data))
    if summary is None:
        raise ValueError(f"{wd.root}: the {split} split has no live_reference (a real dataset?); "
                         "the decomposition needs the synthetic world's ground truth")
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("workdir")
    p.add_argument("--split", default="dev", choices=("train", "dev", "test"))
    p.add_argument("--json", default="", help="also write the summary here")
    args = p.parse_args(argv)
    summary = measure(args.workdir, args.split)
    print(f"{args.workdir}, {args.split} split:\n")
    print(decomposition.markdown(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
