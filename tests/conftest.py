"""Test environment: real PostgreSQL, real Redis, real Airflow.

Services, in order of preference:
1. ``FOUNDRYFLOW_TEST_DATABASE_URL`` / ``FOUNDRYFLOW_TEST_REDIS_URL`` when set;
2. the machine's PostgreSQL on 127.0.0.1:5432 (a database of this session, dropped after)
   and Redis on 127.0.0.1:6379 (database 13), when reachable;
3. otherwise the embedded throwaway servers, so a fresh machine passes too.

Everything is decided here, before Airflow or foundryflow settings are imported, because
both read their configuration once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from uuid import UUID

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_DB = f"foundryflow_test_{os.getpid()}"
"""One database per test session, so concurrent runs on one machine never collide."""
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TEST_REDIS_DB = 13

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="ff-airflow-"))
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "FOUNDRYFLOW_PIPELINES_PATH": json.dumps(
            [str(REPO / "pipelines"), str(REPO / "tests" / "pipelines")]
        ),
        "FOUNDRYFLOW_HOME": str(REPO / ".foundryflow" / "test"),
    }
)
os.environ.pop("FOUNDRYFLOW_DATABASE_URL", None)
os.environ.pop("FOUNDRYFLOW_REDIS_URL", None)

from foundryflow.config import get_settings  # noqa: E402
from foundryflow.embedded import EmbeddedPostgres, EmbeddedRedis, reachable  # noqa: E402

_started: list[EmbeddedPostgres | EmbeddedRedis] = []
_created_databases: list[str] = []


def _database_url() -> str:
    if url := os.environ.get("FOUNDRYFLOW_TEST_DATABASE_URL"):
        return url
    if reachable("127.0.0.1", 5432):
        import psycopg

        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {TEST_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {TEST_DB}")
        _created_databases.append(TEST_DB)
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{TEST_DB}"
    server = EmbeddedPostgres(REPO / ".foundryflow" / "test")
    _started.append(server)
    return server.start()


def _redis_url() -> str:
    if url := os.environ.get("FOUNDRYFLOW_TEST_REDIS_URL"):
        return url
    if reachable("127.0.0.1", 6379):
        return f"redis://127.0.0.1:6379/{TEST_REDIS_DB}"
    server = EmbeddedRedis(REPO / ".foundryflow" / "test")
    _started.append(server)
    return server.start()


def pytest_configure(config: pytest.Config) -> None:
    os.environ["FOUNDRYFLOW_DATABASE_URL"] = _database_url()
    os.environ["FOUNDRYFLOW_REDIS_URL"] = _redis_url()
    get_settings.cache_clear()
    from foundryflow.store import migrate

    migrate.upgrade()


def pytest_unconfigure(config: pytest.Config) -> None:
    from foundryflow.store.db import engine_for

    engine_for.cache_clear()  # drop pooled connections before dropping the database
    if _created_databases:
        import psycopg

        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            for name in _created_databases:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    for server in reversed(_started):
        server.stop()


@pytest.fixture(scope="session")
def database_url() -> str:
    return os.environ["FOUNDRYFLOW_DATABASE_URL"]


@pytest.fixture
def redis_client() -> Iterator[object]:
    """The test Redis database. Never flushed: test sessions running at once on one machine
    share it, so every test works under keys of its own (execution ids, uuid prefixes)."""
    import redis

    client = redis.Redis.from_url(os.environ["FOUNDRYFLOW_REDIS_URL"], decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's own metadata DB (SQLite in a temp AIRFLOW_HOME), migrated once."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def dags(airflow_db: Path) -> dict[str, object]:
    """The DAGs exactly as the DAG file builds them (pipelines/ + tests/pipelines/)."""
    from foundryflow.compile.airflow import build_dags

    return build_dags()  # type: ignore[return-value]


@pytest.fixture
def make_cluster() -> Iterator[Callable[[list[tuple[str, str, int]]], str]]:
    """Local clusters of one test, from (pool, hardware shape, machines); afterwards every
    release, use-case and pipeline deployment on them is removed with them. The hardware
    catalog must be seeded (``seed_catalog`` or ``seed_demo``)."""
    from sqlalchemy import delete, select

    from foundryflow.cluster.backends import backend_for
    from foundryflow.store.catalog import HardwareConfig
    from foundryflow.store.db import session_scope
    from foundryflow.store.guardrail import (
        Cluster,
        ClusterBackendName,
        ClusterNode,
        ClusterRelease,
    )
    from foundryflow.store.pipeline_deployment import PipelineDeployment
    from foundryflow.store.usecase import UseCaseDeployment

    created: list[UUID] = []

    def make(pools: list[tuple[str, str, int]]) -> str:
        with session_scope() as session:
            hardware = dict(session.execute(select(HardwareConfig.name, HardwareConfig)).all())
            cluster = Cluster(
                name=f"test-{uuid.uuid4().hex[:10]}", backend=ClusterBackendName.LOCAL
            )
            session.add(cluster)
            for name, shape, count in pools:
                session.add(
                    ClusterNode(cluster=cluster, name=name, hardware=hardware[shape], count=count)
                )
            session.flush()
            created.append(cluster.id)
            return cluster.name

    yield make
    with session_scope() as session:
        leftovers = session.execute(
            select(ClusterRelease.cluster_id, ClusterRelease.name, ClusterRelease.namespace).where(
                ClusterRelease.cluster_id.in_(created)
            )
        ).all()
    for cluster_id, name, namespace in leftovers:
        backend_for(cluster_id).uninstall(name, namespace)
    with session_scope() as session:
        for model in (UseCaseDeployment, PipelineDeployment):
            session.execute(delete(model).where(model.cluster_id.in_(created)))
        session.execute(delete(ClusterNode).where(ClusterNode.cluster_id.in_(created)))
        session.execute(delete(Cluster).where(Cluster.id.in_(created)))
