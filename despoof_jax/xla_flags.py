"""XLA:CPU kernel choice, applied through XLA_FLAGS before the JAX backend starts.

`ynn` routes XLA:CPU convolutions and dots to YNNPACK
(`--xla_cpu_experimental_ynn_fusion_type=dot`).
Measured on 2 CPU cores (README, Performance): DQ Net's 128 -> 196 conv at 256 px runs forward at
165 GFLOP/s instead of 106 and its weight gradient (most of stage 1's backward) at 155 instead of
13; the stage-2 step gains 3-5 %. Other values of the flag were slower here (stage 2 at 256 px:
dot 12.9 s, dot+eltwise 19.2 s, dot+individual_convolution 18.6 s, dot+eltwise+reduce 19.5 s).
Results agree with XLA's default kernels to 1e-4 relative, not to the last bits: against float64,
YNNPACK's gradients carry ~1e-5 relative error where the default kernels' carry ~1e-6
(tests/test_benchmark.py). The flag only concerns the CPU backend.

XLA aborts on a flag it does not know, and jaxlib only knows this one from 0.9.0 (checked in the
wheels: absent from 0.6.2, 0.7.2 and 0.8.0, present in 0.9.0, 0.10.0 and 0.10.2), while the
package accepts jax >= 0.6: with an older jaxlib, `ynn` falls back to XLA's default kernels.
"""
from __future__ import annotations

import importlib.metadata
import os
import re

YNN_CPU_FLAGS = "--xla_cpu_experimental_ynn_fusion_type=dot"
CPU_KERNELS = ("ynn", "default")
YNN_MIN_JAXLIB = (0, 9, 0)


def jaxlib_knows_ynn() -> bool:
    """Whether the installed jaxlib's XLA has the YNNPACK fusion flag (read from the package
    metadata: JAX is not imported, so XLA_FLAGS can still be set)."""
    try:
        version = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return False
    parts = tuple(int(x) for x in re.findall(r"\d+", version)[:3])
    return parts >= YNN_MIN_JAXLIB


def use_cpu_kernels(kind: str) -> None:
    """Adds the flags of `kind` to XLA_FLAGS unless XLA_FLAGS already chooses YNN fusion types.

    Has an effect only before JAX initialises its backends (XLA reads XLA_FLAGS once).
    """
    if kind not in CPU_KERNELS:
        raise ValueError(f"cpu kernels {kind!r} unknown; expected one of {CPU_KERNELS}")
    flags = os.environ.get("XLA_FLAGS", "")
    if kind == "ynn" and "ynn_fusion_type" not in flags and jaxlib_knows_ynn():
        os.environ["XLA_FLAGS"] = (flags + " " + YNN_CPU_FLAGS).strip()
