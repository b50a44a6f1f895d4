"""Input pipeline: grain over a random-access record source (a `tfds.data_source`).

Records come from the `synthetic_spoof` builder (or any source with the same fields):
  image uint8 [S, S, 3], depth uint8 [S, S, 1], label, species, device, identity, video (ints).

Batches are numpy dicts, B = the per-host batch:
  rgb:      uint8   [B, S, S, 3]      RGB in [0, 255]. Shipped as uint8 (4x less host->device
                                      traffic than float32); the RGB -> RGB+HSV model input
                                      (`despoof_jax.data.color.model_input`, 6 channels in [0, 1])
                                      is part of the model input function and runs inside the
                                      jitted step.
  depth:    float32 [B, S/8, S/8, 1]  face depth in [0, 1], area-averaged over 8x8 blocks to the
                                      DQ Net output size (32x32 for the paper's 256 input). This is
                                      the face shape for spoof faces too: DQ pre-training regresses
                                      a zero map for spoof inputs, but DS Net asks for this face
                                      depth on the live reconstruction of a spoof input (Sec. 3.3),
                                      so the zeroing happens in the loss.
  map:      float32 [B, S/8, S/8, 1]  the 0\\1 map label (Eq. 6): all ones for spoof, zeros for live.
  label:    int32   [B]               0 live, 1 spoof.
  live_reference: uint8 [B, S, S, 3]  only with `with_reference=True` (synthetic records): the
                                      frame through an ideal medium, degraded like `rgb`; the
                                      true noise N* = rgb - live_reference (`loss.noise_truth`).
  species, device, identity, video: int32 [B].
Evaluation batches add `valid: bool [B]` and `index: int64 [B]` (record index, -1 on padding).

Multi-host: each host reads its own strided slice `indices[process_index::process_count]`, cut to a
common length so that every host takes the same number of steps.
"""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Iterator, Optional, Sequence

import grain.python as grain
import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

# Side of the label maps relative to the image: DQ Net and the 0\1 map head emit S/8 x S/8.
LABEL_STRIDE = 8
INT_KEYS = ("label", "species", "device", "identity", "video")


class _Subset:
    """Random-access view `i -> source[indices[i]]`: grain's sampler draws keys 0..len-1."""

    def __init__(self, source, indices: np.ndarray):
        self._source = source
        self._indices = np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, i: int):
        return self._source[int(self._indices[i])]

    def __repr__(self) -> str:
        # Grain compares repr(source) when restoring an iterator state: make it stable across
        # processes (no object addresses) and sensitive to the index set.
        digest = hashlib.sha1(self._indices.tobytes()).hexdigest()[:16]
        return f"_Subset({self._source!r}, n={len(self)}, indices_sha1={digest})"


def _check_size(record: dict, size: int) -> None:
    image = np.asarray(record["image"])
    depth = np.asarray(record["depth"])
    if image.shape != (size, size, 3):
        raise ValueError(f"Record image has shape {image.shape}; expected ({size}, {size}, 3) for "
                         f"size={size}. Pass the size the dataset was built with (its config).")
    if depth.shape not in ((size, size, 1), (size, size)):
        raise ValueError(f"Record depth has shape {depth.shape}; expected ({size}, {size}, 1).")


def _check_indices(source, indices) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"indices must be a 1-D integer array, got {indices.dtype}{indices.shape}.")
    if len(indices) == 0:
        raise ValueError("indices is empty: the protocol selected no records of this split.")
    if indices.min() < 0 or indices.max() >= len(source):
        raise ValueError(f"indices must lie in [0, {len(source)}) (the source's length); got "
                         f"[{indices.min()}, {indices.max()}].")
    return indices.astype(np.int64)


def _read(source, indices: np.ndarray) -> list[dict]:
    """source[i] for i in indices, batched when the source can (ArrayRecord reads in parallel)."""
    keys = [int(i) for i in indices]
    if not keys:
        return []
    if hasattr(source, "__getitems__"):
        return list(source.__getitems__(keys))
    return [source[k] for k in keys]


@dataclasses.dataclass(frozen=True)
class Degradation:
    """Image degradations of the paper's Table 3 (resolution and blurriness), applied to the image
    of every record before it reaches the model; labels and depth are untouched.

    Attributes:
      size: down-sample the S x S image to size x size, then back up to S x S (0 = off). Both
        resizes are bilinear (PIL, which low-pass filters when it shrinks), so the image keeps its
        shape and loses the frequencies above the new Nyquist limit.
      blur_sigma: std of a Gaussian blur in pixels of the S x S image (0 = off), per channel.
    """

    size: int = 0
    blur_sigma: float = 0.0

    def __post_init__(self):
        # A negative value would read as "off" and a Table 3 run would train on clean images.
        if not (isinstance(self.size, (int, np.integer)) and self.size >= 0):
            raise ValueError(f"data.degrade_size={self.size!r}; expected a whole number of pixels "
                             ">= 0 (0 = off)")
        if not (np.isfinite(self.blur_sigma) and self.blur_sigma >= 0):
            raise ValueError(f"data.blur_sigma={self.blur_sigma!r}; expected a std in pixels >= 0 "
                             "(0 = off)")

    def check_size(self, image_size: int) -> None:
        """ValueError unless `size` lowers the resolution of an image_size x image_size image."""
        if self.size >= image_size:
            raise ValueError(f"data.degrade_size={self.size} is not below data.image_size="
                             f"{image_size}: it would not lower the resolution (0 = off)")

    @property
    def active(self) -> bool:
        return self.size > 0 or self.blur_sigma > 0


def degrade(image: np.ndarray, degradation: Optional[Degradation]) -> np.ndarray:
    """uint8 [S, S, 3] -> uint8 [S, S, 3] after `degradation` (resolution first, then blur)."""
    if degradation is None or not degradation.active:
        return image
    out = np.asarray(image, np.float32)
    s = out.shape[0]
    if degradation.size:
        degradation.check_size(s)
        low = Image.fromarray(np.asarray(image, np.uint8)).resize(
            (degradation.size, degradation.size), Image.BILINEAR)
        out = np.asarray(low.resize((s, s), Image.BILINEAR), np.float32)
    if degradation.blur_sigma > 0:
        out = gaussian_filter(out, sigma=(degradation.blur_sigma, degradation.blur_sigma, 0),
                              mode="reflect")
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def to_example(record: dict, size: int, degradation: Optional[Degradation] = None,
               with_reference: bool = False) -> dict[str, np.ndarray]:
    """One record -> one unbatched example (the batch fields above without the B axis)."""
    _check_size(record, size)
    if with_reference and "live_reference" not in record:
        raise ValueError("with_reference=True needs records with a `live_reference` (the synthetic "
                         f"world's ground truth); this record has only {sorted(record)}")
    s8 = size // LABEL_STRIDE
    depth = np.asarray(record["depth"], np.float32).reshape(size, size) / 255.0
    # Area averaging (mean of each 8x8 block) keeps the depth of thin structures at the block's
    # mean instead of aliasing them as point sampling would.
    depth = depth.reshape(s8, LABEL_STRIDE, s8, LABEL_STRIDE).mean(axis=(1, 3))[..., None]
    label = np.int32(record["label"])
    example = {
        "rgb": degrade(np.asarray(record["image"], np.uint8), degradation),
        "depth": depth.astype(np.float32),
        "map": np.full((s8, s8, 1), label, np.float32),
    }
    for key in INT_KEYS:
        example[key] = np.int32(record[key])
    if with_reference:
        example["live_reference"] = degrade(np.asarray(record["live_reference"], np.uint8),
                                            degradation)
    return example


class _ToExample(grain.MapTransform):
    def __init__(self, size: int, degradation: Optional[Degradation] = None,
                 with_reference: bool = False):
        self._size = size
        self._degradation = degradation
        self._with_reference = with_reference

    def map(self, record):
        return to_example(record, self._size, self._degradation, self._with_reference)


def host_slice(indices: np.ndarray, process_index: int, process_count: int) -> np.ndarray:
    """This host's strided share of `indices`, cut to len(indices) // process_count records.

    The remainder (< process_count records) is dropped so that all hosts have equally many
    records, hence equally many batches: a host that ran one step more would hang the others in a
    collective.
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index must be in [0, {process_count}); got {process_index}.")
    per_host = len(indices) // process_count
    return np.asarray(indices)[process_index::process_count][:per_host]


def train_iterator(source, indices: Sequence[int] | np.ndarray, *, global_batch_size: int,
                   seed: int, process_index: int, process_count: int, size: int,
                   shuffle: bool = True, num_epochs: int | None = None, worker_count: int = 0,
                   read_threads: int = 4, prefetch: int = 64,
                   degradation: Optional[Degradation] = None,
                   with_reference: bool = False) -> grain.PyGrainDatasetIterator:
    """Training batches of this host: shuffled with `seed`, repeated `num_epochs` (None = forever).

    Args:
      source: random-access records (`tfds.data_source` / `load_source`).
      indices: record indices to train on (`protocols.select_indices`), all hosts pass the same.
      global_batch_size: batch over all hosts; each host yields global_batch_size // process_count.
      seed: shuffle seed, a non-negative 32-bit int; each epoch gets a different order.
      process_index, process_count: this host and the host count (`jax.process_index()`, ...).
      size: image side S the model expects; records of another size raise ValueError.
      worker_count: grain worker processes (0 = decode in this process). Workers receive the
        pickled source, and grain reads absl flags in them: run under `absl.app.run` (main.py
        does) or call `absl.flags.FLAGS.mark_as_parsed()` first in a notebook.
      read_threads, prefetch: grain ReadOptions (reader threads, records buffered ahead).
      degradation: Table 3 image degradation (None = the images as stored).
      with_reference: batches also carry `live_reference` (records without one raise).

    Returns:
      A grain iterator of the batch dicts in the module docstring; incomplete batches are dropped.
      It is resumable: `state = it.get_state()` (bytes, store it with the checkpoint) and, on a
      fresh iterator built with the same arguments, `it.set_state(state)` continues with the very
      next batch. (`grain.PyGrainCheckpointHandler` saves it through orbax.)
    """
    if process_count < 1 or global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(f"global_batch_size ({global_batch_size}) must be a positive multiple of "
                         f"process_count ({process_count}).")
    if size % LABEL_STRIDE:
        raise ValueError(f"size must be a multiple of {LABEL_STRIDE}, got {size}.")
    batch_size = global_batch_size // process_count
    indices = host_slice(_check_indices(source, indices), process_index, process_count)
    if len(indices) < batch_size:
        raise ValueError(f"Host {process_index} of {process_count} has {len(indices)} records, "
                         f"fewer than one per-host batch of {batch_size}: use a smaller "
                         "global_batch_size or more data.")
    # Fail here, with the size mismatch or a missing reference, rather than in a reader thread
    # or worker.
    to_example(source[int(indices[0])], size, None, with_reference)
    subset = _Subset(source, indices)
    sampler = grain.IndexSampler(num_records=len(subset), shard_options=grain.NoSharding(),
                                 shuffle=shuffle, num_epochs=num_epochs, seed=seed)
    loader = grain.DataLoader(
        data_source=subset, sampler=sampler,
        operations=[_ToExample(size, degradation, with_reference),
                    grain.Batch(batch_size, drop_remainder=True)],
        worker_count=worker_count,
        read_options=grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch))
    return iter(loader)


def eval_batches(source, indices: Sequence[int] | np.ndarray, *, batch_size: int, size: int,
                 process_index: int = 0, process_count: int = 1,
                 degradation: Optional[Degradation] = None) -> Iterator[dict[str, np.ndarray]]:
    """Every index of this host exactly once, in order, in fixed-shape batches.

    Hosts take strided slices `indices[process_index::process_count]` (none dropped) and all yield
    ceil(len(indices) / (process_count * batch_size)) batches, so jitted eval compiles once and no
    host waits on another. Padding rows are zeros with `valid=False` and `index=-1`.

    Yields:
      The batch dicts of the module docstring, B = batch_size, plus
      valid: bool [B] (False on padding) and index: int64 [B] (record index into `source`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if size % LABEL_STRIDE:
        raise ValueError(f"size must be a multiple of {LABEL_STRIDE}, got {size}.")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index must be in [0, {process_count}); got {process_index}.")
    indices = _check_indices(source, indices)
    mine = indices[process_index::process_count]
    per_host = -(-len(indices) // process_count)  # The largest host share.
    n_batches = -(-per_host // batch_size)
    _check_size(source[int(indices[0])], size)
    template = None
    for b in range(n_batches):
        chunk = mine[b * batch_size:(b + 1) * batch_size]
        records = _read(source, chunk)
        examples = [to_example(r, size, degradation) for r in records]
        if template is None:
            template = to_example(source[int(indices[0])], size) if not examples else examples[0]
        pad = batch_size - len(examples)
        examples += [{k: np.zeros_like(v) for k, v in template.items()}] * pad
        batch: dict[str, Any] = {k: np.stack([e[k] for e in examples]) for k in template}
        batch["valid"] = np.arange(batch_size) < len(chunk)
        batch["index"] = np.concatenate([chunk, np.full(pad, -1, np.int64)])
        yield batch


def random_batch(seed: int, batch: int, size: int) -> dict[str, np.ndarray]:
    """A train-step batch (rgb, depth, label; the layout above) with random content and
    alternating live/spoof labels: for benchmarks and tests that need the shapes, not the data."""
    r = np.random.RandomState(seed)
    return dict(rgb=r.randint(0, 256, (batch, size, size, 3)).astype(np.uint8),
                depth=r.rand(batch, size // LABEL_STRIDE, size // LABEL_STRIDE, 1).astype(
                    np.float32),
                label=(np.arange(batch) % 2).astype(np.int32))
