"""The queue machinery at scale: a job over a prefix of many keys, without restoring images.

    python -m bench.queue_scale [--keys 100000]

Starts its own redis-server and moto S3 server (subprocesses, HTTP), uploads ``--keys`` tiny
objects under one prefix, then measures:

- enqueue latency: wall time of the ``arcnn enqueue`` command (a new process, as a user runs
  it) on that prefix and on an empty one: it must not depend on the prefix's size;
- listing rate: the Celery listing task's own code (:meth:`worker.tasks.Runtime.list_chunk`,
  chunk after chunk) listing the prefix over HTTP and queueing every batch in Redis, in keys/s;
  and the bare S3 listing (:meth:`worker.storage.S3Storage.list`) for comparison;
- Redis memory: before the job, at its peak (every batch of the prefix queued at once, which
  is more than a running deployment holds: there workers drain the queue while the lister works
  one chunk ahead), and after every key's outcome is recorded through the job store's own
  calls (``begin``, ``record``, ``finish_batch``: what a worker calls per key) and the queue
  is drained;
- expiry: every key left in Redis afterwards, with its time to live.

No image is restored: the figures are the listing, queueing and bookkeeping alone
(bench/worker_throughput.py measures restoring).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import redis

from bench.worker_throughput import ARCNN, free_port, redis_up, s3_up, start_servers, wait

BUCKET = "bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    args = parser.parse_args()
    redis_port, s3_port = free_port(), free_port()
    workdir = Path(tempfile.mkdtemp(prefix="arcnn-scale-"))
    servers = start_servers(workdir, redis_port, s3_port)
    broker, endpoint = f"redis://127.0.0.1:{redis_port}/0", f"http://127.0.0.1:{s3_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCNN_")}
    env.update(ARCNN_BROKER_URL=broker, ARCNN_S3_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench",
               AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1", ARCNN_DEVICE="cpu")
    os.environ.update(env)
    try:
        run(args.keys, broker, endpoint, env)
    finally:
        for server in servers:
            server.terminate()
            server.wait(10)


def run(n_keys: int, broker: str, endpoint: str, env: dict[str, str]) -> None:
    from worker.settings import WorkerSettings
    from worker.app import QUEUE, configure
    from worker.jobs import JobStore
    from arcnn.jobs.locations import parse_location
    from worker.engine import worker_pipeline
    from worker.storage import open_storage
    from worker.tasks import Runtime

    client = redis.Redis.from_url(broker, decode_responses=True)
    wait(lambda: redis_up(client), 10, "redis-server")
    s3 = boto3.client("s3", endpoint_url=endpoint)
    wait(lambda: s3_up(s3), 60, "moto server")
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket="bench-out")
    start = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket=BUCKET, Key=f"scale/{i:07d}.jpg", Body=b"x"), range(n_keys)))
    print(f"uploaded {n_keys} keys in {time.perf_counter() - start:.1f} s")

    settings = WorkerSettings.from_env(os.environ)
    print(f"bare S3 listing: {_rate(lambda: sum(1 for _ in open_storage(parse_location(f's3://{BUCKET}/scale'), settings).list()), n_keys)}")

    client.flushall()
    baseline = _memory(client)
    latency = {}
    for prefix in ("empty", "scale"):
        start = time.perf_counter()
        job = subprocess.run([ARCNN, "enqueue", f"s3://{BUCKET}/{prefix}", "--dest", f"s3://bench-out/{prefix}",
                              "--model", "passthrough"], env=env, capture_output=True, text=True, check=True)
        latency[prefix] = (time.perf_counter() - start, job.stdout.strip())
    start = time.perf_counter()
    subprocess.run([ARCNN, "--help"], env=env, capture_output=True, check=True)
    print(f"floor: `arcnn --help` takes {time.perf_counter() - start:.2f} s (interpreter and CLI start)")
    for prefix, (seconds, _) in latency.items():
        print(f"enqueue ({prefix} prefix): {seconds:.2f} s wall, new process included")
    job_id = latency["scale"][1]

    configure(settings)
    runtime = Runtime(settings, worker_pipeline(settings))
    store: JobStore = runtime.store
    start = time.perf_counter()
    from_batch = 0
    while True:
        runtime.list_chunk(job_id, from_batch)
        listed, from_batch = store.listing_position(job_id)
        if listed:
            break
    elapsed = time.perf_counter() - start
    total = store.status(job_id, failed_limit=0).total
    print(f"listing task: {total} keys queued in {elapsed:.1f} s = {total / elapsed:.0f} keys/s "
          f"({store.list_cursor(job_id)[0]} batches)")
    peak = _memory(client)
    print(f"redis at peak (all {client.llen(QUEUE)} messages queued at once): {(peak - baseline) / 1e6:.2f} MB above baseline")

    start = time.perf_counter()
    for raw in client.lrange(QUEUE, 0, -1):
        message = json.loads(raw)
        if message["headers"]["task"] != "arcnn.restore_batch":
            continue
        job, batch_no, items = json.loads(base64.b64decode(message["body"]))[0]
        if job != job_id:
            continue
        for index, item in enumerate(items):
            store.begin(job_id, batch_no, index)
            store.record(job_id, batch_no, index, item[0], "skipped")
        store.finish_batch(job_id, batch_no)
    client.delete(QUEUE)
    status = store.status(job_id, failed_limit=0)
    print(f"recorded {status.settled} outcomes in {time.perf_counter() - start:.1f} s; job {status.state}")
    after = _memory(client)
    kept = sum(client.memory_usage(key) or 0 for key in client.scan_iter(f"arcnn:job:{job_id}*"))
    print(f"redis after the job: {(after - baseline) / 1e3:.1f} kB above baseline (used_memory: includes "
          f"the Lua scripts, client buffers and allocator slack); the job's own keys: {kept} bytes "
          f"= {kept / status.settled * 1e5 / 1e6:.4f} MB per 100,000 finished keys")
    print("keys left in redis (time to live):")
    for key in sorted(client.scan_iter("*")):
        ttl = client.ttl(key)
        print(f"  {key}: {'no expiry' if ttl == -1 else f'{ttl / 86400:.1f} days'} "
              f"({client.memory_usage(key)} bytes)")


def _rate(count, expected: int) -> str:  # noqa: ANN001
    start = time.perf_counter()
    n = count()
    elapsed = time.perf_counter() - start
    assert n == expected, (n, expected)
    return f"{n} keys in {elapsed:.1f} s = {n / elapsed:.0f} keys/s"


def _memory(client: redis.Redis) -> int:
    client.memory_purge()
    return int(client.info("memory")["used_memory"])


if __name__ == "__main__":
    main()
