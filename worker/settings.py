"""The worker's settings: the library's inference settings plus what only bucket jobs use
(broker, storage, queue, threads, metrics), read from ``ARCNN_*`` variables the same way.

They live here, not in :mod:`arcnn.settings`, because ``arcnn restore`` has no broker or
bucket: the library should not carry, document or validate what only the worker reads.
The commands (:mod:`worker.commands`) build them from the environment and pass them down.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from arcnn.settings import Settings

BROKER_SCHEMES = ("redis", "rediss")
"""URL schemes of ``ARCNN_BROKER_URL``: the job store is Redis, so the broker must be too."""


@dataclass(frozen=True)
class WorkerSettings(Settings):
    """Everything a worker or ``arcnn run`` is configured with; build with :meth:`from_env`."""

    broker_url: str = "redis://localhost:6379/0"
    """Celery broker and job-state store (Redis)."""
    s3_endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO, moto server); None means AWS."""
    visibility_timeout: int = 3600
    """Seconds before an unacknowledged task is redelivered; longer than the longest task."""
    metrics_port: int = 9808
    """Port of the worker's Prometheus endpoint."""
    metrics_addr: str = "127.0.0.1"
    """Address the worker's Prometheus endpoint binds. Loopback by default: the metrics carry job
    ids, and a worker on a public host should not publish them to the world. Containers and
    multi-host setups set 0.0.0.0 (docker-compose.yml does) and keep the port off the internet."""
    list_batch: int = 100
    """The most keys one queued message carries (fewer when they are large: ``batch_seconds``)."""
    batch_seconds: int = 60
    """Estimated seconds of work per queued message (:mod:`worker.sizing`): far inside the
    visibility timeout, and inside compose's two-minute stop grace period, which a stopping
    worker spends finishing its batches."""
    max_retries: int = 5
    """Retries (with backoff) of transient storage errors before a key is failed."""
    retry_backoff: float = 0.5
    """Seconds before the first retry of a transient storage error; doubles per retry."""
    io_threads: int = 4
    """Worker threads that fetch/decode and encode/upload around the single inference thread."""
    torch_threads: int = 0
    """CPU threads torch may use in workers and ``arcnn run`` (0 keeps torch's default)."""
    max_deliveries: int = 3
    """Times one key may be started without finishing (worker died) before it is failed as poison."""
    infer_threads: int = 0
    """Worker threads restoring images at once, sharing tile batches (0: 2 on CUDA, 1 on CPU)."""
    redeliver_after: int = 30
    """Seconds a sent message (a batch or a listing chunk of an unfinished job) may be missing
    from both the queue and the unacknowledged set before it is sent again (:mod:`worker.redelivery`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        scheme = urlsplit(self.broker_url).scheme
        if scheme not in BROKER_SCHEMES:
            raise ValueError(f"ARCNN_BROKER_URL must be a redis:// or rediss:// URL, not {scheme or 'no'}:// "
                             "(the broker is also the job store)")
        if self.batch_seconds < 1 or self.list_batch < 1:
            raise ValueError("ARCNN_BATCH_SECONDS and ARCNN_LIST_BATCH must be at least 1")
        if self.redeliver_after < 1:
            raise ValueError(f"ARCNN_REDELIVER_AFTER must be at least 1 second, not {self.redeliver_after}")
