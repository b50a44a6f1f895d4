"""A fake `gs://` filesystem for tests: what etils.epath (and TensorBoard, orbax's epath calls)
reach through fsspec when the workdir is a Cloud Storage URL.

Without TensorFlow, `epath.Path("gs://b/x")` uses fsspec's "gcs" implementation (gcsfs).
`FakeGCS` takes its place: objects live in a local folder (`root`/bucket/...), every call is
recorded, and it refuses what an object store cannot do (append). A workdir on it is a real
non-local URL for the code under test: `os.path` or `open()` on "gs://b/x" would not find it
(they would create a relative folder "gs:" instead).

orbax writes array data through TensorStore, whose own GCS driver talks HTTP to
storage.googleapis.com and cannot be pointed at an fsspec filesystem; `redirect_orbax` therefore
records the directory each orbax CheckpointManager is given (which must be the URL, unchanged)
and hands orbax the local folder that `FakeGCS` keeps that URL in.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import posixpath

import fsspec
import orbax.checkpoint as ocp
from etils.epath import backend as epath_backend
from fsspec.implementations.local import LocalFileSystem

SCHEMES = ("gs://", "gcs://")


class FakeGCS(LocalFileSystem):
    protocol = ("gs", "gcs")
    root_marker = ""
    root = ""                   # the local folder holding the buckets (set by `install`)
    seen: list = []             # every path handed to the filesystem, as given
    written: set = set()        # local paths of the files opened for writing

    def __init__(self, *args, finalize_on_close=None, **kwargs):
        del finalize_on_close   # what etils passes to gcsfs
        super().__init__(*args, **kwargs)

    @classmethod
    def local(cls, path: str) -> str:
        """The local file behind `path` (gs://bucket/x, bucket/x or an already local path)."""
        path = os.fspath(path)
        if path.startswith(cls.root):
            return path
        for scheme in SCHEMES:
            if path.startswith(scheme):
                path = path[len(scheme):]
        return posixpath.join(cls.root, path.lstrip("/")).rstrip("/")

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, (list, tuple)):
            return [cls._strip_protocol(p) for p in path]
        cls.seen.append(os.fspath(path))
        return cls.local(path)

    def _open(self, path, mode="rb", **kwargs):
        if "a" in mode:
            raise NotImplementedError(f"{path}: an object store cannot append (mode {mode!r})")
        if "w" in mode or "x" in mode:
            self.written.add(self.local(path))
        return super()._open(path, mode=mode, **kwargs)

    def glob(self, path, **kwargs):
        # gcsfs answers "bucket/key" (epath puts "gs://" in front), not local paths.
        return [p[len(self.root) + 1:] for p in super().glob(path, **kwargs)]


def install(root) -> None:
    """Serves gs:// from `root` in this process (until `uninstall`)."""
    FakeGCS.root = os.fspath(root)
    FakeGCS.seen, FakeGCS.written = [], set()
    for name in ("gs", "gcs"):
        fsspec.register_implementation(name, FakeGCS, clobber=True)
    epath_backend.fsspec_backend._get_filesystem.cache_clear()   # noqa: SLF001 (etils' cache)
    FakeGCS.clear_instance_cache()


def uninstall() -> None:
    registry = importlib.import_module("fsspec.registry")
    for name in ("gs", "gcs"):
        registry._registry.pop(name, None)   # noqa: SLF001 (fsspec has no unregister)
    epath_backend.fsspec_backend._get_filesystem.cache_clear()   # noqa: SLF001 (etils' cache)


@contextlib.contextmanager
def served(root):
    """`install(root)` for the duration of a `with` block."""
    install(root)
    try:
        yield
    finally:
        uninstall()


def redirect_orbax(monkeypatch) -> list:
    """Makes every orbax CheckpointManager write the local folder behind its gs:// directory;
    returns the list of directories the managers were given (as strings)."""
    given = []
    init = ocp.CheckpointManager.__init__

    def redirected(self, directory, *args, **kwargs):
        given.append(os.fspath(directory))
        if os.fspath(directory).startswith(SCHEMES):
            directory = FakeGCS.local(directory)
        init(self, directory, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "__init__", redirected)
    return given
