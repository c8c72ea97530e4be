"""The scheduled maintenance pipelines (seed 002) run for real on Airflow (``dag.test``),
and each is also an Argo CronWorkflow with the same schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from foundryflow.compile.airflow import build_dag
from foundryflow.config import REPO_ROOT
from foundryflow.spec.loader import PipelineCatalog
from foundryflow.store.db import session_scope
from foundryflow.store.ops import OpsRun
from tests.test_airflow_dags import execution_of, run, states

pytestmark = pytest.mark.airflow

SCHEDULES = {
    "ops-postgres-backup": "0 2 * * *",
    "ops-redis-reconcile": "*/5 * * * *",
    "ops-partitions": "30 1 * * *",
    "ops-vacuum-analyze": "0 4 * * *",
}


def run_pipeline(name: str, conf: dict[str, Any]) -> dict[str, Any]:
    dag = build_dag(PipelineCatalog(require_actions=False).get(name))
    dag_run = run(dag, conf)
    assert str(dag_run.state) == "success", states(dag_run)
    report = execution_of(dag, dag_run)
    assert report.status == "COMPLETED", report.error
    return report.outputs or {}


def last_run(job: str) -> OpsRun:
    with session_scope() as session:
        row = session.scalars(
            select(OpsRun).where(OpsRun.job == job).order_by(OpsRun.id.desc()).limit(1)
        ).one()
        session.expunge(row)
        return row


@pytest.mark.parametrize(("name", "schedule"), sorted(SCHEDULES.items()))
def test_each_is_a_cron_dag_and_a_cron_workflow(name: str, schedule: str, dags: Any) -> None:
    assert dags[name].schedule == schedule
    documents = list(yaml.safe_load_all((REPO_ROOT / "argo" / f"{name}.yaml").read_text()))
    cron = next(d for d in documents if d["kind"] == "CronWorkflow")
    assert cron["spec"]["schedules"] == [schedule]


def test_backup_dumps_prunes_and_verifies_the_restore(tmp_path: Path, airflow_db: Any) -> None:
    outputs = run_pipeline("ops-postgres-backup", {"directory": str(tmp_path), "retention_days": 7})
    dump = Path(outputs["path"])
    assert dump.parent == tmp_path and dump.suffix == ".dump" and dump.stat().st_size > 0
    assert outputs["restore_ok"] is True
    assert last_run("postgres_backup").outcome.value == "succeeded"
    check = last_run("postgres_restore_check")
    assert check.outcome.value == "succeeded" and check.details["tables_checked"] > 10


def test_partitions_and_vacuum(airflow_db: Any) -> None:
    created = run_pipeline("ops-partitions", {"months_ahead": 4, "retention_months": 6})
    assert isinstance(created["created"], list)
    assert last_run("event_log_partitions").outcome.value == "succeeded"
    seconds = run_pipeline("ops-vacuum-analyze", {"tables": ["executions", "step_runs"]})
    assert set(seconds["seconds"]) == {"executions", "step_runs"}
    assert last_run("vacuum_analyze").outcome.value == "succeeded"


def test_redis_reconcile_runs_on_airflow(airflow_db: Any) -> None:
    outputs = run_pipeline("ops-redis-reconcile", {"repair": True})
    assert outputs["missing"] >= 0 and outputs["drifted"] >= 0
    assert last_run("redis_reconcile").details["configs"] >= 0
