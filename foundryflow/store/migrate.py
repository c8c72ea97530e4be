"""Alembic, driven from Python so the CLI, tests and the Helm hook share one code path."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from foundryflow.config import REPO_ROOT
from foundryflow.store.db import database_url, normalize_url

MIGRATIONS = REPO_ROOT / "sql"
VERSION_TABLE = "foundryflow_alembic_version"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option(
        "sqlalchemy.url", normalize_url(url or database_url()).replace("%", "%%")
    )
    return config


def upgrade(revision: str = "head", url: str | None = None) -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(revision: str, url: str | None = None) -> None:
    command.downgrade(alembic_config(url), revision)


def current(url: str | None = None) -> str | None:
    engine = create_engine(normalize_url(url or database_url()))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            return context.get_current_revision()
    finally:
        engine.dispose()
