"""Where a job reads and writes: one small storage protocol, its errors and retries, and local folders.

The pipeline only needs list / get / put / read-back-metadata, so that is all the protocol has
(S3 implements it in ``worker.storage``; this module never imports boto3).
Errors are sorted into two kinds at this boundary, because the right reaction differs:
:class:`TransientStorageError` (5xx, throttling, timeouts, resets) is retried with backoff by
:func:`retrying`; :class:`PermanentStorageError` (missing key, access denied) fails the key at once.

A local folder records each output's metadata in ``<root>/.arcnn-meta/<key>.json`` (S3 keeps it
in the object's headers): the source's ETag (``mtime_ns-size`` in hex for files), size, model
and job. That record is how a re-run knows an output is done, and how a folder that is both a
source and a destination tells its outputs from its inputs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from arcnn.errors import ArcnnError
from arcnn.jobs.locations import Location, UnsafeKeyError

T = TypeVar("T")

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

META_ETAG = "arcnn-source-etag"
META_SIZE = "arcnn-source-size"
META_MODEL = "arcnn-model"
META_JOB = "arcnn-job"
META_READ = "arcnn-read"
"""What is recorded with every output (S3 user metadata is case-insensitive and comes back
lower-case): the source's ETag and size, the model applied (its label, e.g. ``jpeg-q20+colour``
or ``passthrough``), the job id (empty outside queued jobs) and what was read of the source's
history and why the model was chosen (:attr:`arcnn.restoration.Choice.why`, e.g. ``pixels: JPEG
~q30 at offset (3,3); file tables q90, 4:2:0``)."""

META_DIR = ".arcnn-meta"
"""Folder under a local destination root that holds each output's metadata (S3 has headers)."""


class StorageError(ArcnnError):
    """A storage operation failed."""


class TransientStorageError(StorageError):
    """Worth retrying: server errors, throttling, timeouts, dropped connections."""


class PermanentStorageError(StorageError):
    """Retrying will not help: the key is gone, access is denied, the request is invalid."""


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object. ``etag`` is S3's ETag without quotes, or ``mtime-size`` for local files."""

    key: str
    size: int
    etag: str


class Storage(Protocol):
    """What the pipeline needs from a location; keys are full keys (prefix included)."""

    location: Location

    def list(self, start_after: str = "") -> Iterator[ObjectInfo]:
        """Every object under the location, in lexicographic key order, after ``start_after``."""

    def get(self, key: str) -> tuple[bytes, str]:
        """The object's bytes and its current ETag."""

    def put(self, key: str, data: bytes, fmt: str, metadata: dict[str, str]) -> None:
        """Write ``data`` (encoded as ``fmt``) with ``metadata``, atomically."""

    def metadata(self, key: str) -> dict[str, str] | None:
        """Metadata recorded by :meth:`put`, or None if the object does not exist."""

    def check(self) -> None:
        """Raise :class:`PermanentStorageError` if outputs can never be written here (no such
        bucket), so a job fails once, up front, instead of once per key."""


def retrying(call: Callable[[], T], retries: int, backoff: float) -> T:
    """Run ``call``, retrying :class:`TransientStorageError` up to ``retries`` times.

    Exponential backoff with full jitter, so that many workers hitting one struggling endpoint
    spread out instead of retrying in lock-step.
    """
    for attempt in range(retries + 1):
        try:
            return call()
        except TransientStorageError:
            if attempt == retries:
                raise
            time.sleep(random.uniform(0.5, 1.0) * backoff * (2**attempt))
    raise AssertionError("unreachable")


class LocalStorage:
    """A local folder. Outputs are written atomically (temp file + rename); metadata lives in
    ``<root>/.arcnn-meta/<key>.json``, written after the image, so its presence means "complete"."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.root = Path(location.bucket)

    def list(self, start_after: str = "") -> Iterator[ObjectInfo]:
        """A sorted walk that yields keys in the same order as S3 (byte-wise on the full key).

        Sorting each folder's entries by ``name + "/"`` for folders and ``name`` for files gives
        exactly lexicographic order of full keys, so ``start_after`` resumes like S3's StartAfter.
        """
        if not self.root.is_dir():
            raise PermanentStorageError(f"list: {self.root} is not a folder")
        yield from self._walk(self.root, "", start_after)

    def _walk(self, folder: Path, prefix: str, start_after: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(folder))
        except OSError as error:
            raise TransientStorageError(f"list {folder}: {error}") from error
        keyed = []
        for entry in entries:
            is_dir = entry.is_dir(follow_symlinks=False)
            if is_dir and prefix == "" and entry.name == META_DIR:
                continue
            keyed.append((prefix + entry.name + ("/" if is_dir else ""), is_dir, entry))
        for key, is_dir, entry in sorted(keyed, key=lambda item: item[0]):
            if is_dir:
                if start_after < key or start_after.startswith(key):
                    yield from self._walk(Path(entry.path), key, start_after)
            elif entry.is_file() and key > start_after:
                stat = entry.stat()
                yield ObjectInfo(key, stat.st_size, _stat_etag(stat))

    def check(self) -> None:
        """A local destination folder is created on the first write: nothing to check."""

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise UnsafeKeyError(f"key {key!r} resolves outside {self.root}")
        return path

    def get(self, key: str) -> tuple[bytes, str]:
        path = self._path(key)
        try:
            data = path.read_bytes()
            stat = path.stat()
        except (FileNotFoundError, IsADirectoryError, PermissionError) as error:
            raise PermanentStorageError(f"get {key}: {error}") from error
        except OSError as error:
            raise TransientStorageError(f"get {key}: {error}") from error
        return data, _stat_etag(stat)

    def put(self, key: str, data: bytes, fmt: str, metadata: dict[str, str]) -> None:
        path = self._path(key)
        meta_path = self._path(f"{META_DIR}/{key}.json")
        try:
            _atomic_write(path, data)
            _atomic_write(meta_path, json.dumps(metadata, sort_keys=True).encode())
        except OSError as error:
            kind = PermanentStorageError if error.errno in _PERMANENT_ERRNOS else TransientStorageError
            raise kind(f"put {key}: {error}") from error

    def metadata(self, key: str) -> dict[str, str] | None:
        if not self._path(key).is_file():
            return None
        try:
            return json.loads(self._path(f"{META_DIR}/{key}.json").read_bytes())
        except (FileNotFoundError, ValueError):
            return {}


_PERMANENT_ERRNOS = {errno.ENAMETOOLONG, errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR}
"""Local write errors that no retry can fix (a disk that is full or busy may recover: retried)."""


def _read_umask() -> int:
    """The process umask. Reading it means setting it, so it is read once, at import, before
    any worker thread exists (a concurrent file creation would otherwise see umask 0)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()
"""Mode of written files: what ``open()`` would give under the umask (mkstemp's is 0600)."""


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".arcnn-", suffix=".part")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class MemoryStorage:
    """Objects held in memory, named ``memory://NAME``: standard input and output (``-``) for
    ``arcnn restore``, so a pipe goes through the same engine as a folder."""

    def __init__(self, name: str, objects: dict[str, bytes] | None = None) -> None:
        self.location = Location("memory", name, "")
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {k: (v, {}) for k, v in (objects or {}).items()}

    def list(self, start_after: str = "") -> Iterator[ObjectInfo]:
        for key in sorted(k for k in self.objects if k > start_after):
            yield ObjectInfo(key, len(self.objects[key][0]), memory_etag(self.objects[key][0]))

    def get(self, key: str) -> tuple[bytes, str]:
        if key not in self.objects:
            raise PermanentStorageError(f"get {key}: no such object")
        data = self.objects[key][0]
        return data, memory_etag(data)

    def put(self, key: str, data: bytes, fmt: str, metadata: dict[str, str]) -> None:
        self.objects[key] = (data, dict(metadata))

    def metadata(self, key: str) -> dict[str, str] | None:
        return dict(self.objects[key][1]) if key in self.objects else None

    def check(self) -> None:
        """Memory can always be written."""


def memory_etag(data: bytes) -> str:
    """The ETag of bytes held in memory: their MD5, as S3 gives for a plain upload."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def file_etag(path: Path) -> str:
    """A local file's ETag, as :meth:`LocalStorage.list` gives it (``mtime_ns-size`` in hex);
    empty for a file that cannot be read (its fetch then fails with the reason)."""
    try:
        return _stat_etag(path.stat())
    except OSError:
        return ""


def _stat_etag(stat: os.stat_result) -> str:
    return f"{stat.st_mtime_ns:x}-{stat.st_size:x}"
