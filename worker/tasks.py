"""Celery tasks: ``arcnn.list_job`` streams a listing into the queue, ``arcnn.restore_batch``
restores one batch of keys through the process's :class:`~arcnn.jobs.pipeline.Pipeline`.

Listing is split into short tasks of :data:`LIST_CHUNK` batches, each queueing its own
continuation *behind* the batches it sent. That gives backpressure for free (the queue holds at
most about one chunk of batches, however many millions of keys the prefix has) and keeps every
task far shorter than the visibility timeout, so a live lister is never redelivered.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache

import redis
from celery import Celery, Task
from celery.exceptions import InvalidTaskError
from celery.worker.strategy import default as default_strategy

from arcnn.errors import ArcnnError
from arcnn.jobs.listing import check_destination, planned, validate
from arcnn.jobs.pipeline import Pipeline, PoisonError, Settled, Work
from arcnn.jobs.spec import JobSpec
from arcnn.jobs.storage import Storage
from worker.app import QUEUE, app
from worker.engine import worker_pipeline
from worker.jobs import LIST_TASK, RESTORE_TASK, TERMINAL, JobStore, message
from worker.redelivery import task_id
from worker.sizing import PRIOR_SECONDS_PER_BYTE, BatchCutter, seconds_per_byte
from worker.settings import WorkerSettings
from worker.storage import open_storage

log = logging.getLogger(__name__)

JOB_OPTIONS = ("tier", "precision")
"""Settings a job may carry for itself (``arcnn enqueue --tier``, ``--precision``)."""

LIST_CHUNK = 20
"""Batches one listing task sends before handing over to its continuation."""


class Runtime:
    """What a worker process holds for its whole life: settings, job store, pipeline, models."""

    def __init__(self, settings: WorkerSettings, pipeline: Pipeline | None = None, owner: str = "") -> None:
        self.settings = settings
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        """This worker's name in the job store (who runs a message; its heartbeat key)."""
        self.store = JobStore.from_url(settings.broker_url)
        self.pipeline = pipeline or worker_pipeline(settings)
        self._pipelines: dict[tuple[tuple[str, str], ...], Pipeline] = {(): self.pipeline}
        self._pipelines_lock = threading.Lock()

    @lru_cache(maxsize=64)  # noqa: B019 (one Runtime per process; specs never change)
    def job(self, job_id: str) -> tuple[JobSpec, Storage, Storage, Pipeline]:
        """A job's spec, storages and the pipeline that applies its own options."""
        spec = self.store.spec(job_id)
        src, dest = validate(spec)
        return (spec, open_storage(src, self.settings), open_storage(dest, self.settings),
                self.pipeline_for(self.store.options(job_id)))

    def pipeline_for(self, options: dict[str, str]) -> Pipeline:
        """The pipeline for a job's options (``tier``, ``precision``): the process's own when they
        match its settings, else one more pipeline with its own models, made on first use and
        kept (a worker serving jobs of two tiers holds both tiers' models)."""
        wanted = {name: value for name, value in sorted(options.items())
                  if name in JOB_OPTIONS and getattr(self.settings, name) != value}
        key = tuple(wanted.items())
        with self._pipelines_lock:
            if key not in self._pipelines:
                log.info("a pipeline for jobs with %s", ", ".join(f"{k} {v}" for k, v in key))
                self._pipelines[key] = worker_pipeline(replace(self.settings, **wanted),
                                                       self.pipeline.observer)
            return self._pipelines[key]

    def list_chunk(self, job_id: str, from_batch: int) -> None:
        """Send up to :data:`LIST_CHUNK` batches from the recorded cursor, then a continuation."""
        listed, continued_at = self.store.listing_position(job_id)
        if listed or continued_at > from_batch:
            return  # stale redelivery: the listing finished or a continuation was already queued
        if self.store.status(job_id, failed_limit=0).state in TERMINAL:
            return
        self.store.running(job_id, f"l{from_batch}", self.owner)
        try:
            spec, source, dest, _ = self.job(job_id)
            if from_batch == 0:
                self.pipeline.models.check(spec.model)  # fail the job now if the model cannot load
                check_destination(dest)
            sent, cursor = self.store.list_cursor(job_id)
            rate = self.store.list_rate(job_id) if from_batch else None
            cutter = BatchCutter(self.settings.batch_seconds, self.settings.list_batch,
                                 PRIOR_SECONDS_PER_BYTE if rate is None else rate)
            batch: list[list] = []
            for group in planned(source, dest, spec, start_after=cursor):
                # whole naming groups per message (a group over ARCNN_LIST_BATCH keys is split)
                for part in (group[i:i + self.settings.list_batch]
                             for i in range(0, len(group), self.settings.list_batch)):
                    size = sum(named.item.size for named in part)
                    if cutter.overflows(size, len(part)):
                        self._send(job_id, sent, batch)
                        sent, batch = sent + 1, []
                        cutter.reset()
                    batch += [[named.item.key, named.item.etag, named.name or "", named.clash, named.item.size]
                              for named in part]
                    if cutter.add(size, len(part)):
                        self._send(job_id, sent, batch)
                        sent, batch = sent + 1, []
                if sent - from_batch >= LIST_CHUNK:
                    # Cut only between naming groups: the continuation resumes after a key
                    # whose group is complete, so it names the rest as one listing would.
                    if batch:
                        self._send(job_id, sent, batch)
                        sent, batch = sent + 1, []
                    # recorded first: a crash before it is queued leaves it to the redelivery sweep
                    name = f"l{sent}"
                    rate = seconds_per_byte(*self.store.cost(job_id))
                    if self.store.continued(job_id, from_batch, sent, message(list_job.name, [job_id, sent]), rate):
                        list_job.apply_async(args=[job_id, sent], queue=QUEUE, task_id=task_id(job_id, name))
                    return
            if batch:
                self._send(job_id, sent, batch)
        except (ArcnnError, KeyError) as error:  # bad location, listing failed, no such model
            log.error("job %s failed: %s", job_id, error)
            self.store.fail(job_id, str(error))
            return
        self.store.listing_done(job_id, from_batch)

    def _send(self, job_id: str, batch_no: int, batch: list[list]) -> None:
        """Count and record first, queue second: a crash in between leaves the recorded message
        to the redelivery sweep (:mod:`worker.redelivery`); a batch already counted by an earlier
        run of this listing chunk is not queued twice."""
        args = [job_id, batch_no, batch]
        if self.store.batch_sent(job_id, batch_no, len(batch), batch[-1][0], message(restore_batch.name, args)):
            restore_batch.apply_async(args=args, queue=QUEUE, task_id=task_id(job_id, f"b{batch_no}"))

    def restore(self, job_id: str, batch_no: int, items: list[list]) -> None:
        """Restore one batch and record each outcome; the batch is closed only when all are in.

        A message that is not a batch its job sent (a batch number the job never reached, a job
        that no longer exists, keys that are not strings) is dropped for good, with a log line:
        retrying it could never succeed, and it must not touch any job's counts.
        """
        problem = _malformed_batch(job_id, batch_no, items)
        state = -2 if problem else self.store.open_batch(job_id, batch_no)
        if state == -2:
            log.error("dropped restore_batch(%r, %r): %s", job_id, batch_no,
                      problem or "not a batch this job sent (or no such job)")
            return
        if state == -1:
            return  # finished already, or its job has ended (cancelled): nothing to do
        self.store.running(job_id, f"b{batch_no}", self.owner)
        spec, source, dest, pipeline = self.job(job_id)

        def gate(index: int) -> None:
            starts = self.store.begin(job_id, batch_no, index)
            if starts < 0:
                raise Settled
            if starts > self.settings.max_deliveries:
                raise PoisonError(f"started {starts - 1} times without finishing (worker lost each time)")

        works = []
        for i, item in enumerate(items):
            # [key, etag, output name, clash, size]; messages from older listers have 2 or 4.
            key, etag, name, clash = (*item[:4], "", "")[:4]
            works.append(Work(source, dest, key, etag, spec, job_id, gate=lambda i=i: gate(i), tag=i,
                              name=name or None, clash=clash))
        unsettled, restored_bytes, start = 0, 0, time.monotonic()
        for result in pipeline.run(works):
            if result.outcome is not None:
                self.store.record(job_id, batch_no, result.work.tag, result.work.key,
                                  result.outcome, result.reason, result.error, result.warning)
                if result.outcome == "restored" and len(items[result.work.tag]) > 4:
                    restored_bytes += items[result.work.tag][4]
            elif result.error:
                unsettled += 1
        if unsettled:  # the job store was unreachable: retry the batch (settled keys are skipped)
            raise redis.ConnectionError(f"{unsettled} keys of batch {batch_no} could not be started")
        self.store.finish_batch(job_id, batch_no, time.monotonic() - start, restored_bytes)


def _malformed_batch(job_id: object, batch_no: object, items: object) -> str:
    """Why a restore_batch message cannot be a batch any job sent ('' if it can)."""
    if not isinstance(job_id, str) or not isinstance(batch_no, int) or isinstance(batch_no, bool):
        return "job id must be a string and batch number an integer"
    if not isinstance(items, list) or not all(
            isinstance(item, list) and 2 <= len(item) <= 5 and all(isinstance(v, str) for v in item[:4])
            and (len(item) < 5 or (isinstance(item[4], int) and not isinstance(item[4], bool)))
            for item in items):
        return "items must be [key, etag, name, clash, size]: 2 to 4 strings and an optional integer"
    return ""


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def install(runtime: Runtime) -> None:
    """Set the process's runtime (``arcnn worker`` does, so models load before tasks arrive)."""
    global _runtime
    _runtime = runtime


def runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            # Tasks run by a worker not started with `arcnn worker` (which installs its own).
            _runtime = Runtime(WorkerSettings.from_env(os.environ))
        return _runtime


def guarded_strategy(task: Task, app: Celery, consumer: object, **kwargs: object) -> Callable:
    """Celery's default message strategy, except that a message of the wrong shape is dropped.

    Valid JSON that is not a task body (e.g. a list of four items) makes Celery's default
    strategy raise a plain ``ValueError``, which Celery treats as *unrecoverable*: the worker
    stops, the message is restored, and the next worker dies the same way, forever. Re-raised
    as ``InvalidTaskError``, Celery logs it and discards the message instead.
    """
    handle = default_strategy(task, app, consumer, **kwargs)

    def guarded(*args: object, **kw: object) -> object:
        try:
            return handle(*args, **kw)
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as error:
            raise InvalidTaskError(f"malformed {task.name} message: {error!r}") from error

    return guarded


_OPTIONS = {
    "Strategy": "worker.tasks:guarded_strategy",
    # Redis unreachable for longer than the client's own retries: try the task again later.
    # Only then: any other Redis error (a script refusing bad arguments) would fail every retry.
    "autoretry_for": (redis.ConnectionError, redis.TimeoutError),
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "max_retries": None,
}


@app.task(name=LIST_TASK, **_OPTIONS)
def list_job(job_id: str, from_batch: int = 0) -> None:
    runtime().list_chunk(job_id, from_batch)


@app.task(name=RESTORE_TASK, **_OPTIONS)
def restore_batch(job_id: str, batch_no: int, items: list[list[str]]) -> None:
    runtime().restore(job_id, batch_no, items)
