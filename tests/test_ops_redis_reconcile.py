"""Redis reconcile (seed 002) against a guardrail deployed for real through the
``guardrail-deployment-workflow`` DAG, on the test Redis (database 13, shared: never
flushed, only this module's keys are touched) and, for the FLUSHDB scenario, on a Redis
database of this module's own (14).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest
import redis
from sqlalchemy import select, update

from foundryflow.actions import ActionContext
from foundryflow.actions.ops.redis_reconcile import (
    RedisReconcile,
    RedisReconcileError,
    RedisReconcileParams,
)
from foundryflow.configsync import GuardrailConfig, GuardrailConfigStore, StoredConfig
from foundryflow.configsync.redis_store import DEFAULT_PREFIX
from foundryflow.guardrail.demo import seed_demo
from foundryflow.ops.redis_reconcile import (
    JOB,
    ConfigState,
    ReconcileReport,
    active_deployments,
    build_config,
    reconcile,
)
from foundryflow.ops.runs import last_run
from foundryflow.store.db import session_factory, session_scope
from foundryflow.store.guardrail import Endpoint
from foundryflow.store.models import Execution, ExecutionStatus
from foundryflow.store.ops import OpsOutcome
from tests.test_airflow_dags import execution_of, run, states
from tests.test_guardrail_actions_deploy import _remove_leftovers
from tests.test_guardrail_workflow import PIPELINE, example

pytestmark = pytest.mark.airflow

OWN_REDIS_DB = 14
"""Flushed by this module only; skipped if it holds anything but guardrail configs."""

DETAIL_KEYS = {
    "configs",
    "missing",
    "drifted",
    "unreadable",
    "orphaned",
    "repaired",
    "pruned",
    "inactive",
    "failed",
    "write_latency_mean_seconds",
    "write_latency_max_seconds",
    "read_latency_mean_seconds",
    "read_latency_max_seconds",
}


@dataclass(frozen=True)
class Deployed:
    project_id: UUID
    profile_id: UUID
    deployment_id: UUID
    execution_id: UUID


@pytest.fixture(scope="module")
def client() -> Iterator[redis.Redis]:
    """The test Redis (database 13), as the platform's client sees it (bytes)."""
    connection = redis.Redis.from_url(os.environ["FOUNDRYFLOW_REDIS_URL"])
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def deployed(dags: dict[str, Any], client: redis.Redis) -> Iterator[Deployed]:
    """One guardrail deployed by the real DAG, shared by the module's tests (each leaves it
    reconciled); removed afterwards, its Redis config included."""
    with session_scope() as session:
        seed_demo(session)
    project_id = uuid.uuid4()
    dag = dags[PIPELINE]
    dag_run = run(dag, example(project_id))
    assert str(dag_run.state) == "success", states(dag_run)
    report = execution_of(dag, dag_run)
    assert report.status == "COMPLETED", report.error
    outputs = report.outputs or {}
    deployment = Deployed(
        project_id, UUID(outputs["profile_id"]), UUID(outputs["deployment_id"]), report.id
    )
    yield deployment
    GuardrailConfigStore(client).delete(deployment.profile_id)
    _remove_leftovers(project_id)


@pytest.fixture
def store(client: redis.Redis) -> GuardrailConfigStore:
    return GuardrailConfigStore(client)


@pytest.fixture
def own_redis(client: redis.Redis) -> Iterator[redis.Redis]:
    """A Redis database of this module's own, on the test Redis server; flushed after."""
    kwargs = client.connection_pool.connection_kwargs
    own = redis.Redis(
        host=kwargs.get("host", "127.0.0.1"), port=kwargs.get("port", 6379), db=OWN_REDIS_DB
    )
    foreign = [
        key
        for key in own.scan_iter(count=1000)
        if not key.decode().startswith(f"{DEFAULT_PREFIX}:")
    ]
    if foreign:
        pytest.skip(f"Redis database {OWN_REDIS_DB} holds other keys ({foreign[:3]}): in use")
    own.flushdb()
    yield own
    own.flushdb()
    own.close()


def stored(store: GuardrailConfigStore, profile_id: UUID) -> StoredConfig:
    current = store.read(profile_id)
    assert current is not None
    return current


def check_of(report: ReconcileReport, deployment: Deployed) -> Any:
    check = report.check(deployment.profile_id)
    assert check is not None, report
    assert check.deployment_id == deployment.deployment_id
    return check


def built(deployment: Deployed) -> GuardrailConfig:
    return build_config(session_factory(), deployment.deployment_id, deployment.profile_id)


def context() -> ActionContext:
    return ActionContext(
        execution_id=uuid.uuid4(),
        pipeline="ops-redis-reconcile",
        step_id="reconcile",
        attempt=1,
        map_index=None,
        session_factory=session_factory(),
        log=logging.getLogger("test.ops"),
        publish=lambda kind, fields: None,
    )


# --------------------------------------------------------------------------- in sync
def test_a_fresh_deployment_is_in_sync_and_nothing_is_written(
    deployed: Deployed, store: GuardrailConfigStore, client: redis.Redis
) -> None:
    before = stored(store, deployed.profile_id)
    assert before.version == 1 and before.config == built(deployed)

    report = reconcile(client)
    check = check_of(report, deployed)
    assert check.state is ConfigState.IN_SYNC and not check.repaired and check.error is None
    assert check.version == 1 and check.sha256 == before.sha256
    assert stored(store, deployed.profile_id) == before  # not even generated_at changed
    assert deployed.profile_id not in report.orphaned_profile_ids
    assert report.read_latency_max_seconds is not None and report.read_latency_max_seconds > 0
    assert report.write_latency_mean_seconds is not None  # every config goes through write
    assert 0 < report.write_latency_mean_seconds <= (report.write_latency_max_seconds or 0)

    again = reconcile(client)  # repairs whatever else was off: then all is in sync
    assert again.missing == again.drifted == again.repaired == 0, again.errors
    assert check_of(again, deployed).state is ConfigState.IN_SYNC


def test_the_run_is_recorded_in_ops_runs(deployed: Deployed, client: redis.Redis) -> None:
    report = reconcile(client)
    row = last_run(JOB)
    assert row is not None
    assert row.outcome is OpsOutcome.SUCCEEDED and row.error is None
    assert set(row.details) == DETAIL_KEYS
    assert row.details == json.loads(json.dumps(report.details()))
    assert row.details["configs"] >= 1 and row.duration_seconds > 0
    assert row.finished_at >= row.started_at


# --------------------------------------------------------------------------- drift
def test_a_deleted_key_is_missing_then_restored_with_its_version(
    deployed: Deployed, store: GuardrailConfigStore, client: redis.Redis
) -> None:
    before = stored(store, deployed.profile_id)
    client.delete(store.key(deployed.profile_id))

    report = reconcile(client, repair=False)
    check = check_of(report, deployed)
    assert check.state is ConfigState.MISSING and not check.repaired and check.version is None
    assert report.missing >= 1
    assert store.read(deployed.profile_id) is None  # reported only

    repaired = reconcile(client)
    check = check_of(repaired, deployed)
    assert check.state is ConfigState.MISSING and check.repaired
    after = stored(store, deployed.profile_id)
    assert after.config == before.config and after.sha256 == before.sha256
    # restored from the history: the numbering goes on instead of starting again at 1
    assert after.version == before.version == check.version
    assert check_of(reconcile(client), deployed).state is ConfigState.IN_SYNC


def test_other_content_is_drifted_then_rewritten_as_the_next_version(
    deployed: Deployed, store: GuardrailConfigStore, client: redis.Redis
) -> None:
    before = stored(store, deployed.profile_id)
    tampered = before.config.model_copy(update={"profile_name": "edited-by-hand"})
    assert store.write(deployed.profile_id, tampered).version == before.version + 1

    check = check_of(reconcile(client, repair=False), deployed)
    assert check.state is ConfigState.DRIFTED and check.version == before.version + 1

    report = reconcile(client)
    check = check_of(report, deployed)
    assert check.state is ConfigState.DRIFTED and check.repaired
    assert report.drifted >= 1 and report.repaired >= 1
    after = stored(store, deployed.profile_id)
    assert after.config == before.config and after.sha256 == before.sha256
    assert after.version == before.version + 2  # the store: +1 for each distinct config
    assert store.history(deployed.profile_id)[1].config == tampered


def test_a_damaged_entry_is_unreadable_then_restored(
    deployed: Deployed, store: GuardrailConfigStore, client: redis.Redis
) -> None:
    before = stored(store, deployed.profile_id)
    document = json.loads(before.to_json())
    document["config"]["profile_name"] = "edited-without-rehashing"
    client.set(store.key(deployed.profile_id), json.dumps(document))

    report = reconcile(client, repair=False)
    check = check_of(report, deployed)
    assert check.state is ConfigState.UNREADABLE and check.version is None
    assert report.unreadable >= 1 and report.drifted >= report.unreadable

    check = check_of(reconcile(client), deployed)
    assert check.state is ConfigState.UNREADABLE and check.repaired
    after = stored(store, deployed.profile_id)
    assert after.config == before.config and after.version == before.version


# --------------------------------------------------------------------------- FLUSHDB
def test_after_flushdb_every_config_comes_back_identical(
    deployed: Deployed, store: GuardrailConfigStore, own_redis: redis.Redis
) -> None:
    own_redis.flushdb()
    own_store = GuardrailConfigStore(own_redis)
    original = stored(store, deployed.profile_id)

    report = reconcile(own_redis)
    assert report.errors == []
    assert report.configs >= 1
    assert report.missing == report.configs == report.repaired
    for check in report.checks:
        assert check.state is ConfigState.MISSING and check.repaired and check.version == 1
        current = stored(own_store, check.profile_id)
        assert current.sha256 == check.sha256
        assert current.config == built(
            Deployed(deployed.project_id, check.profile_id, check.deployment_id, uuid.uuid4())
        )
    back = stored(own_store, deployed.profile_id)
    assert back.config == original.config and back.sha256 == original.sha256
    assert back.version == 1  # nothing survived to count on from

    again = reconcile(own_redis)
    assert again.missing == again.drifted == again.repaired == again.orphaned == 0
    assert stored(own_store, deployed.profile_id) == back


def test_orphans_are_reported_and_deleted_only_when_pruning(
    deployed: Deployed, own_redis: redis.Redis
) -> None:
    own_store = GuardrailConfigStore(own_redis)
    reconcile(own_redis)
    mine = stored(own_store, deployed.profile_id)
    orphan = uuid.uuid4()
    own_store.write(orphan, mine.config.model_copy(update={"profile_id": orphan}))

    report = reconcile(own_redis)
    assert report.orphaned_profile_ids == (orphan,) and report.pruned == 0
    assert own_store.read(orphan) is not None

    pruned = reconcile(own_redis, prune=True)
    assert pruned.orphaned == pruned.pruned == 1
    assert own_store.read(orphan) is None and own_store.history(orphan) == []
    assert stored(own_store, deployed.profile_id) == mine
    row = last_run(JOB)
    assert row is not None and row.details["pruned"] == 1


def test_an_orphan_in_the_shared_database_is_only_reported(
    deployed: Deployed, store: GuardrailConfigStore, client: redis.Redis
) -> None:
    orphan = uuid.uuid4()
    config = stored(store, deployed.profile_id).config.model_copy(update={"profile_id": orphan})
    store.write(orphan, config)
    try:
        report = reconcile(client)
        assert orphan in report.orphaned_profile_ids
        assert deployed.profile_id not in report.orphaned_profile_ids
        assert store.read(orphan) is not None
    finally:
        store.delete(orphan)


# --------------------------------------------------------------------------- active or not
def test_a_deployment_of_an_unfinished_run_is_left_alone(
    deployed: Deployed, store: GuardrailConfigStore, client: redis.Redis
) -> None:
    def set_status(status: ExecutionStatus) -> None:
        with session_scope() as session:
            session.execute(
                update(Execution).where(Execution.id == deployed.execution_id).values(status=status)
            )

    with session_scope() as session:
        assert active_deployments(session).active[deployed.profile_id] == deployed.deployment_id
    set_status(ExecutionStatus.RUNNING)
    try:
        with session_scope() as session:
            deployments = active_deployments(session)
        assert deployed.profile_id not in deployments.active
        assert deployed.profile_id in deployments.known_profiles
        client.delete(store.key(deployed.profile_id))
        report = reconcile(client, prune=False)
        assert report.check(deployed.profile_id) is None and report.inactive >= 1
        assert deployed.profile_id not in report.orphaned_profile_ids  # never pruned
        assert store.read(deployed.profile_id) is None
    finally:
        set_status(ExecutionStatus.COMPLETED)
    assert check_of(reconcile(client), deployed).repaired


def test_a_config_that_cannot_be_built_fails_the_run_but_not_the_others(
    deployed: Deployed, store: GuardrailConfigStore, client: redis.Redis
) -> None:
    before = stored(store, deployed.profile_id)
    with session_scope() as session:
        endpoint = session.scalars(
            select(Endpoint).where(Endpoint.project_id == deployed.project_id)
        ).one()
        endpoint_id, url = endpoint.id, endpoint.url
        endpoint.url = None
    try:
        report = reconcile(client)
        check = check_of(report, deployed)
        assert check.state is ConfigState.FAILED and "has no URL yet" in (check.error or "")
        assert report.failed >= 1 and any("has no URL yet" in e for e in report.errors)
        row = last_run(JOB)
        assert row is not None and row.outcome is OpsOutcome.FAILED
        assert "has no URL yet" in (row.error or "") and row.details["failed"] >= 1
        assert stored(store, deployed.profile_id) == before  # left as it was
        with pytest.raises(RedisReconcileError, match="has no URL yet"):
            RedisReconcile().run(context(), RedisReconcileParams())
    finally:
        with session_scope() as session:
            session.execute(update(Endpoint).where(Endpoint.id == endpoint_id).values(url=url))


# --------------------------------------------------------------------------- the action
def test_the_action_outputs_the_report_and_is_idempotent(
    deployed: Deployed, store: GuardrailConfigStore, client: redis.Redis
) -> None:
    client.delete(store.key(deployed.profile_id))
    action = RedisReconcile()
    params = RedisReconcileParams.model_validate({"repair": True, "prune": False})
    first = action.run(context(), params)
    assert set(first.model_dump()) == DETAIL_KEYS
    assert first.missing >= 1 and first.repaired >= 1 and first.failed == 0
    assert first.configs >= 1 and first.write_latency_max_seconds is not None
    second = action.run(context(), params)
    assert second.missing == second.drifted == second.repaired == 0
    assert second.configs == first.configs
    row = last_run(JOB)
    assert row is not None and row.details == second.model_dump()
    assert stored(store, deployed.profile_id).config == built(deployed)

    dry = action.run(context(), RedisReconcileParams(repair=False))
    assert dry.write_latency_mean_seconds is None and dry.repaired == 0
