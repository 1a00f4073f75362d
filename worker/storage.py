"""S3 storage for jobs (boto3, any S3-compatible endpoint), behind the library's storage protocol
(:mod:`arcnn.jobs.storage`, which also has local folders, the errors and the retry policy).

boto3 errors are sorted at this boundary into the library's two kinds:
:class:`~arcnn.jobs.storage.TransientStorageError` (5xx, throttling, timeouts, resets) is retried
with backoff; :class:`~arcnn.jobs.storage.PermanentStorageError` (missing key, access denied)
fails the key at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import boto3
import botocore.exceptions
from botocore.config import Config

from arcnn.jobs.locations import Location
from arcnn.jobs.storage import (
    CONTENT_TYPES, LocalStorage, ObjectInfo, PermanentStorageError, Storage, StorageError,
    TransientStorageError, retrying,
)
from worker.settings import WorkerSettings

T = TypeVar("T")

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


_NO_CREDENTIALS = (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError)
"""Raised by boto3 before any request: permanent, and worth one clear line, not a traceback."""


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
    if isinstance(error, _NO_CREDENTIALS):
        return PermanentStorageError(f"{what}: {error}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                                     "(or another boto3 credential source)")
    return PermanentStorageError(f"{what}: {error}")


class S3Storage:
    """An S3 bucket prefix through boto3 (AWS, MinIO, moto: set ``ARCNN_S3_ENDPOINT_URL``).

    ``retries`` and ``backoff`` are the listing's retry policy: one failed page request must not
    fail a job of millions of keys. A page is retried with the same continuation token, so no
    key is listed twice or skipped. get/put/metadata are retried by their caller
    (:class:`arcnn.jobs.pipeline.Pipeline`), which decides per key when to give up.
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
        except (*_TRANSIENT_BOTO, *_NO_CREDENTIALS) as error:
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
        except (botocore.exceptions.ClientError, *_TRANSIENT_BOTO, *_NO_CREDENTIALS) as error:
            raise _classify(error, what) from error
