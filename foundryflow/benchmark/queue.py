"""The benchmark matrix as a work queue in PostgreSQL (seed 003, phase 2.1).

Workers on many machines claim pending configs with ``FOR UPDATE SKIP LOCKED``: each row
goes to exactly one worker, and nobody waits on a row someone else is claiming. A claim is
a lease: the worker heartbeats the rows it holds, and :func:`reset_stale` returns rows whose
heartbeat stopped (a spot instance reclaimed, a pod OOM-killed) to the queue.

Completing and failing are *fenced*: they only touch a row that is still ``running`` and
still claimed by the caller. A worker that lost its lease and whose row was handed to
another worker therefore cannot record a second result; the partial unique index on
``benchmark_results.config_id`` backs this up.

Every operation is one SQL statement (:mod:`foundryflow.benchmark.queries`), so ``bind``
decides only where it runs: an Engine (default :func:`~foundryflow.store.db.get_engine`)
runs it autocommitted on a pooled connection, one round trip; a SQLAlchemy Connection runs
it in whatever transaction the caller holds; a psycopg connection in autocommit mode runs
it with no SQLAlchemy in between — what a worker's drain loop uses, where that layer
measured a few percent of the throughput.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine

from foundryflow.benchmark import queries
from foundryflow.benchmark.matrix import ModelVersionNotFoundError
from foundryflow.store.catalog import ConfigStatus
from foundryflow.store.db import get_engine

Bind = Engine | Connection | psycopg.Connection[Any]
MAX_WORKER_ID = 200  # benchmark_configs.claimed_by is varchar(200)
_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


@dataclass(frozen=True)
class ClaimedConfig:
    """One claimed cell of the matrix, with the names a runner needs to run it."""

    id: int
    model_version_id: int
    hardware_config_id: int
    framework_id: int
    workload_type: str
    batch_size: int
    sequence_length: int
    priority: int
    attempts: int
    claimed_by: str
    claimed_at: datetime
    hardware: str
    framework: str
    model_uri: str
    dtype: str


@dataclass(frozen=True)
class Outcome:
    """A finished run, as :func:`complete_many` records it.

    Its JSON is encoded on creation, so metrics JSON cannot hold (NaN, objects) raise
    ValueError or TypeError here: in a worker, right after the run, failing that run alone.
    """

    config_id: int
    metrics: dict[str, Any]
    started_at: datetime
    finished_at: datetime
    document: str = field(init=False, repr=False, compare=False)
    """One element of the JSON array the recording statements read (queries._RECORDED)."""

    def __post_init__(self) -> None:
        document = (
            f'{{"config_id":{int(self.config_id)},"metrics":{_JSON.encode(self.metrics)},'
            f'"started_at":"{self.started_at.isoformat()}",'
            f'"finished_at":"{self.finished_at.isoformat()}"}}'
        )
        object.__setattr__(self, "document", document)


@dataclass(frozen=True)
class MatrixProgress:
    """Where one model version's matrix stands (``foundryflow matrix progress``)."""

    model_version_id: int
    pending: int
    running: int
    completed: int
    failed: int
    total: int
    percent: float
    """Share of configs in a final state (completed or failed for good)."""
    rate_per_minute: float
    """Configs finished per minute over the last ``window_minutes``."""
    eta_seconds: float | None
    """Time to finish the pending and running configs at that rate; None without a rate."""
    window_minutes: float


def _execute(bind: Bind | None, sql: str, params: dict[str, Any]) -> tuple[list[Any], int]:
    """Rows and rowcount of one statement."""
    if isinstance(bind, psycopg.Connection):
        # binary results: no timestamp formatting on the server nor parsing here
        cursor = bind.execute(sql, params, binary=True)
        return (cursor.fetchall() if cursor.description else []), cursor.rowcount
    if isinstance(bind, Connection):
        result = bind.exec_driver_sql(sql, params)
        return (list(result) if result.returns_rows else []), result.rowcount
    with (bind or get_engine()).connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        result = conn.exec_driver_sql(sql, params)
        return (list(result) if result.returns_rows else []), result.rowcount


@dataclass
class CatalogNames:
    """Names of catalog rows by id, as claimed configs need them; fetched once per id for
    as long as this object lives.

    A config's hardware, framework and model version do not change while its matrix runs,
    so one :func:`~foundryflow.benchmark.worker.drain` keeps one of these and never asks for
    the same name twice. It must not outlive that: ids are only unique within one life of
    the database, and a catalog rebuilt under a long-lived process (``db downgrade base``
    and upgrade, a restore of another backup) gives the same ids to other rows.
    """

    hardware: dict[int, str] = field(default_factory=dict)
    frameworks: dict[int, str] = field(default_factory=dict)
    versions: dict[int, tuple[str, str]] = field(default_factory=dict)

    def configs(self, bind: Bind | None, rows: Sequence[Any]) -> list[ClaimedConfig]:
        """CLAIM_BATCH rows as ClaimedConfig, fetching the names not seen yet."""
        missing = {
            "hardware": list({r[2] for r in rows} - self.hardware.keys()),
            "frameworks": list({r[3] for r in rows} - self.frameworks.keys()),
            "versions": list({r[1] for r in rows} - self.versions.keys()),
        }
        if any(missing.values()):
            for kind, row_id, name, dtype in _execute(bind, queries.CATALOG_NAMES, missing)[0]:
                if kind == "hardware":
                    self.hardware[row_id] = name
                elif kind == "framework":
                    self.frameworks[row_id] = name
                else:
                    self.versions[row_id] = (name, dtype)
        return [
            ClaimedConfig(*(*r, self.hardware[r[2]], self.frameworks[r[3]], *self.versions[r[1]]))
            for r in rows
        ]


def _check_worker(worker_id: str) -> None:
    if not worker_id or len(worker_id) > MAX_WORKER_ID:
        raise ValueError(f"worker_id must be 1 to {MAX_WORKER_ID} characters, got {worker_id!r}")


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")


def claim_batch(
    worker_id: str,
    n: int,
    model_version_id: int | None = None,
    bind: Bind | None = None,
    names: CatalogNames | None = None,
) -> list[ClaimedConfig]:
    """Claim up to ``n`` pending configs, lowest priority then lowest id first.

    One statement (``queries.CLAIM_BATCH``): its inner SELECT walks the partial index
    ``ix_benchmark_configs_claim`` in order (``EXPLAIN`` shows an Index Scan on it under a
    LockRows node; ``tests/test_queue.py`` checks that), locks what nobody else has locked,
    and the UPDATE marks those rows running, claimed by ``worker_id``, lease started,
    ``attempts + 1``. Concurrent claimers skip each other's rows instead of waiting.

    With ``model_version_id`` the scan filters that index by version, which is cheap while
    the version's configs are a fair share of the pending ones. ``names`` holds the catalog
    names the caller has already fetched (a drain passes its own); without it, the few the
    claimed rows need are fetched for this call.
    """
    _check_worker(worker_id)
    _check_n(n)
    sql = queries.CLAIM_BATCH if model_version_id is None else queries.CLAIM_BATCH_FOR_VERSION
    params = {"worker_id": worker_id, "n": n, "model_version_id": model_version_id}
    return (names or CatalogNames()).configs(bind, _execute(bind, sql, params)[0])


def complete(
    config_id: int,
    worker_id: str,
    runner: str,
    metrics: dict[str, Any],
    started_at: datetime,
    finished_at: datetime,
    bind: Bind | None = None,
) -> bool:
    """Mark the config completed and record its one result row, atomically.

    False when fenced out: the config is no longer running under ``worker_id`` (its lease
    was reset, and maybe another worker holds or finished it); nothing is written then.
    """
    rows, _ = _execute(
        bind,
        queries.COMPLETE,
        {
            "config_id": config_id,
            "worker_id": worker_id,
            "runner": runner,
            "metrics": _JSON.encode(metrics),
            "started_at": started_at,
            "finished_at": finished_at,
        },
    )
    return bool(rows)


def complete_many(
    worker_id: str, runner: str, outcomes: Sequence[Outcome], bind: Bind | None = None
) -> set[int]:
    """:func:`complete` for a batch in one statement; returns the ids actually completed.

    Ids missing from the answer were fenced out. Each id may appear once: two outcomes for
    one config would be two results.
    """
    if not outcomes:
        return set()
    rows, _ = _execute(bind, queries.COMPLETE_MANY, _recording(worker_id, runner, outcomes))
    return {row[0] for row in rows}


def complete_and_claim(
    worker_id: str,
    runner: str,
    outcomes: Sequence[Outcome],
    n: int,
    model_version_id: int | None = None,
    bind: Bind | None = None,
    names: CatalogNames | None = None,
) -> tuple[set[int], list[ClaimedConfig]]:
    """:func:`complete_many` of a finished batch and :func:`claim_batch` of the next one, in
    one statement: a worker's steady state costs one round trip and one commit per batch.

    Returns the ids completed (as complete_many) and the configs claimed (as claim_batch).
    """
    _check_worker(worker_id)
    _check_n(n)
    params = _recording(worker_id, runner, outcomes)
    params |= {"n": n, "model_version_id": model_version_id}
    sql = (
        queries.COMPLETE_AND_CLAIM
        if model_version_id is None
        else queries.COMPLETE_AND_CLAIM_FOR_VERSION
    )
    rows, _ = _execute(bind, sql, params)
    claimed = [row[1:] for row in rows if row[1] is not None]
    completed = {o.config_id for o in outcomes}.difference(rows[0][0] or ())
    return completed, (names or CatalogNames()).configs(bind, claimed)


def _recording(worker_id: str, runner: str, outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Parameters of the statements that record outcomes (queries._RECORDED)."""
    ids = [o.config_id for o in outcomes]
    if len(set(ids)) != len(ids):
        raise ValueError("an outcome is given twice for the same config")
    document = "[" + ",".join(o.document for o in outcomes) + "]"
    return {"worker_id": worker_id, "runner": runner, "outcomes": document}


def fail(
    config_id: int,
    worker_id: str,
    error: str,
    max_attempts: int = 3,
    bind: Bind | None = None,
) -> ConfigStatus | None:
    """Record a failed run: back to ``pending`` for a retry while ``attempts < max_attempts``,
    else ``failed`` for good; ``last_error`` keeps the error either way.

    Returns the new status, or None when fenced out (as in :func:`complete`). Attempts
    count claims, so a run lost to a killed worker counts too: a config that keeps killing
    its workers still ends.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    rows, _ = _execute(
        bind,
        queries.FAIL,
        {
            "config_id": config_id,
            "worker_id": worker_id,
            "error": error,
            "max_attempts": max_attempts,
        },
    )
    return ConfigStatus(rows[0][0]) if rows else None


def release(worker_id: str, config_ids: Sequence[int], bind: Bind | None = None) -> int:
    """Give back claimed configs a stopping worker never started (not counted as attempts)."""
    if not config_ids:
        return 0
    params = {"worker_id": worker_id, "config_ids": list(config_ids)}
    return _execute(bind, queries.RELEASE, params)[1]


def heartbeat(worker_id: str, config_ids: Sequence[int], bind: Bind | None = None) -> int:
    """Extend the lease of the configs still claimed by ``worker_id``; returns how many."""
    if not config_ids:
        return 0
    params = {"worker_id": worker_id, "config_ids": list(config_ids)}
    return _execute(bind, queries.HEARTBEAT, params)[1]


def reset_stale(
    older_than: timedelta = timedelta(hours=2), max_attempts: int = 3, bind: Bind | None = None
) -> int:
    """Return running configs whose last heartbeat is older than ``older_than`` to pending;
    those already claimed ``max_attempts`` times fail for good (see :func:`fail`). Returns how
    many rows were touched.

    Reads the partial index ``ix_benchmark_configs_lease`` (running rows only). The 2 h
    default is the seed's; with heartbeats every 30 s, minutes would be safe as well.
    """
    if older_than < timedelta(0):
        raise ValueError(f"older_than must not be negative, got {older_than}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    params = {"older_than": older_than, "max_attempts": max_attempts}
    return _execute(bind, queries.RESET_STALE, params)[1]


def progress(
    model_version_id: int, window: timedelta = timedelta(minutes=10), bind: Bind | None = None
) -> MatrixProgress:
    """Counts by status, percent done, recent rate and ETA of one model version's matrix."""
    if window <= timedelta(0):
        raise ValueError(f"window must be positive, got {window}")
    params = {"model_version_id": model_version_id, "window": window}
    [(pending, running, completed, failed, recent, span)], _ = _execute(
        bind, queries.PROGRESS, params
    )
    total = pending + running + completed + failed
    exists = {"model_version_id": model_version_id}
    if total == 0 and not _execute(bind, queries.MODEL_VERSION_EXISTS, exists)[0]:
        raise ModelVersionNotFoundError(f"model version {model_version_id} does not exist")
    # at least a second, so a burst finished within one instant does not read as infinite
    rate = recent / max(float(span or 0), 1.0) * 60 if recent else 0.0
    remaining = pending + running
    return MatrixProgress(
        model_version_id=model_version_id,
        pending=pending,
        running=running,
        completed=completed,
        failed=failed,
        total=total,
        percent=100.0 * (completed + failed) / total if total else 0.0,
        rate_per_minute=rate,
        eta_seconds=(remaining / rate * 60 if rate else None) if remaining else 0.0,
        window_minutes=window.total_seconds() / 60,
    )
