"""The streaming restoration pipeline: the one engine of ``arcnn restore``, ``arcnn run`` and the
Celery workers.

Three stages joined by bounded queues, so that storage I/O and codecs overlap with inference
and memory stays bounded however many keys stream through::

    submit -> [fetch+decode threads] -> [infer thread(s)] -> [encode+upload threads]

The process holds each model once. On CPU one infer thread runs it (torch's own thread pool
parallelises each forward pass); on GPU two or more restore different images at once and
their tiles share forward passes (:mod:`arcnn.jobs.batching`). Torch and PIL release the GIL
for the heavy parts, so the I/O threads run alongside.

Every work item ends in exactly one :class:`Result`; nothing raised inside a stage escapes it,
so one bad key can never stop the pipeline. Permanent problems fail the key at once; transient
storage errors are retried with backoff (:func:`arcnn.jobs.storage.retrying`) and fail the key
only when exhausted. The pipeline knows nothing of Prometheus, Redis or the command line: it
reports through an :class:`Observer` and takes plain parameters.

Before a key is fetched its output is looked up:

- recorded from the same source (same ETag) and not ``overwrite``: the key is **skipped**;
- the output would replace the source itself, or (source and destination overlapping) an
  object arcnn did not write: the key **fails** (``overwrite_source``), whatever the options,
  so an input is never overwritten.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
from PIL import Image

from arcnn.errors import AnimatedImageError, ArcnnError, BadImageError, NoWeightsError, TooLargeError
from arcnn.images import decode_image
from arcnn.jobs.batching import BatchingRestorer
from arcnn.jobs.locations import UnsafeKeyError, output_key, overlaps
from arcnn.jobs.output import BadOutputError, encode_output, is_passthrough
from arcnn.jobs.spec import JobSpec
from arcnn.jobs.storage import META_ETAG, META_JOB, META_MODEL, META_READ, META_SIZE, Storage, StorageError, retrying
from arcnn.naming import NameClashError, Named, output_extension, output_format, plain_name
from arcnn.registry import bundled
from arcnn.restoration import PASSTHROUGH, Choice, Restorer, resolve_device
from arcnn.settings import Settings
from arcnn.tiling import auto_batch_size

log = logging.getLogger(__name__)

STAGES = ("fetch", "decode", "infer", "encode", "upload")


class Settled(Exception):
    """Raised by a work item's gate: the key already has an outcome (a redelivered batch)."""


class PoisonError(ArcnnError):
    """Raised by a gate: the key was started too often without finishing (it kills workers)."""


class SourceOverwriteError(ArcnnError):
    """The output would replace an input (or, where source and destination overlap, an object
    arcnn did not write): refused whatever the options."""


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
    """What happened to one work item (one of :data:`arcnn.jobs.spec.OUTCOMES`).

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
    """The output's key (restored, passed-through and skipped keys)."""
    pixels: int = 0
    """Width x height of the image restored or passed through (0 otherwise)."""
    read: str = ""
    """Where the history that chose the model came from (:attr:`arcnn.reading.Reading.source`:
    ``tables``, ``pixels``, ``webp``, ``assumed``; ``none`` when nothing was found)."""
    written: int = 0
    """Bytes stored (0 on a dry run, a skip or a failure)."""


class Observer:
    """What the pipeline reports as it goes; every hook does nothing unless overridden.

    Called from the pipeline's threads, so implementations must be thread-safe. The worker's
    Prometheus metrics are one (``worker.metrics``).
    """

    def stage(self, stage: str, seconds: float) -> None:
        """A stage of :data:`STAGES` took ``seconds`` for one image."""

    def model_loaded(self, name: str, seconds: float) -> None:
        """A model was loaded (once per process and model)."""

    def started(self) -> None:
        """An image entered the pipeline (fetch begins)."""

    def read(self, size: int) -> None:
        """``size`` bytes were fetched from a source."""

    def finished(self, result: Result, started: bool) -> None:
        """A key has its result; ``started`` says whether :meth:`started` was called for it."""


@dataclass
class _Decoded:
    work: Work
    out_key: str
    etag: str
    data: bytes
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


class Models:
    """The process's one :class:`Restorer` and the models it has loaded (each load reported).

    A job names ``auto`` (the nearest-quality bundled model per image), a bundled name, a path
    or ``random:<spec>``; all are served by the same restorer, which loads each model once.
    With more than one inference thread (``infer_threads``; 0: 2 on CUDA, 1 on CPU) the
    networks are wrapped so that the threads' tiles share forward passes.
    """

    def __init__(self, settings: Settings, infer_threads: int = 0, observer: Observer | None = None) -> None:
        device = str(resolve_device(settings.device))
        self.threads = infer_threads or (2 if device.startswith("cuda") else 1)
        self.observer = observer or Observer()
        settings = _on(settings, device)
        batch = settings.batch_size or auto_batch_size(device)
        self.restorer = (BatchingRestorer.from_settings(settings, max_batch=batch * self.threads)
                         if self.threads > 1 else Restorer.from_settings(settings))
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
                self.observer.model_loaded(name, time.perf_counter() - start)

    def choose(self, spec: str, image: Image.Image) -> Choice:
        """What ``spec`` (``auto`` or a model) does to ``image``, and why."""
        return self.restorer.choose(image, None if spec == "auto" else spec)

    def restore(self, image: Image.Image, choice: Choice) -> Image.Image:
        """``image`` restored as ``choice`` says (the image itself when nothing is applied)."""
        if is_passthrough(choice):
            return image
        self.load(choice.luma)
        if choice.chroma is not None:
            self.load(choice.chroma_model)
        return self.restorer.restore(image, choice)


def _on(settings: Settings, device: str) -> Settings:
    """``settings`` with the device resolved (``auto`` -> cuda or cpu), decided once per process."""
    return replace(settings, device=device)


class Pipeline:
    """Long-lived: one per process, fed by any number of :meth:`run` calls at once (their items
    interleave, which keeps the model busy across Celery batch boundaries).

    ``io_threads`` fetch/decode and as many encode/upload; ``max_retries`` and ``retry_backoff``
    are the retry policy of transient storage errors per key; ``dry_run`` decides each key's
    model (and skips) without restoring or writing anything.
    """

    def __init__(self, models: Models, *, max_pixels: int, png_level: int = 1, io_threads: int = 4,
                 max_retries: int = 5, retry_backoff: float = 0.5, observer: Observer | None = None,
                 dry_run: bool = False) -> None:
        self.models = models
        self.max_pixels, self.png_level = max_pixels, png_level
        self.max_retries, self.retry_backoff = max_retries, retry_backoff
        self.observer = observer or models.observer
        self.dry_run = dry_run
        io = max(1, io_threads)
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
    def from_settings(cls, settings: Settings, *, infer_threads: int = 0, torch_threads: int = 0,
                      observer: Observer | None = None, **options: object) -> Pipeline:
        """The pipeline the settings describe; ``options`` are the constructor's keywords.

        The pipeline is built once per process by the process's owner (a command, a worker), so
        this is where the process is tuned for it: torch's thread pool (``torch_threads`` > 0)
        and, on CUDA, cuDNN's autotuning (the tiles repeat a few shapes, so it pays for itself).
        The models themselves set nothing process-wide.
        """
        if torch_threads > 0:
            torch.set_num_threads(torch_threads)
        models = Models(settings, infer_threads, observer)
        if models.device.startswith("cuda"):
            torch.backends.cudnn.benchmark = True
        return cls(models, max_pixels=settings.max_pixels, png_level=settings.png_compress_level,
                   observer=observer, **options)

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

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observer.stage(stage, time.perf_counter() - start)

    def _retrying(self, call: Callable[[], object]) -> object:
        return retrying(call, self.max_retries, self.retry_backoff)

    def _finish(self, result: Result, started: bool = True) -> None:
        if result.outcome == "failed":
            log.info("failed %s: %s: %s", result.work.key, result.reason, result.error)
        self.observer.finished(result, started)
        assert result.work.sink is not None
        result.work.sink.put(result)

    def _fetch_loop(self) -> None:
        while (work := self._fetch_q.get()) is not _STOP:
            try:
                if work.gate is not None:
                    work.gate()
            except Settled:
                self._finish(Result(work, None), started=False)
                continue
            except PoisonError as error:
                self._finish(Result(work, "failed", reason="poison", error=str(error)), started=False)
                continue
            except Exception as error:  # noqa: BLE001 (job store unreachable for too long)
                # Not the key's fault: leave it unsettled (outcome None) for the batch to retry.
                log.warning("cannot start %s: %r", work.key, error)
                self._finish(Result(work, None, error=repr(error)), started=False)
                continue
            self.observer.started()
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
            work.name or plain_name(relative, output_extension(work.spec.fmt, relative), work.spec.suffix))
        out_key = output_key(work.dest.location, relative, name)
        if work.dest.location.url_of(out_key) == work.source.location.url_of(work.key):
            raise SourceOverwriteError(f"its output {name!r} would replace the input itself; give another "
                                       "destination, --suffix or --format")
        guard = overlaps(work.source.location, work.dest.location)
        if guard or not work.spec.overwrite:
            recorded = self._retrying(lambda: work.dest.metadata(out_key))
            if guard and recorded is not None and META_ETAG not in recorded:
                raise SourceOverwriteError(f"{out_key!r} exists and was not written by arcnn (it may be an "
                                           "input): not replaced")
            if not work.spec.overwrite and recorded is not None and recorded.get(META_ETAG) == work.etag:
                # Written by this very job (a worker died before recording it): its outcome stands.
                same_job = bool(work.job_id) and recorded.get(META_JOB) == work.job_id
                model = recorded.get(META_MODEL, "")
                outcome = "skipped" if not same_job else ("passed_through" if model == PASSTHROUGH else "restored")
                self._finish(Result(work, outcome, model=model, out_key=out_key,
                                    why="output already written from this source" + (" by this job" if same_job else "")))
                return None
        with self._timed("fetch"):
            data, etag = self._retrying(lambda: work.source.get(work.key))
        self.observer.read(len(data))
        with self._timed("decode"):
            image = decode_image(data, self.max_pixels)
        return _Decoded(work, out_key, etag, data, image)

    def _infer_loop(self) -> None:
        while (item := self._infer_q.get()) is not _STOP:
            try:
                with self._timed("infer"):
                    choice = self.models.choose(item.work.spec.model, item.image)
                    restored = item.image if self.dry_run else self.models.restore(item.image, choice)
            except Exception as error:  # noqa: BLE001
                self._fail(item.work, error)
                continue
            self._encode_q.put(_Restored(item, choice, restored))

    def _upload_loop(self) -> None:
        while (item := self._encode_q.get()) is not _STOP:
            decoded, work, choice = item.decoded, item.decoded.work, item.choice
            outcome = "passed_through" if is_passthrough(choice) else "restored"
            read = (choice.reading.source or "none") if choice.reading is not None else ""
            result = Result(work, outcome, model=choice.label, why=choice.why, out_key=decoded.out_key,
                            pixels=item.image.width * item.image.height, read=read)
            if self.dry_run:
                self._finish(result)
                continue
            relative = work.source.location.relative(work.key)
            fmt = output_format(work.spec.fmt, relative)
            try:
                with self._timed("encode"):
                    encoded = encode_output(item.image, decoded.image, decoded.data, fmt, choice,
                                            work.spec.quality, self.png_level)
                metadata = {META_ETAG: decoded.etag, META_SIZE: str(len(decoded.data)),
                            META_MODEL: choice.label, META_JOB: work.job_id, META_READ: choice.why}
                with self._timed("upload"):
                    self._retrying(lambda: work.dest.put(decoded.out_key, encoded.data, fmt, metadata))
            except Exception as error:  # noqa: BLE001
                self._fail(work, error, model=choice.label)
                continue
            result.warning, result.written = "; ".join(encoded.warnings), len(encoded.data)
            self._finish(result)

    def _fail(self, work: Work, error: Exception, model: str = "") -> None:
        """Finish ``work`` as failed with a reason slug; unexpected errors are logged in full."""
        reason = failure_reason(error)
        if reason == "internal":
            log.error("unexpected error on %s", work.key, exc_info=error)
        self._finish(Result(work, "failed", model=model, reason=reason, error=str(error) or repr(error)))


REASONS = ("bad_image", "too_large", "animated", "collision", "storage", "unsafe_key", "poison",
           "no_weights", "overwrite_source", "bad_output", "internal")
"""Why a key failed: the ``reason`` of failed results, job reports and metrics."""


def failure_reason(error: Exception) -> str:
    """The :data:`REASONS` slug of an error that failed a key."""
    kinds = ((AnimatedImageError, "animated"), (TooLargeError, "too_large"), (BadImageError, "bad_image"),
             (UnsafeKeyError, "unsafe_key"), (NameClashError, "collision"), (NoWeightsError, "no_weights"),
             (SourceOverwriteError, "overwrite_source"), (BadOutputError, "bad_output"),
             (StorageError, "storage"))  # storage: permanent, or transient with retries exhausted
    return next((reason for kind, reason in kinds if isinstance(error, kind)), "internal")
