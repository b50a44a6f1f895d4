"""Export a trained model as a serialized, version-stamped inference artifact (StableHLO).

`export_model(model, out_dir)` writes:
  despoof.stablehlo      `jax.export` serialization of uint8 RGB [N, S, S, 3] -> dict(
                           score [N] float32 fused attack score (higher = attack),
                           is_attack [N] bool (score >= threshold),
                           score_noise, score_map, score_depth [N] float32 components)
                         with the preprocessing (RGB -> RGB + HSV in [0, 1]), both nets, the
                         component scores and the fusion inside; the weights are baked in as
                         constants. N is symbolic (one program for every batch size); if the
                         symbolic export fails, fixed sizes are exported instead, one file each
                         (despoof_b<N>.stablehlo), and the loader pads and chunks.
  manifest.json          format and format version, despoof_jax / jax versions, image_size,
                         threshold, fusion and its statistics, input/output spec, platforms, the
                         sha256 of each artifact file.
  serving_loader.py      a copy of `despoof_jax/serving/serving_loader.py`: runs the artifact with only
                         numpy and jax installed.
Resizing to S x S is *not* inside the artifact (its input shape is fixed): the manifest's
"preprocessing" says how the crops must be made to score what the model was evaluated on. The
fusion runs in float32 there (float64 in `api`), so fused scores agree to about 1e-6, and a
score within that of the threshold may be decided differently by the two (the manifest says so
under "decision").
"""
from __future__ import annotations

import datetime
import hashlib
import json
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from etils import epath
from jax import export as jax_export

import despoof_jax
from despoof_jax.data import faces
from despoof_jax.evaluation import scores
from despoof_jax.serving import model as api
from despoof_jax.serving import serving_loader
from despoof_jax.training import state as state_lib

ARTIFACT = "despoof.stablehlo"


def package_version() -> str:
    """despoof_jax's version, stamped into the manifest."""
    return despoof_jax.__version__


def serving_fn(model: api.DespoofModel):
    """uint8 [N, S, S, 3] -> dict of [N] outputs (module docstring), weights closed over."""
    ds_model, dq_model, _ = state_lib.make_models(model.config)
    ds, dq = jax.device_get(model.ds), jax.device_get(model.dq)
    stats, how, threshold = model.fusion_stats, model.fusion, model.threshold

    def fn(rgb):
        out = scores.predict(ds, dq, rgb, ds_model=ds_model, dq_model=dq_model)
        comps = {f"score_{c}": out[f"score_{c}"] for c in scores.COMPONENTS}
        fused = scores.fuse(comps, stats, how, xp=jnp)
        return dict(comps, score=fused, is_attack=fused >= jnp.float32(threshold))

    return fn


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def export_model(model, out_dir, *, platforms: Sequence[str] = ("cpu",),
                 batch_sizes: Optional[Sequence[int]] = None) -> dict:
    """Writes the artifact(s), manifest.json and serving_loader.py into `out_dir` (created; a
    local folder or a URL, written through etils.epath); returns the manifest. `model` is a
    `DespoofModel` or a workdir path. `batch_sizes=None` exports one program with a symbolic
    batch; a list exports one program per size."""
    if batch_sizes is not None and (
            not len(batch_sizes)
            or any(isinstance(b, bool) or int(b) != b or int(b) < 1 for b in batch_sizes)):
        raise ValueError(f"batch_sizes={list(batch_sizes)!r}; expected None (a symbolic batch) or "
                         "a non-empty list of positive batch sizes")
    if not isinstance(model, api.DespoofModel):
        model = api.load(model)
    out = epath.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    s = model.image_size
    fn = jax.jit(serving_fn(model))
    artifacts = []
    mode = "symbolic"
    if batch_sizes is None:
        try:
            (n,) = jax_export.symbolic_shape("N")
            exp = jax_export.export(fn, platforms=tuple(platforms))(
                jax.ShapeDtypeStruct((n, s, s, 3), jnp.uint8))
            artifacts.append(("N", ARTIFACT, exp))
        except Exception as e:  # noqa: BLE001 (fall back to fixed sizes, and say why)
            mode = f"bucketed (symbolic batch failed: {type(e).__name__}: {str(e)[:200]})"
            batch_sizes = (1, 2, 4, 8, 16, 32)
    if batch_sizes is not None:
        mode = mode if mode != "symbolic" else "bucketed"
        for b in sorted(set(int(b) for b in batch_sizes)):
            exp = jax_export.export(fn, platforms=tuple(platforms))(
                jax.ShapeDtypeStruct((b, s, s, 3), jnp.uint8))
            artifacts.append((b, f"despoof_b{b}.stablehlo", exp))
    entries = []
    for batch, name, exp in artifacts:
        data = bytes(exp.serialize())
        (out / name).write_bytes(data)
        entries.append({"file": name, "batch": batch, "sha256": _sha256(data),
                        "bytes": len(data),
                        "calling_convention_version": exp.calling_convention_version})
    vec = lambda dtype, what: {"dtype": dtype, "shape": ["N"], "meaning": what}  # noqa: E731
    manifest = {
        "format": serving_loader.FORMAT,
        "format_version": serving_loader.FORMAT_VERSION,
        "despoof_jax_version": package_version(),
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source_workdir": model.workdir,
        "image_size": s,
        "threshold": model.threshold,
        "fusion": model.fusion,
        "fusion_stats": model.fusion_stats,
        "batch_mode": mode,
        "batch_sizes": [e["batch"] for e in entries],
        "platforms": list(platforms),
        "inputs": [{"name": "rgb", "dtype": "uint8", "shape": ["N", s, s, 3], "range": [0, 255],
                    "layout": "NHWC, RGB, a face crop resized to image_size"}],
        # What `despoof_jax.load(...).score` does before the program: a deployment that resizes
        # otherwise (e.g. without antialiasing) feeds the model crops it never saw.
        "preprocessing": {
            "face_square": f"side {faces.CROP_SCALE} x the face detector's box (MediaPipe "
                           "short-range BlazeFace), centred on it, black outside the image",
            "resize": "PIL Image.resize(BILINEAR): antialiased when shrinking (an area-like "
                      "average), from the 8-bit crop",
            "min_side": s,
            "input_policy": model.input_policy,
            "larger_crops": (
                "shrunk to image_size by the resize above" if model.input_policy == "resize"
                else "cut into image_size tiles at the crop's own resolution (per side n = "
                     f"min(ceil(side / {s}), {api.MAX_TILES_PER_SIDE}) tiles at "
                     f"round(linspace(0, side - {s}, n))), each run through the program; the "
                     "component scores (score_*) averaged over the crop's tiles, then fused "
                     "with fusion_stats and decided (serving.model.tiles)"),
            "smaller_crops": "refused (upsampling smooths away the spoof noise)",
            "float_images": "round(255 x) to uint8 first",
            "colour": "RGB; grayscale (R = G = B) refused"},
        "decision": {"rule": "attack iff score >= threshold, in float32 in the artifact",
                     "threshold_float32": float(np.float32(model.threshold)),
                     "note": "the library fuses and decides in float64: a score within ~1e-6 of "
                             "the threshold may be decided differently"},
        "outputs": {
            "score": vec("float32", f"fused attack score ({model.fusion}); higher = attack"),
            "is_attack": vec("bool", "score >= threshold"),
            **{f"score_{c}": vec("float32", f"component score {c} (scores.component_scores)")
               for c in scores.COMPONENTS},
        },
        "artifacts": entries,
    }
    (out / serving_loader.MANIFEST).write_text(json.dumps(manifest, indent=2))
    (out / "serving_loader.py").write_bytes(epath.Path(serving_loader.__file__).read_bytes())
    return manifest


__all__ = ["export_model", "serving_fn", "package_version", "ARTIFACT"]
