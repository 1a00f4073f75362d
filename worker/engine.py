"""The library's job engine (:mod:`arcnn.jobs`) as a worker process runs it: configured from
:class:`~worker.settings.WorkerSettings`, and reporting to Prometheus when asked to."""

from __future__ import annotations

from arcnn.jobs.pipeline import Observer, Pipeline
from worker.settings import WorkerSettings


def worker_pipeline(settings: WorkerSettings, observer: Observer | None = None, dry_run: bool = False) -> Pipeline:
    """The process's pipeline, with the worker's threads and retry policy (``dry_run``: decide
    each key's model, write nothing; for ``arcnn run --dry-run``)."""
    return Pipeline.from_settings(settings, infer_threads=settings.infer_threads,
                                  torch_threads=settings.torch_threads, observer=observer,
                                  io_threads=settings.io_threads, max_retries=settings.max_retries,
                                  retry_backoff=settings.retry_backoff, dry_run=dry_run)
