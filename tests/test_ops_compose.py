"""``docker compose up``, for real: the stack from ``.env.example`` on the cpu profile.

Runs only where a Docker engine with Compose v2 answers (on these machines:
``../shared/compose-lab/setup.sh``, which builds stand-ins for the images no registry serves
here) and skips, saying why, everywhere else (CI has no engine). It copies the checkout, makes
``.env`` from ``.env.example`` (the cpu profile, real secrets instead of the change-me-*
values, a one-minute visibility timeout so that the killed worker's batch comes back within
the test), brings the stack up with ``--build --wait``, runs a job through
``docker compose run --rm cli``, SIGKILLs the worker mid-job and checks the counts, checks
Prometheus's targets and the dashboard's queries, and takes everything down with ``down -v``.
Only 127.0.0.1 (the stack's published ports) is ever contacted.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops_support import ENV_EXAMPLE, ROOT, dashboard_expressions, grafana_to_promql, read_env_file
from worker_support import wait_for

pytestmark = pytest.mark.compose

PROJECT = "arcnn-composetest"
PORTS = (9000, 9001, 9090, 3000)
"""Published by the stack on 127.0.0.1 (fixed by docker-compose.yml)."""
IMAGES = 12
UP_TIMEOUT = 900
JOB_TIMEOUT = 600
COPIED_OUT = (".git", ".env", ".venv", "restored-samples", "__pycache__", ".pytest_cache")


def _why_no_engine() -> str | None:
    """Why the stack cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker CLI on this machine (../shared/compose-lab/setup.sh installs an engine)"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        return "no Docker engine answers `docker info` (../shared/compose-lab/setup.sh starts one)"
    if subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode != 0:
        return "no Compose v2 plugin (`docker compose version` fails)"
    for port in PORTS:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return f"127.0.0.1:{port} is taken (another stack?): the compose file publishes it"
    return None


class Stack:
    """One compose project in a copy of the checkout."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = read_env_file(workdir / ".env")

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["docker", "compose", "-p", PROJECT, *args], cwd=self.workdir,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    def cli(self, *args: str, timeout: float = 300) -> str:
        return self.compose("run", "--rm", "-T", "cli", *args, timeout=timeout).stdout

    def status(self, job_id: str) -> dict:
        text = self.cli("status", job_id, "--json")
        return json.loads(text[text.index("{"):])

    def containers(self) -> list[dict]:
        out = self.compose("ps", "-a", "--format", "json").stdout.strip()
        return json.loads(out) if out.startswith("[") else [json.loads(line) for line in out.splitlines() if line]

    def s3(self):  # noqa: ANN201 (boto3 client type is dynamic)
        import boto3

        return boto3.client("s3", endpoint_url="http://127.0.0.1:9000", region_name="us-east-1",
                            aws_access_key_id=self.env["S3_WORKER_ACCESS_KEY"],
                            aws_secret_access_key=self.env["S3_WORKER_SECRET_KEY"])


def _started_at(service: str) -> str:
    """When the engine last started the service's container."""
    return subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", f"{PROJECT}-{service}-1"],
                          capture_output=True, text=True, check=True).stdout.strip()


def _prometheus(path: str, **query: str) -> dict:
    url = f"http://127.0.0.1:9090{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    return json.load(urllib.request.urlopen(url, timeout=10))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    reason = _why_no_engine()
    if reason:
        pytest.skip(f"compose test skipped: {reason}")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")  # boto3 must never look beyond loopback
    workdir = tmp_path_factory.mktemp("compose") / "arcnn"
    shutil.copytree(ROOT, workdir, ignore=shutil.ignore_patterns(*COPIED_OUT))
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        key, _, value = line.partition("=")
        if value.startswith("change-me"):
            line = f"{key}={secrets.token_hex(16)}"
        elif key == "COMPOSE_PROFILES":
            line = "COMPOSE_PROFILES=cpu"
        elif key == "ARCNN_VISIBILITY_TIMEOUT":
            line = "ARCNN_VISIBILITY_TIMEOUT=60"  # the killed worker's batch comes back within a minute
        elif key == "ARCNN_LIST_BATCH":
            line = "ARCNN_LIST_BATCH=2"  # several messages, so the kill lands mid-job
        lines.append(line)
    (workdir / ".env").write_text("\n".join(lines) + "\n")
    stack = Stack(workdir)
    try:
        stack.compose("up", "-d", "--build", "--wait", "--wait-timeout", str(UP_TIMEOUT), timeout=UP_TIMEOUT + 120)
        yield stack
    finally:
        logs = stack.compose("logs", "--no-color", "--tail", "40", check=False, timeout=120).stdout
        (tmp_path_factory.getbasetemp() / "compose-logs.txt").write_text(logs)
        stack.compose("down", "-v", "--remove-orphans", check=False, timeout=300)


def test_the_stack_comes_up_healthy_and_the_one_shots_exit_0(stack: Stack) -> None:
    states = {c["Service"]: (c["State"], c.get("Health", ""), c.get("ExitCode")) for c in stack.containers()}
    for service in ("redis", "minio", "worker-cpu", "prometheus", "grafana"):
        assert states[service][:2] == ("running", "healthy"), states
    for one_shot in ("secrets", "minio-init"):
        assert states[one_shot][0] == "exited" and states[one_shot][2] == 0, states
    banner = stack.compose("logs", "--no-color", "worker-cpu").stdout
    assert "arcnn worker: device cpu, precision " in banner and "metrics on http://0.0.0.0:9808/metrics" in banner


def test_the_example_secrets_are_refused(stack: Stack) -> None:
    refused = stack.compose("run", "--rm", "-T", "-e", "GRAFANA_ADMIN_PASSWORD=change-me-grafana", "secrets",
                            check=False)
    assert refused.returncode == 1
    assert "GRAFANA_ADMIN_PASSWORD is still the example value" in refused.stdout + refused.stderr


def test_a_job_through_the_cli_survives_a_killed_worker_with_exact_counts(stack: Stack) -> None:
    from PIL import Image

    s3 = stack.s3()
    source, dest = stack.env["SOURCE_BUCKET"], stack.env["DEST_BUCKET"]
    for i in range(IMAGES):
        buffer = io.BytesIO()
        Image.radial_gradient("L").resize((320, 240)).convert("RGB").rotate(i * 30).save(buffer, "JPEG", quality=15)
        s3.put_object(Bucket=source, Key=f"composetest/{i:02d}.jpg", Body=buffer.getvalue())
    init_started = _started_at("minio-init")
    job_id = stack.cli("enqueue", f"s3://{source}/composetest/", "--dest", f"s3://{dest}/composetest/").strip()
    job_id = job_id.splitlines()[-1]
    wait_for(lambda: 0 < (lambda s: s["done"] + s["skipped"] + s["failed"])(stack.status(job_id)) < IMAGES
             or stack.status(job_id)["state"] == "done", 300, interval=0.5, what="the job under way")
    assert _started_at("minio-init") == init_started  # the cli runs did not run minio-init again
    # SIGKILL and start again through the engine itself (`docker compose start` would also start
    # the worker's one-shot dependencies again)
    subprocess.run(["docker", "kill", "--signal", "KILL", f"{PROJECT}-worker-cpu-1"], check=True, capture_output=True)
    subprocess.run(["docker", "start", f"{PROJECT}-worker-cpu-1"], check=True, capture_output=True)
    status = wait_for(lambda: (s := stack.status(job_id))["state"] in ("done", "failed") and s, JOB_TIMEOUT,
                      interval=2.0, what="the job")
    assert (status["state"], status["total"], status["done"] + status["passed_through"], status["failed"]) == \
        ("done", IMAGES, IMAGES, 0), status
    outputs = s3.list_objects_v2(Bucket=dest, Prefix="composetest/").get("Contents", [])
    assert sorted(o["Key"] for o in outputs) == [f"composetest/{i:02d}.png" for i in range(IMAGES)]
    assert _started_at("minio-init") == init_started


def test_prometheus_scrapes_the_worker_and_answers_every_dashboard_query(stack: Stack) -> None:
    def worker_up() -> list[dict]:
        targets = _prometheus("/api/v1/targets")["data"]["activeTargets"]
        workers = [t for t in targets if t["labels"].get("job") == "arcnn-worker"]
        return workers if workers and all(t["health"] == "up" for t in workers) else []

    wait_for(worker_up, 180, interval=2.0, what="Prometheus to scrape the worker")
    wait_for(lambda: _prometheus("/api/v1/query", query="sum(arcnn_images_processed_total)")["data"]["result"],
             180, interval=2.0, what="the worker's counters in Prometheus")
    broker = _prometheus("/api/v1/query", query="min(arcnn_broker_up)")["data"]["result"]
    assert broker and float(broker[0]["value"][1]) == 1
    for title, expr in dashboard_expressions():
        answer = _prometheus("/api/v1/query", query=grafana_to_promql(expr))
        assert answer["status"] == "success", (title, expr, answer)
