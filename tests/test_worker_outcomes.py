"""Passthroughs are their own outcome in the worker's adapters too: the Redis job store and
``arcnn status`` count them apart from restored keys, and so do the Prometheus metrics."""

from __future__ import annotations

from pathlib import Path

from arcnn.jobs.pipeline import Result, Work
from arcnn.jobs.spec import JobSpec
from arcnn.jobs.storage import MemoryStorage
from worker.commands import _describe
from worker.jobs import JobStore
from worker.metrics import IMAGES_PROCESSED, MODEL_IMAGES, PIXELS_PROCESSED, JobCollector, MetricsObserver
from worker_support import redis_server  # noqa: F401 (fixture)


def test_status_counts_passthroughs_apart(redis_server) -> None:  # noqa: F811
    store = JobStore.from_url(redis_server.url)
    job = store.create(JobSpec("s3://b/in", "s3://b/out"))
    store.batch_sent(job, 0, 3, "k2", "[]")
    for index, outcome in enumerate(("restored", "passed_through", "passed_through")):
        store.begin(job, 0, index)
        store.record(job, 0, index, f"k{index}", outcome)
    store.finish_batch(job, 0)
    store.listing_done(job, 0)
    status = store.status(job)
    assert (status.state, status.done, status.passed_through, status.settled) == ("done", 1, 2, 3)
    assert "done 1  passed through 2  skipped 0" in _describe(status)
    assert status.as_dict()["passed_through"] == 2
    samples = {(s.labels["job_id"], s.labels["state"]): s.value
               for family in JobCollector(store).collect() for s in family.samples if "state" in s.labels}
    assert samples[(job, "passed_through")] == 2 and samples[(job, "done")] == 1


def test_metrics_label_passthroughs_as_their_own_outcome(tmp_path: Path) -> None:
    storage = MemoryStorage("m")
    work = Work(storage, storage, "k.jpg", "", JobSpec("a", "b"))

    def counts() -> tuple[float, ...]:
        return (IMAGES_PROCESSED.labels(outcome="passed_through")._value.get(),
                IMAGES_PROCESSED.labels(outcome="restored")._value.get(),
                MODEL_IMAGES.labels(model="passthrough")._value.get(), PIXELS_PROCESSED._value.get())

    before = counts()
    MetricsObserver().finished(Result(work, "passed_through", model="passthrough", pixels=100, written=10), False)
    assert counts() == (before[0] + 1, before[1], before[2] + 1, before[3] + 100)


def test_a_queued_job_carries_its_output_quality_and_suffix(redis_server, tmp_path: Path) -> None:  # noqa: F811
    from worker_support import base_env, cli

    (tmp_path / "in").mkdir()
    env = base_env(redis_server.url, "http://127.0.0.1:1")
    job = cli(env, "enqueue", str(tmp_path / "in"), "--dest", str(tmp_path / "out"), "--format", "keep",
              "--output-quality", "80", "--suffix", "_clean").stdout.strip()
    spec = JobStore.from_url(redis_server.url).spec(job)
    assert (spec.fmt, spec.quality, spec.suffix) == ("keep", 80, "_clean")
