"""Failures mid-job: a worker SIGKILLed, Redis restarted, a key that kills every worker.

Each runs a real job through real ``arcnn worker`` subprocesses, Redis and the S3 server, with a
short ``ARCNN_VISIBILITY_TIMEOUT`` so that redelivery happens within seconds.
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from worker_support import (  # noqa: F401 (fixtures)
    BUCKET, MODEL, RedisServer, base_env, bucket, cli, free_port, jpeg, s3, wait_for, wait_job, workers,
)
from arcnn.jobs.spec import JobSpec
from worker.jobs import JobStore

VISIBILITY = 4


def _enqueue(env: dict[str, str], dest: str = "out") -> str:
    return cli(env, "enqueue", f"s3://{BUCKET}/in", "--dest", f"s3://{BUCKET}/{dest}",
               "--model", MODEL).stdout.strip()


def _progress(broker_url: str, job_id: str) -> int:
    try:
        return JobStore.from_url(broker_url).status(job_id, failed_limit=0).settled
    except Exception:  # noqa: BLE001 (Redis may be restarting)
        return 0


def _task_ids(log: str, event: str) -> set[str]:
    return set(re.findall(rf"Task arcnn\.restore_batch\[([^\]]+)\] {event}", log))


@pytest.fixture
def redis_for_test(tmp_path: Path):
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    yield server
    server.stop()


def test_sigkilled_worker_loses_nothing_and_counts_stay_exact(bucket, redis_for_test, workers) -> None:  # noqa: F811
    n = 24
    for i in range(n):
        bucket.put(f"in/{i:03d}.jpg", jpeg(i, width=256, height=256))
    env = base_env(redis_for_test.url, bucket.url, ARCNN_VISIBILITY_TIMEOUT=str(VISIBILITY))
    victim, survivor = workers(env), workers(env)
    victim.wait_ready(), survivor.wait_ready()
    job_id = _enqueue(env)

    def victim_busy() -> bool:  # it holds a batch it has not finished, and the job is under way
        log = victim.log()
        return bool(_task_ids(log, "received") - _task_ids(log, "succeeded")) and \
            _progress(redis_for_test.url, job_id) >= 2

    wait_for(victim_busy, 120, 0.05, "the victim mid-batch")
    victim.kill()
    client = redis_for_test.client()
    status = wait_job(redis_for_test.url, job_id, timeout=240, workers=(victim, survivor))
    assert (status["state"], status["total"], status["done"], status["skipped"], status["failed"]) == \
        ("done", n, n, 0, 0)
    assert bucket.keys("out/") == [f"out/{i:03d}.png" for i in range(n)]
    # the survivor acknowledges (acks_late) just after recording the last key: wait for it
    wait_for(lambda: client.hlen("unacked") == 0, 60, 0.2, "every message acknowledged")
    # the batches the victim had received but not finished were redelivered to the survivor
    unfinished = _task_ids(victim.log(), "received") - _task_ids(victim.log(), "succeeded")
    assert unfinished and unfinished <= _task_ids(survivor.log(), "received")


def test_a_batch_held_by_a_killed_worker_comes_back_without_waiting_for_the_visibility_timeout(
        bucket, redis_for_test, workers) -> None:  # noqa: F811
    """With the default one-hour visibility timeout, a SIGKILLed worker's batches used to wait an
    hour in ``unacked``; the sweep sees that the worker that started them has no heartbeat."""
    n = 24
    for i in range(n):
        bucket.put(f"in/{i:03d}.jpg", jpeg(i, width=256, height=256))
    env = base_env(redis_for_test.url, bucket.url, ARCNN_VISIBILITY_TIMEOUT="3600", ARCNN_REDELIVER_AFTER="3")
    victim, survivor = workers(env), workers(env)
    victim.wait_ready(), survivor.wait_ready()
    job_id = _enqueue(env)

    def victim_busy() -> bool:
        log = victim.log()
        return bool(_task_ids(log, "received") - _task_ids(log, "succeeded")) and \
            _progress(redis_for_test.url, job_id) >= 2

    wait_for(victim_busy, 120, 0.05, "the victim mid-batch")
    victim.kill()
    status = wait_job(redis_for_test.url, job_id, timeout=180, workers=(victim, survivor))
    assert (status["state"], status["total"], status["done"], status["skipped"], status["failed"]) == \
        ("done", n, n, 0, 0)
    assert bucket.keys("out/") == [f"out/{i:03d}.png" for i in range(n)]
    assert "being run by a live worker" in survivor.log()


def test_redis_restart_mid_job_workers_reconnect_and_finish(bucket, redis_for_test, workers) -> None:  # noqa: F811
    n = 24
    for i in range(n):
        bucket.put(f"in/{i:03d}.jpg", jpeg(i, width=256, height=256))
    env = base_env(redis_for_test.url, bucket.url, ARCNN_VISIBILITY_TIMEOUT=str(VISIBILITY))
    worker = workers(env).wait_ready()
    job_id = _enqueue(env)
    wait_for(lambda: _progress(redis_for_test.url, job_id) >= 2, 120, 0.05, "job under way")
    redis_for_test.stop()  # SIGTERM: Redis writes its append-only file and exits
    time.sleep(2)
    redis_for_test.start()  # same port, same data directory
    assert _progress(redis_for_test.url, job_id) < n  # it really was mid-job
    status = wait_job(redis_for_test.url, job_id, timeout=240, workers=(worker,))
    assert (status["state"], status["total"], status["done"], status["skipped"], status["failed"]) == \
        ("done", n, n, 0, 0)
    assert bucket.keys("out/") == [f"out/{i:03d}.png" for i in range(n)]
    assert worker.process.poll() is None  # the same worker, reconnected
    assert "Connection to broker lost" in worker.log()


def test_a_key_that_kills_its_worker_is_failed_as_poison_not_retried_forever(bucket, redis_for_test, workers) -> None:  # noqa: F811
    """The key is started, its worker dies (SIGKILL), the batch is redelivered; with
    ``ARCNN_MAX_DELIVERIES=1`` the second start fails the key as poison instead of processing it."""
    for i in range(3):
        bucket.put(f"in/a{i}.jpg", jpeg(i))
    bucket.put("in/z-killer.jpg", jpeg(9, width=1200, height=1200))  # slow enough to be killed in flight
    env = base_env(redis_for_test.url, bucket.url, ARCNN_VISIBILITY_TIMEOUT="3", ARCNN_MAX_DELIVERIES="1",
                   ARCNN_LIST_BATCH="1")
    first = workers(env, concurrency=1).wait_ready()
    job_id = _enqueue(env)
    client = redis_for_test.client()
    # progress first: a key's outcome and the removal of its start are one script, so a start
    # seen after three outcomes can only be the killer's (read the other way round, a0-a2's own
    # start could pass for it and the worker died before the killer was ever started)
    wait_for(lambda: _progress(redis_for_test.url, job_id) == 3 and
             client.hlen(f"arcnn:job:{job_id}:attempts") >= 1, 60, 0.02, "the killer key in flight")
    first.kill()
    second = workers(env, concurrency=1).wait_ready()
    status = wait_job(redis_for_test.url, job_id, timeout=240, workers=(first, second))
    assert (status["state"], status["total"], status["done"], status["failed"]) == ("done", 4, 3, 1)
    assert status["failed_keys"]["in/z-killer.jpg"]["reason"] == "poison"
    assert bucket.keys("out/") == ["out/a0.png", "out/a1.png", "out/a2.png"]


def test_redis_restart_during_a_one_batch_job_leaves_the_worker_up_for_the_next_job(
        bucket, redis_for_test, workers) -> None:  # noqa: F811
    """One batch in flight across the restart: the worker reconnects, acknowledges it, and
    takes the next job (kombu's ack through the old channel used to kill it with exit 0)."""
    n = 13
    for i in range(n):
        bucket.put(f"in/{i:03d}.jpg", jpeg(i, width=256, height=256))
    env = base_env(redis_for_test.url, bucket.url, ARCNN_VISIBILITY_TIMEOUT=str(VISIBILITY),
                   ARCNN_LIST_BATCH="100")
    worker = workers(env).wait_ready()
    job_id = _enqueue(env)
    wait_for(lambda: _progress(redis_for_test.url, job_id) >= 1, 120, 0.05, "job under way")
    redis_for_test.stop()
    time.sleep(2)
    redis_for_test.start()
    status = wait_job(redis_for_test.url, job_id, timeout=240, workers=(worker,))
    assert (status["state"], status["total"], status["done"]) == ("done", n, n)
    assert "Connection to broker lost" in worker.log()  # it really was cut off mid-batch
    second = _enqueue(env, dest="again")
    status = wait_job(redis_for_test.url, second, timeout=240, workers=(worker,))
    assert (status["state"], status["done"]) == ("done", n)
    assert worker.process.poll() is None, worker.log()[-3000:]
    assert "Unrecoverable error" not in worker.log()


def test_a_message_swallowed_by_a_stopped_then_killed_worker_is_sent_again(bucket, redis_for_test, workers) -> None:  # noqa: F811
    """The issue's reproduction: an idle worker is SIGSTOPped with its BRPOP pending, so Redis
    hands it the job's listing message, which it never records as unacknowledged; it is then
    SIGKILLed. The message is in neither the queue nor ``unacked``: only the redelivery sweep
    of the next worker can bring it back (before, the job stayed ``listing`` forever)."""
    n = 5
    for i in range(n):
        bucket.put(f"in/{i:03d}.jpg", jpeg(i))
    env = base_env(redis_for_test.url, bucket.url, ARCNN_REDELIVER_AFTER="3")
    victim = workers(env).wait_ready()
    os.kill(victim.process.pid, signal.SIGSTOP)
    job_id = _enqueue(env)
    client = redis_for_test.client()
    wait_for(lambda: client.llen("arcnn") == 0, 30, 0.05, "the stopped worker's BRPOP taking the message")
    assert client.hlen("unacked") == 0  # taken, and recorded nowhere
    victim.kill()
    survivor = workers(env).wait_ready()
    status = wait_job(redis_for_test.url, job_id, timeout=120, workers=(survivor,))
    assert (status["state"], status["total"], status["done"], status["failed"]) == ("done", n, n, 0)
    assert "sending it again" in survivor.log()


def test_a_batch_lost_off_the_queue_is_sent_again_and_counts_stay_exact(tmp_path: Path, redis_for_test, workers) -> None:
    """A batch message popped by a worker that died before recording it (here: popped by the
    test) is sent again by the sweep; the job finishes with every key counted once."""
    from worker import tasks
    from worker.app import QUEUE, app, configure
    from worker.engine import worker_pipeline
    from worker.settings import WorkerSettings

    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    n = 10
    for i in range(n):
        (src / f"{i:03d}.jpg").write_bytes(jpeg(i))
    settings = WorkerSettings(broker_url=redis_for_test.url, list_batch=4, device="cpu")
    configure(settings)
    app._after_fork()  # drop connections pooled for another test's broker
    runtime = tasks.Runtime(settings, worker_pipeline(settings))
    job_id = runtime.store.create(JobSpec(str(src), str(dest), model=MODEL))
    runtime.list_chunk(job_id, 0)  # the listing, in this process: three batches queued
    client = redis_for_test.client()
    assert client.llen(QUEUE) == 3
    client.rpop(QUEUE)  # the next message a worker would take: gone with its worker
    worker = workers(base_env(redis_for_test.url, "http://127.0.0.1:9", ARCNN_REDELIVER_AFTER="3")).wait_ready()
    status = wait_job(redis_for_test.url, job_id, timeout=120, workers=(worker,))
    assert (status["state"], status["total"], status["done"], status["skipped"], status["failed"]) == \
        ("done", n, n, 0, 0)
    assert sorted(p.name for p in dest.glob("*.png")) == [f"{i:03d}.png" for i in range(n)]
    assert "message b0 (arcnn.restore_batch) is neither queued nor being run by a live worker" in worker.log()


def test_garbage_on_the_queue_is_dropped_and_the_worker_goes_on(bucket, redis_for_test, workers) -> None:  # noqa: F811
    env = base_env(redis_for_test.url, bucket.url)
    worker = workers(env).wait_ready()
    client = redis_for_test.client()
    for garbage in ("not a message {", "[1, 2]", "\x00\xff"):
        client.lpush("arcnn", garbage)
    wait_for(lambda: client.llen("arcnn") == 0, 30, 0.05, "the garbage taken off the queue")
    bucket.put("in/a.jpg", jpeg(1))
    status = wait_job(redis_for_test.url, _enqueue(env), timeout=120, workers=(worker,))
    assert (status["state"], status["done"]) == ("done", 1)
    assert worker.process.poll() is None and "Unrecoverable error" not in worker.log()
    assert worker.log().count("dropped a queue item that is not a message") == 3


def _broker_up(port: int) -> float | None:
    """``arcnn_broker_up`` from one scrape, which must answer well within its timeout."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = [s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == "arcnn_broker_up"]
    return values[0] if values else None


def test_metrics_answer_with_redis_down_and_say_the_broker_is_down(bucket, redis_for_test, workers) -> None:  # noqa: F811
    """With Redis down a scrape used to wait out the job store's retries (60-150 s): every worker
    looked down and no alert named Redis. Now it answers from what the worker last read."""
    port = free_port()
    worker = workers(base_env(redis_for_test.url, bucket.url), metrics_port=port).wait_ready()
    wait_for(lambda: _broker_up(port) == 1, 30, what="arcnn_broker_up 1")
    redis_for_test.stop()
    for _ in range(3):  # each scrape answers (within urlopen's 5 s), Redis or not
        assert _broker_up(port) in (0, 1)
    wait_for(lambda: _broker_up(port) == 0, 30, what="arcnn_broker_up 0 with Redis down")
    redis_for_test.start()
    wait_for(lambda: _broker_up(port) == 1, 60, what="arcnn_broker_up 1 again")
    assert worker.process.poll() is None
