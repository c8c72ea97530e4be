"""Backups of seed 002 against the real test database: pg_dump, retention, restore check."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from sqlalchemy.engine import make_url

from foundryflow.actions.base import ActionContext
from foundryflow.actions.ops import backup as backup_action
from foundryflow.actions.ops.backup import BackupParams, BackupPostgres
from foundryflow.ops import backup as backup_mod
from foundryflow.ops.backup import (
    BackupResult,
    RestoreCheck,
    ToolNotFoundError,
    apply_retention,
    backup,
    dump_name,
    find_tool,
    sha256_of,
    sidecars,
    verify_restore,
)
from foundryflow.ops.runs import last_run, record_run
from foundryflow.store.db import session_factory
from foundryflow.store.ops import OpsOutcome


def _ctx() -> ActionContext:
    return ActionContext(
        execution_id=uuid4(),
        pipeline="ops-test",
        step_id="backup",
        attempt=1,
        map_index=None,
        session_factory=session_factory(),
        log=logging.getLogger("foundryflow.test.ops"),
        publish=lambda kind, fields: None,
    )


def _admin(database_url: str) -> psycopg.Connection:
    url = make_url(database_url).set(drivername="postgresql", database="postgres")
    return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


def _scratch_databases(database_url: str) -> list[str]:
    name = make_url(database_url).database
    with _admin(database_url) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{name}_restorecheck_%",)
        ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture(scope="module")
def made(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> BackupResult:
    """One real backup of the test database, with a few rows in it to count."""
    for _ in range(3):
        record_run("test_seed", datetime.now(UTC), OpsOutcome.SUCCEEDED, {"seed": True})
    return backup(database_url, tmp_path_factory.mktemp("backups"), retention_days=7)


@pytest.fixture
def copy_of(made: BackupResult, tmp_path: Path) -> Iterator[Path]:
    """The module's dump and its sidecars copied into this test's folder, to tamper with."""
    target = tmp_path / made.path.name
    for source in (made.path, *sidecars(made.path)):
        shutil.copy(source, tmp_path / source.name)
    yield target


def test_backup_writes_dump_checksum_and_counts(made: BackupResult, database_url: str) -> None:
    db = make_url(database_url).database
    assert made.path.name.startswith(f"{db}-") and made.path.name.endswith(".dump")
    assert made.path.is_file() and made.bytes == made.path.stat().st_size > 0
    assert stat.S_IMODE(made.path.stat().st_mode) == 0o600
    sha_file, counts_file = sidecars(made.path)
    assert sha_file.read_text() == f"{made.sha256}  {made.path.name}\n"
    assert sha256_of(made.path) == made.sha256
    manifest = json.loads(counts_file.read_text())
    assert manifest["tables"] == made.tables
    assert manifest["sha256"] == made.sha256 and manifest["dump"] == made.path.name
    assert made.tables["public.ops_runs"] >= 3
    assert "public.foundryflow_alembic_version" in made.tables
    assert any(name.startswith("public.event_log_y") for name in made.tables)
    assert [p.name for p in made.path.parent.iterdir() if p.name.startswith(".")] == []
    # the dump is a real custom-format archive
    listing = subprocess.run(
        [str(find_tool("pg_restore")), "--list", str(made.path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "TABLE DATA public ops_runs" in listing.stdout
    run = last_run("postgres_backup")
    assert run is not None and run.outcome == OpsOutcome.SUCCEEDED
    assert run.details["path"] == str(made.path) and run.details["sha256"] == made.sha256


def test_password_is_passed_through_the_environment_only(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    password = "s3cret-Pw-" + uuid4().hex[:8]  # the test server trusts: any password works
    url = make_url(database_url).set(password=password).render_as_string(hide_password=False)
    calls: list[tuple[list[str], dict[str, str]]] = []
    real_run = subprocess.run

    def spy(argv: list[str], **kwargs: Any) -> Any:
        calls.append((list(argv), dict(kwargs.get("env") or {})))
        return real_run(argv, **kwargs)

    monkeypatch.setattr(backup_mod.subprocess, "run", spy)
    caplog.set_level(logging.DEBUG)
    result = backup(url, tmp_path, retention_days=7)
    check = verify_restore(result.path, url)
    assert check.ok, check.message
    assert [Path(argv[0]).name for argv, _ in calls] == ["pg_dump", "pg_restore"]
    for argv, env in calls:
        assert not any(password in arg for arg in argv), argv
        assert env["PGPASSWORD"] == password
    assert password not in caplog.text
    for job in ("postgres_backup", "postgres_restore_check"):
        run = last_run(job)
        assert run is not None and password not in json.dumps(run.details)


def test_verify_restore_matches_and_drops_the_scratch_database(
    made: BackupResult, database_url: str
) -> None:
    check = verify_restore(made.path, database_url)
    assert check.ok, check.message
    assert check.sha256_ok and check.scratch_dropped and check.mismatches == {}
    assert check.tables_checked == len(made.tables)
    assert check.scratch_database is not None and "_restorecheck_" in check.scratch_database
    assert _scratch_databases(database_url) == []
    run = last_run("postgres_restore_check")
    assert run is not None and run.outcome == OpsOutcome.SUCCEEDED
    assert run.details["tables_checked"] == len(made.tables) and run.error is None


def test_truncated_dump_fails_the_restore_and_still_drops_the_scratch_database(
    copy_of: Path, database_url: str
) -> None:
    with copy_of.open("r+b") as handle:
        handle.truncate(copy_of.stat().st_size // 2)
    # A matching checksum, as if the dump had been truncated while written: pg_restore decides.
    sidecars(copy_of)[0].write_text(f"{sha256_of(copy_of)}  {copy_of.name}\n")
    check = verify_restore(copy_of, database_url)
    assert not check.ok
    assert check.message.startswith(f"pg_restore of {copy_of.name} failed"), check.message
    assert check.scratch_database is not None and check.scratch_dropped
    assert _scratch_databases(database_url) == []
    run = last_run("postgres_restore_check")
    assert run is not None and run.outcome == OpsOutcome.FAILED
    assert run.error is not None and "pg_restore" in run.error


def test_checksum_mismatch_fails_before_restoring(copy_of: Path, database_url: str) -> None:
    with copy_of.open("r+b") as handle:
        handle.truncate(copy_of.stat().st_size - 10)
    check = verify_restore(copy_of, database_url)
    assert not check.ok and not check.sha256_ok
    assert "checksum mismatch" in check.message and check.scratch_database is None


def test_count_mismatch_names_the_tables(copy_of: Path, database_url: str) -> None:
    counts_file = sidecars(copy_of)[1]
    manifest = json.loads(counts_file.read_text())
    manifest["tables"]["public.ops_runs"] += 1
    counts_file.write_text(json.dumps(manifest))
    check = verify_restore(copy_of, database_url)
    assert not check.ok and list(check.mismatches) == ["public.ops_runs"]
    assert "public.ops_runs" in check.message and check.scratch_dropped
    assert _scratch_databases(database_url) == []


def test_missing_manifest_fails_clearly(copy_of: Path, database_url: str) -> None:
    sidecars(copy_of)[1].unlink()
    check = verify_restore(copy_of, database_url)
    assert not check.ok and "counts manifest" in check.message


def _fake_dump(directory: Path, db: str, taken_at: datetime, mtime: datetime) -> Path:
    path = directory / dump_name(db, taken_at)
    for file in (path, *sidecars(path)):
        file.write_text("fake")
        os.utime(file, (mtime.timestamp(), mtime.timestamp()))
    return path


def test_retention_goes_by_the_name_and_keeps_the_newest(database_url: str, tmp_path: Path) -> None:
    """The timestamp in the name rules, not the mtime: a copy resets mtimes, not names."""
    db = make_url(database_url).database
    assert db is not None
    now = datetime.now(UTC)
    ago = {days: now - timedelta(days=days) for days in (1, 2, 10, 20, 30)}
    recent_old_mtime = _fake_dump(tmp_path, db, ago[1], mtime=now - timedelta(days=60))
    recent = _fake_dump(tmp_path, db, ago[2], mtime=now)
    old_fresh_mtime = _fake_dump(tmp_path, db, ago[10], mtime=now)
    older = [_fake_dump(tmp_path, db, ago[d], mtime=now - timedelta(days=d)) for d in (20, 30)]
    other_db = _fake_dump(tmp_path, f"other{db}", ago[30], mtime=ago[30])
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("keep me")
    os.utime(unrelated, (ago[30].timestamp(), ago[30].timestamp()))
    stale_partial = tmp_path / f".{db}-20000101T000000Z.dump.abcd.partial"
    stale_partial.write_text("crashed")
    os.utime(stale_partial, (ago[2].timestamp(), ago[2].timestamp()))

    result = backup(database_url, tmp_path, retention_days=7, keep_min=3)

    deleted = [old_fresh_mtime, *older]
    assert sorted(result.deleted) == sorted([*map(str, deleted), str(stale_partial)])
    for path in deleted:
        assert not path.exists() and not any(extra.exists() for extra in sidecars(path))
    for path in (result.path, recent_old_mtime, recent, other_db, unrelated):
        assert path.exists()
    assert all(extra.exists() for extra in sidecars(recent_old_mtime))


def test_keep_min_keeps_dumps_past_retention(tmp_path: Path) -> None:
    now = datetime(2030, 1, 31, 12, tzinfo=UTC)
    dumps = {
        d: _fake_dump(tmp_path, "mydb", now - timedelta(days=d), now) for d in (10, 20, 30, 40)
    }
    deleted = apply_retention(tmp_path, "mydb", retention_days=7, keep_min=3, now=now)
    assert deleted == [str(dumps[40])]
    assert all(dumps[d].exists() for d in (10, 20, 30))
    assert apply_retention(tmp_path, "mydb", retention_days=7, keep_min=3, now=now) == []


def test_find_tool() -> None:
    assert find_tool("pg_dump").name == "pg_dump"
    with pytest.raises(ToolNotFoundError, match="no_such_pg_tool not found"):
        find_tool("no_such_pg_tool")


def test_failed_dump_leaves_nothing_and_records_the_failure(
    database_url: str, tmp_path: Path
) -> None:
    url = make_url(database_url).set(database=f"missing_{uuid4().hex[:8]}")
    with pytest.raises(psycopg.OperationalError):
        backup(url.render_as_string(hide_password=False), tmp_path, retention_days=7)
    assert list(tmp_path.iterdir()) == []
    run = last_run("postgres_backup")
    assert run is not None and run.outcome == OpsOutcome.FAILED and run.error


def test_action_backs_up_and_verifies(tmp_path: Path) -> None:
    outputs = BackupPostgres().run(_ctx(), BackupParams(directory=str(tmp_path)))
    assert outputs.restore_ok is True and outputs.tables_checked > 0
    assert Path(outputs.path).parent == tmp_path and outputs.bytes > 0
    assert sha256_of(Path(outputs.path)) == outputs.sha256 and outputs.deleted == []
    with pytest.raises(ValueError, match="extra"):
        BackupParams.model_validate({"directory": str(tmp_path), "retension_days": 3})


def test_action_fails_the_step_when_the_restore_check_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path, url: str) -> RestoreCheck:
        return RestoreCheck(ok=False, dump=Path(path), message="restored copy differs")

    monkeypatch.setattr(backup_action, "verify_restore", broken)
    with pytest.raises(RuntimeError, match="restore check failed: restored copy differs"):
        BackupPostgres().run(_ctx(), BackupParams(directory=str(tmp_path)))
