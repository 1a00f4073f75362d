"""The streaming restoration pipeline, shared by Celery tasks and ``arcnn run``.

Three stages joined by bounded queues, so that storage I/O and codecs overlap with inference
and memory stays bounded however many keys stream through::

    submit -> [fetch+decode threads] -> [infer thread(s)] -> [encode+upload threads]

The process holds each model once. On CPU one infer thread runs it (torch's own thread pool
parallelises each forward pass); on GPU two or more restore different images at once and
their tiles share forward passes. Torch and PIL release the GIL for the heavy parts, so the
I/O threads run alongside.

Every work item ends in exactly one :class:`Result`; nothing raised inside a stage escapes it,
so one bad key can never stop the pipeline. Permanent problems fail the key at once; transient storage errors are
retried with backoff (:func:`worker.storage.retrying`) and fail the key only when exhausted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from PIL import Image

from arcnn.errors import AnimatedImageError, ArcnnError, BadImageError, NoWeightsError, TooLargeError
from arcnn.images import EXTENSIONS, decode_image, encode_image, format_losses
from arcnn.naming import NameClashError, Named, plain_name
from arcnn.registry import bundled
from arcnn.restoration import PASSTHROUGH, Choice, Restorer, resolve_device
from arcnn.tiling import auto_batch_size
from worker import metrics
from worker.batching import BatchingRestorer
from worker.jobs import JobSpec
from worker.locations import UnsafeKeyError, output_key
from worker.settings import WorkerSettings
from worker.storage import Storage, StorageError, retrying

log = logging.getLogger(__name__)

META_ETAG = "arcnn-source-etag"
META_SIZE = "arcnn-source-size"
META_MODEL = "arcnn-model"
META_JOB = "arcnn-job"
"""Output metadata keys (S3 user metadata is case-insensitive and comes back lower-case)."""


class Settled(Exception):
    """Raised by a work item's gate: the key already has an outcome (a redelivered batch)."""


class PoisonError(ArcnnError):
    """Raised by a gate: the key was started too often without finishing (it kills workers)."""


@dataclass
class Work:
    """One source key to restore, with the job it belongs to."""

    source: Storage
    dest: Storage
    key: str
    """Full source key (with the source prefix)."""
    etag: str
    """ETag from the listing; compared with the output's recorded source ETag to skip done work."""
    spec: JobSpec
    job_id: str = ""
    gate: Callable[[], None] | None = None
    """Called when the key is about to start; may raise :class:`Settled` or :class:`PoisonError`."""
    tag: object = None
    """The caller's identifier, handed back in the result."""
    name: str | None = None
    """Output name relative to DEST (:mod:`arcnn.naming`); None: the plain name of the key."""
    clash: str = ""
    """Set when another key of the job holds this key's output name: the key fails as collision."""
    sink: queue.Queue | None = field(default=None, repr=False)


@dataclass
class Result:
    """What happened to one work item.

    ``outcome`` None means nothing was done: the key was settled elsewhere, or (with ``error``
    set) its gate could not run and the key is still open.
    """

    work: Work
    outcome: str | None
    model: str = ""
    reason: str = ""
    error: str = ""
    warning: str = ""
    """What the written output gave up (alpha in a JPEG, 16 bits in 8): recorded, not failed."""
    why: str = ""
    """Why ``model`` was applied (:attr:`arcnn.restoration.Choice.why`) or the key skipped, in a
    few words for the per-key line users read."""
    out_key: str = ""
    """The output's key (restored and skipped keys)."""


@dataclass
class _Decoded:
    work: Work
    out_key: str
    etag: str
    size: int
    image: Image.Image


@dataclass
class _Restored:
    decoded: _Decoded
    choice: Choice
    image: Image.Image


@dataclass
class _Fed:
    count: int
    error: BaseException | None


_STOP = object()

@contextmanager
def _timed(stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        metrics.STAGE_DURATION.labels(stage=stage).observe(time.perf_counter() - start)


class Models:
    """The process's one :class:`Restorer` and the models it has loaded (each load timed).

    A job names ``auto`` (the nearest-quality bundled model per image), a bundled name, a path
    or ``random:<spec>``; all are served by the same restorer, which loads each model once.
    With more than one inference thread the networks are wrapped so that the threads' tiles
    share forward passes (:mod:`worker.batching`).
    """

    def __init__(self, settings: WorkerSettings) -> None:
        device = str(resolve_device(settings.device))
        self.threads = settings.infer_threads or (2 if device.startswith("cuda") else 1)
        options = {"device": device, "tile": settings.tile, "batch_size": settings.batch_size,
                   "precision": settings.precision, "chroma": settings.chroma, "tier": settings.tier,
                   "default_model": settings.default_model, "auto_max_quality": settings.auto_max_quality}
        batch = settings.batch_size or auto_batch_size(device)
        self.restorer = (
            BatchingRestorer("auto", max_batch=batch * self.threads, **options)
            if self.threads > 1 else Restorer("auto", **options)
        )
        self._lock = threading.Lock()

    @property
    def device(self) -> str:
        return self.restorer.device

    def check(self, spec: str) -> None:
        """Raise :class:`NoWeightsError` now if a job's model can never load."""
        if spec == "auto":
            if not bundled():
                raise NoWeightsError("--model auto needs trained weights and none are bundled")
        else:
            self.load(spec)

    def load(self, name: str) -> None:
        if name == PASSTHROUGH:
            return
        with self._lock:
            if name not in self.restorer.model_names:
                start = time.perf_counter()
                self.restorer.model(name)
                metrics.MODEL_LOAD_SECONDS.labels(model=name).set(time.perf_counter() - start)

    def restore(self, spec: str, image: Image.Image) -> tuple[Choice, Image.Image]:
        """(what was applied and why, e.g. ``jpeg-q20+colour``; restored image)."""
        choice = self.restorer.choose(image, None if spec == "auto" else spec)
        self.load(choice.luma)
        if choice.chroma is not None:
            self.load(choice.chroma_model)
        return choice, self.restorer.restore(image, choice)


class Pipeline:
    """Long-lived: one per process, fed by any number of :meth:`run` calls at once (their items
    interleave, which keeps the model busy across Celery batch boundaries)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.models = Models(settings)
        io = max(1, settings.io_threads)
        self._fetch_q: queue.Queue = queue.Queue(maxsize=io)
        self._infer_q: queue.Queue = queue.Queue(maxsize=max(2, self.models.restorer.batch_size))
        self._encode_q: queue.Queue = queue.Queue(maxsize=io)
        self._stages = [
            (self._fetch_q, [threading.Thread(target=self._fetch_loop, name=f"fetch-{i}", daemon=True)
                             for i in range(io)]),
            (self._infer_q, [threading.Thread(target=self._infer_loop, name=f"infer-{i}", daemon=True)
                             for i in range(self.models.threads)]),
            (self._encode_q, [threading.Thread(target=self._upload_loop, name=f"upload-{i}", daemon=True)
                              for i in range(io)]),
        ]
        for _, threads in self._stages:
            for thread in threads:
                thread.start()

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> Pipeline:
        """The process's pipeline; also applies ``torch_threads`` (torch's pool is per process)."""
        if settings.torch_threads > 0:
            torch.set_num_threads(settings.torch_threads)
        return cls(settings)

    def run(self, works: Iterable[Work]) -> Iterator[Result]:
        """Stream ``works`` through the pipeline; yields one result per item, in completion order.

        ``works`` is consumed lazily by a feeder thread that blocks when the pipeline is full, so
        a listing of millions of keys can be passed straight in. An error raised by ``works``
        itself (e.g. a listing failure) is re-raised after the items fed before it are finished.
        """
        sink: queue.Queue = queue.Queue()

        def feed() -> None:
            count, error = 0, None
            try:
                for work in works:
                    work.sink = sink
                    self._fetch_q.put(work)
                    count += 1
            except BaseException as exc:  # noqa: BLE001 (handed to the consumer)
                error = exc
            sink.put(_Fed(count, error))

        threading.Thread(target=feed, name="feed", daemon=True).start()
        received, fed = 0, None
        while fed is None or received < fed.count:
            item = sink.get()
            if isinstance(item, _Fed):
                fed = item
                continue
            received += 1
            yield item
        if fed.error is not None:
            raise fed.error

    def close(self) -> None:
        """Stop the threads once queued work is done (only needed by short-lived owners).

        Stage by stage: a stage's threads have queued all their output before the next stage
        is told to stop, because each queue is FIFO and the stops come last.
        """
        for inbox, threads in self._stages:
            for _ in threads:
                inbox.put(_STOP)
            for thread in threads:
                thread.join()

    # -- stages -------------------------------------------------------------------------------

    def _finish(self, work: Work, outcome: str | None, model: str = "", reason: str = "",
                error: str = "", started: bool = True, warning: str = "", why: str = "",
                out_key: str = "") -> None:
        if outcome is not None:
            metrics.IMAGES_PROCESSED.labels(outcome=outcome, model=model or work.spec.model).inc()
            if outcome == "failed":
                metrics.IMAGE_FAILURES.labels(reason=reason).inc()
                log.info("failed %s: %s: %s", work.key, reason, error)
        if started:
            metrics.IMAGES_IN_FLIGHT.dec()
        assert work.sink is not None
        work.sink.put(Result(work, outcome, model, reason, error, warning, why, out_key))

    def _fetch_loop(self) -> None:
        while (work := self._fetch_q.get()) is not _STOP:
            try:
                if work.gate is not None:
                    work.gate()
            except Settled:
                self._finish(work, None, started=False)
                continue
            except PoisonError as error:
                self._finish(work, "failed", reason="poison", error=str(error), started=False)
                continue
            except Exception as error:  # noqa: BLE001 (job store unreachable for too long)
                # Not the key's fault: leave it unsettled (outcome None) for the batch to retry.
                log.warning("cannot start %s: %r", work.key, error)
                self._finish(work, None, error=repr(error), started=False)
                continue
            metrics.IMAGES_IN_FLIGHT.inc()
            try:
                decoded = self._fetch_decode(work)
            except Exception as error:  # noqa: BLE001
                self._fail(work, error)
                continue
            if decoded is not None:
                self._infer_q.put(decoded)

    def _fetch_decode(self, work: Work) -> _Decoded | None:
        """Fetch and decode, or finish the item as skipped (returning None)."""
        relative = work.source.location.relative(work.key)
        name = Named(work, relative, None, work.clash).output_name() if work.clash else (
            work.name or plain_name(relative, EXTENSIONS[work.spec.fmt]))
        out_key = output_key(work.dest.location, relative, name)
        retries, backoff = self.settings.max_retries, self.settings.retry_backoff
        if not work.spec.overwrite:
            recorded = retrying(lambda: work.dest.metadata(out_key), retries, backoff)
            if recorded is not None and recorded.get(META_ETAG) == work.etag:
                # Written by this very job (a worker died before recording it): it was restored.
                same_job = bool(work.job_id) and recorded.get(META_JOB) == work.job_id
                self._finish(work, "restored" if same_job else "skipped", model=recorded.get(META_MODEL, ""),
                             why="output already written from this source" + (" by this job" if same_job else ""),
                             out_key=out_key)
                return None
        with _timed("fetch"):
            data, etag = retrying(lambda: work.source.get(work.key), retries, backoff)
        metrics.BYTES_READ.inc(len(data))
        with _timed("decode"):
            image = decode_image(data, self.settings.max_pixels)
        return _Decoded(work, out_key, etag, len(data), image)

    def _infer_loop(self) -> None:
        while (item := self._infer_q.get()) is not _STOP:
            try:
                with _timed("infer"):
                    choice, restored = self.models.restore(item.work.spec.model, item.image)
            except Exception as error:  # noqa: BLE001
                self._fail(item.work, error)
                continue
            self._encode_q.put(_Restored(item, choice, restored))

    def _upload_loop(self) -> None:
        while (item := self._encode_q.get()) is not _STOP:
            decoded, work, model = item.decoded, item.decoded.work, item.choice.label
            try:
                with _timed("encode"):
                    data = encode_image(item.image, work.spec.fmt, source=decoded.image,
                                        png_level=self.settings.png_compress_level)
                warning = "; ".join(format_losses(item.image, work.spec.fmt))
                metadata = {META_ETAG: decoded.etag, META_SIZE: str(decoded.size),
                            META_MODEL: model, META_JOB: work.job_id}
                with _timed("upload"):
                    retrying(lambda: work.dest.put(decoded.out_key, data, work.spec.fmt, metadata),
                             self.settings.max_retries, self.settings.retry_backoff)
            except Exception as error:  # noqa: BLE001
                self._fail(work, error, model=model)
                continue
            metrics.BYTES_WRITTEN.inc(len(data))
            metrics.PIXELS_PROCESSED.labels(model=model).inc(item.image.width * item.image.height)
            self._finish(work, "restored", model=model, warning=warning, why=item.choice.why,
                         out_key=decoded.out_key)

    def _fail(self, work: Work, error: Exception, model: str = "") -> None:
        """Finish ``work`` as failed with a reason slug; unexpected errors are logged in full."""
        if isinstance(error, AnimatedImageError):
            reason = "animated"
        elif isinstance(error, BadImageError):
            reason = "too_large" if isinstance(error, TooLargeError) else "bad_image"
        elif isinstance(error, UnsafeKeyError):
            reason = "unsafe_key"
        elif isinstance(error, NameClashError):
            reason = "collision"
        elif isinstance(error, NoWeightsError):
            reason = "no_weights"
        elif isinstance(error, StorageError):  # permanent, or transient with retries exhausted
            reason = "storage"
        else:
            reason = "internal"
            log.error("unexpected error on %s", work.key, exc_info=error)
        self._finish(work, "failed", model=model, reason=reason, error=str(error) or repr(error))
