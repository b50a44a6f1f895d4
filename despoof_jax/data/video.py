"""Video decoding with PyAV: sampled RGB frames of a video file, upright, with their frame numbers.

`sample_frames(path, stride=s, max_frames=m)` yields `(frame_index, rgb)` for frame_index in
0, s, 2s, ... (at most m of them; 0 = no cap), rgb uint8 [H, W, 3] as the video is *displayed*:
the container's display matrix (the rotation a phone records instead of re-encoding, e.g. the
180-degree Android videos of MSU-MFSD) is applied, plus an optional extra rotation for files whose
metadata is wrong or missing.

Every frame is decoded, not only the sampled ones, so that a file which ends early is noticed: a
video that cannot be opened, has no video stream, fails to decode, or decodes to clearly fewer
frames than its container declares (more than `SHORT_FRAMES` and `SHORT_FRACTION` of them) raises
`VideoError` naming the file. A smaller shortfall is only logged: an AVI file counts the empty
chunks its recorder wrote for dropped frames, which decode to nothing, so a whole file can decode
to a frame or two fewer than it declares. (Containers that declare no frame count cannot be checked
for truncation this way.)

PyAV (`av`) is an optional dependency: `pip install 'despoof_jax[faces]'`.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
from absl import logging

# Decoding fewer frames than the container declares is truncation when the shortfall exceeds both
# SHORT_FRAMES frames and SHORT_FRACTION of the declared count; a smaller one is only logged.
SHORT_FRAMES = 2
SHORT_FRACTION = 0.02


class VideoError(ValueError):
    """A video file that cannot be read completely (unreadable, no video stream, truncated)."""


def _import_av():
    try:
        import av  # noqa: PLC0415 (optional dependency)
    except ImportError as e:
        raise ImportError("Decoding videos needs PyAV: pip install 'despoof_jax[faces]' "
                          "(or: pip install av).") from e
    return av


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """rgb [H, W, 3] rotated counter-clockwise by `rotation` degrees (a multiple of 90)."""
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}.")
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def sample_frames(path: str | os.PathLike, *, stride: int = 1, max_frames: int = 0,
                  extra_rotation: int = 0) -> "FrameSampler":
    """The sampled frames of a video: `FrameSampler(path, ...)`, see there."""
    return FrameSampler(path, stride=stride, max_frames=max_frames, extra_rotation=extra_rotation)


class FrameSampler:
    """Iterator of (frame_index, rgb uint8 [H, W, 3]) for every `stride`-th frame, upright.

    Args:
      path: the video file.
      stride: keep frames 0, stride, 2 * stride, ...
      max_frames: keep at most this many frames (0 = all sampled frames). Decoding still runs to
        the end of the file, to detect truncation.
      extra_rotation: degrees counter-clockwise applied after the container's own rotation (for
        files whose rotation metadata is missing); a multiple of 90.

    After the iterator is exhausted, `n_frames` holds the number of frames the file decoded to and
    `declared` the count its container declares (0: none).

    Raises (while iterating):
      VideoError: the file cannot be opened or decoded, holds no video stream, or ends clearly
        before the frame count its container declares (see the module docstring). Raised after
        the frames decoded so far were yielded when the problem shows up mid-file, so a caller
        must consume the whole iterator.
    """

    def __init__(self, path: str | os.PathLike, *, stride: int = 1, max_frames: int = 0,
                 extra_rotation: int = 0):
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}.")
        if extra_rotation % 90:
            raise ValueError(f"extra_rotation must be a multiple of 90, got {extra_rotation}.")
        self.path = os.fspath(path)
        self.stride, self.max_frames, self.extra_rotation = stride, max_frames, extra_rotation
        self.n_frames: int | None = None
        self.declared: int | None = None
        self._it = self._frames()

    def __iter__(self):
        return self

    def __next__(self) -> tuple[int, np.ndarray]:
        return next(self._it)

    def _frames(self) -> Iterator[tuple[int, np.ndarray]]:
        av = _import_av()
        path = self.path
        if not os.path.isfile(path):
            raise VideoError(f"{path}: no such video file.")
        try:
            container = av.open(path)
        except Exception as e:   # noqa: BLE001 (FFmpeg reports bad files in many ways)
            raise VideoError(f"{path}: cannot open the video ({type(e).__name__}: {e}).") from e
        with container:
            if not container.streams.video:
                raise VideoError(f"{path}: holds no video stream (truncated or not a video?).")
            stream = container.streams.video[0]
            declared = int(stream.frames or 0)
            n, kept = 0, 0
            try:
                for frame in container.decode(stream):
                    if n % self.stride == 0 and (not self.max_frames or kept < self.max_frames):
                        rotation = int(round(frame.rotation or 0)) + self.extra_rotation
                        rgb = upright(frame.to_ndarray(format="rgb24"), rotation)
                        kept += 1
                        n += 1
                        yield n - 1, rgb
                    else:
                        n += 1
            except Exception as e:   # noqa: BLE001
                raise VideoError(f"{path}: decoding failed after {n} frames "
                                 f"({type(e).__name__}: {e}).") from e
        if n == 0:
            raise VideoError(f"{path}: no frame could be decoded (truncated or corrupt).")
        if declared and n < declared:
            short = declared - n
            if short > SHORT_FRAMES and short > SHORT_FRACTION * declared:
                raise VideoError(f"{path}: truncated: decoded {n} frames, the container declares "
                                 f"{declared}.")
            logging.warning("%s: decoded %d frames, the container declares %d; taken for dropped "
                            "frames (empty AVI chunks), not truncation.", path, n, declared)
        self.n_frames, self.declared = n, declared
