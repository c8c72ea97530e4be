"""Alembic migrations: they round-trip and match the ORM models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from foundryflow.store import migrate
from foundryflow.store.db import normalize_url
from foundryflow.store.models import Base


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
        assert not {"executions", "step_runs"} & set(inspect(engine).get_table_names())
    finally:
        migrate.upgrade()
    assert migrate.current() == "0001"
    assert {"executions", "step_runs"} <= set(inspect(engine).get_table_names())
    engine.dispose()
