"""Alembic environment: migrations run against FOUNDRYFLOW_DATABASE_URL (or the URL given
programmatically by ``foundryflow.store.migrate``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from foundryflow.store import (  # noqa: F401  (register their tables on Base.metadata)
    catalog,
    guardrail,
    ops,
    pipeline_deployment,
    usecase,
)
from foundryflow.store.db import database_url
from foundryflow.store.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or database_url()

connectable = create_engine(url)
with connectable.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        version_table="foundryflow_alembic_version",
    )
    with context.begin_transaction():
        context.run_migrations()
connectable.dispose()
