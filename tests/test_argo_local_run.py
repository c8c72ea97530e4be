"""Rendered Argo templates, executed end to end: every pod is a real ``foundryflow`` process.

See ``tests/argo_local.py`` for what the local runner emulates. The outcome in PostgreSQL
must be the one the Airflow tests see for the same specs.
"""

from __future__ import annotations

import os
from pathlib import Path
from uuid import UUID

import pytest

from foundryflow.compile.argo import render_documents
from foundryflow.runtime import progress
from foundryflow.spec.loader import PipelineCatalog
from tests.argo_local import LocalArgoRunner, WorkflowRun

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def runner() -> LocalArgoRunner:
    secrets = {
        "foundryflow-runtime": {
            "database-url": os.environ["FOUNDRYFLOW_DATABASE_URL"],
            "redis-url": os.environ["FOUNDRYFLOW_REDIS_URL"],
        }
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOUNDRYFLOW_")}
    env["FOUNDRYFLOW_PIPELINES_PATH"] = os.environ["FOUNDRYFLOW_PIPELINES_PATH"]
    return LocalArgoRunner(secrets, env)


def submit(runner: LocalArgoRunner, name: str, **params: str) -> WorkflowRun:
    pipeline = PipelineCatalog(require_actions=False).get(name)
    template = next(d for d in render_documents(pipeline) if d["kind"] == "WorkflowTemplate")
    return runner.submit(template, params)


def test_linear_run_completes(runner: LocalArgoRunner) -> None:
    run = submit(runner, "t-linear", a="3", mode="fast")
    assert run.status == "Succeeded", [(p.task, p.stderr[-300:]) for p in run.pods]
    report = progress(UUID(run.uid))
    assert report.engine == "argo" and report.engine_run_id == run.name
    assert report.status == "COMPLETED"
    assert {s.id: s.status for s in report.steps} == {
        "first": "COMPLETED",
        "second": "COMPLETED",
        "only_slow": "SKIPPED",
        "last": "COMPLETED",
    }
    assert report.outputs is not None and report.outputs["total"] == 9
    assert report.params["tags"] == ["x", "y"]  # default of an array parameter, typed


def test_fanout_maps_over_items(runner: LocalArgoRunner) -> None:
    run = submit(runner, "t-fanout", numbers="[1, 2, 3]")
    assert run.status == "Succeeded", [(p.task, p.stderr[-300:]) for p in run.pods]
    assert run.pod("ff-fanout-square").stdout.strip() == "[0, 1, 2]"
    assert len([p for p in run.pods if p.task == "square"]) == 3
    assert progress(UUID(run.uid)).outputs == {"squares": [1, 4, 9]}


def test_failure_rolls_back_in_the_exit_handler(runner: LocalArgoRunner, redis_client) -> None:  # type: ignore[no-untyped-def]
    run = submit(runner, "t-rollback")
    assert run.status == "Failed"
    assert "exploded on purpose" in run.pod("explode").stderr
    report = progress(UUID(run.uid))
    assert report.status == "FAILED" and report.rollback_status == "COMPLETED"
    assert {s.id: s.status for s in report.steps} == {
        "make_a": "COMPENSATED",
        "make_b": "COMPENSATED",
        "explode": "FAILED",
        "cleanup": "COMPLETED",
    }
    assert redis_client.keys(f"foundryflow-test:resource:{run.uid}:*") == []
    assert redis_client.lrange(f"foundryflow-test:resource-log:{run.uid}", 0, -1) == [
        "create a",
        "create b",
        "delete b",
        "delete a",
    ]


def test_success_skips_rollback_and_finally_step(runner: LocalArgoRunner) -> None:
    run = submit(runner, "t-rollback", fail="false")
    assert run.status == "Succeeded", [(p.task, p.stderr[-300:]) for p in run.pods]
    report = progress(UUID(run.uid))
    assert report.rollback_status is None
    assert {s.id: s.status for s in report.steps}["cleanup"] == "SKIPPED"


def test_parameter_values_are_data_never_code(runner: LocalArgoRunner, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = f"''' \"; $(touch {marker}) `touch {marker}` {{{{ ''.__class__ }}}}\nline2"
    run = submit(runner, "t-echo", message=hostile)
    assert run.status == "Succeeded", [(p.task, p.stderr[-300:]) for p in run.pods]
    assert progress(UUID(run.uid)).outputs == {"said": hostile}
    assert not marker.exists()


def test_bad_parameter_fails_the_start_pod_and_writes_nothing(runner: LocalArgoRunner) -> None:
    run = submit(runner, "t-linear", a="three")
    assert run.status == "Failed"
    start = run.pod("ff-start")
    assert start.returncode == 2 and "parameter 'a'" in start.stderr
    finish = run.pod("ff-finish")
    assert finish.returncode != 0 and "never started" in finish.stderr
    assert [p.task for p in run.pods] == ["ff-start", "ff-finish"]
