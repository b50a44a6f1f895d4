"""The library face: load a trained model and score or decompose face crops.

    import despoof_jax
    model = despoof_jax.load("/tmp/despoof")          # a workdir that train_and_evaluate wrote
    out = model.score(images)                         # uint8 or float [0, 1] RGB crops
    out.score, out.is_attack                          # [N] fused attack score, decision
    d = model.decompose(images)                       # d.live = d.input - d.noise, [N, S, S, 6]

Inputs are *face crops*, or whole photographs and frames with `detect_faces=True`: MediaPipe's
face detector (the `faces` extra) finds the most confident face and the square the datasets'
builders and the cross-simulator cut around a detected face (`faces.CROP_SCALE` x its box) is
scored; `Scores.face_boxes` says where it was. Each crop is
resized to the model's `image_size` S with PIL's bilinear filter, which is antialiased when
shrinking (every source pixel under the filter's support contributes, like an area average) so
the spoof noise is averaged rather than aliased. Crops smaller than S are rejected by default:
upsampling interpolates away the high-frequency noise the model measures, so the score would not
mean what it means on the evaluation data; `allow_upsample=True` upsamples with a warning.

A crop larger than S can be read another way, the *tiles* input policy (`input_policy="tiles"`,
`model.json: input_policy`, `despoof score --input-policy tiles`): S x S tiles cut at the crop's
own resolution (`tile_origins`), each scored, their component scores averaged. The synthetic
world draws every artifact in camera pixels and its camera samples at the crop's resolution, so
the model learnt them at one camera pixel per input pixel; the shrink averages a finer sensor's
artifacts away, the tiles keep them (README, "Native-resolution tiles"). A crop of S px is one
tile, so both policies score it alike.

Batches are compiled once per bucket: a batch of n images is padded to the next power of two up
to `max_batch` (default 32) and longer inputs run in chunks of `max_batch`, so a stream of varied
batch sizes compiles at most log2(max_batch) + 1 programs (every crop enters as uint8: a float
image is scored as the 8-bit image it rounds to).
Padding is harmless: both nets run BatchNorm with running statistics, so samples do not interact.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.resources
import json
import pathlib
import sys
import warnings
from typing import Optional, Sequence

import jax
import ml_collections
import numpy as np
from flax import traverse_util
from PIL import Image

from despoof_jax import config as config_lib
from despoof_jax.data import faces as faces_lib
from despoof_jax.data.color import model_input
from despoof_jax.evaluation import evaluate, scores
from despoof_jax.serving import inputs
from despoof_jax.serving.inputs import InputError
from despoof_jax.training import state as state_lib
from despoof_jax.training.workdir import Workdir, WorkdirError

DEFAULT_MAX_BATCH = 32
# `DespoofModel.criterion` once its threshold was assigned on the object, not loaded.
HAND_SET = "set_by_hand"
INPUT_POLICIES = config_lib.INPUT_POLICIES   # how a crop larger than the input is read (see above)
MAX_TILES_PER_SIDE = 8                 # a 2000 px face square is 8 x 8 tiles, not 16 x 16


def tile_origins(side: int, size: int) -> list[int]:
    """Where the tiles of the tiles policy start along one side of `side` px (>= size): n =
    min(ceil(side / size), MAX_TILES_PER_SIDE) tiles at round(linspace(0, side - size, n)), evenly
    spaced and covering the side (overlapping where it is not a multiple of size; with the cap,
    spread over it with gaps). Registered with Rule N (README) before any tiled score existed."""
    side, size = int(side), int(size)
    if side < size or size < 1:
        raise ValueError(f"a side of {side} px holds no tile of {size} px")
    n = min(-(-side // size), MAX_TILES_PER_SIDE)
    return [int(round(x)) for x in np.linspace(0, side - size, n)]


def tiles(crop: np.ndarray, size: int) -> np.ndarray:
    """uint8 [h, w, 3] with h, w >= size -> uint8 [T, size, size, 3], T = n_y * n_x tiles at the
    crop's own resolution (`tile_origins` along each side), row by row."""
    h, w = crop.shape[:2]
    return np.stack([crop[y:y + size, x:x + size] for y in tile_origins(h, size)
                     for x in tile_origins(w, size)])


def _check_policy(policy: str) -> str:
    if policy not in INPUT_POLICIES:
        raise ValueError(f"input_policy {policy!r}; expected one of {INPUT_POLICIES}")
    return policy


class ModelLoadError(RuntimeError):
    """A workdir that cannot be served: never evaluated, missing checkpoints, or a checkpoint
    that does not fit the workdir's config."""


@dataclasses.dataclass(frozen=True)
class Scores:
    """What `DespoofModel.score` returns; N = number of input images.

    score:      float64 [N] fused attack score (higher = attack) of `fusion`, on the scale of
                `scores.fuse` (components standardised with the dev statistics).
    is_attack:  bool [N], score >= threshold (the dev threshold stored at evaluation; the same
                rule as `metrics`).
    components: {"noise", "map", "depth"} -> float32 [N] raw component scores
                (`scores.component_scores`).
    threshold, fusion: the decision rule used.
    face_boxes: with `detect_faces=True`, a tuple of N `faces.FaceBox` (cx, cy, side in the input
                image's pixels): the square that was cut around each detected face and scored;
                None otherwise.
    """

    score: np.ndarray
    is_attack: np.ndarray
    components: dict
    threshold: float
    fusion: str
    face_boxes: Optional[tuple] = None


@dataclasses.dataclass(frozen=True)
class Decomposition(Scores):
    """What `DespoofModel.decompose` returns (plus every field of `Scores`). S = image_size.

    input: float32 [N, S, S, 6] the model's input, RGB + HSV in [0, 1] (`color.model_input` of
           the resized crop).
    noise: float32 [N, S, S, 6] the estimated spoof noise N in the same units (signed; near 0
           for live faces).
    live:  float32 [N, S, S, 6] the live reconstruction, exactly input - noise (Eq. 1); it may
           leave [0, 1] slightly.
    depth: float32 [N, S/8, S/8, 1] DQ Net's depth of the input, about [0, 1] (face-shaped for
           live, flat near 0 for spoof).
    map:   float32 [N, S/8, S/8, 1] the 0\\1 map, about [0, 1] (0 live, 1 spoof).
    The `*_rgb` properties are the RGB channels, and `live_image` the reconstruction clipped to
    [0, 1] for display.
    """

    input: np.ndarray = None
    noise: np.ndarray = None
    live: np.ndarray = None
    depth: np.ndarray = None
    map: np.ndarray = None

    @property
    def input_rgb(self) -> np.ndarray:
        return self.input[..., :3]

    @property
    def noise_rgb(self) -> np.ndarray:
        return self.noise[..., :3]

    @property
    def live_rgb(self) -> np.ndarray:
        return self.live[..., :3]

    @property
    def live_image(self) -> np.ndarray:
        return np.clip(self.live[..., :3], 0.0, 1.0)


def _bucket(n: int, max_batch: int) -> int:
    """The compiled batch size for n <= max_batch images: the next power of two, at most max."""
    b = 1
    while b < n:
        b *= 2
    return min(b, max_batch)


def _infer(ds, dq, rgb, *, ds_model, dq_model):
    """`scores.predict` plus the model input it saw, so live = input - noise is checkable."""
    return dict(scores.predict(ds, dq, rgb, ds_model=ds_model, dq_model=dq_model),
                input=model_input(rgb))


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 [h, w, 3] -> uint8 [size, size, 3], PIL bilinear (as the datasets' crops were made)."""
    if img.shape[:2] == (size, size):
        return img
    return np.asarray(Image.fromarray(img, "RGB").resize((size, size), Image.BILINEAR))


def _warn(message: str) -> None:
    """warnings.warn, attributed to the first caller outside this module (the user's line,
    however deep the call chain inside the library is)."""
    frame, level = sys._getframe(1), 2   # noqa: SLF001 (the only way to count the frames)
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


def _rgb8(img, name: str, allow_gray: bool) -> np.ndarray:
    """An input image -> uint8 RGB [H, W, 3] by the input policy (see `prepare_image`)."""
    if isinstance(img, Image.Image):
        file = getattr(img, "filename", "") or ""   # set by Image.open: name the file too
        name = f"{name} ({file})" if file and file not in name else name
        img = inputs.decode(img, name, allow_gray, "PIL image")
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[-1] != 3:
        hint = (" (grayscale: the model reads colour; np.repeat(img[..., None], 3, -1) with "
                "allow_gray=True scores it anyway)" if a.ndim == 2 or a.shape[-1:] == (1,) else
                " (RGBA: drop the alpha channel, img[..., :3])" if a.shape[-1:] == (4,) else "")
        raise InputError(f"{name}: shape {a.shape}; expected an RGB image [H, W, 3]{hint}")
    if a.dtype == np.uint8:
        pass
    elif np.issubdtype(a.dtype, np.floating):
        bad = int(np.sum(~np.isfinite(a)))
        if bad:
            raise InputError(f"{name}: float image with {bad} NaN or infinite values; expected "
                             "finite values in [0, 1]")
        if a.size and not (a.min() >= 0.0 and a.max() <= 1.0):
            raise InputError(f"{name}: float image with values in [{a.min():.4g}, "
                             f"{a.max():.4g}]; expected [0, 1] (divide 8-bit values by "
                             "255, or pass uint8)")
        a = np.round(a.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        raise InputError(f"{name}: dtype {a.dtype}; expected uint8 [0, 255] or float in [0, 1] "
                         "(convert 16-bit images with (img / 257).round().astype(np.uint8))")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"{name}: empty image {a.shape}")
    inputs.check_colour(a, name, allow_gray)
    return a


def _check_side(side: float, size: int, what: str, allow_upsample: bool) -> None:
    """Refuses (or, with allow_upsample, warns about) a crop of `side` source px < size."""
    if side >= size:
        return
    msg = (f"{what} is smaller than the model's input {size}x{size}; upsampling smooths away the "
           "spoof noise the model measures")
    if not allow_upsample:
        raise InputError(msg + " (pass a larger face crop, or allow_upsample=True / "
                         "--allow-upsample to score it anyway)")
    _warn(msg + "; upsampled anyway (allow_upsample=True)")


def prepare_image(img, size: int, *, name: str = "image", allow_upsample: bool = False,
                  allow_gray: bool = False) -> np.ndarray:
    """One crop -> uint8 [size, size, 3].

    Accepts a numpy array [H, W, 3] (uint8, or float in [0, 1]) or a PIL image (read by the
    file readers' policy, `inputs`: EXIF orientation applied, grayscale refused, 16-bit scaled,
    alpha dropped with a warning). Grayscale stored as RGB (R = G = B everywhere) is refused
    like a grayscale file (`inputs.check_colour`) unless `allow_gray`. A float image is scored
    as the 8-bit image it rounds to (round(255 x)): the model was trained on 8-bit crops, resized
    in 8 bits, and so a float and a uint8 copy of one picture score the same. Raises
    `InputError` naming `name` for anything else."""
    a = _rgb8(img, name, allow_gray)
    h, w = a.shape[:2]
    _check_side(min(h, w), size, f"{name}: {h}x{w}", allow_upsample)
    if max(h, w) > 1.1 * min(h, w):
        _warn(f"{name}: {h}x{w} is not square; it is stretched to {size}x{size}, but the model "
              "was trained on square face crops (cut a square around the face first, or let the "
              "face detector cut it: detect_faces=True / --detect-faces)")
    return _resize(a, size)


def prepare_native(img, size: int, *, name: str = "image", allow_upsample: bool = False,
                   allow_gray: bool = False) -> np.ndarray:
    """One crop -> uint8 [h, w, 3] for the tiles policy: the input policy of `prepare_image`; a
    crop at least `size` px on both sides is kept at its own resolution (not stretched; a crop
    more than 10 % off square is warned about, as it is no face crop), a smaller one is refused
    or (allow_upsample) resized to [size, size, 3] as `prepare_image` does."""
    a = _rgb8(img, name, allow_gray)
    h, w = a.shape[:2]
    if min(h, w) < size:
        return prepare_image(a, size, name=name, allow_upsample=allow_upsample,
                             allow_gray=True)   # colour already checked by _rgb8
    if max(h, w) > 1.1 * min(h, w):
        _warn(f"{name}: {h}x{w} is not square, but the model was trained on square face crops "
              "(cut a square around the face first, or let the face detector cut it: "
              "detect_faces=True / --detect-faces)")
    return a


def prepare_tiles(img, size: int, *, name: str = "image", allow_upsample: bool = False,
                  allow_gray: bool = False) -> np.ndarray:
    """One crop -> uint8 [T, size, size, 3], the tiles policy: `prepare_native`, then `tiles`."""
    return tiles(prepare_native(img, size, name=name, allow_upsample=allow_upsample,
                                allow_gray=allow_gray), size)


def prepare_face(img, size: int, *, name: str = "image", allow_upsample: bool = False,
                 allow_gray: bool = False,
                 native: bool = False) -> tuple[np.ndarray, faces_lib.FaceBox]:
    """A photograph or frame -> (uint8 [size, size, 3] face crop, the square it was cut from).

    The input policy of `prepare_image`; then MediaPipe's short-range face detector
    (`faces.detector()`, score >= 0.5; made for faces within ~2 m of the camera) finds the most
    confident face, or, where it finds none, the full-range one (`faces.far_detector()`, faces
    up to ~5 m, its box mapped onto the short-range box). The square of `faces.CROP_SCALE` x
    the box around its centre is cut (black where it leaves the image) and resized
    (`faces.crop`): the crop the real-dataset builders and the cross-simulator make of a
    detected face. The square is returned as a
    `FaceBox` (cx, cy, side) in the input's pixels. Raises `InputError` when no face is found
    or the square is under `size` px (unless allow_upsample), ImportError (with the install
    line) without MediaPipe. With `native` (the tiles policy) the square is returned at the
    photograph's own resolution (`faces.crop_native`, n x n px, n >= size), not resized."""
    a = _rgb8(img, name, allow_gray)
    detector = faces_lib.detector()   # ImportError naming the `faces` extra without MediaPipe
    try:
        box = detector.detect(a) or faces_lib.far_detector().detect(a)
    except (RuntimeError, ValueError) as e:   # MediaPipe's graph refused the image
        raise InputError(f"{name}: face detection failed: {e}") from e
    if box is None:
        raise InputError(f"{name}: no face found ({a.shape[0]}x{a.shape[1]}; MediaPipe's "
                         f"short- and full-range detectors, score >= {detector.min_score}): pass "
                         "a face crop without detect_faces / --detect-faces")
    square = faces_lib.FaceBox(box.cx, box.cy, faces_lib.CROP_SCALE * box.side)
    _check_side(square.side, size, f"{name}: the face crop ({square.side:.0f} px)",
                allow_upsample)
    if native and square.side >= size:
        cut = faces_lib.crop_native(a, box, scale=faces_lib.CROP_SCALE)
        if min(cut.shape[:2]) >= size:
            return cut, square
    return faces_lib.crop(a, box, scale=faces_lib.CROP_SCALE, size=size), square


class DespoofModel:
    """A trained DS Net + DQ Net with the decision rule of its evaluation (see `load`).

    Attributes: config (the run's ConfigDict), image_size S, fusion, fusion_stats
    ({component: (mean, std)} of dev), threshold (dev threshold of `fusion`), criterion (how
    that threshold was set: model.json's `criterion`, e.g. "eer" on the training data's dev
    split or "bona_fide_bpcer" from `despoof calibrate --bona-fide`; None where it names none,
    HAND_SET once `threshold` is assigned), input_policy ("resize" or "tiles": how `score` reads
    a crop larger than S; model.json's, "resize" where it names none; settable), max_batch,
    ds / dq (`state.FrozenNet` inference trees).
    """

    def __init__(self, config, ds: state_lib.FrozenNet, dq: state_lib.FrozenNet, *, fusion: str,
                 fusion_stats: dict, threshold: float, max_batch: int = DEFAULT_MAX_BATCH,
                 workdir: Optional[str] = None, input_policy: str = "resize",
                 criterion: Optional[str] = None):
        if fusion not in scores.FUSIONS:
            raise ValueError(f"fusion {fusion!r}; expected one of {scores.FUSIONS}")
        if max_batch < 1:
            raise ValueError(f"max_batch={max_batch}; expected >= 1")
        self.config, self.ds, self.dq = config, ds, dq
        self.image_size = int(config.data.image_size)
        self.fusion, self.threshold = fusion, threshold
        self.criterion = criterion   # after the threshold: its setter marks it HAND_SET
        self.fusion_stats = {k: tuple(map(float, v)) for k, v in fusion_stats.items()}
        self.max_batch, self.workdir = int(max_batch), workdir
        self.input_policy = input_policy
        ds_model, dq_model, _ = state_lib.make_models(config)
        self._fn = jax.jit(functools.partial(_infer, ds_model=ds_model, dq_model=dq_model))

    def __repr__(self) -> str:
        return (f"DespoofModel(workdir={self.workdir!r}, image_size={self.image_size}, "
                f"fusion={self.fusion!r}, threshold={self.threshold:.6g}, "
                f"input_policy={self.input_policy!r})")

    @property
    def threshold(self) -> float:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        # A threshold assigned to the object is no longer the one model.json says how it set,
        # so `criterion` stops naming that method (the CLI prints where a threshold came from).
        self._threshold = float(value)
        self.criterion = HAND_SET

    @property
    def input_policy(self) -> str:
        return self._input_policy

    @input_policy.setter
    def input_policy(self, policy: str) -> None:
        self._input_policy = _check_policy(policy)

    @property
    def compile_count(self) -> int:
        """How many batch programs have been compiled so far (one per bucket and dtype)."""
        return self._fn._cache_size()   # noqa: SLF001 (jax's documented-in-tests jit cache size)

    def prepare(self, images, *, names: Optional[Sequence[str]] = None,
                allow_upsample: bool = False, allow_gray: bool = False,
                detect_faces: bool = False) -> np.ndarray:
        """Images -> uint8 [N, S, S, 3] batch, whatever the input dtype (`prepare_image`: a
        float image is rounded to the 8-bit image it stands for; with `detect_faces`,
        `prepare_face`: the crop around each image's detected face).

        images: an RGB array [H, W, 3] or [N, H, W, 3] (uint8, or float in [0, 1]), a PIL image,
        or a list of those (sizes may differ). Raises `InputError` naming the offending image
        (`names[i]` or "images[i]")."""
        return self._prepare(images, names, allow_upsample, allow_gray, detect_faces)[0]

    def _prepare(self, images, names, allow_upsample, allow_gray, detect_faces):
        """(uint8 [N, S, S, 3] batch, tuple of N face squares or None): see `prepare`."""
        items, names, options = self._items(images, names, allow_upsample, allow_gray)
        if not detect_faces:
            return np.stack([prepare_image(im, self.image_size, name=n, **options)
                             for im, n in zip(items, names)]), None   # uint8 (prepare_image)
        crops, boxes = zip(*(prepare_face(im, self.image_size, name=n, **options)
                             for im, n in zip(items, names)))
        return np.stack(crops), tuple(boxes)

    def _prepare_tiles(self, images, allow_upsample, allow_gray, detect_faces):
        """The tiles policy: (uint8 [M, S, S, 3] every image's tiles, int [M] the image each
        tile belongs to, face squares or None)."""
        items, names, options = self._items(images, None, allow_upsample, allow_gray)
        boxes = None
        if detect_faces:
            items, boxes = zip(*(prepare_face(im, self.image_size, name=n, native=True,
                                              **options) for im, n in zip(items, names)))
            boxes = tuple(boxes)
        parts = [prepare_tiles(im, self.image_size, name=n, **options)
                 for im, n in zip(items, names)]
        owner = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
        return np.concatenate(parts), owner, boxes

    def _items(self, images, names, allow_upsample, allow_gray):
        """The inputs as a list of images, their names and the input options."""
        if isinstance(images, (list, tuple)):
            items = list(images)
        elif isinstance(images, Image.Image):
            items = [images]
        else:
            a = np.asarray(images)
            if a.ndim == 4:
                items = list(a)
            elif a.ndim in (2, 3):
                items = [a]
            else:
                raise InputError(f"images: shape {a.shape}; expected [H, W, 3], [N, H, W, 3] or "
                                 "a list of [H, W, 3] images")
        if not items:
            raise InputError("images: empty input; expected at least one image")
        if names is not None and len(names) != len(items):
            raise ValueError(f"{len(names)} names for {len(items)} images")
        names = names if names is not None else [f"images[{i}]" for i in range(len(items))]
        return items, names, dict(allow_upsample=allow_upsample, allow_gray=allow_gray)

    def _run(self, batch: np.ndarray, keep: Sequence[str]) -> dict:
        """Runs a prepared batch [N, S, S, 3] in bucketed chunks; numpy outputs `keep`."""
        parts = {k: [] for k in keep}
        for start in range(0, len(batch), self.max_batch):
            chunk = batch[start:start + self.max_batch]
            n = len(chunk)
            b = _bucket(n, self.max_batch)
            if b > n:
                chunk = np.concatenate([chunk, np.zeros((b - n,) + chunk.shape[1:], chunk.dtype)])
            out = self._fn(self.ds, self.dq, chunk)
            for k in keep:
                parts[k].append(np.asarray(out[k])[:n])
        return {k: np.concatenate(v) for k, v in parts.items()}

    def _scores(self, out: dict) -> dict:
        comps = {f"score_{c}": out[f"score_{c}"] for c in scores.COMPONENTS}
        fused = scores.fuse(comps, self.fusion_stats, self.fusion)
        return dict(score=fused, is_attack=fused >= self.threshold,
                    components={c: out[f"score_{c}"] for c in scores.COMPONENTS},
                    threshold=self.threshold, fusion=self.fusion)

    def score(self, images, *, allow_upsample: bool = False, allow_gray: bool = False,
              detect_faces: bool = False, input_policy: Optional[str] = None) -> Scores:
        """Fused attack scores and live/spoof decisions of face crops (see `Scores`); with
        `detect_faces`, of the face found in each photograph (`prepare_face`). `input_policy`
        (default: the model's) says how a crop larger than S is read: "resize" shrinks it to S,
        "tiles" scores its S x S tiles at its own resolution and averages each component score
        over them (the module docstring)."""
        keys = [f"score_{c}" for c in scores.COMPONENTS]
        if _check_policy(input_policy or self.input_policy) == "resize":
            batch, boxes = self._prepare(images, None, allow_upsample, allow_gray, detect_faces)
            return Scores(**self._scores(self._run(batch, keys)), face_boxes=boxes)
        batch, owner, boxes = self._prepare_tiles(images, allow_upsample, allow_gray,
                                                  detect_faces)
        out = self._run(batch, keys)
        counts = np.bincount(owner)
        out = {k: (np.bincount(owner, weights=v.astype(np.float64)) / counts).astype(v.dtype)
               for k, v in out.items()}
        return Scores(**self._scores(out), face_boxes=boxes)

    def decompose(self, images, *, allow_upsample: bool = False, allow_gray: bool = False,
                  detect_faces: bool = False, input_policy: Optional[str] = None
                  ) -> Decomposition:
        """Spoof noise, live reconstruction, depth and 0\\1 map (see `Decomposition`) of the
        crops resized to S, whatever the input policy: a decomposition is one S x S picture.
        Its scores and decisions are `score`'s under the same `input_policy` (default: the
        model's), so `decompose(x).is_attack` is `score(x).is_attack`: under "tiles", a crop
        larger than S is decided from its tiles at its own resolution, not from the pictured
        shrunk crop (the packaged model decides real crops shrunk from 256 px near chance:
        ACER 46-48 %, README "Capture resolution")."""
        batch, boxes = self._prepare(images, None, allow_upsample, allow_gray, detect_faces)
        keys = ["input", "noise", "live", "depth", "map"] + [f"score_{c}"
                                                             for c in scores.COMPONENTS]
        out = self._run(batch, keys)
        decided = self._scores(out)
        if _check_policy(input_policy or self.input_policy) == "tiles":
            # Every input is read again (a crop of S px is one tile and scores as above). Until
            # 2026-12-06 the scores here were the shrunk crop's under every policy, so they
            # could disagree with `score` on the same photograph.
            s = self.score(images, allow_upsample=allow_upsample, allow_gray=allow_gray,
                           detect_faces=detect_faces, input_policy="tiles")
            decided = dict(score=s.score, is_attack=s.is_attack, components=s.components,
                           threshold=s.threshold, fusion=s.fusion)
        return Decomposition(**decided, face_boxes=boxes, input=out["input"],
                             noise=out["noise"], live=out["live"], depth=out["depth"],
                             map=out["map"])


def find_workdir(path) -> Workdir:
    """A workdir, or any path inside it (ds/, dq/, */checkpoints, a step folder, eval/) -> the
    workdir (the nearest ancestor holding config.json)."""
    try:
        return Workdir.find(path)
    except WorkdirError as e:
        raise ModelLoadError(f"{e} (train one with `despoof train --workdir=...`)") from e


def read_config(wd: Workdir) -> ml_collections.ConfigDict:
    """The run's config.json, or ModelLoadError naming the file."""
    try:
        return wd.read_config()
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{wd.config_path}: cannot read the run's config ({e})") from e


def _fold_dirs(wd: Workdir) -> list:
    """The fold<k>/ workdirs of a multi-fold run's root (data.fold = -1), in fold order."""
    if not wd.root.is_dir():
        return []
    folds = [d for d in wd.root.iterdir()
             if d.name[:4] == "fold" and d.name[4:].isdigit() and (d / "config.json").exists()]
    return sorted(folds, key=lambda d: int(d.name[4:]))


def _read_model_json(wd: Workdir, config=None) -> dict:
    path = wd.model_json
    if not path.exists():
        method = config.get("method", "despoof") if config is not None else "despoof"
        if method != "despoof":
            # The baselines' evaluation writes eval/metrics.json but no model.json: there is no
            # DS Net to serve, so "run the evaluation" would not help.
            raise ModelLoadError(
                f"{wd.root} is a {method!r} baseline run (config.json: method), and baselines "
                "are not servable: despoof_jax.load, `despoof score` and `despoof export` serve "
                "the de-spoofing model (DS Net + DQ Net) only. Its evaluation is in "
                f"{wd.metrics_json}; `despoof crosscheck FACES_DIR --model {wd.root}` scores it "
                "on photographs with its own dev threshold")
        folds = _fold_dirs(wd)
        if folds:
            evaluated = [d for d in folds if (d / "eval" / "model.json").exists()]
            raise ModelLoadError(
                f"{wd.root} is the root of a multi-fold run: each fold is its own model, in "
                f"{', '.join(d.name for d in folds)}/ (the root holds no model.json). Load one "
                f"fold's folder instead, e.g. `--model {(evaluated or folds)[0]}`"
                + ("" if evaluated else "; none of them was evaluated yet (see their "
                   "eval/model.json)"))
        raise ModelLoadError(
            f"{wd.root} was never evaluated: {path} is missing, and it holds the fusion "
            "statistics and the dev threshold that turn scores into decisions. Run "
            f"`despoof train --config=<its config> --config.mode=eval --workdir={wd.root}` first")
    return _check_info(_read_json(path, "decision rule"), path)


def _read_json(path, what: str) -> dict:
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{path}: cannot read the model's {what} ({e})") from e
    if not isinstance(out, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, got {type(out).__name__}")
    return out


def _check_info(info: dict, path, config=None) -> dict:
    """model.json's decision rule, checked: the keys, a fusion the library knows, statistics for
    every component it standardises, a finite threshold, and (with `config`) the image size."""
    missing = {"fusion", "fusion_stats", "threshold", "image_size"} - set(info)
    if missing:
        raise ModelLoadError(f"{path}: missing {sorted(missing)}; re-run the evaluation")
    if info["fusion"] not in scores.FUSIONS:
        raise ModelLoadError(f"{path}: fusion {info['fusion']!r} is not a decision score the "
                             f"library computes ({', '.join(scores.FUSIONS)}); re-run the "
                             "evaluation, which resolves a rule such as 'dev_eer' to one of them")
    stats = info["fusion_stats"]
    try:
        bad = [c for c in scores.COMPONENTS
               if len(stats[c]) != 2 or not all(np.isfinite(float(x)) for x in stats[c])
               or float(stats[c][1]) <= 0]
    except (KeyError, TypeError, ValueError) as e:
        raise ModelLoadError(f"{path}: fusion_stats must give (mean, std > 0) for each of "
                             f"{scores.COMPONENTS} ({type(e).__name__}: {e})") from e
    if bad:
        raise ModelLoadError(f"{path}: fusion_stats of {bad} are not (mean, std > 0)")
    try:
        threshold = float(info["threshold"])
    except (TypeError, ValueError):
        threshold = float("nan")
    if not np.isfinite(threshold):
        raise ModelLoadError(f"{path}: threshold {info['threshold']!r}; expected a finite number")
    if info.get("input_policy", "resize") not in INPUT_POLICIES:
        raise ModelLoadError(f"{path}: input_policy {info['input_policy']!r}; expected one of "
                             f"{INPUT_POLICIES}")
    if config is not None and int(info["image_size"]) != int(config.data.image_size):
        raise ModelLoadError(f"{path} was written for image_size {info['image_size']} but the "
                             f"model's config.json says {config.data.image_size}")
    return info


def _check_weights(config, nets: dict, path) -> None:
    """The packaged arrays against the shapes `config` builds (names, shapes), so a weights file
    or a config.json that do not belong together fail at load, naming the first difference."""
    s = int(config.data.image_size)
    x = jax.ShapeDtypeStruct((1, s, s, 6), np.float32)
    ds_model, dq_model = state_lib.make_models(config)[:2]
    for net, module in (("ds", ds_model), ("dq", dq_model)):
        want = jax.eval_shape(lambda v: module.init({"params": jax.random.key(0)}, v,
                                                    train=False), x)
        got = {"params": nets[net].params, "batch_stats": nets[net].batch_stats}
        want_flat = {k: v.shape for k, v in traverse_util.flatten_dict(want).items()}
        got_flat = {k: np.shape(v) for k, v in traverse_util.flatten_dict(got).items()}
        if want_flat != got_flat:
            diff = sorted(set(want_flat.items()) ^ set(got_flat.items()), key=str)[:3]
            raise ModelLoadError(
                f"{path}: the {net.upper()} Net arrays do not fit config.json "
                f"({_describe(config)}); first differences (name, shape): {diff}")


def _describe(config) -> str:
    m = config.model
    return (f"model.ds_width={m.ds_width}, model.dq_width={m.dq_width}, "
            f"data.image_size={config.data.image_size}")


# The packaged form of a model (`despoof_jax/serving/pretrained/`, written by
# `despoof_jax.serving.pretrained.pack`): config.json (the run's config), model.json (eval/model.json:
# fusion, fusion statistics, dev threshold, plus provenance) and weights.npz ({"ds/params/...",
# "ds/batch_stats/...", "dq/...": arrays}, float16 or float32; restored as float32).
PRETRAINED = "pretrained"
PACKAGED_FILES = ("config.json", "model.json", "weights.npz")
# The files model.json's `packed.sha256` binds to it (`serving.pretrained.pack`).
BOUND_FILES = ("weights.npz", "config.json")


def pretrained_dir() -> pathlib.Path:
    """Where the packaged pretrained model lives: package data of `despoof_jax.serving`."""
    return pathlib.Path(str(importlib.resources.files("despoof_jax.serving") / PRETRAINED))


def is_packaged(path) -> bool:
    """Whether `path` is a folder holding a packaged model (PACKAGED_FILES)."""
    p = pathlib.Path(path)
    return p.is_dir() and all((p / f).is_file() for f in PACKAGED_FILES)


def _shadowed_folder() -> Optional[pathlib.Path]:
    """./pretrained when the current directory holds a folder of that name (other than the
    package's own): the bare name "pretrained" still means the shipped model."""
    local = pathlib.Path(PRETRAINED)
    if local.is_dir() and local.resolve() != pretrained_dir().resolve():
        return local.resolve()
    return None


def _shadow_note() -> str:
    local = _shadowed_folder()
    return (f"; the folder {local} in the current directory is not what 'pretrained' names: "
            "pass './pretrained' (or its absolute path) for that folder") if local else ""


def is_shipped(model_path) -> bool:
    """Whether `model_path` names the model shipped inside the installed package: "pretrained",
    or a path to the package's own pretrained/ folder."""
    if str(model_path) == PRETRAINED:
        return True
    p = pathlib.Path(model_path)
    return p.is_dir() and p.resolve() == pretrained_dir().resolve()


def model_json_path(model_path: str):
    """The model.json to store a new decision threshold of `model_path` in: a packaged folder or
    a training workdir (what `load` takes); a path with read_text / write_text. The shipped
    model (`is_shipped`) is refused with a `ModelLoadError`: writing there would change the
    installed package for every user (and a reinstall would undo it), so it is copied first."""
    if is_shipped(model_path):
        raise ModelLoadError(
            f"--model {model_path}: the model shipped inside the installed package "
            f"({pretrained_dir()}) is never written to. Copy it to a folder first (`cp -r "
            f"{pretrained_dir()} mymodel`; with --bona-fide, `--out DIR` writes the copy for you) "
            "and store the threshold there (--model mymodel --write)"
            + (_shadow_note() if str(model_path) == PRETRAINED else ""))
    if is_packaged(model_path):
        return pathlib.Path(model_path) / "model.json"
    return find_workdir(model_path).model_json


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_packaged(path, *, max_batch: int = DEFAULT_MAX_BATCH) -> DespoofModel:
    """A `DespoofModel` from a packaged folder (see PACKAGED_FILES): no checkpoint, no orbax."""
    p = pathlib.Path(path)
    if not is_packaged(p):
        raise ModelLoadError(f"{p}: not a packaged model; expected the files {PACKAGED_FILES} "
                             "(reinstall despoof_jax, or pack one with "
                             "`python -m despoof_jax.serving.pretrained WORKDIR`)")
    try:
        config = ml_collections.ConfigDict(_read_json(p / "config.json", "config"))
        config.data.image_size, config.model.ds_width, config.model.dq_width   # noqa: B018
    except (AttributeError, KeyError) as e:
        raise ModelLoadError(f"{p / 'config.json'}: not a despoof_jax run config ({e})") from e
    info = _check_info(_read_json(p / "model.json", "decision rule"), p / "model.json", config)
    try:
        with np.load(p / "weights.npz") as z:
            flat = {tuple(k.split("/")): np.asarray(z[k], np.float32) for k in z.files}
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{p / 'weights.npz'}: cannot read the weights ({e})") from e
    tree = traverse_util.unflatten_dict(flat)
    device = jax.local_devices()[0]
    nets = {}
    for net in ("ds", "dq"):
        if net not in tree or "params" not in tree[net]:
            raise ModelLoadError(f"{p / 'weights.npz'}: no {net}/params arrays")
        t = jax.device_put(tree[net], device)
        nets[net] = state_lib.FrozenNet(t["params"], t.get("batch_stats", {}))
    _check_weights(config, nets, p / "weights.npz")
    # Last: files that fit each other may still come from two packs of one architecture.
    bound = (info.get("packed") or {}).get("sha256") or {}   # absent in packs before 2026-12-04
    for name, digest in bound.items():
        if name not in BOUND_FILES or sha256_file(p / name) != digest:
            raise ModelLoadError(
                f"{p}: {name} is not the file its model.json was packed with (sha256 differs): "
                "the folder mixes two packs (a pack killed half way?); pack it again")
    return DespoofModel(config, nets["ds"], nets["dq"], fusion=info["fusion"],
                        fusion_stats=info["fusion_stats"], threshold=info["threshold"],
                        max_batch=max_batch, workdir=str(p),
                        input_policy=info.get("input_policy", "resize"),
                        criterion=info.get("criterion"))


def load(path: str, *, max_batch: int = DEFAULT_MAX_BATCH) -> DespoofModel:
    """A `DespoofModel` from a workdir written by `despoof_jax.experiment.train_and_evaluate` (or any path inside
    it): the latest DS Net and DQ Net checkpoints, the run's config.json, and the fusion, fusion
    statistics and dev threshold of `eval/model.json`. Raises `ModelLoadError` with the fix when
    the workdir was never evaluated, lacks a checkpoint, or its checkpoint does not fit its
    config.json.

    `load("pretrained")` loads the model shipped inside the package (see the README's model card;
    nothing is downloaded or trained), and a folder in the packaged form (`is_packaged`) loads
    the same way. The bare name "pretrained" always means the shipped model, with a warning when
    the current directory holds a folder of that name: "./pretrained" (or an absolute path)
    loads the folder."""
    if str(path) == PRETRAINED:
        if _shadowed_folder() is not None:
            warnings.warn(f"'pretrained' loaded the model shipped inside despoof_jax "
                          f"({pretrained_dir()}){_shadow_note()}", stacklevel=2)
        if not is_packaged(pretrained_dir()):
            raise ModelLoadError(f"no pretrained model in this install ({pretrained_dir()} lacks "
                                 f"{PACKAGED_FILES}); reinstall despoof_jax")
        return load_packaged(pretrained_dir(), max_batch=max_batch)
    if is_packaged(path):
        return load_packaged(path, max_batch=max_batch)
    wd = find_workdir(path)
    workdir = str(wd.root)
    config = read_config(wd)
    info = _read_model_json(wd, config)
    if int(info["image_size"]) != int(config.data.image_size):
        raise ModelLoadError(f"{workdir}: eval/model.json was written for image_size "
                             f"{info['image_size']} but config.json says "
                             f"{config.data.image_size}; re-run the evaluation")
    for stage in ("dq", "ds"):
        d = wd.checkpoints(stage)
        if not d.is_dir() or not any(s.name.isdigit() for s in d.iterdir()):
            raise ModelLoadError(f"{workdir}: no {stage.upper()} Net checkpoint in {d}; train "
                                 "the model first (despoof train ...)")
    try:
        ds, dq = evaluate.load_model(config, wd)
    except config_lib.ConfigError as e:   # e.g. a stage stopped before its last step: say so
        raise ModelLoadError(str(e)) from e
    except (ValueError, KeyError, TypeError) as e:
        reason = str(e).splitlines()[0].split(" Truncating")[0][:300]   # orbax's first sentence
        raise ModelLoadError(
            f"{workdir}: the checkpoints do not fit config.json ({_describe(config)}): {reason} "
            "The checkpoint was written with a different model config; restore the config.json "
            "of the run that trained it") from e
    return DespoofModel(config, ds, dq, fusion=info["fusion"], fusion_stats=info["fusion_stats"],
                        threshold=info["threshold"], max_batch=max_batch, workdir=workdir,
                        input_policy=info.get("input_policy", "resize"),
                        criterion=info.get("criterion"))


__all__ = ["load", "load_packaged", "is_packaged", "is_shipped", "pretrained_dir", "DespoofModel",
           "Scores", "Decomposition", "ModelLoadError", "InputError", "prepare_image",
           "prepare_native", "prepare_tiles", "tiles", "tile_origins", "INPUT_POLICIES", "find_workdir"]
