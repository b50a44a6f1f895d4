"""Reading face crops from image files, folders and videos, with errors a user can act on.

Every reader returns uint8 RGB arrays [H, W, 3] and raises `InputError` (a `ValueError`) whose
message names the file and says what was expected. The policy for unusual files:

  non-image / truncated file   rejected ("not an image", "truncated or corrupt")
  decompression bomb           rejected (more pixels than PIL's `Image.MAX_IMAGE_PIXELS` guard)
  grayscale (L, LA, I;16, ...) rejected by default: the model reads colour (RGB + HSV channels)
                               and was trained on colour faces; `allow_gray=True` replicates the
                               gray channel into R, G and B instead (the HSV part is then
                               saturation 0, out of the training distribution)
  gray stored as RGB           (R = G = B in every pixel, with content: `check_colour`) rejected
                               like a grayscale file, unless `allow_gray=True`
  alpha (RGBA, LA, PA)         the alpha channel is dropped; a warning is issued when some pixel
                               is not fully opaque (the colour under it is used as it is)
  16-bit / 32-bit integer      scaled to 8 bits (value * 255 / max of the bit depth, rounded)
  float ("F")                  must hold values in [0, 1] or [0, 255]; scaled to 8 bits
  palette, CMYK, YCbCr, ...    converted to RGB by PIL
  EXIF orientation             applied (a phone photo stored sideways is scored upright)
Videos: animated GIF / WebP / PNG (APNG) are read with PIL, frame by frame; a grayscale video
(every channel equal) is refused like a grayscale image; other containers (.mp4, .avi, ...)
need OpenCV (the `faces` extra installs `opencv-contrib-python`, which MediaPipe needs; a second
OpenCV wheel such as `opencv-python-headless` beside it overwrites the same `cv2`) or imageio
with a video plugin (`pip install "imageio[pyav]"`), and say so when neither is installed.
"""
from __future__ import annotations

import os
import warnings
from typing import Iterator, Optional

import numpy as np
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                    ".pnm")
ANIMATED_EXTENSIONS = (".gif",)          # always read frame by frame (a 1-frame GIF is an image)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
KNOWN_EXTENSIONS = IMAGE_EXTENSIONS + ANIMATED_EXTENSIONS + VIDEO_EXTENSIONS
# PIL modes of grayscale pictures (refused unless allow_gray); gray stored in an RGB file is
# found by its pixels instead (`check_colour`).
GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class InputError(ValueError):
    """A file or array that cannot be scored; the message names it and what was expected."""


def to_rgb8(img: Image.Image, name: str, allow_gray: bool, what: str = "image") -> np.ndarray:
    """A decoded PIL image (one frame) -> uint8 [H, W, 3], following the module's policy."""
    mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        alpha = np.asarray(img.convert("RGBA"))[..., 3]
        if np.any(alpha < 255):
            warnings.warn(f"{name}: has transparent pixels (mode {mode}); the alpha channel is "
                          "dropped and the colour under it scored as it is", stacklevel=3)
    if mode in GRAY_MODES and not allow_gray:
        raise InputError(f"{name}: grayscale {what} (PIL mode {mode}); expected a colour RGB face "
                         "crop: the model reads RGB + HSV and was trained on colour faces "
                         "(pass allow_gray=True / --allow-gray to replicate the gray channel)")
    if mode.startswith("I") or mode == "F":
        a = np.asarray(img, dtype=np.float64)
        if mode == "F":
            top = 1.0 if a.size and np.nanmax(a) <= 1.0 else 255.0
        else:
            top = 65535.0 if (mode.startswith("I;16") or a.max(initial=0) > 255) else 255.0
            if mode == "I" and top == 255.0:   # 32-bit ints: no bit depth to read, only values
                warnings.warn(f"{name}: PIL mode I image with values up to {a.max(initial=0):g}, "
                              "read as 8-bit (0-255); if it is a dark 16-bit image, convert it "
                              "to 8 bits yourself", stacklevel=3)
        if not np.all(np.isfinite(a)) or a.min(initial=0) < 0 or a.max(initial=0) > top:
            raise InputError(f"{name}: {mode} image with values in [{a.min()}, {a.max()}]; "
                             f"expected [0, {top:g}]")
        gray = np.round(a * (255.0 / top)).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def check_colour(rgb: np.ndarray, name: str, allow_gray: bool, what: str = "image"
                 ) -> np.ndarray:
    """uint8 RGB [H, W, 3], refused when it is grayscale stored as RGB (R = G = B in every pixel,
    with content: a black or flat image says nothing) unless `allow_gray`. Decoders and
    `convert("RGB")` return 3 channels for gray pictures, so the PIL mode alone misses them."""
    if (not allow_gray and rgb.std() > 1.0 and np.array_equal(rgb[..., 0], rgb[..., 1])
            and np.array_equal(rgb[..., 1], rgb[..., 2])):
        raise InputError(f"{name}: grayscale {what} (R = G = B); expected colour: the model "
                         "reads RGB + HSV and was trained on colour faces (pass allow_gray=True / "
                         "--allow-gray to score it anyway)")
    return rgb


def _bomb(path: str, e: Exception) -> InputError:
    return InputError(f"{path}: too many pixels for PIL's decompression-bomb guard ({e}); "
                      "expected a face crop (if the file is trusted, raise "
                      "PIL.Image.MAX_IMAGE_PIXELS)")


def _open(path: str) -> Image.Image:
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder; expected an image or video file")
    try:
        return Image.open(path)
    except UnidentifiedImageError as e:
        raise InputError(f"{path}: not an image PIL can read; expected an image file "
                         f"({', '.join(IMAGE_EXTENSIONS)}) or a video") from e
    except Image.DecompressionBombError as e:
        raise _bomb(path, e) from e
    except OSError as e:
        raise InputError(f"{path}: cannot be opened ({e})") from e


def decode(img: Image.Image, name: str, allow_gray: bool, what: str = "image") -> np.ndarray:
    """A (lazily opened) PIL image -> uint8 RGB [H, W, 3] by the module's policy, EXIF orientation
    applied. Decoding happens here, so a truncated or oversized file is an `InputError` naming
    `name`, not an OSError raised later; gray stored as RGB is left to `check_colour`."""
    try:
        img.load()
        return to_rgb8(ImageOps.exif_transpose(img), name, allow_gray, what)
    except InputError:
        raise
    except Image.DecompressionBombError as e:
        raise _bomb(name, e) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{name}: truncated or corrupt {what} ({e}); expected a complete "
                         f"{what}") from e


def read_image(path: str, *, allow_gray: bool = False) -> np.ndarray:
    """One image file -> uint8 RGB [H, W, 3] (the first frame of an animated file)."""
    with _open(path) as img:
        rgb = decode(img, path, allow_gray)
    return check_colour(rgb, path, allow_gray)


def _every_check(every: int) -> int:
    if every < 1:
        raise ValueError(f"every={every}; expected a positive frame step")
    return every


def _read_animated(path: str, every: int, allow_gray: bool) -> Iterator[tuple[int, np.ndarray]]:
    img = _open(path)
    with img:
        try:
            for i, frame in enumerate(ImageSequence.Iterator(img)):
                if i % every == 0:
                    frame.load()
                    yield i, _check_colour_frame(to_rgb8(frame, f"{path} frame {i}", allow_gray),
                                                 path, i, allow_gray)
        except InputError:
            raise
        except Image.DecompressionBombError as e:
            raise _bomb(path, e) from e
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise InputError(f"{path}: truncated or corrupt animation ({e})") from e


def _check_colour_frame(frame: np.ndarray, path: str, i: int, allow_gray: bool) -> np.ndarray:
    """`check_colour` of a decoded video frame; decoders return 3 channels for gray videos."""
    return check_colour(frame, f"{path} frame {i}", allow_gray, what="video")


def _read_video(path: str, every: int, allow_gray: bool = False
                ) -> Iterator[tuple[int, np.ndarray]]:
    try:
        import cv2  # noqa: PLC0415 (optional dependency)
    except ImportError:
        cv2 = None
    if cv2 is not None:
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            raise InputError(f"{path}: OpenCV cannot open this video")
        try:
            i = 0
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                if i % every == 0:
                    yield i, _check_colour_frame(np.ascontiguousarray(bgr[..., ::-1]), path, i,
                                                 allow_gray)
                i += 1
        finally:
            cap.release()
        return
    try:
        import imageio.v3 as iio  # noqa: PLC0415 (optional dependency: the third-party imageio)
        frames = iio.imiter(path)
        first = next(frames, None)
    except (ImportError, OSError, ValueError, RuntimeError) as e:
        raise InputError(
            f"{path}: reading {os.path.splitext(path)[1]} videos needs an extra: "
            "`pip install 'despoof_jax[faces]'` (OpenCV) or `pip install \"imageio[pyav]\"` "
            f"(animated GIF works without one); the reader said: {e}") from e
    if first is None:
        raise InputError(f"{path}: video has no frames")

    def chain():
        yield first
        yield from frames

    i = 0
    try:
        for i, f in enumerate(chain()):
            if i % every == 0:
                f = np.asarray(f)
                if f.ndim == 2:
                    f = np.repeat(f[..., None], 3, axis=-1)
                if f.dtype == np.uint16:      # 16-bit frames: scaled to 8 bits, not wrapped around
                    f = np.round(f / 257.0)
                elif f.dtype != np.uint8:
                    raise InputError(f"{path} frame {i}: {f.dtype} frames; expected 8- or 16-bit")
                yield i, _check_colour_frame(np.ascontiguousarray(f[..., :3]).astype(np.uint8),
                                             path, i, allow_gray)
    except InputError:
        raise
    except (OSError, ValueError, RuntimeError, EOFError) as e:   # the decoder, mid-stream
        raise InputError(f"{path}: truncated or corrupt video after frame {i} "
                         f"({type(e).__name__}: {e})") from e


MAYBE_ANIMATED = (".webp", ".png")   # images, unless they hold several frames (WebP, APNG)


def is_video(path: str) -> bool:
    """True for files read frame by frame: videos, animated GIFs, and WebP / PNG files with more
    than one frame."""
    lower = path.lower()
    if lower.endswith(ANIMATED_EXTENSIONS + VIDEO_EXTENSIONS):
        return True
    if lower.endswith(MAYBE_ANIMATED) and os.path.isfile(path):
        try:
            with Image.open(path) as img:
                return getattr(img, "n_frames", 1) > 1
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
            return False   # read_image says what is wrong with it
    return False


def read_frames(path: str, *, every: int = 1,
                allow_gray: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, uint8 RGB [H, W, 3]) for every `every`-th frame of a video or animated GIF.

    Raises `InputError` for a file that is not a readable video, and for one without frames."""
    every = _every_check(every)
    count = 0
    if path.lower().endswith(VIDEO_EXTENSIONS):
        if not os.path.isfile(path):
            raise InputError(f"{path}: no such file")
        gen = _read_video(path, every, allow_gray)
    else:
        gen = _read_animated(path, every, allow_gray)
    for item in gen:
        count += 1
        yield item
    if count == 0:
        raise InputError(f"{path}: no frames")


def expand_paths(paths: list[str]) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """Command-line paths -> (files to read, [(path, error)], skipped files).

    Files named explicitly are always read (PIL sniffs their content, whatever the extension).
    Folders are walked recursively, their files sorted by path; inside them, hidden entries are
    ignored and files whose extension is not in `KNOWN_EXTENSIONS` are returned as skipped (a
    labels .csv next to the crops is not an error). A missing path, and a folder holding no image
    or video, are errors."""
    files, errors, skipped = [], [], []
    for p in paths:
        if os.path.isdir(p):
            found = []
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for n in sorted(names):
                    if n.startswith("."):
                        continue
                    f = os.path.join(root, n)
                    (found if n.lower().endswith(KNOWN_EXTENSIONS) else skipped).append(f)
            found.sort()
            if not found:
                errors.append((p, f"folder contains no image or video files (looked for "
                                  f"{', '.join(KNOWN_EXTENSIONS)}, recursively)"))
            files.extend(found)
        elif os.path.exists(p):
            files.append(p)
        else:
            errors.append((p, "no such file or folder"))
    return files, errors, skipped


def iter_inputs(path: str, *, every: int = 1, allow_gray: bool = False
                ) -> Iterator[tuple[str, Optional[int], np.ndarray]]:
    """(path, frame index or None, uint8 RGB [H, W, 3]) for an image file or each kept frame of a
    video. Raises `InputError` (possibly after some frames) when the file cannot be read."""
    if is_video(path):
        for i, frame in read_frames(path, every=every, allow_gray=allow_gray):
            yield path, i, frame
    else:
        yield path, None, read_image(path, allow_gray=allow_gray)
