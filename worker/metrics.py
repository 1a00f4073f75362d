"""Prometheus metrics of a worker (names are a contract: ops' dashboards and alerts use them).

A worker is one process (threads pool, see :mod:`worker.app`), so everything lives in the default
in-process registry and :func:`serve` exposes it with prometheus-client's own HTTP server. A
prefork pool would need ``PROMETHEUS_MULTIPROCESS_DIR`` and a multiprocess collector, and custom
collectors do not work there at all; that is one reason the worker does not use prefork.

Per-job progress and queue depth are not counted here but read from Redis by custom
collectors, so every worker reports the same, exact, cluster-wide numbers (ops should aggregate
those with ``max`` by job, not ``sum``). They are read by a background thread, not by the scrape
(:class:`BrokerSnapshot`): with Redis down or refusing connections a scrape used to wait out the
client's retries (60-150 s), every worker looked down, and nothing named Redis. Now a scrape
answers at once from what the worker last read, and ``arcnn_broker_up`` says whether that read
worked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator

import redis
from prometheus_client import (
    REGISTRY, Counter, Gauge, Histogram, disable_created_metrics, start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from arcnn.jobs.pipeline import STAGES, Observer, Result
from arcnn.jobs.spec import OUTCOMES
from worker.jobs import JobStore, connect

log = logging.getLogger(__name__)

IMAGES_PROCESSED = Counter(
    "arcnn_images_processed", "Images handled by this worker, by outcome.", ["outcome"],
)
MODEL_IMAGES = Counter(
    "arcnn_model_images", "Images written by this worker (restored or passed through), by the model "
    "that decided them. For counts: a model's series starts at its first image, so rate() misses it.",
    ["model"],
)
IMAGE_FAILURES = Counter(
    "arcnn_image_failures", "Images failed by this worker, by reason.", ["reason"],
)
PIXELS_PROCESSED = Counter(
    "arcnn_pixels_processed", "Pixels of images written (width x height), restored or passed through.",
)
BYTES_READ = Counter("arcnn_bytes_read", "Bytes fetched from source storage.")
BYTES_WRITTEN = Counter("arcnn_bytes_written", "Bytes uploaded to destination storage.")
STAGE_DURATION = Histogram(
    "arcnn_stage_duration_seconds", "Time per image in each pipeline stage.", ["stage"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
IMAGES_IN_FLIGHT = Gauge("arcnn_images_in_flight", "Images between fetch and upload.")
MODEL_LOAD_SECONDS = Gauge("arcnn_model_load_seconds", "Time taken to load each model.", ["model"])
BROKER_UP = Gauge("arcnn_broker_up", "1 if this worker's last read of Redis (broker and job store) "
                  "succeeded, 0 if Redis was down or refused it.")
DEVICE_INFO = Gauge("arcnn_device_info", "Inference device of this worker (value is 1).", ["device"])



class MetricsObserver(Observer):
    """The pipeline's reports as this worker's Prometheus metrics."""

    def stage(self, stage: str, seconds: float) -> None:
        STAGE_DURATION.labels(stage=stage).observe(seconds)

    def model_loaded(self, name: str, seconds: float) -> None:
        MODEL_LOAD_SECONDS.labels(model=name).set(seconds)

    def started(self) -> None:
        IMAGES_IN_FLIGHT.inc()

    def read(self, size: int) -> None:
        BYTES_READ.inc(size)

    def finished(self, result: Result, started: bool) -> None:
        if result.outcome is not None:
            IMAGES_PROCESSED.labels(outcome=result.outcome).inc()
            if result.outcome == "failed":
                IMAGE_FAILURES.labels(reason=result.reason).inc()
        if result.written:
            BYTES_WRITTEN.inc(result.written)
            PIXELS_PROCESSED.inc(result.pixels)
            MODEL_IMAGES.labels(model=result.model or result.work.spec.model).inc()
        if started:
            IMAGES_IN_FLIGHT.dec()


class JobCollector(Collector):
    """``arcnn_job_images{job,state}`` and ``arcnn_job_progress_ratio{job}`` from the job store.

    Only unfinished jobs and those finished within the last hour are exported, which bounds the
    label cardinality however many jobs have ever run.
    """

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        images = GaugeMetricFamily("arcnn_job_images", "Keys of a job by state.", labels=["job_id", "state"])
        progress = GaugeMetricFamily(
            "arcnn_job_progress_ratio", "Fraction of a job's listed keys with an outcome.", labels=["job_id"]
        )
        for job in self.store.recent():  # a Redis error is BrokerSnapshot's to handle
            for state in ("total", "done", "passed_through", "skipped", "failed"):
                images.add_metric([job.id, state], getattr(job, state))
            progress.add_metric([job.id], job.progress)
        yield images
        yield progress


class QueueCollector(Collector):
    """``arcnn_queue_depth{queue}``: messages waiting in the Celery queue (a Redis list)."""

    def __init__(self, client: redis.Redis, queues: list[str]) -> None:
        self.client = client
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("arcnn_queue_depth", "Messages waiting in a queue.", labels=["queue"])
        for queue in self.queues:
            depth.add_metric([queue], self.client.llen(queue))
        yield depth


class BrokerSnapshot(Collector):
    """Serves the families that Redis-backed collectors last produced, refreshed by a thread.

    A scrape asks for a refresh and waits at most ``wait`` seconds for it, so with Redis healthy
    it sees the current numbers and with Redis down it answers from the last good read. The
    thread also refreshes every ``interval`` seconds between scrapes and sets
    :data:`BROKER_UP` from each attempt.
    """

    def __init__(self, collectors: Iterable[Collector], interval: float = 5.0, wait: float = 0.5) -> None:
        self.collectors = list(collectors)
        self.interval, self.wait = interval, wait
        self._cv = threading.Condition()
        self._families: list[GaugeMetricFamily] = []
        self._generation = 0
        self._wanted = True
        threading.Thread(target=self._run, name="broker-metrics", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._wanted, timeout=self.interval)
                self._wanted = False
            try:
                families = [family for collector in self.collectors for family in collector.collect()]
            except redis.RedisError as error:
                log.warning("broker metrics are the last ones read: Redis is unreachable (%s)", error)
                BROKER_UP.set(0)
                families = None
            else:
                BROKER_UP.set(1)
            with self._cv:
                if families is not None:
                    self._families = families
                self._generation += 1
                self._cv.notify_all()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._cv:
            generation = self._generation
            self._wanted = True
            self._cv.notify_all()
            self._cv.wait_for(lambda: self._generation > generation, timeout=self.wait)
            families = list(self._families)
        yield from families


def serve(port: int, broker_url: str, queues: list[str], device: str, addr: str = "127.0.0.1") -> None:
    """Register the Redis-backed collectors and start the HTTP endpoint (in a daemon thread).

    They read Redis through their own client, which gives up after 2 s and never retries: the
    worker's own client rides out a Redis restart for a minute, which is right for recording
    outcomes and wrong for saying whether Redis answers.

    Every outcome's counter is exported at 0 from the start. Prometheus's ``rate`` cannot count
    a series' first sample, so a counter that appeared already at 16 (a job finished within one
    scrape interval) would show no throughput at all: that is why the throughput counters carry
    no model label (a model's series can only start at its first image; see ``MODEL_IMAGES``).
    """
    disable_created_metrics()  # the *_created series only double the scrape size
    DEVICE_INFO.labels(device=device).set(1)
    for stage in STAGES:  # export every stage from the start, not only once it has been timed
        STAGE_DURATION.labels(stage=stage)
    for outcome in OUTCOMES:
        IMAGES_PROCESSED.labels(outcome=outcome)
    store = JobStore(connect(broker_url, retries=0, timeout=2.0))
    REGISTRY.register(BrokerSnapshot([JobCollector(store), QueueCollector(store.redis, queues)]))
    start_http_server(port, addr=addr)
    log.info("metrics on %s:%d/metrics", addr, port)
