"""Queued jobs end to end: ``arcnn enqueue`` / ``status`` / ``worker`` against a real Redis, a real
Celery worker subprocess and moto's S3 server over HTTP (behind a fault-injecting proxy)."""

from __future__ import annotations

import io
import json
import re
import time
import urllib.request
from collections.abc import Iterator

import pytest
from kombu import Connection
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from worker_support import (  # noqa: F401 (fixtures)
    BUCKET, MODEL, WorkerProcess, base_env, bucket, cli, free_port, jpeg, redis_server, s3,
    status_json, wait_for, wait_job,
)

SRC, DEST = f"s3://{BUCKET}/in", f"s3://{BUCKET}/out"


@pytest.fixture(scope="module")
def env(redis_server, s3) -> dict[str, str]:  # noqa: F811
    return base_env(redis_server.url, s3.url, ARCNN_MAX_PIXELS="5000")


@pytest.fixture(scope="module")
def worker(env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker for the whole module (starting one costs seconds); it serves metrics."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    process = WorkerProcess(env, log, metrics_port=free_port()).wait_ready()
    yield process
    process.stop()


def enqueue(env: dict[str, str], *args: str) -> str:
    job_id = cli(env, "enqueue", SRC, "--dest", DEST, "--model", MODEL, *args).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{12}", job_id), job_id
    return job_id


def test_job_restores_exactly_the_images_under_the_prefix_once(env, worker, bucket) -> None:  # noqa: F811
    images = [f"in/{i}.jpg" for i in range(7)] + ["in/nested/deep/x.png", "in/UPPER.JPEG"]
    for i, key in enumerate(images):
        bucket.put(key, jpeg(i))
    bucket.put("in/notes.txt", b"not an image")
    bucket.put("in/nested/", b"")  # a folder marker
    bucket.put("in-sibling/y.jpg", jpeg(50))  # shares the string prefix "in", not the folder
    bucket.put("elsewhere/z.jpg", jpeg(51))

    job_id = enqueue(env)
    status = wait_job(env["ARCNN_BROKER_URL"], job_id)
    assert (status["state"], status["total"], status["done"], status["skipped"], status["failed"]) == \
        ("done", 9, 9, 0, 0)
    expected = sorted("out/" + k[3:].rsplit(".", 1)[0] + ".png" for k in images)
    assert bucket.keys("out/") == expected
    requests = bucket.proxy.requests
    assert all(requests[("PUT", f"/{BUCKET}/{key}")] == 1 for key in expected)  # each restored once
    assert all(requests[("GET", f"/{BUCKET}/{key}")] == 1 for key in images)
    assert not any(method == "GET" and ("sibling" in path or "elsewhere" in path or "notes" in path)
                   for method, path in requests)
    head = bucket.head("out/nested/deep/x.png")
    assert head["Metadata"].items() >= {  # the engine may record more (how the source was read)
        "arcnn-source-etag": bucket.head("in/nested/deep/x.png")["ETag"].strip('"'),
        "arcnn-source-size": str(len(jpeg(7))), "arcnn-model": MODEL, "arcnn-job": job_id,
    }.items()
    text = cli(env, "status", job_id).stdout
    assert f"job {job_id}: done" in text and "total 9  done 9  passed through 0  skipped 0  failed 0" in text
    watched = cli(env, "status", job_id, "--watch")
    assert "9/9" in watched.stderr and f"job {job_id}: done" in watched.stdout
    assert cli(env, "status", "nosuchjob", check=False).returncode == 1

    # the same job again: everything is skipped by recorded source ETag, nothing is rewritten
    bucket.proxy.requests.clear()
    rerun = wait_job(env["ARCNN_BROKER_URL"], enqueue(env))
    assert (rerun["total"], rerun["done"], rerun["skipped"]) == (9, 0, 9)
    assert not [r for r in bucket.proxy.requests if r[0] == "PUT"]
    assert not [r for r in bucket.proxy.requests if r[0] == "GET" and r[1].startswith(f"/{BUCKET}/in/")]

    forced = wait_job(env["ARCNN_BROKER_URL"], enqueue(env, "--overwrite", "--format", "webp"))
    assert (forced["done"], forced["skipped"]) == (9, 0)
    assert len(bucket.keys("out/")) == 18 and bucket.head("out/0.webp")["ContentType"] == "image/webp"


def test_transient_errors_are_retried_and_permanent_ones_fail_only_their_key(env, worker, bucket) -> None:  # noqa: F811
    good = {f"in/ok{i}.jpg": jpeg(i) for i in range(3)}
    bad = {
        "in/corrupt.jpg": b"\xff\xd8\xff\xe0" + b"\x00garbage" * 20,
        "in/truncated.jpg": jpeg(3)[:250],
        "in/empty.jpg": b"",
        "in/text.jpg": b"this is plain text, not a JPEG",
        "in/huge.jpg": jpeg(4, width=100, height=100),  # 10,000 pixels > ARCNN_MAX_PIXELS=5000
    }
    for key, data in {**good, **bad, "in/flaky.jpg": jpeg(5), "in/down.jpg": jpeg(6),
                      "in/a/../../escape.jpg": jpeg(8)}.items():
        bucket.put(key, data)
    bucket.proxy.faults.update({"in/flaky.jpg": ["503", "reset", "500"], "in/down.jpg": ["503*"]})

    job_id = enqueue(env)
    status = wait_job(env["ARCNN_BROKER_URL"], job_id)
    assert (status["state"], status["total"], status["done"], status["failed"]) == ("done", 11, 4, 7)
    reasons = {key: failure["reason"] for key, failure in status["failed_keys"].items()}
    assert reasons == {
        "in/corrupt.jpg": "bad_image", "in/truncated.jpg": "bad_image", "in/empty.jpg": "bad_image",
        "in/text.jpg": "bad_image", "in/huge.jpg": "too_large", "in/down.jpg": "storage",
        "in/a/../../escape.jpg": "unsafe_key",
    }
    assert "ServiceUnavailable" in status["failed_keys"]["in/down.jpg"]["error"]
    assert "0 bytes" in status["failed_keys"]["in/empty.jpg"]["error"]
    assert bucket.proxy.hits["in/flaky.jpg"] == 4  # three transient faults, then success
    assert bucket.proxy.hits["in/down.jpg"] == 4  # ARCNN_MAX_RETRIES=3: one try + 3 retries, then failed
    for key in bad:  # permanent failures are not retried
        assert bucket.proxy.requests[("GET", f"/{BUCKET}/{key}")] == 1, key
    assert bucket.keys("out/") == ["out/flaky.png", "out/ok0.png", "out/ok1.png", "out/ok2.png"]
    assert not any("escape" in path for _, path in bucket.proxy.requests)  # refused before any I/O

    shown = status_json(env, job_id)  # the real CLI shows the same
    assert shown["failed"] == 7 and shown["failed_keys"]["in/huge.jpg"]["reason"] == "too_large"


def test_colliding_keys_get_distinct_outputs_and_a_rerun_restores_nothing(env, worker, bucket) -> None:  # noqa: F811
    for i, name in enumerate(["a.jpg", "a.jpeg", "a.JPG", "a.png", "b.jpg", "x/a.jpg"]):
        bucket.put(f"in/{name}", jpeg(i))
    first = wait_job(env["ARCNN_BROKER_URL"], enqueue(env))
    assert (first["state"], first["total"], first["done"]) == ("done", 6, 6)
    assert bucket.keys("out/") == ["out/a.JPG.png", "out/a.jpeg.png", "out/a.jpg.png", "out/a.png.png",
                                   "out/b.png", "out/x/a.png"]
    bucket.proxy.requests.clear()
    again = wait_job(env["ARCNN_BROKER_URL"], enqueue(env))
    assert (again["done"], again["skipped"]) == (0, 6)
    assert not [r for r in bucket.proxy.requests if r[0] == "PUT"]


def test_the_job_report_records_what_a_format_cannot_hold(env, worker, bucket) -> None:  # noqa: F811
    rgba = io.BytesIO()
    Image.new("RGBA", (48, 40), (10, 200, 30, 128)).save(rgba, "PNG")
    bucket.put("in/alpha.png", rgba.getvalue())
    bucket.put("in/plain.jpg", jpeg(1))
    job_id = enqueue(env, "--format", "jpeg")
    status = wait_job(env["ARCNN_BROKER_URL"], job_id)
    assert (status["done"], status["warned"]) == (2, 1)
    assert "alpha dropped" in status["warnings"]["in/alpha.png"]
    shown = cli(env, "status", job_id).stdout
    assert "1 restored with a warning" in shown and "WARNING in/alpha.png: alpha dropped" in shown


def test_bad_jobs_are_refused_or_failed_not_retried(env, worker, bucket) -> None:  # noqa: F811
    overlap = cli(env, "enqueue", SRC, "--dest", f"{SRC}/restored", check=False)
    assert overlap.returncode == 2 and "overlaps" in overlap.stderr
    refused = cli(env, "enqueue", "s3://no-such-bucket/x", "--dest", DEST, "--model", MODEL, check=False)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.strip() == "Error: source s3://no-such-bucket/x/: bucket 'no-such-bucket' does not exist"
    # a source bucket deleted after enqueue: the job fails at its listing, once
    from worker.app import QUEUE, app, configure
    from arcnn.jobs.spec import JobSpec
    from worker.jobs import JobStore
    from worker.redelivery import task_id
    from worker.settings import WorkerSettings

    configure(WorkerSettings(broker_url=env["ARCNN_BROKER_URL"]))
    app._after_fork()  # drop connections pooled for another test module's broker
    missing = JobStore.from_url(env["ARCNN_BROKER_URL"]).create(JobSpec("s3://no-such-bucket/x", DEST, model=MODEL))
    app.send_task("arcnn.list_job", args=[missing, 0], queue=QUEUE, task_id=task_id(missing, "l0"))
    status = wait_job(env["ARCNN_BROKER_URL"], missing)
    assert status["state"] == "failed" and "NoSuchBucket" in status["error"]
    assert cli(env, "status", missing, check=False).returncode == 1
    no_model = cli(env, "enqueue", SRC, "--dest", DEST, "--model", "no-such-model").stdout.strip()
    status = wait_job(env["ARCNN_BROKER_URL"], no_model)
    assert status["state"] == "failed" and "no-such-model" in status["error"]


def test_no_pickle_on_the_wire_and_poison_messages_do_not_loop(env, worker, bucket, redis_server) -> None:  # noqa: F811
    with Connection(env["ARCNN_BROKER_URL"]) as connection:
        producer = connection.Producer()
        headers = {"task": "arcnn.restore_batch", "id": "pickled", "lang": "py"}
        producer.publish({"args": ["x", 0, []]}, routing_key="arcnn", serializer="pickle", headers=headers)
        producer.publish(["not", "a", "task", "body"], routing_key="arcnn", serializer="json",
                         headers={**headers, "id": "malformed"})
    from worker.app import app, configure
    from worker.settings import WorkerSettings

    configure(WorkerSettings(broker_url=env["ARCNN_BROKER_URL"]))
    app.send_task("arcnn.restore_batch", args=["no-such-job", 0, [["in/a.jpg", "etag"]]])
    client = redis_server.client()
    wait_for(lambda: client.llen("arcnn") == 0 and client.hlen("unacked") == 0, 30, what="queue drained")
    log = worker.log()
    assert "ContentDisallowed" in log or "Refusing to deserialize" in log
    time.sleep(1)  # nothing comes back: dropped messages are not redelivered
    assert client.llen("arcnn") == 0 and client.hlen("unacked") == 0
    bucket.put("in/after.jpg", jpeg(1))
    assert wait_job(env["ARCNN_BROKER_URL"], enqueue(env))["done"] == 1  # the worker is fine


def test_poison_batch_numbers_and_finished_jobs_are_dropped_not_retried(env, worker, bucket, redis_server) -> None:  # noqa: F811
    """Batch -1 (a Redis error, once retried forever and multiplied), 2**32-1 (a 512 MiB bitmap),
    a finished batch and a batch the job never sent (which once made a done job count 2 of 1):
    each is received once, dropped, and the finished job's counts do not move."""
    from worker.app import app, configure
    from worker.settings import WorkerSettings

    bucket.put("in/a.jpg", jpeg(1))
    job_id = enqueue(env)
    before = wait_job(env["ARCNN_BROKER_URL"], job_id)
    assert (before["state"], before["total"], before["done"]) == ("done", 1, 1)
    configure(WorkerSettings(broker_url=env["ARCNN_BROKER_URL"]))
    app._after_fork()
    poison = {"poison-minus-1": -1, "poison-2-32": 2**32 - 1, "poison-finished": 0, "poison-unsent": 1,
              "poison-not-an-int": "1"}
    for task_id, batch_no in poison.items():
        app.send_task("arcnn.restore_batch", args=[job_id, batch_no, [["in/a.jpg", "etag"]]], task_id=task_id)
    wait_for(lambda: all(f"[{t}] succeeded" in worker.log() for t in poison), 60, what="every poison message handled")
    log = worker.log()
    assert all(log.count(f"restore_batch[{t}] received") == 1 for t in poison), log[-3000:]
    client = redis_server.client()
    assert (client.strlen(f"arcnn:job:{job_id}:batches") or 0) < 8
    after = status_json(env, job_id)
    assert {k: after[k] for k in ("state", "total", "done", "skipped", "failed")} == \
        {k: before[k] for k in ("state", "total", "done", "skipped", "failed")}


def _scrape(port: int) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


def test_metrics_endpoint_adds_up_after_a_job(env, worker, bucket) -> None:  # noqa: F811
    """Scrape over HTTP before and after two jobs (a first run and a re-run that skips): the
    worker's counters moved by exactly what the jobs did, and the Redis-backed gauges match."""
    sources = {f"in/{i}.jpg": jpeg(i, width=48 + i, height=40) for i in range(6)}
    bad = {"in/bad.jpg": b"nope", "in/huge.jpg": jpeg(9, width=100, height=100)}
    for key, data in {**sources, **bad}.items():
        bucket.put(key, data)
    before = _scrape(worker.metrics_port)
    job = wait_job(env["ARCNN_BROKER_URL"], enqueue(env))
    rerun = wait_job(env["ARCNN_BROKER_URL"], enqueue(env))
    assert (job["done"], job["failed"], rerun["skipped"], rerun["failed"]) == (6, 2, 6, 2)
    after = _scrape(worker.metrics_port)

    def value(name: str, **labels: str) -> float:
        return after.get((name, tuple(sorted(labels.items()))), 0.0)

    def delta(name: str, **labels: str) -> float:
        return value(name, **labels) - before.get((name, tuple(sorted(labels.items()))), 0.0)

    restored = delta("arcnn_images_processed_total", outcome="restored")
    skipped = delta("arcnn_images_processed_total", outcome="skipped")
    failed = delta("arcnn_images_processed_total", outcome="failed")
    assert (restored, skipped, failed) == (6, 6, 4)
    assert restored + skipped + failed == job["total"] + rerun["total"]
    assert delta("arcnn_image_failures_total", reason="bad_image") == 2
    assert delta("arcnn_image_failures_total", reason="too_large") == 2
    assert delta("arcnn_pixels_processed_total") == sum((48 + i) * 40 for i in range(6))
    assert sum(v for (name, _), v in after.items() if name == "arcnn_model_images_total") - sum(
        v for (name, _), v in before.items() if name == "arcnn_model_images_total") == 6
    # sources are fetched once (the re-run skips them), the two bad keys twice
    assert delta("arcnn_bytes_read_total") == sum(map(len, sources.values())) + 2 * sum(map(len, bad.values()))
    written = sum(bucket.head(k)["ContentLength"] for k in bucket.keys("out/"))
    assert delta("arcnn_bytes_written_total") == written
    counts = {stage: delta("arcnn_stage_duration_seconds_count", stage=stage)
              for stage in ("fetch", "decode", "infer", "encode", "upload")}
    assert counts == {"fetch": 10, "decode": 10, "infer": 6, "encode": 6, "upload": 6}
    assert value("arcnn_images_in_flight") == 0
    assert value("arcnn_model_load_seconds", model=MODEL) > 0
    assert value("arcnn_device_info", device="cpu") == 1
    for status in (job, rerun):
        for state in ("total", "done", "skipped", "failed"):
            assert value("arcnn_job_images", job_id=status["id"], state=state) == status[state]
        assert value("arcnn_job_progress_ratio", job_id=status["id"]) == 1.0
    assert ("arcnn_queue_depth", (("queue", "arcnn"),)) in after
    assert value("arcnn_queue_depth", queue="arcnn") == 0


def test_the_worker_says_what_it_runs_on(worker) -> None:
    """Its banner named none of its metrics address, device, precision or tier."""
    line = next(line for line in worker.log().splitlines() if line.startswith("arcnn worker: "))
    assert line.startswith("arcnn worker: device cpu, precision ") and ", tier standard;" in line
    assert f"metrics on http://127.0.0.1:{worker.metrics_port}/metrics" in line
    assert "redis://127.0.0.1:" in line and "messages of about 60 s (at most 4 keys)" in line


def test_jobs_lists_jobs_and_cancel_ends_one_whose_batches_are_then_skipped(env, worker, bucket) -> None:  # noqa: F811
    from arcnn.jobs.spec import JobSpec
    from worker.app import app, configure
    from worker.jobs import JobStore, message
    from worker.redelivery import task_id
    from worker.settings import WorkerSettings

    bucket.put("in/a.jpg", jpeg(1))
    done = enqueue(env)
    wait_job(env["ARCNN_BROKER_URL"], done)
    store = JobStore.from_url(env["ARCNN_BROKER_URL"])
    pending = store.create(JobSpec(SRC, DEST, model=MODEL))  # listed, its batch not yet run
    args = [pending, 0, [["in/a.jpg", bucket.head("in/a.jpg")["ETag"].strip('"'), "", "", 1]]]
    assert store.batch_sent(pending, 0, 1, "in/a.jpg", message("arcnn.restore_batch", args))
    store.listing_done(pending, 0)
    cancelled = cli(env, "cancel", pending)
    assert cancelled.stdout.strip() == f"job {pending} cancelled: 0 of 1 listed keys had an outcome"
    again = cli(env, "cancel", pending, check=False)
    assert again.returncode == 1 and "has already ended (cancelled)" in again.stderr
    assert cli(env, "cancel", "0123456789ab", check=False).stderr.strip() == "Error: no such job: 0123456789ab"
    configure(WorkerSettings(broker_url=env["ARCNN_BROKER_URL"]))
    app._after_fork()
    app.send_task("arcnn.restore_batch", args=args, task_id=task_id(pending, "b0"))
    wait_for(lambda: f"[{task_id(pending, 'b0')[:-8]}" in worker.log() and
             re.search(rf"\[arcnn-{pending}-b0-\w+\] succeeded", worker.log()), 60, what="the cancelled batch handled")
    status = status_json(env, pending)
    assert (status["state"], status["done"], status["failed"]) == ("cancelled", 0, 0)
    listed = {line.split()[0]: line.split()[1] for line in cli(env, "jobs").stdout.splitlines()}
    assert listed[pending] == "cancelled" and listed[done] == "done"
    assert {job["id"] for job in json.loads(cli(env, "jobs", "--json").stdout)} >= {pending, done}


def test_a_job_carries_its_own_tier_and_precision(env, worker, bucket) -> None:  # noqa: F811
    """`enqueue --tier fast` applies to that job's keys on a worker whose own tier is standard."""
    bucket.put("in/a.jpg", jpeg(1, width=64, height=64))
    job_id = cli(env, "enqueue", SRC, "--dest", DEST, "--tier", "fast", "--precision", "fp32").stdout.strip()
    status = wait_job(env["ARCNN_BROKER_URL"], job_id)
    assert (status["state"], status["done"], status["options"]) == ("done", 1, {"tier": "fast", "precision": "fp32"})
    assert bucket.head("out/a.png")["Metadata"]["arcnn-model"].startswith("fast-arcnn-q")
    assert "tier fast" in cli(env, "status", job_id).stdout
    assert "a pipeline for jobs with precision fp32, tier fast" in worker.log()
