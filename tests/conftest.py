"""Test subsets, as markers (README, "Running the tests"): every test gets exactly one of

- ``unit``: in-process, no servers, no ``arcnn`` subprocess; ``pytest -m unit`` runs in under a
  minute, and these modules import neither moto, boto3 nor redis (test_boundary checks);
- ``cli``: runs ``arcnn`` commands as a user would, in subprocesses (local folders only);
- ``system``: the worker against real servers it starts itself (redis-server, a moto S3
  server, Celery workers), on loopback only;
- ``ops``: the deployment files (compose, Prometheus rules, Grafana), statically and run;
- ``bench``: the benchmark scripts in their quick mode.

A module's tests get its subset from :data:`SUBSETS`; a test marked with one itself keeps it.
"""

from __future__ import annotations

import pytest

MARKERS = ("unit", "cli", "system", "ops", "bench")

SUBSETS = {
    "test_architectures": "unit", "test_boundary": "unit", "test_cards": "unit", "test_chroma": "unit",
    "test_colour": "unit", "test_eval_progress": "unit", "test_history": "unit", "test_jobs": "unit",
    "test_metrics": "unit", "test_model_names": "unit",
    "test_naming": "unit", "test_paper_protocol": "unit", "test_performance_paths": "unit",
    "test_platforms": "unit", "test_quality": "unit", "test_restoration": "unit",
    "test_roundtrip_matrix": "unit", "test_tiling": "unit", "test_training": "unit", "test_transfer": "unit",
    "test_cli": "cli", "test_restore_cli": "cli", "test_worker_run": "cli",
    "test_worker_celery": "system", "test_worker_faults": "system", "test_worker_outcomes": "system",
    "test_worker_resilience": "system", "test_worker_units": "system",
    "test_ops_compose": "ops", "test_ops_fullstack": "ops", "test_ops_static": "ops",
}
"""Test module -> its subset. A module missing here runs as ``system`` (so it cannot slow the
unit subset down) and fails test_boundary's check that every module has one."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(name) for name in MARKERS):
            continue
        item.add_marker(SUBSETS.get(item.module.__name__.rsplit(".", 1)[-1], "system"))
