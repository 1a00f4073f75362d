"""Storage faults per S3 call type (list, head, get, put), injected by the proxy in front of moto's
S3 server, and a destination bucket that does not exist: the job either survives with exact
counts or fails once, up front, in one line."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from arcnn.jobs.spec import JobSpec
from worker.jobs import JobStore
from arcnn.jobs.locations import parse_location
from worker.settings import WorkerSettings
from arcnn.jobs.storage import TransientStorageError
from worker.storage import S3Storage, _s3_client
from worker_support import (  # noqa: F401 (fixtures)
    BUCKET, MODEL, WorkerProcess, base_env, bucket, cli, free_port, jpeg, redis_server, s3, wait_job,
)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)


def _storage(url: str, prefix: str, page_size: int = 5) -> S3Storage:
    return S3Storage(parse_location(f"s3://{BUCKET}/{prefix}"), _s3_client(url, 2), retries=3,
                     backoff=0.01, page_size=page_size)


def test_listing_retries_each_page_and_lists_every_key_once(bucket, aws_env) -> None:  # noqa: F811
    keys = sorted(f"many/{i:03d}.jpg" for i in range(23))
    for key in keys:
        bucket.put(key, b"x")
    # Page 1 passes; page 2 is reset then throttled; page 3 passes; page 4 gets a 503.
    bucket.proxy.calls["list"] = ["ok", "reset", "slowdown", "ok", "503"]
    listed = [obj.key for obj in _storage(bucket.url, "many").list()]
    assert listed == keys  # none twice, none skipped, in order
    assert bucket.proxy.injected["list"] == 3
    bucket.proxy.calls["list"] = ["503"] * 10
    with pytest.raises(TransientStorageError):  # retries are bounded: one try + 3 retries
        list(_storage(bucket.url, "many").list())
    assert bucket.proxy.injected["list"] == 3 + 4


def test_run_survives_faults_on_every_call_type(bucket) -> None:  # noqa: F811
    for i in range(6):
        bucket.put(f"in/{i}.jpg", jpeg(i))
    bucket.proxy.calls.update(list=["reset", "slowdown"], head=["503", "slowdown", "reset"],
                              get=["reset", "503", "slowdown"], put=["slowdown", "reset", "503"])
    env = base_env("redis://127.0.0.1:1/0", bucket.url)
    summary = json.loads(cli(env, "run", f"s3://{BUCKET}/in", "--dest", f"s3://{BUCKET}/out",
                             "--model", MODEL, "--json").stdout)
    assert (summary["total"], summary["done"], summary["failed"]) == (6, 6, 0)
    assert dict(bucket.proxy.injected) == {"list": 2, "head": 3, "get": 3, "put": 3}
    assert bucket.keys("out/") == [f"out/{i}.png" for i in range(6)]
    for i in range(6):  # each output reached the server once: no fault caused a second write
        assert bucket.proxy.forwarded[("PUT", f"/{BUCKET}/out/{i}.png")] == 1


@pytest.fixture(scope="module")
def env(redis_server, s3) -> dict[str, str]:  # noqa: F811
    return base_env(redis_server.url, s3.url)


@pytest.fixture(scope="module")
def worker(env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    process = WorkerProcess(env, tmp_path_factory.mktemp("worker") / "worker.log").wait_ready()
    yield process
    process.stop()


def test_queued_job_rides_out_faults_on_every_call_type(env, worker, bucket) -> None:  # noqa: F811
    for i in range(9):  # ARCNN_LIST_BATCH=4: three batches
        bucket.put(f"in/{i}.jpg", jpeg(i))
    bucket.proxy.calls.update(list=["reset", "slowdown"], head=["ok", "503", "reset"],
                              get=["reset", "503"], put=["slowdown", "reset"])
    job_id = cli(env, "enqueue", f"s3://{BUCKET}/in", "--dest", f"s3://{BUCKET}/out", "--model", MODEL).stdout.strip()
    status = wait_job(env["ARCNN_BROKER_URL"], job_id, workers=(worker,))
    assert (status["state"], status["total"], status["done"], status["failed"]) == ("done", 9, 9, 0)
    assert dict(bucket.proxy.injected) == {"list": 2, "head": 2, "get": 2, "put": 2}
    for i in range(9):
        assert bucket.proxy.forwarded[("PUT", f"/{BUCKET}/out/{i}.png")] == 1


def test_a_missing_destination_bucket_is_one_error_up_front(env, worker, bucket) -> None:  # noqa: F811
    for i in range(5):
        bucket.put(f"in/{i}.jpg", jpeg(i))
    missing = "s3://no-such-dest/out"
    enqueued = cli(env, "enqueue", f"s3://{BUCKET}/in", "--dest", missing, "--model", MODEL, check=False)
    assert enqueued.returncode == 1 and enqueued.stdout == ""
    assert enqueued.stderr.strip().splitlines() == [
        "Error: destination s3://no-such-dest/out/: bucket 'no-such-dest' does not exist"]
    ran = cli(env, "run", f"s3://{BUCKET}/in", "--dest", missing, "--model", MODEL, check=False)
    assert ran.returncode == 1 and "bucket 'no-such-dest' does not exist" in ran.stderr
    assert not any(r[0] == "GET" and r[1].startswith(f"/{BUCKET}/in/") for r in bucket.proxy.requests)

    # A job queued without that check (an older client) fails once at its first listing.
    from worker.app import QUEUE, app, configure

    configure(WorkerSettings(broker_url=env["ARCNN_BROKER_URL"]))
    app._after_fork()  # drop connections pooled for another test module's broker
    job_id = JobStore.from_url(env["ARCNN_BROKER_URL"]).create(
        JobSpec(f"s3://{BUCKET}/in", missing, model=MODEL))
    app.send_task("arcnn.list_job", args=[job_id, 0], queue=QUEUE)
    status = wait_job(env["ARCNN_BROKER_URL"], job_id, workers=(worker,))
    assert status["state"] == "failed" and "does not exist" in status["error"]
    assert (status["total"], status["failed"]) == (0, 0)


def test_missing_credentials_are_one_line_from_run_and_enqueue(env, bucket) -> None:  # noqa: F811
    """boto3 raises NoCredentialsError before any request: a 76-line traceback, once."""
    bare = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    bare.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
                AWS_DEFAULT_REGION="us-east-1")
    for command in ("run", "enqueue"):
        result = cli(bare, command, f"s3://{BUCKET}/in", "--dest", f"s3://{BUCKET}/out", "--model", MODEL, check=False)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Unable to locate credentials" in result.stderr and "AWS_ACCESS_KEY_ID" in result.stderr
