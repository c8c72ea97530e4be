"""Database maintenance (seed 002): monthly partitions of ``event_log``, VACUUM (ANALYZE).

Partitions are named ``event_log_yYYYYmMM`` and hold ``[first of the month, first of the
next)`` in UTC. ``maintain_partitions`` creates the current month and ``months_ahead`` more,
and drops the months that ended before the first of the month ``retention_months`` before
the current one: it keeps the current month and ``retention_months`` full months before it.
Only partitions of ``event_log`` whose name parses strictly *and* whose bounds are exactly
that month's are ever dropped; anything else attached to the table is reported as skipped.

Partition DDL takes a transaction-scoped advisory lock, so the job and an event listener
creating a missing month on the fly never race, and a ``lock_timeout`` so it never queues
behind a long transaction for long (rerun it: it is idempotent).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, text

from foundryflow.ops.runs import ops_run
from foundryflow.store.db import get_engine
from foundryflow.store.ops import EVENT_LOG

log = logging.getLogger(__name__)

PARTITIONS_JOB = "event_log_partitions"
VACUUM_JOB = "vacuum_analyze"
PARTITION_NAME = re.compile(rf"{EVENT_LOG}_y(\d{{4}})m(\d{{2}})")
PARTITION_LOCK = 0x466F_756E_6472_0002
"""Advisory lock key serializing the partition DDL of event_log (any process)."""
LOCK_TIMEOUT = "10s"
HOT_TABLES = (
    "executions",
    "step_runs",
    "benchmark_configs",
    "benchmark_results",
    "cluster_releases",
    "event_log",
    "ops_runs",
    "pipeline_deployments",
    "usecase_deployments",
)
"""Tables that churn: vacuumed by default (those that exist)."""


# --- months --------------------------------------------------------------------------------


def month_start(when: datetime) -> datetime:
    """First instant (UTC) of the month holding ``when``; a naive ``when`` is taken as UTC."""
    utc = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return datetime(utc.year, utc.month, 1, tzinfo=UTC)


def add_months(start: datetime, months: int) -> datetime:
    index = start.year * 12 + (start.month - 1) + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(when: datetime) -> str:
    """``event_log_yYYYYmMM`` of the month holding ``when``."""
    start = month_start(when)
    return f"{EVENT_LOG}_y{start.year:04d}m{start.month:02d}"


def parse_partition_name(name: str) -> datetime | None:
    """The month a partition name stands for, or None if it is not exactly such a name."""
    match = PARTITION_NAME.fullmatch(name)
    if match is None:
        return None
    year, month = int(match.group(1)), int(match.group(2))
    if not (1 <= month <= 12 and year >= 1):
        return None
    return datetime(year, month, 1, tzinfo=UTC)


def _literal(moment: datetime) -> str:
    return f"'{moment:%Y-%m-%d} 00:00:00+00'"


def partition_bound(start: datetime) -> str:
    """The bound of the month starting at ``start`` as ``pg_get_expr`` shows it in UTC."""
    return f"FOR VALUES FROM ({_literal(start)}) TO ({_literal(add_months(start, 1))})"


def _lock(connection: Connection) -> None:
    connection.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PARTITION_LOCK})


def _quote(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote_identifier(name)


def ensure_month_partition(connection: Connection, when: datetime) -> bool:
    """Create the partition of the month holding ``when`` if it is missing, in the caller's
    transaction (it holds the partition lock until that commits). True if it was created."""
    _lock(connection)
    start = month_start(when)
    name = partition_name(start)
    exists = connection.execute(
        text(
            "SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(:parent AS regclass) AND c.relname = :name"
        ),
        {"parent": EVENT_LOG, "name": name},
    ).first()
    if exists is not None:
        return False
    # Both the name and the bounds are made from integers above: nothing user-given.
    connection.execute(
        text(
            f"CREATE TABLE {_quote(connection, name)} "
            f"PARTITION OF {_quote(connection, EVENT_LOG)} {partition_bound(start)}"
        )
    )
    log.info("created partition %s", name)
    return True


def _partitions(connection: Connection) -> list[tuple[str, str]]:
    """(name, bound as shown in UTC) of every partition of event_log."""
    connection.execute(text("SET LOCAL TimeZone = 'UTC'"))
    rows = connection.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) "
            "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(:parent AS regclass) ORDER BY c.relname"
        ),
        {"parent": EVENT_LOG},
    ).all()
    return [(str(name), str(bound)) for name, bound in rows]


@dataclass(frozen=True)
class PartitionReport:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    """Partitions present once the job is done."""
    skipped: list[str] = field(default_factory=list)
    """Partitions left alone because their name or bounds are not a month of ours."""


def maintain_partitions(
    months_ahead: int = 3, retention_months: int = 6, now: datetime | None = None
) -> PartitionReport:
    """Create the missing months from the current one to ``months_ahead`` ahead and drop
    those past retention (see module docstring). Idempotent; records an ops run."""
    if months_ahead < 0 or retention_months < 0:
        raise ValueError("months_ahead and retention_months must be >= 0")
    current = month_start(now or datetime.now(UTC))
    cutoff = add_months(current, -retention_months)
    engine = get_engine()
    with ops_run(PARTITIONS_JOB) as run:
        run.details.update(
            now=current.isoformat(),
            months_ahead=months_ahead,
            retention_months=retention_months,
            drop_before=cutoff.isoformat(),
        )
        created: list[str] = []
        for add in range(months_ahead + 1):
            with engine.begin() as connection:
                month = add_months(current, add)
                if ensure_month_partition(connection, month):
                    created.append(partition_name(month))
        run.details["created"] = created
        dropped: list[str] = []
        skipped: list[str] = []
        with engine.begin() as connection:
            partitions = _partitions(connection)
        for name, bound in partitions:
            start = parse_partition_name(name)
            if start is None or bound != partition_bound(start):
                skipped.append(name)
                continue
            if add_months(start, 1) > cutoff:
                continue
            with engine.begin() as connection:
                _lock(connection)
                # Checked again under the lock: only this very partition, as it is now.
                if (name, bound) in _partitions(connection):
                    connection.execute(text(f"DROP TABLE {_quote(connection, name)}"))
                    dropped.append(name)
                    log.info("dropped partition %s (ended before %s)", name, cutoff.date())
        with engine.begin() as connection:
            existing = [name for name, _ in _partitions(connection)]
        run.details.update(dropped=dropped, skipped=skipped, existing=len(existing))
    return PartitionReport(created=created, dropped=dropped, existing=existing, skipped=skipped)


# --- vacuum --------------------------------------------------------------------------------


def _dead_tuples(connection: Connection, schema: str, table: str) -> int | None:
    """Dead tuples of a table, summed over its partitions when it is partitioned."""
    qualified = f"{_quote(connection, schema)}.{_quote(connection, table)}"
    value = connection.execute(
        text(
            "SELECT sum(s.n_dead_tup) FROM pg_stat_user_tables s "
            "WHERE s.relid = CAST(:table AS regclass) OR s.relid IN "
            "(SELECT relid FROM pg_partition_tree(CAST(:table AS regclass)))"
        ),
        {"table": qualified},
    ).scalar()
    return None if value is None else int(value)


def vacuum_analyze(tables: list[str] | None = None) -> dict[str, float]:
    """``VACUUM (ANALYZE)`` each table (default: ``HOT_TABLES`` that exist) of the current
    schema; returns the seconds each took. Every name must be a table of that schema, checked
    against the catalog before anything runs (``ValueError`` naming the unknown ones)."""
    engine = get_engine()
    with (
        ops_run(VACUUM_JOB) as run,
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
    ):
        schema = str(connection.execute(text("SELECT current_schema()")).scalar_one())
        known = set(
            connection.execute(
                text(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace "
                    "WHERE n.nspname = :schema AND c.relkind IN ('r', 'p', 'm')"
                ),
                {"schema": schema},
            ).scalars()
        )
        if tables is None:
            todo = [name for name in HOT_TABLES if name in known]
        else:
            unknown = [name for name in tables if name not in known]
            if unknown:
                raise ValueError(
                    f"not table(s) of schema {schema}: {', '.join(map(repr, unknown))}"
                )
            todo = list(dict.fromkeys(tables))
        run.details["schema"] = schema
        figures: dict[str, dict[str, float | int | None]] = {}
        run.details["tables"] = figures
        seconds: dict[str, float] = {}
        for name in todo:
            before = _dead_tuples(connection, schema, name)
            clock = time.monotonic()
            connection.execute(
                text(f"VACUUM (ANALYZE) {_quote(connection, schema)}.{_quote(connection, name)}")
            )
            seconds[name] = time.monotonic() - clock
            figures[name] = {
                "seconds": round(seconds[name], 3),
                "n_dead_tup_before": before,
                "n_dead_tup_after": _dead_tuples(connection, schema, name),
            }
            log.info("vacuumed %s.%s in %.2fs", schema, name, seconds[name])
        run.details["total_seconds"] = round(sum(seconds.values()), 3)
    return seconds
