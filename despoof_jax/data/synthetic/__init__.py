"""Synthetic spoof world: procedural live faces with exact depth, and their print/replay spoofs.

Pure numpy/scipy/PIL (no jax), deterministic in its arguments. See `generator.make_example` for the
contract, `spoof` for the paper's Sec. 3.1 degradation steps and `benchmark` for throughput.
"""
from .generator import N_CAPTURE_DEVICES, SPECIES, make_example, make_registered_pair

__all__ = ["SPECIES", "N_CAPTURE_DEVICES", "make_example", "make_registered_pair"]
