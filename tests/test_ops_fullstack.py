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
import math
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

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
SRC_BUCKET, DEST_BUCKET = "fullstack-src", "fullstack-dest"


def http_get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _answers(url: str) -> bool:
    try:
        return bool(http_get(url))
    except OSError:
        return False


class Stack:
    """Handles of the running stack, for the tests."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    for binary in ("redis-server", "prometheus"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is missing: apt-get install -y redis-server prometheus (the CI script installs them)")
    # The worker tests' real components: our own redis-server, moto's S3 server over HTTP,
    # `arcnn worker` subprocesses.
    from worker_support import S3, MODEL, RedisServer, WorkerProcess, base_env, free_port, jpeg, wait_for

    tmp = tmp_path_factory.mktemp("fullstack")
    s = Stack()
    s.model, s.wait_for = MODEL, wait_for
    cleanup = []
    try:
        redis = RedisServer(tmp / "redis")
        redis.start()
        cleanup.append(redis.stop)
        s3 = S3()
        cleanup.append(s3.stop)
        s.sources = {}
        for bucket in (SRC_BUCKET, DEST_BUCKET):
            s3.client.create_bucket(Bucket=bucket)
        for i in range(N_IMAGES):   # a few sizes, so tiling and pixel counts vary
            key = f"photos/img_{i:03d}.jpg"
            s.sources[key] = jpeg(i, width=48 + (i % 4) * 8, height=40 + (i % 3) * 8, quality=15)
            s3.put(key, s.sources[key], bucket=SRC_BUCKET)
        s.s3 = s3.client
        s.env = base_env(redis.url, s3.url, ARCNN_DEFAULT_MODEL=MODEL)  # its counters start at 0

        # Two workers, each with its own metrics port (as two containers or two hosts would),
        # with the compose file's concurrency.
        s.metrics_ports = [free_port(), free_port()]
        s.workers = []
        for n, port in enumerate(s.metrics_ports):
            w = WorkerProcess(dict(s.env, ARCNN_METRICS_PORT=str(port)), tmp / f"worker{n}.log", port, concurrency=2)
            cleanup.append(w.stop)
            s.workers.append(w)
        for w in s.workers:
            w.wait_ready(120)

        # Prometheus: the shipped config and alert rules, with the compose network's DNS
        # discovery replaced by the two loopback targets, a 1 s scrape, its own storage.
        prom_dir = tmp / "prometheus"
        shutil.copytree(PROMETHEUS_DIR, prom_dir)
        config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        worker_job = next(j for j in config["scrape_configs"] if j["job_name"] == "arcnn-worker")
        del worker_job["dns_sd_configs"]
        worker_job["static_configs"] = [{"targets": [f"127.0.0.1:{p}" for p in s.metrics_ports]}]
        config["scrape_configs"] = [worker_job]
        (prom_dir / "prometheus.yml").write_text(json.dumps(config))
        prom_port = free_port()
        prom_log = (tmp / "prometheus.log").open("wb")
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={prom_dir / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=1h"],
            stdout=prom_log, stderr=subprocess.STDOUT, start_new_session=True)

        def stop_prometheus():
            prometheus.terminate()
            try:
                prometheus.wait(20)
            except subprocess.TimeoutExpired:
                prometheus.kill()
                prometheus.wait(5)
            prom_log.close()

        cleanup.append(stop_prometheus)
        s.prom_url = f"http://127.0.0.1:{prom_port}"
        wait_for(lambda: prometheus.poll() is None and _answers(s.prom_url + "/-/ready"), 60, 0.3,
                 "prometheus ready")
        yield s
    finally:
        for stop in reversed(cleanup):
            stop()


def prom_query(stack: Stack, expr: str) -> list[dict]:
    url = stack.prom_url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.loads(http_get(url))
    assert body["status"] == "success", body
    return body["data"]["result"]


@pytest.fixture(scope="module")
def finished_job(stack):
    from worker_support import cli, status_json

    # Both workers are scraped before the job starts, so both can take batches, and Prometheus
    # holds their throughput counters at 0: rate() sees the job's first images only if it does
    # (a job that finishes within one scrape interval once showed 0 images/s, in CI).
    stack.wait_for(lambda: len(prom_query(stack, 'up{job="arcnn-worker"} == 1')) == 2, 60, 0.5,
                   "prometheus scraping both workers")
    stack.wait_for(lambda: len(prom_query(stack, 'arcnn_images_processed_total{outcome="restored"} == 0')) == 2,
                   30, 0.5, "both workers' throughput counters exported at 0 before any image")
    stack.enqueued_at = time.time()
    r = cli(stack.env, "enqueue", f"s3://{SRC_BUCKET}/photos/", "--dest", f"s3://{DEST_BUCKET}/photos/",
            "--model", stack.model)
    job_id = r.stdout.strip().splitlines()[-1]     # enqueue prints the job id
    assert re.fullmatch(r"[\w-]+", job_id), f"no job id in enqueue output: {r.stdout!r}"

    def finished():
        for w in stack.workers:
            assert w.process.poll() is None, f"worker exited:\n{w.log()}"
        status = status_json(stack.env, job_id)       # `arcnn status JOB --json`
        return status if status["state"] in ("done", "failed") else None

    try:
        status = stack.wait_for(finished, 180, 1, f"job {job_id}")
    except TimeoutError:
        raise AssertionError("\n".join(f"--- worker {i}\n{w.log()[-3000:]}" for i, w in enumerate(stack.workers)))

    def scraped_final_counters() -> bool:
        restored = prom_query(stack, 'sum(arcnn_images_processed_total{outcome="restored"})')
        progress = prom_query(stack, grafana_to_promql(panel_expr("Job progress", "A")))
        return (bool(restored) and float(restored[0]["value"][1]) == N_IMAGES
                and {s["metric"]["job_id"]: float(s["value"][1]) for s in progress}.get(job_id) == 1.0)

    stack.wait_for(scraped_final_counters, 30, 0.5, "prometheus scraping the final counters")
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
    """What a Grafana time-series panel asks: a range query in 1 s steps.

    The rate window spans the whole range plus 10 s, as Grafana's ``$__rate_interval`` grows with
    the range: a window that holds the zeros scraped before the job and the final counters after
    it sees the job's increase even where scrapes of busy workers failed during it (CI once had
    no two samples 10 s apart across the job, and a 10 s window showed 0 images/s).
    """
    window = math.ceil(end - start) + 10
    promql = grafana_to_promql(expr.replace("$__rate_interval", f"{window}s"))
    url = stack.prom_url + "/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"})
    body = json.loads(http_get(url, timeout=20))
    assert body["status"] == "success", body
    return body["data"]["result"]


def raw_samples(stack, start: float, end: float) -> list[dict]:
    """The scraped counters and ``up`` over the range, to say why a rate came out empty."""
    seconds = math.ceil(end - start) + 10
    return [prom_query(stack, f'{name}[{seconds}s]')
            for name in ('arcnn_images_processed_total{outcome="restored"}', 'up')]


def peak(series: dict) -> float:
    return max(float(v) for _, v in series["values"])


def test_prometheus_shows_positive_throughput_from_the_dashboard_expressions(stack, finished_job):
    job_id, status = finished_job
    start, end = stack.enqueued_at - 5, time.time()

    total = prom_range(stack, panel_expr("Images/s per worker and total", "B"), start, end)
    assert len(total) == 1 and peak(total[0]) > 0, (
        f"images/s total: {total}\nsamples: {raw_samples(stack, start, end)}")
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
    # ... in the very series that were exported at 0 before the job (one per worker), not in
    # new ones that rate() could not see.
    series = prom_query(stack, 'arcnn_images_processed_total{outcome="restored"}')
    assert len(series) == 2, series
    assert len(per_instance) == 2 and all(v > 0 for v in per_instance.values()), per_instance
    megapixels = prom_range(stack, panel_expr("Megapixels/s per worker and total", "B"), start, end)
    assert megapixels and peak(megapixels[0]) > 0

    latency = prom_range(stack, panel_expr("Stage latency p50 / p95", "B"), start, end)
    assert {s["metric"]["stage"] for s in latency} >= {"fetch", "decode", "infer", "encode", "upload"}

    # Instant queries, as the stat, bar gauge and table panels ask.
    progress = prom_query(stack, grafana_to_promql(panel_expr("Job progress", "A")))
    assert {s["metric"]["job_id"]: float(s["value"][1]) for s in progress}.get(job_id) == 1.0, progress
    images = prom_query(stack, grafana_to_promql(panel_expr("Job images", "A")))
    counts = {s["metric"]["state"]: float(s["value"][1]) for s in images
              if s["metric"]["job_id"] == job_id}
    assert counts == {"total": N_IMAGES, "done": N_IMAGES, "passed_through": 0, "skipped": 0,
                      "failed": 0}, counts
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
