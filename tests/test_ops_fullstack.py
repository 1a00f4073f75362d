"""The whole stack of docker-compose.yml without Docker, on loopback only.

A real ``redis-server``, moto's S3 server over HTTP, two ``arcnn worker`` processes and a real
``prometheus`` binary scraping them every second with the shipped alert rules. A prefix of
generated JPEGs is enqueued with ``arcnn enqueue``; the test waits for ``arcnn status`` to say
done, checks every output, then asks Prometheus's HTTP API for the dashboard's own expressions
(throughput must be a positive rate) and checks every metric name the dashboard and the alert
rules use against a live scrape of a worker.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ops_support import (
    PROMETHEUS_DIR,
    PROMETHEUS_SYNTHETIC,
    ROOT,
    dashboard_expressions,
    exposition_names,
    grafana_to_promql,
    load_yaml,
    metric_names,
    rule_expressions,
)

pytestmark = pytest.mark.timeout(300)

N_IMAGES = 32
LIST_BATCH = 4
"""Keys per queued message, small so that both workers get batches."""
MODEL = "random:9-7-1-5"
SRC_BUCKET, DEST_BUCKET = "fullstack-src", "fullstack-dest"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, timeout: float, procs=(), interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for p, log in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: process exited with {p.returncode}:\n{tail(log)}")
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # noqa: BLE001 (retry until the deadline)
            last = error
        time.sleep(interval)
    logs = "\n".join(f"--- {log.name}\n{tail(log)}" for _, log in procs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})\n{logs}")


def tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def http_get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Stack:
    """Processes of the test stack; every one started here is stopped by :meth:`close`."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[tuple[subprocess.Popen, Path]] = []
        self.closers = []

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, Path]:
        log = self.tmp / f"{name}.log"
        out = log.open("wb")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.tmp,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        out.close()
        self.procs.append((proc, log))
        return proc, log

    def close(self) -> None:
        for proc, _ in reversed(self.procs):
            stop(proc)
        for closer in reversed(self.closers):
            closer()


def arcnn(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    exe = shutil.which("arcnn", path=str(Path(sys.executable).parent)) or "arcnn"
    return subprocess.run([exe, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout)


def make_jpeg(i: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(i)
    h, w = 40 + (i % 3) * 8, 48 + (i % 4) * 8
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 5 + i * 7) % 256, (y * 6) % 256, ((x + y) * 3) % 256], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=15)
    return buf.getvalue()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    for binary in ("redis-server", "prometheus"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is missing: apt-get install -y redis-server prometheus (the CI script installs them)")
    from arcnn.cli import main

    if not {"worker", "enqueue", "status"} <= set(main.commands):
        pytest.skip("arcnn worker/enqueue/status are not there yet (worker issue)")
    import boto3
    from moto.server import ThreadedMotoServer

    tmp = tmp_path_factory.mktemp("fullstack")
    s = Stack(tmp)
    try:
        # Redis: the broker and job store, no persistence (a throwaway test instance).
        redis_port = free_port()
        redis = s.start("redis", ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", str(tmp)])
        import redis as redis_client

        wait_for(lambda: redis_client.Redis(port=redis_port).ping(), "redis", 20, [redis])

        # S3 over HTTP: moto's server in a thread of this process.
        s3_port = free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
        moto.start()
        s.closers.append(moto.stop)
        endpoint = f"http://127.0.0.1:{s3_port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
        s3.create_bucket(Bucket=SRC_BUCKET)
        s3.create_bucket(Bucket=DEST_BUCKET)
        sources = {}
        for i in range(N_IMAGES):
            key = f"photos/img_{i:03d}.jpg"
            sources[key] = make_jpeg(i)
            s3.put_object(Bucket=SRC_BUCKET, Key=key, Body=sources[key], ContentType="image/jpeg")

        env = {
            **CREDENTIALS,
            "ARCNN_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "ARCNN_S3_ENDPOINT_URL": endpoint,
            "ARCNN_DEVICE": "cpu",
            "ARCNN_TORCH_THREADS": "1",
            "ARCNN_LIST_BATCH": str(LIST_BATCH),
            "ARCNN_MAX_RETRIES": "2",
        }

        # Two workers, each with its own metrics port (as two containers or two hosts would).
        metrics_ports = [free_port(), free_port()]
        workers = []
        for n, port in enumerate(metrics_ports):
            workers.append(s.start(f"worker{n}", [shutil.which("arcnn", path=str(Path(sys.executable).parent)),
                                                  "worker", "--device", "cpu", "--concurrency", "1"],
                                   env={**env, "ARCNN_METRICS_PORT": str(port)}))

        # Prometheus: the shipped config and alert rules, with the compose network's DNS
        # discovery replaced by the two loopback targets, a 1 s scrape, its own storage.
        prom_dir = tmp / "prometheus"
        shutil.copytree(PROMETHEUS_DIR, prom_dir)
        config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        worker_job = next(j for j in config["scrape_configs"] if j["job_name"] == "arcnn-worker")
        del worker_job["dns_sd_configs"]
        worker_job["static_configs"] = [{"targets": [f"127.0.0.1:{p}" for p in metrics_ports]}]
        config["scrape_configs"] = [worker_job]
        (prom_dir / "prometheus.yml").write_text(json.dumps(config))
        prom_port = free_port()
        prometheus = s.start("prometheus", [
            "prometheus", f"--config.file={prom_dir / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=1h",
        ])
        prom_url = f"http://127.0.0.1:{prom_port}"
        wait_for(lambda: http_get(prom_url + "/-/ready"), "prometheus ready", 60, [prometheus])

        s.env, s.s3, s.sources, s.prom_url, s.metrics_ports = env, s3, sources, prom_url, metrics_ports
        s.workers = workers
        yield s
    finally:
        s.close()


def prom_query(stack: Stack, expr: str) -> list[dict]:
    url = stack.prom_url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.loads(http_get(url))
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture(scope="module")
def finished_job(stack):
    # Both workers are up and scraped before the job starts, so both can take batches.
    wait_for(lambda: len([r for r in prom_query(stack, 'up{job="arcnn-worker"} == 1')]) == 2,
             "prometheus scraping both workers", 150, stack.workers)

    stack.enqueued_at = time.time()
    r = arcnn("enqueue", f"s3://{SRC_BUCKET}/photos/", "--dest", f"s3://{DEST_BUCKET}/photos/",
              "--model", MODEL, env=stack.env)
    assert r.returncode == 0, r.stdout + r.stderr
    job_id = r.stdout.strip().splitlines()[-1]     # enqueue prints the job id
    assert re.fullmatch(r"[\w-]+", job_id), f"no job id in enqueue output: {r.stdout!r}"

    def done():
        st = arcnn("status", job_id, "--json", env=stack.env, timeout=60)
        assert st.returncode in (0, 1, 2), st.stderr
        status = json.loads(st.stdout)
        if status["state"] in ("done", "failed"):
            return status
        return None

    status = wait_for(done, f"job {job_id} to finish", 180, stack.workers, interval=1)
    # Two more scrapes so Prometheus has the final counters.
    time.sleep(3)
    return job_id, status


def test_every_image_is_restored(stack, finished_job):
    from PIL import Image

    job_id, status = finished_job
    assert status["state"] == "done", status
    assert (status["total"], status["done"], status["skipped"], status["failed"]) == (N_IMAGES, N_IMAGES, 0, 0)
    listed = stack.s3.list_objects_v2(Bucket=DEST_BUCKET, Prefix="photos/")
    outputs = {o["Key"] for o in listed.get("Contents", [])}
    stems = {k.rsplit(".", 1)[0]: k for k in outputs}
    assert len(outputs) == N_IMAGES
    for key, data in stack.sources.items():
        out = stems.get(key.rsplit(".", 1)[0])
        assert out, f"no output for {key}"
        body = stack.s3.get_object(Bucket=DEST_BUCKET, Key=out)["Body"].read()
        restored, original = Image.open(io.BytesIO(body)), Image.open(io.BytesIO(data))
        restored.load()
        assert restored.size == original.size, key
        assert restored.mode == "RGB", key


def panel_expr(title: str, ref: str) -> str:
    dashboard = json.loads((ROOT / "ops/grafana/dashboards/arcnn.json").read_text())
    for p in dashboard["panels"]:
        if p["title"] == title:
            for t in p["targets"]:
                if t["refId"] == ref:
                    return t["expr"]
    raise AssertionError(f"no panel {title!r} target {ref}")


def prom_range(stack, expr: str, start: float, end: float) -> list[dict]:
    """What a Grafana time-series panel asks: a range query, 1 s steps, rate window 10 s."""
    promql = grafana_to_promql(expr.replace("$__rate_interval", "10s"))
    url = stack.prom_url + "/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"})
    body = json.loads(http_get(url, timeout=20))
    assert body["status"] == "success", body
    return body["data"]["result"]


def peak(series: dict) -> float:
    return max(float(v) for _, v in series["values"])


def test_prometheus_shows_positive_throughput_from_the_dashboard_expressions(stack, finished_job):
    job_id, status = finished_job
    start, end = stack.enqueued_at - 5, time.time()

    total = prom_range(stack, panel_expr("Images/s per worker and total", "B"), start, end)
    assert len(total) == 1 and peak(total[0]) > 0, f"images/s total: {total}"
    per_worker = prom_range(stack, panel_expr("Images/s per worker and total", "A"), start, end)
    instances = {s["metric"]["instance"]: peak(s) for s in per_worker}
    assert set(instances) == {f"127.0.0.1:{p}" for p in stack.metrics_ports}, instances
    assert any(v > 0 for v in instances.values()), instances
    # Both workers took batches. (Not asserted on the per-worker rate: a labelled counter that
    # appears for the first time already incremented, which a short job can make happen in one
    # scrape, has no increase for rate() to see.)
    restored = prom_query(stack, 'sum by (instance) (arcnn_images_processed_total{outcome="restored"})')
    per_instance = {s["metric"]["instance"]: float(s["value"][1]) for s in restored}
    assert sum(per_instance.values()) == N_IMAGES, per_instance
    assert len(per_instance) == 2 and all(v > 0 for v in per_instance.values()), per_instance
    megapixels = prom_range(stack, panel_expr("Megapixels/s per worker and total", "B"), start, end)
    assert megapixels and peak(megapixels[0]) > 0

    latency = prom_range(stack, panel_expr("Stage latency p50 / p95", "B"), start, end)
    assert {s["metric"]["stage"] for s in latency} >= {"fetch", "decode", "infer", "encode", "upload"}

    # Instant queries, as the stat, bar gauge and table panels ask.
    progress = prom_query(stack, grafana_to_promql(panel_expr("Job progress", "A")))
    assert {s["metric"]["exported_job"]: float(s["value"][1]) for s in progress}.get(job_id) == 1.0, progress
    images = prom_query(stack, grafana_to_promql(panel_expr("Job images", "A")))
    counts = {s["metric"]["state"]: float(s["value"][1]) for s in images
              if s["metric"]["exported_job"] == job_id}
    assert counts == {"total": N_IMAGES, "done": N_IMAGES, "skipped": 0, "failed": 0}, counts
    queue = prom_query(stack, grafana_to_promql(panel_expr("Queue depth", "A")))
    assert queue and all(float(s["value"][1]) == 0 for s in queue), queue
    devices = prom_query(stack, grafana_to_promql(panel_expr("Workers", "A")))
    assert {s["metric"]["device"] for s in devices} == {"cpu"} and len(devices) == 2, devices
    up = prom_query(stack, grafana_to_promql(panel_expr("Workers up", "A")))
    assert float(up[0]["value"][1]) == 2

    # Every query of the dashboard runs in a real Prometheus; the throughput-type ones have data.
    for where, expr in dashboard_expressions():
        result = prom_range(stack, expr, start, end)
        if "rate(arcnn_" in expr and "failures" not in expr:
            assert result, f"{where}: no data for {expr}"

    # The shipped alert rules load and evaluate in a real Prometheus, and none fires.
    rules = json.loads(http_get(stack.prom_url + "/api/v1/rules"))["data"]["groups"]
    loaded = {r["name"]: r for g in rules for r in g["rules"]}
    assert {"ArcnnQueueStalled", "ArcnnHighFailureRate", "ArcnnWorkerDown", "ArcnnNoWorkers"} <= set(loaded)
    assert all(r["health"] == "ok" for r in loaded.values()), loaded
    assert all(r["state"] == "inactive" for r in loaded.values()), {n: r["state"] for n, r in loaded.items()}


def test_live_scrape_has_every_metric_the_ops_files_use(stack, finished_job):
    scraped = set()
    for port in stack.metrics_ports:
        scraped |= exposition_names(http_get(f"http://127.0.0.1:{port}/metrics").decode())
    for where, expr in dashboard_expressions() + rule_expressions():
        unknown = metric_names(grafana_to_promql(expr)) - scraped - PROMETHEUS_SYNTHETIC
        assert not unknown, f"{where}: {expr}\n  not exported by a live worker: {sorted(unknown)}"
