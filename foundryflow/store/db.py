"""Engine and session factory, one per database URL per process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from foundryflow.config import get_settings


class DatabaseNotConfiguredError(RuntimeError):
    pass


def normalize_url(url: str) -> str:
    """``postgresql://`` URLs (as psql and Airflow connections write them) use psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def database_url() -> str:
    url = get_settings().database_url
    if not url:
        raise DatabaseNotConfiguredError(
            "FOUNDRYFLOW_DATABASE_URL is not set: export it (postgresql://user@host:5432/db) "
            "or use `foundryflow up`, which starts an embedded PostgreSQL"
        )
    return normalize_url(url)


@lru_cache(maxsize=4)
def engine_for(url: str) -> Engine:
    # Small pools: Airflow tasks and Argo pods each run one step at a time.
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def get_engine() -> Engine:
    return engine_for(database_url())


def session_factory() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
