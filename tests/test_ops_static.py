"""Static proof of the ops files (no Docker engine here): docker-compose.yml against the Compose
Specification schema and against the code (settings, ports, paths, CLI), Prometheus files with
promtool, the Grafana dashboard's provisioning and PromQL.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest

from ops_support import (
    COMPOSE,
    CONTRACT_METRICS,
    DASHBOARD,
    ENV_EXAMPLE,
    OPS,
    PROMETHEUS_DIR,
    PROMETHEUS_SYNTHETIC,
    ROOT,
    SCHEMA,
    compose_files,
    contract_names,
    dashboard_expressions,
    grafana_to_promql,
    interpolate,
    load_yaml,
    metric_names,
    promtool,
    read_env_file,
    rule_expressions,
    run,
    variables_in,
)

from worker.settings import WorkerSettings

WORKER_SERVICES = ("worker", "worker-cpu")
ONE_SHOT = {"secrets", "minio-init", "cli"}
PUBLISHED = {"minio": {9000, 9001}, "prometheus": {9090}, "grafana": {3000}}
"""Services allowed to publish ports, and which container ports."""

# Non-ARCNN environment variables each service may set (everything ARCNN_* must be a setting).
ALLOWED_ENV = {
    "worker": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"},
    "redis": {"REDIS_PASSWORD"},
    "secrets": {"REDIS_PASSWORD", "MINIO_ROOT_PASSWORD", "S3_WORKER_SECRET_KEY", "GRAFANA_ADMIN_PASSWORD"},
    "minio": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"},
    "minio-init": {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "S3_WORKER_ACCESS_KEY", "S3_WORKER_SECRET_KEY",
                   "SOURCE_BUCKET", "DEST_BUCKET"},
    "grafana": {"GF_SECURITY_ADMIN_USER", "GF_SECURITY_ADMIN_PASSWORD", "GF_USERS_ALLOW_SIGN_UP",
                "GF_AUTH_ANONYMOUS_ENABLED", "GF_ANALYTICS_REPORTING_ENABLED", "GF_ANALYTICS_CHECK_FOR_UPDATES",
                "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"},
}
ALLOWED_ENV["worker-cpu"] = ALLOWED_ENV["cli"] = ALLOWED_ENV["worker"]


@pytest.fixture(scope="module")
def raw() -> dict:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def compose(raw, env) -> dict:
    """docker-compose.yml as compose sees it with .env copied from .env.example."""
    return interpolate(raw, env)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    e = service.get("environment") or {}
    if isinstance(e, list):
        e = dict(item.split("=", 1) for item in e)
    return {k: str(v) for k, v in e.items()}


def setting_names() -> set[str]:
    return {f"ARCNN_{f.name.upper()}" for f in dataclasses.fields(WorkerSettings)}


# --- Compose Specification ----------------------------------------------------------------

def test_vendored_schema_is_the_compose_specification():
    schema = json.loads(SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    jsonschema.Draft7Validator.check_schema(schema)
    assert (SCHEMA.parent / "compose-spec.SOURCE.md").is_file()


@pytest.mark.parametrize("path", compose_files(), ids=lambda p: p.name)
def test_compose_files_validate_against_compose_spec(path, env):
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    document = load_yaml(path)
    filled = dict(env, HEAD_ADDRESS="10.0.0.10", NODE_ADDRESS="10.0.0.11")
    for name, doc in (("as written", document), ("interpolated", interpolate(document, filled))):
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        assert not errors, f"{path.name} ({name}):\n" + "\n".join(
            f"  {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_schema_rejects_a_broken_compose_file(raw):
    """The validation above has teeth: a misspelt key or a wrong type fails."""
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    broken = json.loads(json.dumps(raw))
    broken["services"]["redis"]["restart_policy"] = "always"
    assert list(validator.iter_errors(broken))
    broken = json.loads(json.dumps(raw))
    broken["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"][0]["count"] = [1]
    assert list(validator.iter_errors(broken))


# --- .env ---------------------------------------------------------------------------------

def documented_env_names() -> set[str]:
    """Variables .env.example sets, or documents as commented-out ``#NAME=value`` lines."""
    names = set(read_env_file(ENV_EXAMPLE))
    names |= set(re.findall(r"^#([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))
    return names


@pytest.mark.parametrize("path", compose_files(), ids=lambda p: p.name)
def test_every_interpolated_variable_is_in_env_example(path):
    used = variables_in(path.read_text())
    missing = used - documented_env_names()
    assert not missing, f"{path.name} interpolates variables .env.example does not document: {sorted(missing)}"


def test_env_example_sets_nothing_unused(env):
    used = set().union(*(variables_in(p.read_text()) for p in compose_files()))
    unused = set(env) - used - {"COMPOSE_PROFILES"}
    assert not unused, f".env.example sets variables no compose file uses: {sorted(unused)}"
    assert env["COMPOSE_PROFILES"] in {"gpu", "cpu"}


def test_secrets_are_required_not_defaulted(raw):
    """A missing .env must stop `docker compose up`, not start services with guessable secrets."""
    text = COMPOSE.read_text()
    for secret in ("REDIS_PASSWORD", "MINIO_ROOT_PASSWORD", "S3_WORKER_SECRET_KEY", "GRAFANA_ADMIN_PASSWORD"):
        uses = re.findall(r"\$\{" + secret + r"([^}]*)\}", text)
        assert uses, secret
        assert all(u.startswith(":?") for u in uses), f"{secret} must be ${{{secret}:?...}} everywhere"
    with pytest.raises(ValueError, match="REDIS_PASSWORD"):
        interpolate(raw, {})
    assert ".env" in (ROOT / ".gitignore").read_text().split(), ".env (real secrets) must be git-ignored"


# --- services -----------------------------------------------------------------------------

def test_every_service_has_healthcheck_and_restart_policy(services):
    for name, svc in services.items():
        assert "restart" in svc, f"{name}: no restart policy"
        assert "healthcheck" in svc, f"{name}: no healthcheck"
        if name in ONE_SHOT:
            assert svc["restart"] in ("no", "on-failure") or svc["restart"].startswith("on-failure:")
        else:
            assert svc["restart"] == "unless-stopped", name
            assert not svc["healthcheck"].get("disable"), name
            test = svc["healthcheck"]["test"]
            assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name


def test_images_are_pinned(services):
    for name, svc in services.items():
        image = svc.get("image", "")
        if "build" in svc:
            continue
        assert re.search(r":[^/]+$", image) and not image.endswith(":latest"), f"{name}: unpinned image {image!r}"


def test_only_needed_ports_are_published_and_on_bind_address(services, raw):
    for name, svc in services.items():
        ports = svc.get("ports", [])
        if name not in PUBLISHED:
            assert not ports, f"{name} must not publish ports (reached on the compose network)"
            continue
        container_ports = set()
        for p in ports:
            host, host_port, container_port = str(p).rsplit(":", 2)
            assert host == "127.0.0.1", f"{name}: {p} must bind to BIND_ADDRESS (default 127.0.0.1)"
            assert host_port == container_port
            container_ports.add(int(container_port))
        assert container_ports == PUBLISHED[name], name
    for p in [p for svc in raw["services"].values() for p in svc.get("ports", [])]:
        assert p.startswith("${BIND_ADDRESS:-127.0.0.1}:"), p


def test_listen_ports_agree_with_published_ports(services):
    minio = " ".join(services["minio"]["command"])
    assert "--address :9000" in minio and "--console-address :9001" in minio
    assert "--web.listen-address=:9090" in services["prometheus"]["command"]


def test_worker_environment_is_real_settings(services):
    settings = setting_names()
    for name, svc in services.items():
        for key in environment(svc):
            if key.startswith("ARCNN_"):
                assert key in settings, f"{name}: {key} is not a field of worker.settings.WorkerSettings"
            else:
                assert key in ALLOWED_ENV.get(name, set()), f"{name}: unexpected environment variable {key}"


def test_worker_settings_parse_and_point_at_the_stack(services, monkeypatch):
    for name in (*WORKER_SERVICES, "cli"):
        e = environment(services[name])
        for key in list(e):
            monkeypatch.setenv(key, e[key])
        s = WorkerSettings.from_env(os.environ)     # every value parses as its field's type
        broker = urlparse(s.broker_url)
        assert broker.scheme == "redis" and broker.hostname == "redis" and broker.port == 6379, name
        assert broker.password == read_env_file(ENV_EXAMPLE)["REDIS_PASSWORD"], name
        s3 = urlparse(s.s3_endpoint_url)
        assert (s3.hostname, s3.port) == ("minio", 9000), name
        assert s.metrics_port == WorkerSettings().metrics_port == 9808
        assert s.metrics_addr == "0.0.0.0", name  # Prometheus scrapes from another container
        assert e["AWS_ACCESS_KEY_ID"] and e["AWS_SECRET_ACCESS_KEY"] and e["AWS_DEFAULT_REGION"]
        for key in list(e):
            monkeypatch.delenv(key)
    assert environment(services["worker"])["ARCNN_DEVICE"] == "cuda"
    assert environment(services["worker-cpu"])["ARCNN_DEVICE"] == "cpu"


def test_redis_is_a_durable_queue(services):
    cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in cmd and "--maxmemory-policy noeviction" in cmd and "--requirepass" in cmd
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])


def test_minio_init_creates_source_and_destination_buckets(services, env):
    init = services["minio-init"]
    script = init["entrypoint"][-1]
    assert "mc mb" in script and "$SOURCE_BUCKET" in script and "$DEST_BUCKET" in script
    assert "http://minio:9000" in script
    e = environment(init)
    assert e["SOURCE_BUCKET"] == env["SOURCE_BUCKET"] and e["DEST_BUCKET"] == env["DEST_BUCKET"]
    assert e["S3_WORKER_ACCESS_KEY"] == environment(services["worker"])["AWS_ACCESS_KEY_ID"]
    for name in WORKER_SERVICES:
        assert services[name]["depends_on"]["minio-init"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_gpu_worker_reserves_a_gpu_and_scales(services):
    gpu = services["worker"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    for name in WORKER_SERVICES:
        svc = services[name]
        assert "container_name" not in svc and not svc.get("ports"), f"{name} would not --scale"
        assert "arcnn-worker" in svc["networks"]["default"]["aliases"]
    assert services["worker"]["profiles"] == ["gpu"] and services["worker-cpu"]["profiles"] == ["cpu"]
    assert "deploy" not in services["worker-cpu"]
    assert services["worker-cpu"]["build"]["args"]["BASE_IMAGE"].startswith("python:3.")


def test_named_volumes_are_declared_and_bind_mounts_exist(services, compose):
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            source = v.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} not declared"


# --- image and CLI ------------------------------------------------------------------------

def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_build_uses_cuda_pytorch_base_and_keeps_its_torch(services):
    for name in (*WORKER_SERVICES, "cli"):
        build = services[name]["build"]
        assert build["context"] == "." and (ROOT / build["dockerfile"]).is_file(), name
    instructions = dockerfile_instructions(ROOT / services["worker"]["build"]["dockerfile"])
    args = {rest.split("=", 1)[0]: rest.split("=", 1)[1] for op, rest in instructions if op == "ARG" and "=" in rest}
    assert re.fullmatch(r"pytorch/pytorch:2\.\d+\.\d+-cuda12\.\d+-cudnn9-runtime", args["BASE_IMAGE"])
    assert ("FROM", "${BASE_IMAGE}") in instructions
    runs = " ".join(rest for op, rest in instructions if op == "RUN")
    assert "--constraint" in runs, "pip must be constrained to the base image's torch"
    assert ("EXPOSE", "9808") in instructions
    assert ("ENTRYPOINT", '["arcnn"]') in instructions


def test_dockerfile_copies_what_the_package_needs():
    instructions = dockerfile_instructions(OPS / "Dockerfile")
    copied = []
    for op, rest in instructions:
        if op == "COPY":
            copied += rest.split()[:-1]
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"
    import tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in packages:
        assert pattern.rstrip("*") in copied, f"package {pattern} is not copied into the image"
    assert project["project"]["readme"] in copied
    ignore = (OPS / "Dockerfile.dockerignore").read_text().split()
    for source in copied:
        assert f"!{source}" in ignore or f"!{source}/" in ignore, f"{source} is excluded from the build context"


def test_worker_command_matches_the_cli(services):
    from click.testing import CliRunner

    from arcnn.cli import main

    worker = main.get_command(None, "worker")
    options = {opt for p in worker.params for opt in getattr(p, "opts", [])}
    for name in WORKER_SERVICES:
        cmd = services[name]["command"]
        assert cmd[0] == "worker"
        for token in cmd[1:]:
            if token.startswith("--"):
                assert token in options, f"{name}: arcnn worker has no option {token}"
    assert services["worker"]["command"][1:3] == ["--device", "cuda"]
    assert services["worker-cpu"]["command"][1:3] == ["--device", "cpu"]
    assert {"enqueue", "status"} <= set(main.list_commands(None))
    result = CliRunner().invoke(main, ["worker", "--help"])
    assert result.exit_code == 0, result.output


# --- Prometheus ---------------------------------------------------------------------------

def test_promtool_check_config(tmp_path):
    """The shipped config, with the remote-targets example enabled, passes promtool."""
    exe = promtool()
    shutil.copytree(PROMETHEUS_DIR, tmp_path / "prometheus")
    example = tmp_path / "prometheus" / "targets" / "remote-workers.yml.example"
    example.rename(example.with_suffix(""))
    r = run([exe, "check", "config", "prometheus.yml"], cwd=tmp_path / "prometheus")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING" not in r.stdout + r.stderr, r.stdout + r.stderr


def test_promtool_check_rules():
    r = run([promtool(), "check", "rules", "alerts.yml"], cwd=PROMETHEUS_DIR)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    names = {rule.split()[-1] for rule in re.findall(r"- alert: \w+", (PROMETHEUS_DIR / "alerts.yml").read_text())}
    assert {"ArcnnQueueStalled", "ArcnnHighFailureRate", "ArcnnWorkerDown", "ArcnnNoWorkers"} <= names


def test_promtool_alert_unit_tests():
    """alerts.test.yml feeds series to each alert: it fires when it should, not when it shouldn't."""
    r = run([promtool(), "test", "rules", "alerts.test.yml"], cwd=PROMETHEUS_DIR)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_prometheus_scrapes_workers_on_the_metrics_port(services):
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    dns = jobs["arcnn-worker"]["dns_sd_configs"][0]
    assert dns["names"] == ["arcnn-worker"] and dns["port"] == WorkerSettings().metrics_port
    assert int(environment(services["worker"])["ARCNN_METRICS_PORT"]) == dns["port"]
    assert services["worker"]["expose"] == [str(dns["port"])]
    assert jobs["arcnn-worker-remote"]["file_sd_configs"][0]["files"] == ["targets/*.yml"]
    for rule_file in config["rule_files"]:
        assert (PROMETHEUS_DIR / rule_file).is_file()
    assert any(v.startswith("./ops/prometheus:/etc/prometheus") for v in services["prometheus"]["volumes"])


def test_every_rule_and_dashboard_expression_is_valid_promql(tmp_path):
    """promtool parses each dashboard query (Grafana variables filled in) as a recording rule."""
    exprs = dashboard_expressions() + rule_expressions()
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"arcnn:check_{i}", "expr": grafana_to_promql(expr)} for i, (_, expr) in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps(rules))
    r = run([promtool(), "check", "rules", str(path)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_promql_refers_only_to_contract_metrics():
    known = contract_names() | PROMETHEUS_SYNTHETIC
    for where, expr in dashboard_expressions() + rule_expressions():
        unknown = metric_names(grafana_to_promql(expr)) - known
        assert not unknown, f"{where}: {expr}\n  metrics the worker does not export: {sorted(unknown)}"


def test_promql_metric_parser():
    assert metric_names('sum by (le, stage) (rate(a_bucket{stage="x",instance=~"$i"}[5m]))'.replace("$i", ".*")) \
        == {"a_bucket"}
    assert metric_names("x_total / ignoring(job) y offset 5m > 0.5 unless on(q) z") == {"x_total", "y", "z"}
    assert metric_names("histogram_quantile(0.95, sum(rate(h_bucket[1m])) by (le)) * 1e6") == {"h_bucket"}
    assert metric_names('absent(up{job=~"a.*"} == 1)') == {"up"}
    assert metric_names("rate(model_q10_total[1h:5m])") == {"model_q10_total"}


def test_every_contract_metric_is_on_the_dashboard():
    used = set().union(*(metric_names(grafana_to_promql(e)) for _, e in dashboard_expressions()))
    for name, kind in CONTRACT_METRICS.items():
        wanted = f"{name}_bucket" if kind == "histogram" else name
        assert wanted in used, f"{name} is exported but not on the dashboard"


def test_worker_metrics_module_exports_what_the_dashboard_uses():
    """worker/metrics.py (its registry plus its Redis-backed collectors) exports every name the
    ops files use. The full-stack test checks the same against a live scrape."""
    import worker.metrics as wm
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    from ops_support import exposition_names

    class NoJobs:                       # what JobCollector needs of a JobStore
        def recent(self):
            return []

    extra = CollectorRegistry()
    extra.register(wm.JobCollector(NoJobs()))
    extra.register(wm.QueueCollector(None, []))
    exported = exposition_names(generate_latest(REGISTRY).decode() + generate_latest(extra).decode())
    needed = set()
    for _, expr in dashboard_expressions() + rule_expressions():
        needed |= metric_names(grafana_to_promql(expr))
    missing = needed - PROMETHEUS_SYNTHETIC - exported
    assert not missing, f"worker/metrics.py does not export {sorted(missing)}"
    assert contract_names() <= exported, "worker/metrics.py differs from the issue's metric contract"


# --- Grafana ------------------------------------------------------------------------------

def test_dashboard_json_is_generated_from_build_script(tmp_path):
    r = subprocess.run([sys.executable, "-c", "import json,sys; sys.path.insert(0, 'ops/grafana'); "
                        "import build_dashboard as b; print(json.dumps(b.dashboard(), indent=2))"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == json.loads(DASHBOARD.read_text()), \
        "arcnn.json is stale: run python ops/grafana/build_dashboard.py"


def test_grafana_provisioning_matches_compose_and_dashboard(services):
    grafana = services["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert mounts["./ops/grafana/provisioning"] == "/etc/grafana/provisioning"
    dash_dir = mounts["./ops/grafana/dashboards"]
    provider = load_yaml(OPS / "grafana/provisioning/dashboards/arcnn.yml")["providers"][0]
    assert provider["options"]["path"] == dash_dir and provider["type"] == "file"
    home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dash_dir}/{DASHBOARD.name}"

    sources = load_yaml(OPS / "grafana/provisioning/datasources/prometheus.yml")["datasources"]
    assert len(sources) == 1 and sources[0]["type"] == "prometheus"
    url = urlparse(sources[0]["url"])
    assert url.hostname == "prometheus" and url.port == 9090
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    assert sources[0]["jsonData"]["timeInterval"] == config["global"]["scrape_interval"]

    dashboard = json.loads(DASHBOARD.read_text())
    uids = set()

    def walk(panels):
        for p in panels:
            if p.get("datasource"):
                uids.add(p["datasource"]["uid"])
            for t in p.get("targets", []):
                uids.add(t["datasource"]["uid"])
            walk(p.get("panels", []))

    walk(dashboard["panels"])
    assert uids == {sources[0]["uid"]}


def test_dashboard_covers_the_issue():
    dashboard = json.loads(DASHBOARD.read_text())
    titles = {p["title"] for p in dashboard["panels"]}
    for wanted in ("Images/s per worker and total", "Megapixels/s per worker and total", "Stage latency p50 / p95",
                   "Queue depth", "Time to drain", "Failures by reason", "Job progress", "Workers"):
        assert wanted in titles
    exprs = " ".join(e for _, e in dashboard_expressions(dashboard))
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.95," in exprs
    assert "/ 1e6" in exprs and "by (instance)" in exprs and "by (reason)" in exprs
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for p in dashboard["panels"]:       # no panel overlaps another
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24
    cells = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']!r} overlaps another"
                cells.add((x, y))


# --- multi-host files ---------------------------------------------------------------------

def test_worker_node_file_agrees_with_the_main_stack(services, env, monkeypatch):
    filled = dict(env, HEAD_ADDRESS="10.0.0.10", NODE_ADDRESS="10.0.0.11")
    node = interpolate(load_yaml(OPS / "compose.worker-node.yml"), filled)["services"]["worker"]
    e = environment(node)
    settings = setting_names()
    assert {k for k in e if k.startswith("ARCNN_")} <= settings
    assert {k for k in e if not k.startswith("ARCNN_")} <= ALLOWED_ENV["worker"]
    main = environment(services["worker"])
    # Same settings as a worker of the main stack, but pointing at the head node.
    assert set(e) == set(main)
    for key in e:
        if key not in ("ARCNN_BROKER_URL", "ARCNN_S3_ENDPOINT_URL"):
            assert e[key] == main[key], key
    for key in list(e):
        monkeypatch.setenv(key, e[key])
    s = WorkerSettings.from_env(os.environ)
    assert urlparse(s.broker_url).hostname == "10.0.0.10" and urlparse(s.broker_url).port == 6379
    assert urlparse(s.s3_endpoint_url).hostname == "10.0.0.10" and urlparse(s.s3_endpoint_url).port == 9000
    # Metrics published on the node's private address for the head's Prometheus.
    host, host_port, container_port = node["ports"][0].rsplit(":", 2)
    assert host == "10.0.0.11" and container_port == e["ARCNN_METRICS_PORT"] == "9808"
    assert node["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["0"]
    assert node["command"] == services["worker"]["command"]
    assert node["build"]["context"] == ".." and (OPS / node["build"]["context"] / node["build"]["dockerfile"]).is_file()

    head = load_yaml(OPS / "compose.head.yml")["services"]
    assert set(head) == {"redis"} and head["redis"]["ports"][0].endswith(":6379:6379")
    assert head["redis"]["ports"][0].startswith("${BIND_ADDRESS:?")


# --- issue 25: what the first real `docker compose up` found --------------------------------

FIXED_BY_THE_STACK = {"ARCNN_BROKER_URL", "ARCNN_S3_ENDPOINT_URL", "ARCNN_METRICS_PORT", "ARCNN_METRICS_ADDR",
                      "ARCNN_DEVICE"}


def test_every_worker_setting_in_env_reaches_the_containers(raw, env):
    """Before, ARCNN_LIST_BATCH, ARCNN_PRECISION and most others set in .env reached no container."""
    defaults = {f"ARCNN_{f.name.upper()}": str(f.default) for f in dataclasses.fields(WorkerSettings)}
    tunable = set(defaults) - FIXED_BY_THE_STACK
    node = load_yaml(OPS / "compose.worker-node.yml")["services"]["worker"]
    for name, service in [*((n, raw["services"][n]) for n in (*WORKER_SERVICES, "cli")), ("worker-node", node)]:
        e = environment(service)
        assert tunable <= set(e), f"{name} does not pass {sorted(tunable - set(e))} from .env"
        for key in tunable:
            assert e[key] == f"${{{key}:-{defaults[key]}}}", f"{name}: {key} must default to the setting's own default"
    for key in tunable:
        assert env.get(key) == defaults[key], f".env.example must set {key}={defaults[key]}"


def _secrets_script(services) -> str:
    command = services["secrets"]["command"]
    assert command[:2] == ["sh", "-ec"]
    return command[2]


def test_the_example_secrets_are_refused_before_anything_starts(services, env):
    """The docs said the stack refuses to start without secrets; the change-me-* values were accepted."""
    script = _secrets_script(services)
    names = ("REDIS_PASSWORD", "MINIO_ROOT_PASSWORD", "S3_WORKER_SECRET_KEY", "GRAFANA_ADMIN_PASSWORD")
    secrets = {name: env[name] for name in names}
    example = subprocess.run(["sh", "-ec", script], env={"PATH": os.environ["PATH"], **secrets},
                             capture_output=True, text=True, timeout=10)
    assert example.returncode == 1 and "REDIS_PASSWORD is still the example value" in example.stderr
    for name in names:
        edited = {**{n: "0123456789abcdef" for n in names}, name: env[name]}
        refused = subprocess.run(["sh", "-ec", script], env={"PATH": os.environ["PATH"], **edited},
                                 capture_output=True, text=True, timeout=10)
        assert refused.returncode == 1 and name in refused.stderr, name
    real = subprocess.run(["sh", "-ec", script], env={"PATH": os.environ["PATH"], **{n: "0123456789abcdef" for n in names}},
                          capture_output=True, text=True, timeout=10)
    assert real.returncode == 0, real.stderr
    for name in ("redis", "minio", "grafana"):  # everything else waits for redis or minio
        assert services[name]["depends_on"]["secrets"]["condition"] == "service_completed_successfully", name


def test_cli_runs_do_not_rerun_minio_init_and_minio_init_is_idempotent(services):
    assert "minio-init" not in services["cli"]["depends_on"]
    assert {"redis", "minio"} <= set(services["cli"]["depends_on"])
    script = services["minio-init"]["entrypoint"][-1]
    assert script.index("already set up") < script.index("mc admin user add")


def test_the_documented_scale_commands_name_a_service_of_each_profile(services):
    header = COMPOSE.read_text().split("\nname:", 1)[0]
    scaled = set(re.findall(r"--scale ([\w-]+)=", header))
    for profile in ("gpu", "cpu"):
        assert any(profile in services[name].get("profiles", []) for name in scaled), \
            f"the header's --scale names no service of the {profile} profile ({sorted(scaled)})"
    assert "docker compose ps -a" in header  # one-shots are listed only with -a


def test_a_head_node_env_keeps_redis_published_for_every_command(env):
    """Without COMPOSE_FILE, `docker compose run --rm cli` on the head recreated Redis without the
    head file's published port, cutting off every remote worker."""
    text = ENV_EXAMPLE.read_text()
    assert "#COMPOSE_FILE=docker-compose.yml:ops/compose.head.yml" in text
    head = load_yaml(OPS / "compose.head.yml")
    assert head["services"]["redis"]["ports"]
    assert "COMPOSE_FILE=docker-compose.yml:ops/compose.head.yml" in (OPS / "compose.head.yml").read_text()
