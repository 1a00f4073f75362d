"""Real components for the worker tests: redis-server, moto's S3 server over HTTP (behind a
fault-injecting proxy), ``arcnn worker`` subprocesses, and small helpers.

Test modules import the fixtures they use from here (``from worker_support import ...``).
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import numpy as np
import pytest
import redis
from moto.server import ThreadedMotoServer
from PIL import Image

ARCNN = str(Path(sys.executable).with_name("arcnn"))
MODEL = "random:9-7-1-5"
"""Deterministic untrained AR-CNN: tests measure plumbing, not trained weights."""
BUCKET = "photos"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.2,
             what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def jpeg(seed: int, width: int = 48, height: int = 40, quality: int = 20) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        buffer, "JPEG", quality=quality
    )
    return buffer.getvalue()


class RedisServer:
    """Our own redis-server on a free port (never the system one). ``persistent`` turns on the
    append-only file, which a restart test needs (a real deployment runs Redis that way)."""

    def __init__(self, workdir: Path, persistent: bool = False) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.persistent = persistent
        self.process: subprocess.Popen | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["/usr/bin/redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.workdir), "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        wait_for(lambda: _pings(client), 10, 0.05, "redis-server")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


class FaultyProxy:
    """An HTTP proxy in front of the S3 server that injects faults into chosen requests.

    Two ways to choose: ``faults[substring]`` is a list of faults consumed one per GET whose path
    contains the substring; ``calls[kind]`` one per request of a kind of S3 call: ``list``,
    ``head``, ``get``, ``put``. A fault is ``"503"`` (ServiceUnavailable), ``"slowdown"`` (503
    SlowDown, S3's throttling), ``"500"``, ``"reset"`` (TCP reset before any response) or
    ``"ok"`` (pass this one through); ``"503*"`` is never consumed (always unavailable).
    ``hits`` counts matching GETs per substring, ``requests`` every request and ``forwarded``
    those that reached the S3 server, by (method, path without query).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.faults: dict[str, list[str]] = {}
        self.calls: dict[str, list[str]] = {}
        self.hits: Counter[str] = Counter()
        self.requests: Counter[tuple[str, str]] = Counter()
        """(method, path without query) of every request, to prove "each key once"."""
        self.forwarded: Counter[tuple[str, str]] = Counter()
        self.injected: Counter[str] = Counter()
        """Faults injected, by call kind."""
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                fault = proxy._fault(self.command, self.path)
                if fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault in ("503", "503*", "500", "slowdown"):
                    code = {"500": "InternalError", "slowdown": "SlowDown"}.get(fault, "ServiceUnavailable")
                    payload = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
                    self.send_response(500 if fault == "500" else 503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                with proxy.lock:
                    proxy.forwarded[(self.command, self.path.split("?")[0])] += 1
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data) if self.command != "HEAD"
                                                       else response.getheader("Content-Length", "0")))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def kind(method: str, path: str) -> str:
        """The S3 call a request is: list, head, get, put (or the method, lower-case)."""
        route, _, query = path.partition("?")
        if method == "GET" and (route.strip("/").count("/") == 0 or "list-type" in query):
            return "list"
        return {"HEAD": "head", "GET": "get", "PUT": "put"}.get(method, method.lower())

    def _fault(self, method: str, path: str) -> str | None:
        with self.lock:
            self.requests[(method, path.split("?")[0])] += 1
            kind = self.kind(method, path)
            planned = self.calls.get(kind)
            if planned:
                fault = planned.pop(0)
                if fault != "ok":
                    self.injected[kind] += 1
                    return fault
            if method != "GET":
                return None
            for pattern, faults in self.faults.items():
                if pattern in path:
                    self.hits[pattern] += 1
                    if faults and faults[0].endswith("*"):
                        return faults[0]
                    return faults.pop(0) if faults else None
        return None

    def clear(self) -> None:
        with self.lock:
            for counter in (self.faults, self.calls, self.hits, self.requests, self.forwarded, self.injected):
                counter.clear()

    def close(self) -> None:
        self.server.shutdown()


class S3:
    """moto's S3 server on HTTP, and the fault proxy that workers talk to."""

    def __init__(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
        self.moto.start()
        self.direct_url = f"http://127.0.0.1:{self.moto._port}"
        self.proxy = FaultyProxy(self.moto._port)
        self.url = f"http://127.0.0.1:{self.proxy.port}"
        self.client = boto3.client("s3", endpoint_url=self.direct_url, region_name="us-east-1",
                                   aws_access_key_id="test", aws_secret_access_key="test")

    def reset(self, bucket: str = BUCKET) -> None:
        """A fresh, empty bucket and no faults."""
        self.proxy.clear()
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    self.client.delete_object(Bucket=bucket, Key=obj["Key"])
        except self.client.exceptions.NoSuchBucket:
            self.client.create_bucket(Bucket=bucket)

    def put(self, key: str, data: bytes, bucket: str = BUCKET) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def keys(self, prefix: str, bucket: str = BUCKET) -> list[str]:
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [obj["Key"] for obj in page.get("Contents", [])]
        return sorted(keys)

    def head(self, key: str, bucket: str = BUCKET) -> dict:
        return self.client.head_object(Bucket=bucket, Key=key)

    def stop(self) -> None:
        self.proxy.close()
        self.moto.stop()


def base_env(broker_url: str, s3_url: str, **overrides: str) -> dict[str, str]:
    """Environment of every CLI/worker subprocess: our servers, short timeouts, 1 torch thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCNN_", "AWS_"))}
    env.update(
        ARCNN_BROKER_URL=broker_url, ARCNN_S3_ENDPOINT_URL=s3_url, ARCNN_TORCH_THREADS="1",
        ARCNN_IO_THREADS="2", ARCNN_LIST_BATCH="4", ARCNN_MAX_RETRIES="3", ARCNN_RETRY_BACKOFF="0.05",
        ARCNN_VISIBILITY_TIMEOUT="60", ARCNN_DEVICE="cpu", ARCNN_METRICS_PORT="0",
        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1",
        OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
        AWS_EC2_METADATA_DISABLED="true",  # boto3 never asks 169.254.169.254 when credentials are missing
    )
    env.update(overrides)
    return env


def cli(env: dict[str, str], *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    result = subprocess.run([ARCNN, *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"arcnn {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


class WorkerProcess:
    """``arcnn worker`` as a subprocess, logging to a file we can read."""

    def __init__(self, env: dict[str, str], log_path: Path, metrics_port: int = 0,
                 concurrency: int = 2) -> None:
        self.log_path = log_path
        self.metrics_port = metrics_port
        self._log = open(log_path, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [ARCNN, "worker", "--concurrency", str(concurrency), "--metrics-port", str(metrics_port)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> WorkerProcess:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited {self.process.returncode}:\n{self.log()}")
            return " ready." in self.log()

        wait_for(ready, timeout, 0.2, "worker ready")
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no acks, no restoring of reserved messages."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    server = S3()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3: S3) -> S3:
    s3.reset()
    return s3


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers with ``workers(env, metrics_port=..)``; all are stopped after the test."""
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], metrics_port: int = 0, concurrency: int = 2) -> WorkerProcess:
        worker = WorkerProcess(env, tmp_path / f"worker{len(started)}.log", metrics_port, concurrency)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def job_status(broker_url: str, job_id: str) -> dict:
    """The job as ``arcnn status --json`` prints it (read in-process: polling stays cheap)."""
    from worker.jobs import JobStore

    return JobStore.from_url(broker_url).status(job_id).as_dict()


def wait_job(broker_url: str, job_id: str, timeout: float = 120,
             workers: tuple[WorkerProcess, ...] = ()) -> dict:
    """Poll the job store until the job is done or failed (on timeout, show the workers' logs)."""

    def finished() -> dict | None:
        try:
            status = job_status(broker_url, job_id)
        except redis.ConnectionError:
            return None
        return status if status["state"] in ("done", "failed") else None

    try:
        return wait_for(finished, timeout, 0.3, f"job {job_id}")  # type: ignore[return-value]
    except TimeoutError as error:
        try:
            last = job_status(broker_url, job_id)
        except redis.RedisError as redis_error:
            last = {"unavailable": repr(redis_error)}
        logs = "\n".join(f"--- {w.log_path.name}\n{w.log()[-4000:]}" for w in workers)
        raise AssertionError(f"{error}; last status {last}\n{logs}") from error


def status_json(env: dict[str, str], job_id: str) -> dict:
    """``arcnn status JOB --json`` through the real CLI."""
    return json.loads(cli(env, "status", job_id, "--json", check=False).stdout)
