"""Shared machinery of the real-dataset TFDS builders (Oulu-NPU, CASIA-FASD, Replay-Attack,
MSU-MFSD): builder base, frame sampling, worker pool, resumability and skip bookkeeping.

A builder lists its videos from the manually downloaded tree (`_plan`: one `VideoJob` per video,
with labels and metadata parsed from the published file names and protocol files); worker
processes decode each video (`despoof_jax.data.video`), keep every `stride`-th frame, crop the face
(annotation or detector) and render its pseudo-depth (`despoof_jax.data.faces`).

Records (numpy, `builder.as_data_source(split)`), the synthetic world's fields plus provenance:
    image:       uint8 [S, S, 3] RGB face crop
    depth:       uint8 [S, S, 1] pseudo-depth, 0 off the face, 255 at the nearest face point
    label:       int, 0 live / 1 spoof
    species:     int, 0 live, attack ids as in the synthetic world: 1, 2 print (or photo) media,
                 3, 4 display (replay) media; each builder's SPECIES_NAMES says which it uses
    device, identity, video, frame: int32; `video` unique over the dataset, `frame` the ordinal of
                 the sampled frame in its video (0, 1, ...)
    frame_index: int32, the frame's number in the source video (0-based)
    source:      bytes, the video's path relative to the dataset root ('/'-separated)
    plus each builder's EXTRA_COLUMNS (int32, e.g. Oulu-NPU's session and protocol membership).

Bad input: a missing or unreadable annotation file, a truncated video, a frame without a face,
an annotation file that leaves sampled frames uncovered or whose frame numbering cannot be told
(`annotation_base`) each raise `BadInputError` naming the file, unless the builder is made with
`skip_bad=True` (`data.skip_bad=True`): then the video or frames are left out, logged, and listed
in the dataset's metadata (`skipped(builder)`, `metadata.json` beside the records), and a dataset
built that way is refused by a later `skip_bad=False` load, so a smaller dataset is never silent.
Missing top-level folders and protocol files are always errors. So is an incomplete download: fewer
videos than the published dataset (`PUBLISHED_VIDEOS`: an archive not extracted, a folder left
out), or a video that the dataset's own lists name (a protocol file, a subject folder's fixed set)
missing, unless the builder is made with `partial=True` (`data.partial_download=True`): then it is
built from what is there, with one warning giving the counts, which are also in the metadata
(`videos`), and a later load without `partial` refuses it. A video that is there but broken stays
bad input either way.

Resumability: each video's frames are cached under `<download_dir>/despoof_frames/` (by default
`<data_dir>/downloads/`) as soon as a worker finishes them; a preparation that is killed and started
again reuses them and only processes the rest. The cache is deleted once the dataset is written.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import re
import time
from typing import Collection, Iterator, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath
from tqdm import auto as tqdm

from despoof_jax.data import faces
from despoof_jax.data.builders import metadata_table

SPLITS = ("train", "dev", "test")
COMMON_INT_KEYS = ("label", "species", "device", "identity", "video", "frame", "frame_index")
# Bump when a change to the face crop or the depth labeler changes what a video yields: the frame
# cache of an interrupted preparation is keyed by it.
# 2: depth from the mesh's own triangles; the fallback detector takes the face nearest the
# annotation. 3: annotation frame numbering told against the video (`annotation_base`).
FRAMES_VERSION = 3


class BadInputError(ValueError):
    """A file of the manual download that is missing, unreadable or inconsistent."""


SKIP_HINT = ("Fix or remove it, or build with skip_bad=True (data.skip_bad=True) to leave it out "
             "and list it in the dataset's metadata.")


@dataclasses.dataclass(eq=False)
class RealConfig(tfds.core.BuilderConfig):
    """How a real dataset is turned into records.

    Attributes:
      size: side S of the face crops (a multiple of 8: the depth/map labels are S/8 wide).
      stride: keep frames 0, stride, 2 * stride, ... of each video.
      max_frames: keep at most this many frames per video (0 = every sampled frame).
      crop_scale: crop side / face box side (`faces.crop`).
      dev_subjects: for datasets without a development set (CASIA-FASD, MSU-MFSD): the last
        `dev_subjects` training subjects (by number) form the "dev" split, the rest "train".
      android_rotation: MSU-MFSD only: extra degrees (counter-clockwise) to rotate Android videos
        by, after their own rotation metadata (for copies that lost it; 0 = trust the file).
    """

    size: int = 256
    stride: int = 10
    max_frames: int = 0
    crop_scale: float = faces.CROP_SCALE
    dev_subjects: int = 0
    android_rotation: int = 0

    def __post_init__(self):
        if self.size % 8 or self.size < 8:
            raise ValueError(f"RealConfig {self.name!r}: size must be a positive multiple of 8, "
                             f"got {self.size}.")
        if self.stride < 1 or self.max_frames < 0 or not self.crop_scale > 0:
            raise ValueError(f"RealConfig {self.name!r}: need stride >= 1, max_frames >= 0 and "
                             f"crop_scale > 0; got {self.stride}, {self.max_frames}, "
                             f"{self.crop_scale}.")
        if self.android_rotation % 90:
            raise ValueError(f"RealConfig {self.name!r}: android_rotation must be a multiple of "
                             f"90, got {self.android_rotation}.")

    def frames_key(self) -> str:
        """A digest of everything that changes the frames a video yields (the cache key)."""
        fields = (FRAMES_VERSION, self.size, self.stride, self.max_frames, float(self.crop_scale),
                  self.android_rotation, faces.EYE_BOX_SIDE, faces.EYE_BOX_DROP, faces.MESH_INPUT)
        return hashlib.sha1(repr(fields).encode()).hexdigest()[:12]


def standard_configs(dev_subjects: int = 0) -> list[RealConfig]:
    """The named configs every real builder offers (`data.builder_config`)."""
    return [
        RealConfig(name="default", size=256, stride=10, dev_subjects=dev_subjects,
                   description="256 px (the paper's input), every 10th frame."),
        RealConfig(name="s64", size=64, stride=30, dev_subjects=dev_subjects,
                   description="64 px, every 30th frame: smoke runs (`:smoke` configs)."),
    ]


@dataclasses.dataclass(frozen=True)
class VideoJob:
    """One video of the plan, with everything a worker needs (picklable).

    Attributes:
      split: "train", "dev" or "test".
      source: path of the video relative to the dataset root, '/'-separated.
      label, species, device, identity, video: the record fields (see the module docstring).
      columns: the builder's EXTRA_COLUMNS values, as (name, value) pairs.
      annotation: path of the face annotation file relative to the root, or None (detector only).
      annotation_format: "eyes" (frame,x1,y1,x2,y2 eye centres), "xywh" (frame x y w h) or
        "corners" (frame,x1,y1,x2,y2,... box corners); None without annotation.
      annotation_base: the number of a video's first frame in its annotation file (0 or 1) where
        the dataset documents it (Replay-Attack: 0); None: told from each file and its video
        (`annotation_base`).
      rotation: extra rotation in degrees counter-clockwise (`video.sample_frames`).
    """

    split: str
    source: str
    label: int
    species: int
    device: int
    identity: int
    video: int
    columns: tuple[tuple[str, int], ...] = ()
    annotation: Optional[str] = None
    annotation_format: Optional[str] = None
    annotation_base: Optional[int] = None
    rotation: int = 0


@dataclasses.dataclass
class Problems:
    """Bad input met while planning or processing: raised at once, or collected when skipping;
    and the videos a download lacks (`absent`), which `partial` decides about."""

    root: str
    skip_bad: bool
    entries: list[dict] = dataclasses.field(default_factory=list)
    missing: list[dict] = dataclasses.field(default_factory=list)
    lists: list[str] = dataclasses.field(default_factory=list)

    def report(self, split: str, source: str, reason: str,
               frames: Optional[Sequence[int]] = None) -> None:
        """Records (skip_bad) or raises (strict) a problem with `source` (relative path).

        `frames`: the frame numbers left out, or None when the whole video is.
        """
        path = os.path.join(self.root, source)
        if not self.skip_bad:
            raise BadInputError(f"{path}: {reason}. {SKIP_HINT}")
        entry = {"split": split, "source": source, "reason": reason,
                 "frames": "all" if frames is None else [int(f) for f in frames]}
        logging.warning("Skipping %s (%s): %s", path,
                        "whole video" if frames is None else f"{len(frames)} frame(s)", reason)
        self.entries.append(entry)

    def absent(self, split: str, source: str, why: str) -> None:
        """Notes a video of the published dataset that the download lacks (`source`: the path it
        would have; `why`: what names it, e.g. a protocol line). Incompleteness, not bad input:
        `partial` decides (`RealDatasetBuilder._split_generators`), so this never raises."""
        self.missing.append({"split": split, "source": source, "why": why})

    def list_size(self, message: str) -> None:
        """Notes a list file of the dataset's own (e.g. an Oulu-NPU protocol list) whose length is
        not the published one: a truncated or edited file would silently shrink a protocol, so
        `partial` decides about it as about absent videos."""
        self.lists.append(message)


# ---------------------------------------------------------------------------------------------
# Annotation files.


def read_annotation(path: str, fmt: str) -> dict[int, Optional[faces.FaceBox]]:
    """{frame number as the file writes it: face box, or None where the file says there is no face}.

    Formats: "eyes" (Oulu-NPU: frame,x_eye1,y_eye1,x_eye2,y_eye2), "xywh" (Replay-Attack:
    frame x y w h), "corners" (MSU-MFSD: frame,x1,y1,x2,y2, further columns ignored); commas or
    spaces separate fields. An all-zero face (Replay-Attack's "no face") is None. Whether the
    numbers count from 0 or 1 is `annotation_base`'s to tell, against the video.

    Raises:
      BadInputError: the file is missing, empty, has a malformed line or a negative frame number
        (named with its line number), or names a frame twice (both lines named).
    """
    if not os.path.isfile(path):
        raise BadInputError(f"{path}: annotation file is missing")
    rows, line_of = {}, {}
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [(k + 1, line) for k, line in enumerate(f) if line.strip()]
    if not lines:
        raise BadInputError(f"{path}: annotation file is empty")
    for number, line in lines:
        parts = [p for p in re.split(r"[,\s]+", line.strip()) if p]
        try:
            values = [float(p) for p in parts[:5]]
            if len(values) < 5:
                raise ValueError("fewer than 5 fields")
            frame = int(values[0])
        except ValueError as e:
            raise BadInputError(f"{path} line {number}: cannot read {line.strip()!r} as a "
                                f"'{fmt}' face annotation ({e})") from e
        a, b, c, d = values[1:5]
        if a == b == c == d == 0:
            box = None
        elif fmt == "eyes":
            box = faces.box_from_eyes(a, b, c, d) if (a, b) != (c, d) else None
        elif fmt == "xywh":
            box = faces.box_from_rect(a, b, c, d) if c > 0 and d > 0 else None
        elif fmt == "corners":
            box = faces.box_from_corners(a, b, c, d) if a != c and b != d else None
        else:
            raise ValueError(f"unknown annotation format {fmt!r}")
        if frame < 0:
            raise BadInputError(f"{path} line {number}: negative frame number {frame}")
        if frame in rows:   # which line is right? Not ours to pick
            raise BadInputError(f"{path} lines {line_of[frame]} and {number}: frame {frame} is "
                                "annotated twice")
        rows[frame], line_of[frame] = box, number
    return rows


def annotation_base(numbers: Collection[int], n_frames: int, path: str) -> int:
    """0 or 1: the number an annotation file (`read_annotation`; `numbers`, its frame numbers)
    gives a video's first frame, told from the video's decoded length `n_frames`, never guessed.

    Not every dataset documents it (Replay-Attack does: 0, `VideoJob.annotation_base`). A file
    naming frame 0 counts from 0. One that does not, and names frame `n_frames`, counts from 1:
    counted from 0, that frame would lie past the video's end. Any other file fits both readings
    (from 0 with frame 0's line missing, or from 1 with the last line(s) missing) or neither (past
    the end either way), and a wrong choice shifts every face box by a frame without a sign.

    Raises:
      BadInputError: the numbering cannot be told (message says why, naming `path`).
    """
    first, last = min(numbers), max(numbers)
    if first == 0:
        return 0
    if last == n_frames:
        return 1
    fits = ("both: counted from 0 it lacks frame 0's line, counted from 1 the last frame's"
            if last < n_frames else "neither: either way it names frames past the video's end")
    raise BadInputError(
        f"{path}: cannot tell whether the annotation file counts frames from 0 or from 1: it "
        f"names frames {first}..{last} and the video decodes to {n_frames} frames, which fits "
        f"{fits}. A wrong guess would shift every face box by one frame; add the missing line "
        "(or check that the file belongs to this video)")


# ---------------------------------------------------------------------------------------------
# One video -> its records (runs in worker processes).


@dataclasses.dataclass(frozen=True)
class _Task:
    job: VideoJob
    root: str
    config: RealConfig
    skip_bad: bool
    cache_dir: str


def _stamp(path: str) -> list:
    st = os.stat(path)
    return [int(st.st_size), int(st.st_mtime_ns)]


def _cache_path(task: _Task) -> epath.Path:
    """The cache file of one video, under the data dir's downloads/ (a local folder or a URL)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", task.job.source.replace("/", "__"))
    return epath.Path(task.cache_dir) / task.job.split / (name + ".npz")


def _stamps(task: _Task) -> str:
    files = [task.job.source] + ([task.job.annotation] if task.job.annotation else [])
    stamps = {f: _stamp(os.path.join(task.root, f)) if os.path.exists(os.path.join(task.root, f))
              else None for f in files}
    return json.dumps(stamps, sort_keys=True)


def _read_cache(task: _Task) -> Optional[dict]:
    """The summary of a cached video ({frames, problems, cached}), None when not (validly)
    cached: missing, torn, or made from a different version of the video or its annotation."""
    path = _cache_path(task)
    if not path.exists():
        return None
    try:
        with path.open("rb") as f, np.load(f, allow_pickle=False) as z:
            if str(z["stamps"]) != _stamps(task):
                return None   # the video or its annotation changed since: redo it
            return {"frames": int(z["frame_index"].shape[0]), "cached": True,
                    "problems": json.loads(str(z["problems"]))}
    except Exception:   # noqa: BLE001 (a torn or stale cache file is simply recomputed)
        return None


def cached_frames(task: _Task) -> dict[str, np.ndarray]:
    """The frames `process_video` cached: {image: uint8 [F, S, S, 3], depth: uint8 [F, S, S, 1],
    frame_index: int32 [F]}."""
    with _cache_path(task).open("rb") as f, np.load(f, allow_pickle=False) as z:
        return {k: z[k] for k in ("image", "depth", "frame_index")}


def _write_cache(task: _Task, result: dict) -> None:
    path = _cache_path(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, image=result["image"], depth=result["depth"],
             frame_index=result["frame_index"], stamps=np.array(_stamps(task)),
             problems=np.array(json.dumps(result["problems"])))
    tmp = path.parent / f"{path.name}.tmp-{os.getpid()}"
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)   # atomic on a local disk: a killed worker leaves no half-written entry


def process_video(task: _Task) -> dict:
    """Samples, crops and labels one video into the frame cache (`cached_frames`); returns
    {frames: F, problems: [skip entries], cached: whether an earlier run had done it}.

    Module level, so that worker processes can run it; raises BadInputError (strict mode).
    """
    cached = _read_cache(task)
    if cached is not None:
        if cached["problems"] and not task.skip_bad:   # cached by an earlier skip_bad build
            p = cached["problems"][0]
            raise BadInputError(f"{os.path.join(task.root, p['source'])}: {p['reason']}. "
                                f"{SKIP_HINT}")
        return cached
    from despoof_jax.data import video  # noqa: PLC0415 (optional dependency: av)
    job, config, s = task.job, task.config, task.config.size
    problems = Problems(task.root, task.skip_bad)
    result = {"image": np.zeros((0, s, s, 3), np.uint8), "depth": np.zeros((0, s, s, 1), np.uint8),
              "frame_index": np.zeros((0,), np.int32), "cached": False}
    path = os.path.join(task.root, job.source)
    rows = None
    try:
        if job.annotation:
            rows = read_annotation(os.path.join(task.root, job.annotation), job.annotation_format)
    except BadInputError as e:
        problems.report(job.split, job.source, str(e))
    if rows is not None or not job.annotation:
        annotation = None
        if rows is not None:
            # Before the video's length is known, a file without frame 0 is read counting from 1:
            # the one reading `annotation_base` can confirm once it is (below).
            base = job.annotation_base if job.annotation_base is not None else int(min(rows) != 0)
            annotation = {frame - base: box for frame, box in rows.items()}
        images, depths, indices, no_face, uncovered, unlisted = [], [], [], [], [], []
        last = max(annotation) if annotation else -1
        frames = video.sample_frames(path, stride=config.stride, max_frames=config.max_frames,
                                     extra_rotation=job.rotation)
        try:
            for index, rgb in frames:
                if annotation is not None and index > last:
                    uncovered.append(index)
                    continue
                if annotation is not None and index not in annotation:
                    unlisted.append(index)   # no line for it: the detector's box
                sample = _face(rgb, annotation.get(index) if annotation else None, config)
                if sample is None:
                    no_face.append(index)
                    if not task.skip_bad:
                        break
                    continue
                images.append(sample.image)
                depths.append(sample.depth)
                indices.append(index)
        except video.VideoError as e:
            problems.report(job.split, job.source, str(e).removeprefix(f"{path}: "))
        else:
            n = frames.n_frames   # None when the loop stopped early (strict, no face: raised below)
            try:
                if rows is not None and job.annotation_base is None and n is not None:
                    annotation_base(rows, n, os.path.join(task.root, job.annotation))
            except BadInputError as e:   # every box may be a frame off: the whole video goes
                problems.report(job.split, job.source, str(e))
                images = []
            else:
                if no_face:
                    where = ("the dataset has no annotation" if not job.annotation else
                             "the annotation gives no face there or its crop holds none")
                    problems.report(job.split, job.source,
                                    f"no face found in frame(s) {no_face}: {where}, and the face "
                                    "detector finds none", frames=no_face)
                if annotation is not None and n is not None and n > last + 1:
                    covers = (f"annotation file {job.annotation} covers frames 0..{last} but the "
                              f"video has {n} frames")
                    if uncovered:
                        problems.report(job.split, job.source, covers, frames=uncovered)
                    else:   # the frames it lacks are not sampled: nothing is lost
                        logging.info("%s: %s; every sampled frame is covered.", path, covers)
                elif annotation and n is not None and last >= n:
                    logging.warning("%s: annotation file %s names frames up to %d (counted from "
                                    "0) but the video decodes to %d frames; the lines past its "
                                    "end are not used.", path, job.annotation, last, n)
                if unlisted:
                    logging.warning("%s: %d sampled frame(s) %s have no line in %s; their crops "
                                    "come from the face detector.", path, len(unlisted), unlisted,
                                    job.annotation)
            if images:
                result.update(image=np.stack(images), depth=np.stack(depths),
                              frame_index=np.asarray(indices, np.int32))
            elif not problems.entries:
                problems.report(job.split, job.source, "no frame sampled")
    result["problems"] = problems.entries
    _write_cache(task, result)
    return {"frames": len(result["frame_index"]), "problems": problems.entries, "cached": False}


def _face(rgb: np.ndarray, box: Optional[faces.FaceBox], config: RealConfig
          ) -> Optional[faces.FaceSample]:
    """The crop and depth of the face in this frame: from the annotated box, else (no box, or no
    face mesh in the annotated crop) from the detector's box; None when neither finds a face."""
    if box is not None:
        sample = faces.face_sample(rgb, box, size=config.size, crop_scale=config.crop_scale)
        if sample is not None:
            return sample
    detected = faces.detector().detect(rgb, near=box)   # the annotated face, not another one
    if detected is None:
        return None
    return faces.face_sample(rgb, detected, size=config.size, crop_scale=config.crop_scale)


# ---------------------------------------------------------------------------------------------
# The builder base.


_BUILDERS: dict = {}   # dataset name -> builder class, filled as the builder packages load


class RealDatasetBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of the real-dataset builders: subclasses set the class attributes and `_plan`.

    Build: `tfds.builder(name, data_dir=D).download_and_prepare(download_config=
    tfds.download.DownloadConfig(manual_dir=M))` after importing the builder's package, or
    `prepare(name, config, D, manual_dir=M)`. Records are ArrayRecord (no TensorFlow): read them
    with `builder.as_data_source(split)`.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = standard_configs()
    SPECIES_NAMES: dict[int, str] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _BUILDERS[cls.name] = cls
    EXTRA_COLUMNS: tuple[str, ...] = ()
    HOMEPAGE = ""
    # Top-level entries of the dataset root, used to tell `<manual_dir>/<name>/` from the root.
    ROOT_ENTRIES: tuple[str, ...] = ()
    # Videos of the published dataset that the builder reads (all splits); fewer found is an
    # incomplete download (see `partial`).
    PUBLISHED_VIDEOS: Optional[int] = None

    def __init__(self, *, num_workers: Optional[int] = None, skip_bad: bool = False,
                 keep_cache: bool = False, file_format=None, partial: bool = False, **kwargs):
        """Like any TFDS builder, plus

        Args:
          num_workers: processes decoding videos (default: all CPUs); changes speed, not records.
          skip_bad: leave bad videos/frames out and list them in the metadata instead of raising.
          keep_cache: keep the per-video frame cache after a successful build.
          file_format: defaults to "array_record" (the format `as_data_source` reads).
          partial: build from a download with fewer videos than the published dataset.
        """
        super().__init__(file_format=file_format or "array_record", **kwargs)
        self._num_workers = num_workers
        self._skip_bad = skip_bad
        self._partial = partial
        self._keep_cache = keep_cache
        self._cache_dir: Optional[str] = None
        self.stats = {"videos": 0, "cached": 0}
        # TFDS re-creates a builder from `_original_state` when it is unpickled.
        self._original_state.update(num_workers=num_workers, skip_bad=skip_bad,
                                    keep_cache=keep_cache, partial=partial)

    @classmethod
    def metadata_keys(cls) -> tuple[str, ...]:
        """The int columns of `load_metadata` (everything protocols filter on)."""
        return COMMON_INT_KEYS + tuple(cls.EXTRA_COLUMNS)

    def _info(self) -> tfds.core.DatasetInfo:
        s = self.builder_config.size
        zlib = tfds.features.Encoding.ZLIB
        features = {
            "image": tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8, encoding=zlib),
            "depth": tfds.features.Tensor(shape=(s, s, 1), dtype=np.uint8, encoding=zlib),
            "label": tfds.features.ClassLabel(names=["live", "spoof"]),
            # Not a ClassLabel: the ids follow the synthetic world's and may leave gaps.
            "species": tfds.features.Scalar(dtype=np.int32, doc=str(self.SPECIES_NAMES)),
            "source": tfds.features.Text(),
        }
        for key in COMMON_INT_KEYS[2:] + tuple(self.EXTRA_COLUMNS):
            features[key] = tfds.features.Scalar(dtype=np.int32)
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            # Storage order = plan order (split, video, frame): the metadata table and the tests
            # do not depend on TFDS's key hashing. Training shuffles in the pipeline.
            disable_shuffling=True,
            homepage=self.HOMEPAGE,
            metadata=tfds.core.MetadataDict(),
        )

    # -- to implement ----------------------------------------------------------------------

    def _plan(self, root: str, problems: Problems) -> dict[str, list[VideoJob]]:
        """{split: videos in storage order}; report bad files to `problems` (raises or records)."""
        raise NotImplementedError

    # -- TFDS hooks ------------------------------------------------------------------------

    def _root(self, dl_manager) -> str:
        try:
            manual = epath.Path(dl_manager.manual_dir)
        except AssertionError as e:   # TFDS: the manual dir is missing or empty
            raise FileNotFoundError(
                f"{self.name}: the manual-download directory is missing or empty ({e}).\n"
                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}") from None
        if "://" in os.fspath(manual):
            raise ValueError(
                f"{self.name}: data.manual_dir={manual} is a URL; the videos and annotations "
                "are read from a local folder (PyAV): copy the download to local disk first "
                "(e.g. gcloud storage cp -r) and point data.manual_dir there. data.data_dir (the "
                "built dataset and the frame cache) may be a URL.")
        nested = manual / self.name
        if nested.is_dir() and not any((manual / e).exists() for e in self.ROOT_ENTRIES):
            return os.fspath(nested)
        return os.fspath(manual)

    def _split_generators(self, dl_manager):
        root = self._root(dl_manager)
        for entry in self.ROOT_ENTRIES:
            if not os.path.exists(os.path.join(root, entry)):
                raise FileNotFoundError(
                    f"{self.name}: {os.path.join(root, entry)} is missing.\n"
                    f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        problems = Problems(root, self._skip_bad)
        plan = self._plan(root, problems)
        # Videos left out as bad input while planning (a bad name, a missing face file) are in the
        # download all the same: not a sign of an incomplete one.
        found = sum(len(jobs) for jobs in plan.values()) + sum(
            os.path.isfile(os.path.join(root, e["source"])) for e in problems.entries)
        missing = problems.missing
        self.info.metadata["videos"] = {"found": found, "published": self.PUBLISHED_VIDEOS,
                                        "missing": len(missing)}
        gaps = []
        if self.PUBLISHED_VIDEOS and found < self.PUBLISHED_VIDEOS:
            gaps.append(f"holds {found} of the {self.PUBLISHED_VIDEOS} videos of the published "
                        "dataset")
        if missing:
            first = missing[0]
            gaps.append(f"lacks {len(missing)} video(s) that the dataset's own lists name (e.g. "
                        f"{first['source']}, {first['why']})")
        if problems.lists:
            gaps.append(f"has {len(problems.lists)} list file(s) of another length than the "
                        f"published one (e.g. {problems.lists[0]})")
        if gaps:
            message = (f"{self.name}: {root} {' and '.join(gaps)}: the download looks incomplete "
                       "(an archive not extracted, a folder left out?).")
            if not self._partial:
                raise BadInputError(
                    f"{message} Complete it, or build from what is there with partial=True "
                    f"(data.partial_download=True).\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
            logging.warning("%s Building from what is there (partial=True); the missing videos "
                            "are left out.", message)
        self._cache_dir = os.fspath(epath.Path(dl_manager.download_dir) / "despoof_frames" /
                                    self.name / f"{self.builder_config.name}-{self.version}-"
                                    f"{self.builder_config.frames_key()}")
        # Every video of every split first, into the frame cache (so an interrupted preparation
        # resumes, and one pool serves all splits); then the records are written from the cache.
        tasks = {split: [_Task(job, root, self.builder_config, self._skip_bad, self._cache_dir)
                         for job in plan.get(split, [])] for split in SPLITS}
        everything = [t for split in SPLITS for t in tasks[split]]
        frames = {split: [] for split in SPLITS}
        skipped = list(problems.entries)
        for task, summary in zip(everything, _run(everything, self._num_workers, self.name)):
            self.stats["videos"] += 1
            self.stats["cached"] += int(summary["cached"])
            skipped.extend(summary["problems"])
            if summary["frames"]:
                frames[task.job.split].append(task)
        self.info.metadata["skipped"] = skipped
        self.info.metadata["manual_dir"] = root
        empty = [split for split in SPLITS if not frames[split]]
        self.info.metadata["empty_splits"] = empty
        if skipped:
            logging.warning("%s: %d bad input(s) left out (skip_bad=True), listed in %s under "
                            "'skipped'.", self.name, len(skipped), "metadata.json")
        if empty:
            # TFDS cannot store an empty split; a load of one says why (`load_split`).
            logging.warning("%s: no records in split(s) %s; they are not written.", self.name,
                            empty)
        return {split: self._generate_examples(frames[split]) for split in SPLITS
                if frames[split]}

    def _generate_examples(self, tasks: list[_Task]) -> Iterator[tuple[int, dict]]:
        key = 0
        for task in tasks:
            job, cached = task.job, cached_frames(task)
            for k in range(len(cached["frame_index"])):
                record = {"image": cached["image"][k], "depth": cached["depth"][k],
                          "label": job.label, "species": np.int32(job.species),
                          "source": job.source, "frame": np.int32(k),
                          "frame_index": np.int32(cached["frame_index"][k])}
                for name in ("device", "identity", "video"):
                    record[name] = np.int32(getattr(job, name))
                for name, value in job.columns:
                    record[name] = np.int32(value)
                yield key, record
                key += 1

    def download_and_prepare(self, *args, **kwargs):
        super().download_and_prepare(*args, **kwargs)
        if self._cache_dir and not self._keep_cache and epath.Path(self._cache_dir).is_dir():
            epath.Path(self._cache_dir).rmtree()   # the dataset is written


def _run(tasks: list[_Task], num_workers: Optional[int], desc: str) -> Iterator[dict]:
    """process_video over tasks in order, in worker processes, with a progress bar."""
    workers = max(1, min(num_workers or os.cpu_count() or 1, len(tasks)))
    bar = tqdm.tqdm(total=len(tasks), desc=desc, unit="video", leave=False)
    t0 = time.time()
    try:
        if workers == 1:
            for task in tasks:
                yield process_video(task)
                bar.update()
            return
        # "spawn", not "fork": the parent may run JAX's or grain's threads, and forking a
        # multithreaded process can deadlock. imap keeps plan order.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for result in pool.imap(process_video, tasks, chunksize=1):
                yield result
                bar.update()
    finally:
        bar.close()
        logging.info("%s: %d videos in %.1f s", desc, len(tasks), time.time() - t0)


# ---------------------------------------------------------------------------------------------
# Loading.


def builder_class(name: str) -> type[RealDatasetBuilder]:
    """The builder class of dataset `name` (each builder package registers its class when it is
    imported; `despoof_jax.data.datasets` imports them all)."""
    if name not in _BUILDERS:
        raise ValueError(f"no real-dataset builder {name!r} registered (known: {sorted(_BUILDERS)}"
                         "); import despoof_jax.data.datasets, which imports every builder")
    return _BUILDERS[name]


def prepare(name: str, config: str | RealConfig, data_dir: epath.PathLike, *,
            manual_dir: epath.PathLike | None = None, skip_bad: bool = False,
            num_workers: Optional[int] = None, partial: bool = False) -> RealDatasetBuilder:
    """Builds dataset `name` with `config` under `data_dir` unless it is there; returns the builder.

    `manual_dir`: where the manual download lies (its root, or a folder holding `<name>/`);
    default `<data_dir>/downloads/manual`. A dataset built with skipped inputs is refused unless
    `skip_bad`, one built from an incomplete download unless `partial` (see the module
    docstring).
    """
    cls = builder_class(name)
    names = [c.name for c in cls.BUILDER_CONFIGS]
    if isinstance(config, str) and config not in names:
        raise ValueError(f"Unknown {name} builder config {config!r}; valid names: {names}, or "
                         "pass a RealConfig.")
    builder = cls(config=config, data_dir=os.fspath(data_dir), skip_bad=skip_bad,
                  num_workers=num_workers, partial=partial)
    download_config = tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_dir) if manual_dir else None)
    builder.download_and_prepare(download_config=download_config)   # no-op when built
    check_skipped(builder, skip_bad)
    check_partial(builder, partial)
    return builder


def check_partial(builder: RealDatasetBuilder, partial: bool) -> None:
    """Refuses a dataset built from an incomplete download unless `partial`."""
    videos = builder.info.metadata.get("videos") or {}
    found, published, missing = videos.get("found"), videos.get("published"), videos.get("missing")
    short = found is not None and published and found < published
    if partial or not (short or missing):
        return
    raise BadInputError(
        f"{builder.name}/{builder.builder_config.name} in {builder.data_dir} was built with "
        f"partial=True from {found} of the {published} published videos"
        f"{f', {missing} listed one(s) missing' if missing else ''}. Set "
        "data.partial_download=True to use it anyway, or complete the download and delete that "
        "directory to rebuild.")


def skipped(builder: RealDatasetBuilder) -> list[dict]:
    """What the build left out: [{split, source, reason, frames ("all" or frame numbers)}]."""
    return list(builder.info.metadata.get("skipped", []))


def _what(entry: dict) -> str:
    return "whole video" if entry["frames"] == "all" else f"frames {entry['frames']}"


def check_skipped(builder: RealDatasetBuilder, skip_bad: bool) -> None:
    """Refuses (strict) or logs (skip_bad) a dataset that was built with inputs left out."""
    left_out = skipped(builder)
    if not left_out:
        return
    listing = "\n".join(f"  {e['split']}: {e['source']} ({_what(e)}): {e['reason']}"
                        for e in left_out[:20])
    more = f"\n  ... and {len(left_out) - 20} more" if len(left_out) > 20 else ""
    message = (f"{builder.name}/{builder.builder_config.name} in {builder.data_dir} was built "
               f"with skip_bad=True and leaves out {len(left_out)} bad input(s):\n{listing}{more}")
    if not skip_bad:
        raise BadInputError(f"{message}\nSet data.skip_bad=True to use it anyway, or fix the files "
                            "and delete that directory to rebuild.")
    logging.warning("%s", message)


def data_source(builder: RealDatasetBuilder, split: str):
    """`builder.as_data_source(split)`, with a clear error for a split without records."""
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
    if split not in builder.info.splits:
        raise ValueError(
            f"{builder.name}/{builder.builder_config.name} in {builder.data_dir} has no {split!r} "
            f"records: {_why_empty(builder, split)}")
    return builder.as_data_source(split)


def _why_empty(builder: RealDatasetBuilder, split: str) -> str:
    left_out = [e for e in skipped(builder) if e["split"] == split]
    if left_out:
        return f"all its videos were left out as bad input ({len(left_out)} listed in metadata)."
    if split == "dev" and not builder.builder_config.dev_subjects:
        return ("the dataset has no development set and the builder config holds out no "
                "training subjects for one (dev_subjects=0).")
    return "the manual download holds no video of it."


def metadata_path(builder: RealDatasetBuilder, split: str) -> epath.Path:
    """Where the metadata table of `split` lives: beside the ArrayRecord files."""
    return epath.Path(builder.data_dir) / f"metadata-{split}.npz"


def load_metadata(builder: RealDatasetBuilder, split: str) -> dict[str, np.ndarray]:
    """Per-record metadata of `split`: {key: int32 [N]} for key in `metadata_keys()`, in record
    order; read from the records once, then cached as `metadata-{split}.npz` beside them."""
    return metadata_table.read_or_build(metadata_path(builder, split),
                                        data_source(builder, split), builder.metadata_keys())


def list_files(root: str, folder: str, suffixes: tuple[str, ...]) -> list[str]:
    """Sorted '/'-separated paths relative to root of the files in root/folder with a suffix."""
    d = os.path.join(root, folder)
    return sorted(f"{folder}/{f}" for f in os.listdir(d)
                  if f.lower().endswith(suffixes) and os.path.isfile(os.path.join(d, f)))

