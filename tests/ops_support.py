"""Helpers shared by tests/test_ops_*.py: the ops files, compose interpolation, PromQL parsing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "ops"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PROMETHEUS_DIR = OPS / "prometheus"
DASHBOARD = OPS / "grafana" / "dashboards" / "arcnn.json"
SCHEMA = Path(__file__).resolve().parent / "data" / "compose-spec.json"

# Metric names of the worker contract (issue 6). The live-scrape test checks the real worker
# against the dashboard independently of this list.
CONTRACT_METRICS = {
    "arcnn_images_processed_total": "counter",
    "arcnn_image_failures_total": "counter",
    "arcnn_pixels_processed_total": "counter",
    "arcnn_model_images_total": "counter",
    "arcnn_bytes_read_total": "counter",
    "arcnn_bytes_written_total": "counter",
    "arcnn_stage_duration_seconds": "histogram",
    "arcnn_images_in_flight": "gauge",
    "arcnn_model_load_seconds": "gauge",
    "arcnn_device_info": "gauge",
    "arcnn_job_images": "gauge",
    "arcnn_job_progress_ratio": "gauge",
    "arcnn_queue_depth": "gauge",
    "arcnn_broker_up": "gauge",  # issue 25: a scrape says whether Redis answers
}

# Series Prometheus makes itself for every target (not exported by the worker).
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                        "scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS",
                        "ALERTS_FOR_STATE"}


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool is missing: apt-get install -y prometheus (the CI script installs it)")
    return exe


def run(cmd: list[str], cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


# --- .env and compose interpolation -------------------------------------------------------

def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        env[key.strip()] = value.strip()
    return env


_VAR = re.compile(r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def variables_in(text: str) -> set[str]:
    """Names interpolated by compose in ``text`` (``$$`` is an escaped dollar)."""
    names = set()
    for m in _VAR.finditer(text):
        name = m.group("braced") or m.group("plain")
        if name:
            names.add(name)
    return names


def interpolate(value, env: dict[str, str]):
    """Compose-style interpolation of every string in ``value`` (recursively)."""
    if isinstance(value, dict):
        return {interpolate(k, env): interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("plain")
        op, arg = m.group("op"), m.group("arg") or ""
        current = env.get(name)
        unset_or_empty = current is None or (current == "" and op and op.startswith(":"))
        if op in (":-", "-"):
            return arg if unset_or_empty else current
        if op in (":?", "?"):
            if unset_or_empty:
                raise ValueError(f"required variable {name} is missing: {arg}")
            return current
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return current or ""

    return _VAR.sub(sub, value)


def compose_files() -> list[Path]:
    return [COMPOSE, *sorted(OPS.glob("compose.*.yml"))]


# --- PromQL -------------------------------------------------------------------------------

GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "15s", "$instance": ".*"}

_PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                    "offset", "bool", "atan2", "inf", "nan", "start", "end"}


def grafana_to_promql(expr: str) -> str:
    for var, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names an (already valid) PromQL expression selects.

    Strings, label matchers, range/offset durations, grouping label lists and function calls
    are removed; what is left as identifiers are metric names. ``{__name__="x"}`` also counts.
    """
    names = set(re.findall(r'__name__\s*=~?\s*"([^"]+)"', expr))
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)   # strings
    e = re.sub(r"\{[^}]*\}", " ", e)                                             # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                                            # ranges, subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\b[a-zA-Z_][a-zA-Z0-9_]*\s*\(", "(", e)                         # function calls
    e = re.sub(r"(?<![A-Za-z0-9_:])\d+(\.\d+)?([eE][-+]?\d+)?(ms|[smhdwy])?\b", " ", e)  # numbers, durations
    for token in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        if token.lower() not in _PROMQL_KEYWORDS:
            names.add(token)
    return names


def dashboard_expressions(dashboard: dict | None = None) -> list[tuple[str, str]]:
    """(where, expr) of every query in the dashboard, template variables included."""
    d = dashboard if dashboard is not None else json.loads(DASHBOARD.read_text())
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    out.append((f"panel {p.get('title')!r} {t.get('refId')}", t["expr"]))
            walk(p.get("panels", []))

    walk(d.get("panels", []))
    for var in d.get("templating", {}).get("list", []):
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*label_values\((.+),\s*\w+\)\s*", q or "")
        if m:
            out.append((f"variable {var['name']!r}", m.group(1)))
        elif q:
            out.append((f"variable {var['name']!r}", q))
    return out


def rule_expressions() -> list[tuple[str, str]]:
    out = []
    for group in load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"]:
        for rule in group["rules"]:
            out.append((f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]))
    return out


def exposition_names(text: str) -> set[str]:
    """Every sample name a Prometheus text exposition can carry, from TYPE lines and samples."""
    names: set[str] = set()
    suffixes = {"counter": ["", "_total", "_created"], "histogram": ["_bucket", "_sum", "_count", "_created"],
                "summary": ["", "_sum", "_count", "_created"], "gauge": [""], "untyped": [""], "info": ["_info", ""]}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(None, 3)
            base = name[:-len("_total")] if kind == "counter" and name.endswith("_total") else name
            names.update(base + s for s in suffixes.get(kind.strip(), [""]))
        elif line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def contract_names() -> set[str]:
    text = []
    for name, kind in CONTRACT_METRICS.items():
        text.append(f"# TYPE {name} {kind}")
    return exposition_names("\n".join(text))

