"""Synthetic spoof world: procedural live faces with exact depth, and their print/replay spoofs.

Pure numpy/scipy/PIL (no jax), deterministic in its arguments. See `generator.make_example` for the
contract (each record carries its ground-truth `live_reference`), `spoof_noise_stages` for the true
spoof noise split by the paper's Sec. 3.1 steps, `spoof` for those steps, `wide` for the wide world (randomised physics families) and
`benchmark` for throughput.
"""
from .generator import (
                        N_CAPTURE_DEVICES,
                        PHYSICS_COLUMNS,
                        SPECIES,
                        STAGES,
                        WIDE_FIELDS,
                        WORLDS,
                        capture_example,
                        make_example,
                        make_registered_pair,
                        render_image,
                        session_physics,
                        spoof_noise_stages,
)

__all__ = ["SPECIES", "N_CAPTURE_DEVICES", "STAGES", "WORLDS", "WIDE_FIELDS", "make_example", "make_registered_pair", "render_image",
           "spoof_noise_stages", "PHYSICS_COLUMNS", "session_physics", "capture_example"]
