"""Watching a run: TensorBoard event files, a parameter overview, wall-clock progress, profiling.

- `EventWriter`: scalars and images into TensorBoard event files (the `tensorboard` package's own
  writer and protos: no TensorFlow), written by process 0 beside `metrics.jsonl`.
  `read_scalars(logdir)` reads them back with the same package's reader.
- `MetricsLog`: `metrics.jsonl`, one JSON line per step, written by process 0.
Both write through `etils.epath`. Object stores cannot append (gcsfs even treats mode "a" as
"w"), so in a URL workdir both keep their file locally and upload it whole, at most every
`upload_every_secs`, when the loop saves a checkpoint (`upload`) and when closed.
- `parameter_overview(tree)`: a table of every parameter array (path, shape, size), logged at the
  start of each stage (big_vision's `parameter_overview`).
- `Progress`: says when a progress line is due, every N steps *or* every `every_secs` seconds of
  wall time (clu's `ReportProgress`), so a slow 256 px run shows signs of life.
- `StepProfiler`: a `jax.profiler` trace of N steps (after the compiled first step) into the
  stage folder, where TensorBoard's profile plugin finds it (`plugins/profile/<run>/`).
- `progress_bar`: tqdm over the long loops that are not training steps.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import time
from typing import Iterable, Optional

import jax
import numpy as np
from absl import logging
from etils import epath
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tqdm import tqdm

from despoof_jax.training.workdir import is_url, replace_text

UPLOAD_EVERY_SECS = 30.0


class EventWriter:
    """TensorBoard event files in `logdir` (process 0 writes; the others hold a no-op writer).
    For a URL `logdir` the files are written to a local temporary folder and uploaded whole."""

    def __init__(self, logdir, *, enabled: bool = True,
                 upload_every_secs: Optional[float] = None):
        self.logdir = str(logdir)
        self._w = None
        self._local = None      # the local folder of a URL logdir
        self._every = UPLOAD_EVERY_SECS if upload_every_secs is None else upload_every_secs
        self._uploaded = time.monotonic()
        if enabled and jax.process_index() == 0:
            epath.Path(logdir).mkdir(parents=True, exist_ok=True)
            if is_url(logdir):
                self._local = tempfile.mkdtemp(prefix="despoof_events_")
            self._w = EventFileWriter(self._local or self.logdir, flush_secs=10)

    def scalars(self, step: int, values: dict) -> None:
        if self._w is None or not values:
            return
        summary = summary_pb2.Summary(value=[
            summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()
            if np.ndim(v) == 0 and np.isfinite(float(v))])
        self._w.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def image(self, tag: str, step: int, image: np.ndarray) -> None:
        """image: uint8 [H, W, 3] (or [H, W, 4]), encoded as PNG."""
        if self._w is None:
            return
        from PIL import Image  # noqa: PLC0415 (pillow is only needed for image summaries)
        image = np.asarray(image)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        img = summary_pb2.Summary.Image(height=image.shape[0], width=image.shape[1],
                                        colorspace=image.shape[2],
                                        encoded_image_string=buf.getvalue())
        self._w.add_event(event_pb2.Event(
            wall_time=time.time(), step=int(step),
            summary=summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, image=img)])))

    def flush(self) -> None:
        if self._w is not None:
            self._w.flush()
            self._upload(force=False)

    def upload(self) -> None:
        """Writes out and (URL logdir) uploads what was added so far, whatever the timer says."""
        if self._w is not None:
            self._w.flush()
            self._upload(force=True)

    def _upload(self, force: bool) -> None:
        if self._local is None or (not force and
                                   time.monotonic() - self._uploaded < self._every):
            return
        for name in sorted(os.listdir(self._local)):
            with open(os.path.join(self._local, name), "rb") as f:
                (epath.Path(self.logdir) / name).write_bytes(f.read())
        self._uploaded = time.monotonic()

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._upload(force=True)
            self._w = None
        if self._local is not None:
            shutil.rmtree(self._local, ignore_errors=True)
            self._local = None


class MetricsLog:
    """`metrics.jsonl` of a stage: one JSON object per step, written by process 0.

    A run that resumes at `start_step` drops the rows after it (a run killed after its last
    checkpoint logged steps that the resumed run computes again), so the file holds each step
    once. A line that is not a JSON row is dropped with a warning: a torn last line (a kill
    during a write) is expected, one in the middle is damage. The file is then rewritten through
    a temporary file and a rename, so a kill during the rewrite leaves the old file whole. Local
    files are appended to; a URL file is rewritten whole (see the module docstring).
    """

    def __init__(self, path, start_step: int, *, enabled: bool = True,
                 upload_every_secs: Optional[float] = None):
        self.path = epath.Path(path)
        self.enabled = enabled
        self._url = is_url(path)
        self._every = UPLOAD_EVERY_SECS if upload_every_secs is None else upload_every_secs
        self._uploaded = time.monotonic()
        self._lines: list[str] = []     # the whole file (URL) or nothing (local)
        self._dirty = False
        if not enabled or not self.path.exists():
            return
        text = self.path.read_text()
        lines = [line for line in text.splitlines() if line.strip()]
        kept = []
        for i, line in enumerate(lines):
            step = _row_step(line)
            if step is None:
                where = ("its last line (cut short by a kill during a write?)"
                         if i == len(lines) - 1 else f"line {i + 1} of {len(lines)}")
                logging.warning("%s: %s is not a JSON row with a step, dropped: %.200r",
                                self.path, where, line)
            elif step <= start_step:
                kept.append(line)
        if self._url:
            self._lines = kept
        # Also when only the last newline is missing: the next append would join two rows.
        if len(kept) != len(lines) or (text and not text.endswith("\n")):
            replace_text(self.path, "".join(line + "\n" for line in kept))

    def write(self, rows: list[dict]) -> None:
        if not self.enabled or not rows:
            return
        lines = [json.dumps(r) for r in rows]
        if not self._url:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.write("".join(line + "\n" for line in lines))
            return
        self._lines += lines
        self._dirty = True
        if time.monotonic() - self._uploaded >= self._every:
            self.upload()

    def upload(self) -> None:
        """Uploads what a URL file still lacks, whatever the timer says (a local file is always
        complete)."""
        if self._dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("".join(line + "\n" for line in self._lines))
            self._dirty, self._uploaded = False, time.monotonic()

    def close(self) -> None:
        self.upload()


def read_rows(path) -> list[dict]:
    """The rows of a `metrics.jsonl` (each a dict with an int `step`), in file order; lines that
    are not such rows (a torn last line, damage) are skipped, as `MetricsLog` drops them. A
    missing file is an error: the caller says what its absence means."""
    rows = (_row(line) for line in epath.Path(path).read_text().splitlines())
    return [r for r in rows if r is not None]


def _row(line: str) -> Optional[dict]:
    """A metrics.jsonl line as its row, or None when it is not a JSON row with an int step."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    step = row.get("step") if isinstance(row, dict) else None
    return row if isinstance(step, int) and not isinstance(step, bool) else None


def _row_step(line: str) -> Optional[int]:
    """The step of a metrics.jsonl line, or None when the line is not a JSON row with one."""
    row = _row(line)
    return None if row is None else row["step"]


def read_scalars(logdir) -> dict:
    """{tag: [(step, value), ...]} from the event files in `logdir` (TensorBoard's reader)."""
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def read_image_tags(logdir) -> list:
    acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"images": 0})
    acc.Reload()
    return list(acc.Tags()["images"])


def parameter_overview(tree, name: str = "") -> str:
    """One line per array of a parameter tree (path, shape, size) and the total."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    rows = [(jax.tree_util.keystr(path), tuple(np.shape(x)), int(np.size(x))) for path, x in leaves]
    width = max([len(r[0]) for r in rows] + [4])
    lines = [f"{'name':<{width}}  {'shape':<20} {'size':>10}"]
    lines += [f"{p:<{width}}  {str(s):<20} {n:>10,}" for p, s, n in rows]
    lines.append(f"{name} total: {sum(r[2] for r in rows):,} parameters in {len(rows)} arrays")
    return "\n".join(lines)


class Progress:
    """Is a progress line due? Every `every_steps` steps or `every_secs` seconds of wall time."""

    def __init__(self, every_steps: int, every_secs: float):
        self.every_steps, self.every_secs = max(int(every_steps), 1), float(every_secs)
        self._last = time.monotonic()

    def due(self, step: int, total: int) -> bool:
        now = time.monotonic()
        if (self.on_schedule(step, total)
                or (self.every_secs > 0 and now - self._last >= self.every_secs)):
            self._last = now
            return True
        return False

    def on_schedule(self, step: int, total: int) -> bool:
        """Due by the step count alone (every N steps and the last): the same on every process,
        where the wall-clock part of `due` is not."""
        return step % self.every_steps == 0 or step == total


class StepProfiler:
    """A `jax.profiler` trace of `n` steps starting after step `first` (the compiled first
    step is left out), written under `logdir/plugins/profile/`; `n = 0` does nothing. For a URL
    `logdir` the trace goes to a local temporary folder first and is uploaded when it stops."""

    def __init__(self, logdir, first: int, n: int):
        self.logdir, self.start_after, self.n = str(logdir), int(first), int(n)
        self.active = False
        self.done = n <= 0 or jax.process_index() != 0
        self._local = None

    def before_step(self, step: int) -> None:
        """Call with the step number about to run (0-based, as the loop counts)."""
        if not self.done and not self.active and step == self.start_after + 1:
            if is_url(self.logdir):
                self._local = tempfile.mkdtemp(prefix="despoof_profile_")
            jax.profiler.start_trace(self._local or self.logdir)
            self.active = True
            logging.info("profiling steps %d-%d into %s", step + 1, step + self.n, self.logdir)

    def after_step(self, step_done: int, outputs=None) -> None:
        if self.active and step_done >= self.start_after + 1 + self.n:
            jax.block_until_ready(outputs)
            self.stop()

    def stop(self) -> None:
        if self.active:
            jax.profiler.stop_trace()
            self.active, self.done = False, True
            if self._local is not None:
                for folder, _, files in os.walk(self._local):
                    target = epath.Path(self.logdir) / os.path.relpath(folder, self._local)
                    target.mkdir(parents=True, exist_ok=True)
                    for name in files:
                        with open(os.path.join(folder, name), "rb") as f:
                            (target / name).write_bytes(f.read())
                shutil.rmtree(self._local, ignore_errors=True)
                self._local = None
            logging.info("profile written to %s (open with TensorBoard's profile plugin)",
                         self.logdir)


def progress_bar(iterable: Iterable, *, total: Optional[int] = None, desc: str = "",
                 unit: str = "it"):
    """tqdm on stderr for the long loops that are not training steps (dataset generation,
    scoring, the medium analysis); quiet on processes other than 0."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, mininterval=2.0,
                disable=jax.process_index() != 0, dynamic_ncols=True, leave=False)
