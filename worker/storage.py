"""Object storage behind one small interface: S3 (boto3, any S3-compatible endpoint) or a local folder.

The pipeline only needs list / get / put / read-back-metadata, so that is all the interface has.
Errors are sorted into two kinds at this boundary, because the right reaction differs:
:class:`TransientStorageError` (5xx, throttling, timeouts, resets) is retried with backoff by
:func:`retrying`; :class:`PermanentStorageError` (missing key, access denied) fails the key at once.
"""

from __future__ import annotations

import errno
import json
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import boto3
import botocore.exceptions
from botocore.config import Config

from arcnn.errors import ArcnnError
from worker.locations import Location, UnsafeKeyError
from worker.settings import WorkerSettings

T = TypeVar("T")

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}

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


def open_storage(location: Location, settings: WorkerSettings) -> Storage:
    """The backend for ``location``."""
    if location.scheme == "s3":
        return S3Storage(location, _s3_client(settings.s3_endpoint_url, settings.io_threads),
                         settings.max_retries, settings.retry_backoff)
    return LocalStorage(location)


_clients: dict[tuple[str | None, int], object] = {}
_clients_lock = threading.Lock()


def _s3_client(endpoint_url: str | None, io_threads: int):  # noqa: ANN202 (boto3 client type is dynamic)
    """One client per endpoint per process: boto3 clients are thread-safe, sessions are not.

    botocore's own retries are turned off so that :func:`retrying` is the single retry policy
    (otherwise attempts multiply). Credentials come only from boto3's standard chain (``AWS_*``).
    """
    with _clients_lock:
        key = (endpoint_url, io_threads)
        if key not in _clients:
            config = Config(
                retries={"total_max_attempts": 1},
                connect_timeout=10,
                read_timeout=60,
                max_pool_connections=2 * io_threads + 4,
            )
            _clients[key] = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, config=config
            )
        return _clients[key]


_TRANSIENT_CODES = {
    "InternalError", "ServiceUnavailable", "SlowDown", "Throttling", "ThrottlingException",
    "RequestTimeout", "RequestTimeTooSkewed", "ServerSideEncryptionConfigurationNotFoundError",
}
_TRANSIENT_BOTO = (
    botocore.exceptions.HTTPClientError,  # ConnectionClosedError, ReadTimeoutError, ResponseStreamingError
    botocore.exceptions.ConnectionError,  # EndpointConnectionError, ConnectTimeoutError
    botocore.exceptions.IncompleteReadError,
)


def _classify(error: Exception, what: str) -> StorageError:
    if isinstance(error, botocore.exceptions.ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error.response.get("Error", {}).get("Code", "")
        message = f"{what}: {code or status} {error.response.get('Error', {}).get('Message', '')}"
        if status >= 500 or status in (408, 429) or code in _TRANSIENT_CODES:
            return TransientStorageError(message.strip())
        return PermanentStorageError(message.strip())
    if isinstance(error, _TRANSIENT_BOTO):
        return TransientStorageError(f"{what}: {error}")
    return PermanentStorageError(f"{what}: {error}")


class S3Storage:
    """An S3 bucket prefix through boto3 (AWS, MinIO, moto: set ``ARCNN_S3_ENDPOINT_URL``).

    ``retries`` and ``backoff`` are the listing's retry policy: one failed page request must not
    fail a job of millions of keys. A page is retried with the same continuation token, so no
    key is listed twice or skipped. get/put/metadata are retried by their caller
    (:class:`worker.pipeline.Pipeline`), which decides per key when to give up.
    """

    def __init__(self, location: Location, client, retries: int = 5, backoff: float = 0.5,  # noqa: ANN001
                 page_size: int = 1000) -> None:
        self.location = location
        self._client = client
        self.retries = retries
        self.backoff = backoff
        self.page_size = page_size

    def list(self, start_after: str = "") -> Iterator[ObjectInfo]:
        """Page by page (``page_size`` keys per request), never holding more than one page."""
        token: str | None = None
        while True:
            kwargs = {"Bucket": self.location.bucket, "Prefix": self.location.prefix, "MaxKeys": self.page_size}
            if token:
                kwargs["ContinuationToken"] = token
            elif start_after:
                kwargs["StartAfter"] = start_after
            page = retrying(lambda: self._call(lambda: self._client.list_objects_v2(**kwargs), "list"),
                            self.retries, self.backoff)
            for entry in page.get("Contents", []):
                yield ObjectInfo(entry["Key"], entry["Size"], entry["ETag"].strip('"'))
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def get(self, key: str) -> tuple[bytes, str]:
        def fetch() -> tuple[bytes, str]:
            response = self._client.get_object(Bucket=self.location.bucket, Key=key)
            return response["Body"].read(), response["ETag"].strip('"')

        return self._call(fetch, f"get {key}")

    def put(self, key: str, data: bytes, fmt: str, metadata: dict[str, str]) -> None:
        self._call(
            lambda: self._client.put_object(
                Bucket=self.location.bucket, Key=key, Body=data,
                ContentType=CONTENT_TYPES[fmt], Metadata=metadata,
            ),
            f"put {key}",
        )

    def metadata(self, key: str) -> dict[str, str] | None:
        try:
            response = self._client.head_object(Bucket=self.location.bucket, Key=key)
        except botocore.exceptions.ClientError as error:
            if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise _classify(error, f"head {key}") from error
        except _TRANSIENT_BOTO as error:
            raise _classify(error, f"head {key}") from error
        return dict(response.get("Metadata", {}))

    def check(self) -> None:
        """HEAD the bucket. Only "no such bucket" is final: a 403 may just mean the credentials
        may write objects but not list or head the bucket, so the writes themselves decide."""
        try:
            retrying(lambda: self._call(lambda: self._client.head_bucket(Bucket=self.location.bucket),
                                        f"head bucket {self.location.bucket}"), self.retries, self.backoff)
        except PermanentStorageError as error:
            cause = error.__cause__
            status = (cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                      if isinstance(cause, botocore.exceptions.ClientError) else None)
            if status == 404:
                raise PermanentStorageError(f"bucket {self.location.bucket!r} does not exist") from error
            if status != 403:
                raise

    @staticmethod
    def _call(call: Callable[[], T], what: str) -> T:
        try:
            return call()
        except (botocore.exceptions.ClientError, *_TRANSIENT_BOTO) as error:
            raise _classify(error, what) from error


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
                yield ObjectInfo(key, stat.st_size, f"{stat.st_mtime_ns:x}-{stat.st_size:x}")

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
        return data, f"{stat.st_mtime_ns:x}-{stat.st_size:x}"

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
