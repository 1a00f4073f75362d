"""Generate ops/grafana/dashboards/arcnn.json, the Grafana dashboard of arcnn workers.

The JSON is committed (Grafana provisions it from disk); this script is its source so panels
stay uniform and reviewable. After editing, regenerate with::

    python ops/grafana/build_dashboard.py

tests/test_ops_static.py fails when the committed JSON and this script disagree, and checks
every expression below against the metrics the workers really export.

Conventions: ``$__rate_interval`` for every rate (Grafana picks it from the scrape interval),
``instance`` is the worker (Prometheus target), job-level gauges are exported by every worker
(read from Redis at scrape time), so they are de-duplicated with ``max by (job_id, ...)``.
The arcnn job is ``job_id``, not ``job``: ``job`` is the label Prometheus gives every target.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards" / "arcnn.json"
DATASOURCE = {"type": "prometheus", "uid": "arcnn-prometheus"}
W = '{instance=~"$instance"}'
"""Label filter of the dashboard's worker selector."""

RATE = "$__rate_interval"

# Expressions shared by several panels (and by the full-stack test: IMAGES_PER_SECOND is the
# throughput expression it queries from a real Prometheus).
IMAGES_PER_SECOND = f'sum(rate(arcnn_images_processed_total{{outcome="restored", instance=~"$instance"}}[{RATE}]))'
IMAGES_PER_SECOND_BY_WORKER = (
    f'sum by (instance) (rate(arcnn_images_processed_total{{outcome="restored", instance=~"$instance"}}[{RATE}]))'
)
MEGAPIXELS_PER_SECOND = f"sum(rate(arcnn_pixels_processed_total{W}[{RATE}])) / 1e6"
MEGAPIXELS_PER_SECOND_BY_WORKER = f"sum by (instance) (rate(arcnn_pixels_processed_total{W}[{RATE}])) / 1e6"
QUEUE_DEPTH = "sum(max by (queue) (arcnn_queue_depth))"
REMAINING_IMAGES = (
    'sum(max by (job_id) (arcnn_job_images{state="total"}))'
    ' - sum(max by (job_id, state) (arcnn_job_images{state=~"done|skipped|failed"}))'
)
DRAIN_RATE = f"sum(rate(arcnn_images_processed_total[{RATE}]))"
TIME_TO_DRAIN = f"({REMAINING_IMAGES}) / ({DRAIN_RATE} > 0)"


def target(expr: str, legend: str, ref: str, *, instant: bool = False, table: bool = False) -> dict:
    t = {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}
    if instant:
        t["instant"] = True
        t["range"] = False
    if table:
        t["format"] = "table"
    return t


def panel(kind: str, title: str, description: str, pos: tuple[int, int, int, int], targets: list[dict],
          unit: str = "short", **extra) -> dict:
    x, y, w, h = pos
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
        p["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max", "lastNotNull"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    elif kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                        "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    for key, value in extra.items():
        if key == "defaults":
            p["fieldConfig"]["defaults"].update(value)
        else:
            p[key] = value
    return p


def row(title: str, y: int) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


def panels() -> list[dict]:
    ps: list[dict] = []
    ps.append(row("Overview", 0))
    ps += [
        panel("stat", "Images/s", "Images restored per second, all selected workers.", (0, 1, 4, 4),
              [target(IMAGES_PER_SECOND, "images/s", "A")], unit="short"),
        panel("stat", "Megapixels/s", "Megapixels restored per second, all selected workers.", (4, 1, 4, 4),
              [target(MEGAPIXELS_PER_SECOND, "MP/s", "A")], unit="short"),
        panel("stat", "Queue depth", "Messages waiting in the broker queue(s).", (8, 1, 4, 4),
              [target(QUEUE_DEPTH, "queued", "A")]),
        panel("stat", "Time to drain", "Images left in unfinished jobs divided by the current processing rate.",
              (12, 1, 4, 4), [target(TIME_TO_DRAIN, "time to drain", "A")], unit="s"),
        panel("stat", "Workers up", "Worker targets answering Prometheus scrapes / all worker targets / "
              "workers that can read Redis (arcnn_broker_up).", (16, 1, 4, 4),
              [target('sum(up{job=~"arcnn-worker.*"})', "up", "A"),
               target('count(up{job=~"arcnn-worker.*"})', "known", "B"),
               target("sum(arcnn_broker_up)", "reach Redis", "C")]),
        panel("stat", "Failed (share)", "Share of finished images that failed.", (20, 1, 4, 4),
              [target(f'(sum(rate(arcnn_images_processed_total{{outcome="failed", instance=~"$instance"}}[{RATE}]))'
                      f" or vector(0)) / sum(rate(arcnn_images_processed_total{W}[{RATE}]))", "failed", "A")],
              unit="percentunit", defaults={"min": 0, "max": 1}),
    ]

    ps.append(row("Throughput", 5))
    ps += [
        panel("timeseries", "Images/s per worker and total", "Restored images per second.", (0, 6, 12, 8),
              [target(IMAGES_PER_SECOND_BY_WORKER, "{{instance}}", "A"), target(IMAGES_PER_SECOND, "total", "B")]),
        panel("timeseries", "Megapixels/s per worker and total", "Restored pixels per second / 1e6.", (12, 6, 12, 8),
              [target(MEGAPIXELS_PER_SECOND_BY_WORKER, "{{instance}}", "A"), target(MEGAPIXELS_PER_SECOND, "total", "B")]),
        panel("timeseries", "Outcomes/s", "Images finished per second by outcome.", (0, 14, 12, 8),
              [target(f"sum by (outcome) (rate(arcnn_images_processed_total{W}[{RATE}]))", "{{outcome}}", "A")]),
        panel("timeseries", "Object store traffic", "Bytes read from the source and written to the destination.",
              (12, 14, 12, 8),
              [target(f"sum(rate(arcnn_bytes_read_total{W}[{RATE}]))", "read", "A"),
               target(f"sum(rate(arcnn_bytes_written_total{W}[{RATE}]))", "written", "B")], unit="Bps"),
    ]

    ps.append(row("Latency and queue", 22))
    ps += [
        panel("timeseries", "Stage latency p50 / p95", "Per-image time spent in each pipeline stage.", (0, 23, 12, 8),
              [target(f"histogram_quantile(0.5, sum by (le, stage) (rate(arcnn_stage_duration_seconds_bucket{W}[{RATE}])))",
                      "{{stage}} p50", "A"),
               target(f"histogram_quantile(0.95, sum by (le, stage) (rate(arcnn_stage_duration_seconds_bucket{W}[{RATE}])))",
                      "{{stage}} p95", "B")], unit="s"),
        panel("timeseries", "Queue depth", "Messages waiting per queue.", (12, 23, 6, 8),
              [target("max by (queue) (arcnn_queue_depth)", "{{queue}}", "A")]),
        panel("timeseries", "Time to drain", "Images left in unfinished jobs / images processed per second.",
              (18, 23, 6, 8), [target(TIME_TO_DRAIN, "time to drain", "A")], unit="s"),
        panel("timeseries", "Images in flight per worker", "Images a worker has started and not finished.",
              (0, 31, 12, 8), [target(f"sum by (instance) (arcnn_images_in_flight{W})", "{{instance}}", "A")]),
        panel("timeseries", "Failures by reason", "Failed images per second by reason.", (12, 31, 12, 8),
              [target(f"sum by (reason) (rate(arcnn_image_failures_total{W}[{RATE}]))", "{{reason}}", "A")]),
    ]

    ps.append(row("Jobs and workers", 39))
    ps += [
        panel("bargauge", "Job progress", "Finished share (restored, skipped or failed) of each job's images.",
              (0, 40, 12, 8), [target("max by (job_id) (arcnn_job_progress_ratio)", "{{job_id}}", "A",
                                 instant=True)],
              unit="percentunit", defaults={"min": 0, "max": 1},
              options={"displayMode": "gradient", "orientation": "horizontal", "showUnfilled": True,
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}),
        panel("table", "Job images", "Images per job and state.", (12, 40, 12, 8),
              [target("max by (job_id, state) (arcnn_job_images)", "", "A", instant=True, table=True)],
              transformations=[{"id": "groupingToMatrix", "options": {"columnField": "state", "rowField": "job_id",
                                                                        "valueField": "Value"}}]),
        panel("table", "Workers", "Device and model load time of each worker.", (0, 48, 12, 8),
              [target(f"max by (instance, device) (arcnn_device_info{W})", "", "A", instant=True, table=True),
               target(f"max by (instance, model) (arcnn_model_load_seconds{W})", "", "B", instant=True, table=True)],
              transformations=[{"id": "merge", "options": {}},
                               {"id": "organize", "options": {"excludeByName": {"Time": True}}}]),
        panel("bargauge", "Failures (total in range)", "Failed images over the dashboard's time range, by reason.",
              (12, 48, 12, 8),
              [target(f"sum by (reason) (increase(arcnn_image_failures_total{W}[$__range]))", "{{reason}}", "A",
                      instant=True)]),
        panel("bargauge", "Images by model", "Images written (restored or passed through) by the model that "
              "decided them, since each selected worker started. A count, not a rate: a model's series begins "
              "at its first image, which rate() cannot see.", (0, 56, 12, 8),
              [target(f"sum by (model) (arcnn_model_images_total{W})", "{{model}}", "A", instant=True)]),
    ]
    for i, p in enumerate(ps, start=1):
        p["id"] = i
    return ps


def dashboard() -> dict:
    return {
        "uid": "arcnn-workers",
        "title": "arcnn workers",
        "description": "Throughput, latency, queue, failures and jobs of arcnn AR-CNN workers.",
        "tags": ["arcnn"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "graphTooltip": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [{
            "name": "instance",
            "label": "worker",
            "type": "query",
            "datasource": DATASOURCE,
            "query": {"query": "label_values(arcnn_device_info, instance)", "refId": "instance"},
            "definition": "label_values(arcnn_device_info, instance)",
            "refresh": 2,
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1,
        }]},
        "annotations": {"list": []},
        "panels": panels(),
    }


def main() -> None:
    OUT.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
