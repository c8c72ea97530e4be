"""Embedded PostgreSQL and Redis: real servers, started and stopped for real."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from foundryflow.config import Settings
from foundryflow.embedded import (
    EmbeddedPostgres,
    EmbeddedRedis,
    ServiceUrls,
    find_postgres_bin,
    find_redis_server,
    platform_services,
    reachable,
)

try:
    find_postgres_bin()
    find_redis_server()
except RuntimeError as missing:  # pragma: no cover - depends on the machine
    pytest.skip(f"no server binaries: {missing}", allow_module_level=True)

DEAD_OWNER = "999999999:0"
"""A process identity that cannot be alive (pid above any pid_max)."""


@pytest.fixture
def root() -> Iterator[Path]:
    """A state folder the unprivileged PostgreSQL account can traverse.

    pytest's ``tmp_path`` lives in a 0700 folder of root's, which ``postgres``/``nobody``
    cannot enter when the tests run as root; this one is 0711 directly under /tmp.
    """
    path = Path(tempfile.mkdtemp(prefix="ff-embedded-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _port(url: str) -> int:
    port = make_url(url).port
    assert port is not None
    return port


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def _orphan(owner_file: Path) -> None:
    """Make the running server look left behind by a process that died."""
    state = json.loads(owner_file.read_text())
    owner_file.write_text(json.dumps({**state, "owner": DEAD_OWNER}))


def test_reachable(root: Path) -> None:
    with EmbeddedRedis(root) as server:
        port = _port(server.url)
        assert reachable("127.0.0.1", port)
    assert not reachable("127.0.0.1", port)


def test_postgres_data_persists_and_stop_leaves_nothing(root: Path) -> None:
    pg = EmbeddedPostgres(root)
    url = pg.start()
    assert url.startswith("postgresql+psycopg://foundryflow@127.0.0.1:")
    assert url.endswith("/foundryflow")
    assert pg.data_root == root / "postgres"
    pid, port = pg.pid, _port(url)
    assert pid is not None

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE kept (name text)"))
        conn.execute(sa.text("INSERT INTO kept VALUES ('survives restart')"))
    engine.dispose()
    pg.stop()

    assert not reachable("127.0.0.1", port)
    assert _gone(pid)
    assert pg.pid is None
    assert not (root / "postgres" / "owner.json").exists()

    with EmbeddedPostgres(root) as again:  # reuses the cluster: no second initdb
        with psycopg.connect(again.url.replace("+psycopg", "")) as conn:
            row = conn.execute("SELECT name FROM kept").fetchone()
        assert row == ("survives restart",)
        port = _port(again.url)
    assert not reachable("127.0.0.1", port)


def test_postgres_borrows_a_live_server_and_replaces_an_orphan(root: Path) -> None:
    first = EmbeddedPostgres(root)
    first.start()
    first_pid = first.pid
    assert first_pid is not None

    borrower = EmbeddedPostgres(root)
    assert borrower.start() == first.url
    assert not borrower.owned
    borrower.stop()  # not its server: must stay up
    assert first.pid == first_pid and reachable("127.0.0.1", _port(first.url))

    _orphan(first.data_root / "owner.json")
    successor = EmbeddedPostgres(root)
    successor.start()
    assert successor.owned
    assert successor.pid not in (None, first_pid)
    assert _gone(first_pid)

    first.stop()  # its server was replaced: must not stop the successor's
    assert reachable("127.0.0.1", _port(successor.url))
    successor.stop()
    assert successor.pid is None


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands PostgreSQL to another account")
def test_postgres_moves_out_of_a_root_only_folder(tmp_path: Path) -> None:
    assert tmp_path.parent.parent.stat().st_mode & 0o001 == 0  # /tmp/pytest-of-root is 0700
    pg = EmbeddedPostgres(tmp_path)
    try:
        assert pg.data_root.parent.name.startswith("foundryflow-")
        assert tmp_path not in pg.data_root.parents
        with pg, psycopg.connect(pg.url.replace("+psycopg", "")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        shutil.rmtree(pg.data_root.parent, ignore_errors=True)


def test_postgres_long_root_gets_a_short_socket_dir(root: Path) -> None:
    deep = root / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    for folder in (root / ("d" * 60), deep):
        folder.chmod(0o711)
    with EmbeddedPostgres(deep) as pg:
        socket_dir = pg._temp_socket_dir
        assert socket_dir is not None and len(str(socket_dir)) < 40
        assert any(socket_dir.glob(".s.PGSQL.*"))
        with psycopg.connect(host=str(socket_dir), port=_port(pg.url), user="foundryflow") as c:
            assert c.execute("SELECT current_database()").fetchone() == ("foundryflow",)
    assert not socket_dir.exists()


def test_redis_set_get_and_stop(root: Path) -> None:
    server = EmbeddedRedis(root)
    url = server.start()
    assert url.startswith("redis://127.0.0.1:") and url.endswith("/0")
    pid, port = server.pid, _port(url)
    assert pid is not None

    client = redis.Redis.from_url(url)
    client.set("pipeline", "guardrail")
    assert client.get("pipeline") == b"guardrail"
    client.close()
    server.stop()

    assert not reachable("127.0.0.1", port)
    assert _gone(pid)
    assert not list((root / "redis").glob("*.rdb"))  # memory only
    with EmbeddedRedis(root) as again:
        assert redis.Redis.from_url(again.url).get("pipeline") is None


def test_redis_replaces_an_orphan(root: Path) -> None:
    first = EmbeddedRedis(root)
    first.start()
    first_pid = first.pid
    assert first_pid is not None
    _orphan(root / "redis" / "owner.json")

    with EmbeddedRedis(root) as successor:
        assert successor.url != first.url
        assert _gone(first_pid)
        assert redis.Redis.from_url(successor.url).ping()
    first.stop()


def test_platform_services_uses_given_urls_and_starts_nothing(tmp_path: Path) -> None:
    given = Settings(
        database_url="postgresql+psycopg://someone@db.example:5432/foundryflow",
        redis_url="redis://cache.example:6379/0",
        home=tmp_path / "home",
    )
    with platform_services(given) as urls:
        assert urls == ServiceUrls(
            database_url="postgresql+psycopg://someone@db.example:5432/foundryflow",
            redis_url="redis://cache.example:6379/0",
            embedded_database=False,
            embedded_redis=False,
        )
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_platform_services_stops_what_it_started_on_error(
    root: Path, error: type[BaseException]
) -> None:
    settings = Settings(database_url=None, redis_url=None, home=root)
    seen: list[ServiceUrls] = []
    with pytest.raises(error), platform_services(settings) as urls:
        seen.append(urls)
        assert urls.embedded_database and urls.embedded_redis
        assert reachable("127.0.0.1", _port(urls.database_url))
        assert redis.Redis.from_url(urls.redis_url).ping()
        raise error()
    assert not reachable("127.0.0.1", _port(seen[0].database_url))
    assert not reachable("127.0.0.1", _port(seen[0].redis_url))
    assert not (root / "postgres" / "owner.json").exists()
    assert not (root / "redis" / "owner.json").exists()
