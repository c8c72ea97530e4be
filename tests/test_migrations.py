"""Alembic migrations: they round-trip and match the ORM models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from foundryflow.store import (
    catalog,  # noqa: F401  (registers the catalog tables)
    migrate,
)
from foundryflow.store.db import normalize_url
from foundryflow.store.models import Base

EXECUTION_TABLES = {"executions", "step_runs"}
CATALOG_TABLES = {
    "hardware_configs",
    "inference_frameworks",
    "use_case_taxonomy",
    "models",
    "model_versions",
    "benchmark_configs",
    "benchmark_results",
}


def test_models_match_migrations(database_url: str) -> None:
    engine = create_engine(normalize_url(database_url))
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": migrate.VERSION_TABLE, "compare_type": True}
        )
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_downgrade_to_base_and_back(database_url: str) -> None:
    engine = create_engine(normalize_url(database_url))
    try:
        migrate.downgrade("base")
        assert migrate.current() is None
        assert set(inspect(engine).get_table_names()) == {migrate.VERSION_TABLE}
    finally:
        migrate.upgrade()
    assert migrate.current() == "0002"
    assert set(inspect(engine).get_table_names()) >= EXECUTION_TABLES | CATALOG_TABLES
    engine.dispose()


def test_one_step_downgrade_removes_only_the_matrix(database_url: str) -> None:
    engine = create_engine(normalize_url(database_url))
    try:
        migrate.downgrade("-1")
        assert migrate.current() == "0001"
        tables = set(inspect(engine).get_table_names())
        assert tables >= EXECUTION_TABLES and not CATALOG_TABLES & tables
    finally:
        migrate.upgrade()
        engine.dispose()
