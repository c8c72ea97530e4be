"""Maintenance of seed 002 against the real test database: ops runs, partitions, events,
vacuum. Partitions made here are in years no real event falls in, and are dropped after."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from sqlalchemy import select, text

from foundryflow.actions.base import ActionContext
from foundryflow.actions.ops.maintenance import (
    MaintainPartitions,
    PartitionsParams,
    VacuumAnalyze,
    VacuumParams,
)
from foundryflow.ops.event_log import record_event
from foundryflow.ops.maintenance import (
    HOT_TABLES,
    add_months,
    ensure_month_partition,
    maintain_partitions,
    month_start,
    partition_name,
    vacuum_analyze,
)
from foundryflow.ops.runs import last_run, ops_run, record_run
from foundryflow.store.db import get_engine, session_factory, session_scope
from foundryflow.store.ops import EventLog, OpsOutcome

TEST_YEARS = range(1980, 2001)
"""Years of the partitions these tests make (far from any real event)."""


def _ctx() -> ActionContext:
    return ActionContext(
        execution_id=uuid4(),
        pipeline="ops-test",
        step_id="maintenance",
        attempt=1,
        map_index=None,
        session_factory=session_factory(),
        log=logging.getLogger("foundryflow.test.ops"),
        publish=lambda kind, fields: None,
    )


def _partitions() -> list[str]:
    with get_engine().connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'event_log'::regclass ORDER BY 1"
                )
            ).scalars()
        )


def _tables_like(pattern: str) -> list[str]:
    with get_engine().connect() as conn:
        query = "SELECT relname FROM pg_class WHERE relname LIKE :p AND relkind IN ('r', 'p')"
        return list(conn.execute(text(query), {"p": pattern}).scalars())


@pytest.fixture(autouse=True)
def _drop_test_partitions() -> Iterator[None]:
    yield
    with get_engine().begin() as conn:
        names = _tables_like("event_log_%")
        for name in names:
            if name == "event_log":
                continue
            if name.startswith("event_log_old") or any(f"y{y}" in name for y in TEST_YEARS):
                conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))


def _create(when: datetime) -> None:
    with get_engine().begin() as conn:
        ensure_month_partition(conn, when)


# --- ops runs -------------------------------------------------------------------------------


def test_ops_run_records_success_failure_and_soft_failure() -> None:
    job = f"test_{uuid4().hex[:8]}"
    with ops_run(job) as run:
        run.details["figure"] = 42
    first = last_run(job)
    assert first is not None and first.outcome == OpsOutcome.SUCCEEDED
    assert first.details == {"figure": 42} and first.error is None
    assert first.finished_at >= first.started_at and first.duration_seconds >= 0

    with pytest.raises(KeyError), ops_run(job) as run:
        run.details["partial"] = True
        raise KeyError("boom")
    failed = last_run(job)
    assert failed is not None and failed.outcome == OpsOutcome.FAILED
    assert failed.error == "KeyError: 'boom'" and failed.details == {"partial": True}

    with ops_run(job) as run:
        run.fail("2 configs differ")
    soft = last_run(job)
    assert (
        soft is not None and soft.outcome == OpsOutcome.FAILED and soft.error == "2 configs differ"
    )
    latest_ok = last_run(job, OpsOutcome.SUCCEEDED)
    assert latest_ok is not None and latest_ok.id == first.id
    assert last_run(f"never_{uuid4().hex[:8]}") is None


def test_record_run_stores_non_json_values_as_text() -> None:
    job = f"test_{uuid4().hex[:8]}"
    record_run(job, datetime.now(UTC), "succeeded", {"when": datetime(2030, 1, 2, tzinfo=UTC)})
    run = last_run(job)
    assert run is not None and run.details == {"when": "2030-01-02 00:00:00+00:00"}


# --- partitions ----------------------------------------------------------------------------


def test_month_arithmetic() -> None:
    assert month_start(datetime(2000, 12, 31, 23, 59)) == datetime(2000, 12, 1, tzinfo=UTC)
    assert add_months(datetime(2000, 11, 1, tzinfo=UTC), 3) == datetime(2001, 2, 1, tzinfo=UTC)
    assert add_months(datetime(2000, 1, 1, tzinfo=UTC), -1) == datetime(1999, 12, 1, tzinfo=UTC)
    assert partition_name(datetime(2000, 2, 29, tzinfo=UTC)) == "event_log_y2000m02"


def test_maintain_partitions_creates_ahead_and_drops_past_retention() -> None:
    real = [name for name in _partitions() if not any(f"y{y}" in name for y in TEST_YEARS)]
    for month in (datetime(1999, 1, 1), datetime(1999, 11, 1), datetime(1999, 12, 1)):
        _create(month.replace(tzinfo=UTC))
    with get_engine().begin() as conn:  # old, but not ours to drop: wrong name, wrong bounds
        conn.execute(
            text(
                "CREATE TABLE event_log_old_import PARTITION OF event_log "
                "FOR VALUES FROM ('1990-01-01 00:00:00+00') TO ('1990-02-01 00:00:00+00')"
            )
        )
        conn.execute(
            text(
                "CREATE TABLE event_log_y1990m05 PARTITION OF event_log "
                "FOR VALUES FROM ('1990-06-01 00:00:00+00') TO ('1990-07-01 00:00:00+00')"
            )
        )

    now = datetime(2000, 6, 15, 8, 30, tzinfo=UTC)
    report = maintain_partitions(months_ahead=3, retention_months=6, now=now)

    assert report.created == [f"event_log_y2000m{m:02d}" for m in (6, 7, 8, 9)]
    # cutoff 1999-12-01: November 1999 ended then, December 1999 is the 6th month kept
    assert report.dropped == ["event_log_y1999m01", "event_log_y1999m11"]
    assert report.skipped == ["event_log_old_import", "event_log_y1990m05"]
    after = _partitions()
    assert "event_log_y1999m12" in after and set(real) <= set(after)
    assert set(report.existing) == set(after)
    run = last_run("event_log_partitions")
    assert run is not None and run.outcome == OpsOutcome.SUCCEEDED
    assert run.details["dropped"] == report.dropped and run.details["created"] == report.created

    again = maintain_partitions(months_ahead=3, retention_months=6, now=now)
    assert again.created == [] and again.dropped == [] and again.existing == report.existing


def test_maintain_partitions_covers_the_months_ahead_from_today() -> None:
    report = maintain_partitions(months_ahead=3, retention_months=6)
    today = month_start(datetime.now(UTC))
    for add in range(4):
        assert partition_name(add_months(today, add)) in report.existing


def test_new_partition_takes_rows_of_its_month_only() -> None:
    _create(datetime(1998, 2, 10, tzinfo=UTC))
    with get_engine().connect() as conn:
        bound = conn.execute(
            text(
                "SELECT pg_get_expr(relpartbound, oid) FROM pg_class "
                "WHERE relname = 'event_log_y1998m02'"
            )
        ).scalar_one()
    assert "1998-02-01" in bound and "1998-03-01" in bound


# --- event log -----------------------------------------------------------------------------


def test_record_event_stores_the_event() -> None:
    execution_id = uuid4()
    fields = {
        "execution_id": str(execution_id),
        "pipeline": "ops-test",
        "step_id": "s1",
        "map_index": 2,
        "status": "COMPLETED",
        "at": datetime(2030, 1, 1, tzinfo=UTC),
    }
    record_event("step.completed", fields)
    with session_scope() as session:
        row = session.scalars(select(EventLog).where(EventLog.execution_id == execution_id)).one()
    assert row.type == "step.completed" and row.pipeline == "ops-test" and row.step_id == "s1"
    assert row.fields["map_index"] == 2 and row.fields["at"] == "2030-01-01 00:00:00+00:00"
    assert month_start(row.created_at) == month_start(datetime.now(UTC))


def test_record_event_creates_a_missing_month_on_the_fly() -> None:
    when = datetime(1987, 3, 10, 12, tzinfo=UTC)
    assert "event_log_y1987m03" not in _partitions()
    marker = uuid4().hex
    record_event("action.custom", {"execution_id": "not-a-uuid", "marker": marker}, created_at=when)
    assert "event_log_y1987m03" in _partitions()
    with session_scope() as session:
        row = session.scalars(
            select(EventLog).where(EventLog.fields["marker"].as_string() == marker)
        ).one()
    assert row.created_at == when and row.execution_id is None and row.pipeline is None
    record_event("action.custom", {"marker": marker}, created_at=when)  # partition now there
    with session_scope() as session:
        count = session.scalars(
            select(EventLog.id).where(EventLog.fields["marker"].as_string() == marker)
        ).all()
    assert len(count) == 2


# --- vacuum --------------------------------------------------------------------------------


def test_vacuum_analyze_the_hot_tables() -> None:
    seconds = vacuum_analyze()
    assert {"executions", "step_runs", "event_log", "ops_runs"} <= set(seconds) <= set(HOT_TABLES)
    assert all(value >= 0 for value in seconds.values())
    run = last_run("vacuum_analyze")
    assert run is not None and run.outcome == OpsOutcome.SUCCEEDED
    figures = run.details["tables"]["ops_runs"]
    assert {"seconds", "n_dead_tup_before", "n_dead_tup_after"} <= set(figures)
    assert isinstance(figures["n_dead_tup_before"], int)
    assert isinstance(run.details["tables"]["event_log"]["n_dead_tup_after"], int)


def test_vacuum_refuses_names_that_are_not_tables() -> None:
    with pytest.raises(ValueError, match="executions; drop table x"):
        vacuum_analyze(["ops_runs", "executions; drop table x"])
    assert _tables_like("executions") == ["executions"]
    run = last_run("vacuum_analyze")
    assert run is not None and run.outcome == OpsOutcome.FAILED
    assert vacuum_analyze(["ops_runs", "ops_runs"]).keys() == {"ops_runs"}


# --- actions -------------------------------------------------------------------------------


def test_actions_run() -> None:
    partitions = MaintainPartitions().run(_ctx(), PartitionsParams(months_ahead=1))
    assert partition_name(datetime.now(UTC)) in partitions.existing
    vacuum = VacuumAnalyze().run(_ctx(), VacuumParams(tables=["ops_runs"]))
    assert set(vacuum.seconds) == {"ops_runs"} and vacuum.total_seconds >= 0
    everything = VacuumAnalyze().run(_ctx(), VacuumParams(tables=[]))  # empty: the defaults
    assert {"executions", "event_log"} <= set(everything.seconds)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        PartitionsParams(retention_months=0)
