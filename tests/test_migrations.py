"""Alembic migrations: they round-trip, step down one revision at a time, and match the ORM
models exactly."""

from __future__ import annotations

import re
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, inspect

from foundryflow.store import (  # noqa: F401  (register their tables on Base.metadata)
    catalog,
    guardrail,
    migrate,
    ops,
    pipeline_deployment,
    usecase,
)
from foundryflow.store.db import normalize_url
from foundryflow.store.models import Base

TABLES_BY_REVISION = {
    "0001": {"executions", "step_runs"},
    "0002": {
        "hardware_configs",
        "inference_frameworks",
        "use_case_taxonomy",
        "models",
        "model_versions",
        "benchmark_configs",
        "benchmark_results",
    },
    "0003": {
        "guardrail_providers",
        "guardrail_probes",
        "guardrail_rules",
        "clusters",
        "cluster_nodes",
        "cluster_releases",
        "cluster_allocations",
        "endpoints",
        "guardrail_profiles",
        "guardrail_profile_probes",
        "guardrail_profile_rules",
        "guardrail_deployments",
        "guardrail_deployment_targets",
        "guardrail_rule_deployments",
        "guardrail_workflows",
    },
    "0004": {"usecase_deployments", "usecase_components"},
    "0005": {"pipeline_deployments", "pipeline_deployment_revisions"},
    "0006": {"event_log", "ops_runs"},
}
"""What each revision creates; a new revision must say here what it adds."""
ALL_TABLES = set().union(*TABLES_BY_REVISION.values())


def head() -> str:
    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    assert head is not None
    return head


PARTITION = re.compile(r"event_log_y\d{4}m\d{2}")
"""Monthly partitions of event_log: made by 0006 and ops.maintain_partitions, not the ORM."""


def tables(engine: Engine) -> set[str]:
    names = set(inspect(engine).get_table_names()) - {migrate.VERSION_TABLE}
    return {name for name in names if not PARTITION.fullmatch(name)}


def _not_a_partition(obj: Any, name: str | None, type_: str, *_: Any) -> bool:
    return not (type_ == "table" and name is not None and PARTITION.fullmatch(name))


def test_every_revision_declares_its_tables() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert {revision.revision for revision in script.walk_revisions()} == set(TABLES_BY_REVISION)
    assert head() == max(TABLES_BY_REVISION)


def test_models_match_migrations(database_url: str) -> None:
    engine = create_engine(normalize_url(database_url))
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "version_table": migrate.VERSION_TABLE,
                "compare_type": True,
                "include_object": _not_a_partition,
            },
        )
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()
    assert set(Base.metadata.tables) == ALL_TABLES


def test_downgrade_to_base_and_back(database_url: str) -> None:
    engine = create_engine(normalize_url(database_url))
    try:
        migrate.downgrade("base")
        assert migrate.current() is None
        assert tables(engine) == set()
    finally:
        migrate.upgrade()
    assert migrate.current() == head()
    assert tables(engine) >= ALL_TABLES
    engine.dispose()


def test_each_downgrade_step_removes_exactly_its_tables(database_url: str) -> None:
    engine = create_engine(normalize_url(database_url))
    try:
        for revision in sorted(TABLES_BY_REVISION, reverse=True):
            assert migrate.current() == revision
            before = tables(engine)
            migrate.downgrade("-1")
            assert before - tables(engine) == TABLES_BY_REVISION[revision], revision
            assert not TABLES_BY_REVISION[revision] & tables(engine)
        assert migrate.current() is None
    finally:
        migrate.upgrade()
        engine.dispose()
    assert migrate.current() == head()
