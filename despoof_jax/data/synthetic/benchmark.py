"""Throughput of the synthetic spoof world: `python -m despoof_jax.data.synthetic.benchmark`.

Prints images/s of `make_example` (`--world wide`, `wide2`, `wide3` or `wide4`: the wide worlds; wide4 at one session's capture scale) (median over
repeats, single process, single thread of numpy work; a spoof's time includes rendering its ideal-medium `live_reference`) for each size and
species, twice: with the identity already cached (the common case when a dataset renders many
sessions and frames per person) and for a never-seen identity (identity maps built first).
"""
from __future__ import annotations

import argparse
import statistics
import time

from . import faces
from .generator import SPECIES, WORLDS, make_example


def _rate(size: int, species: int, repeats: int, fresh: bool, world: str = "base") -> float:
    times = []
    for r in range(repeats):
        identity = 10_000 + r if fresh else 0
        if fresh:
            faces.identity.cache_clear()
        t = time.perf_counter()
        make_example(seed=0, identity=identity, species=species, device=r % 6, video=r, frame=0,
                     size=size, world=world)
        times.append(time.perf_counter() - t)
    return 1.0 / statistics.median(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--world", default="base", choices=WORLDS)
    args = ap.parse_args(argv)
    make_example(seed=0, identity=0, species=0, device=0, video=0, frame=0, size=64)   # warm up
    print(f"{'size':>5} {'species':>8} {'img/s cached id':>16} {'img/s new id':>13}")
    for size in args.sizes:
        for species, name in enumerate(SPECIES):
            cached = _rate(size, species, args.repeats, fresh=False, world=args.world)
            fresh = _rate(size, species, max(3, args.repeats // 2), fresh=True, world=args.world)
            print(f"{size:>5} {name:>8} {cached:>16.1f} {fresh:>13.1f}", flush=True)


if __name__ == "__main__":
    main()
