"""The record of maintenance job runs (``ops_runs``): one row per run, success or failure.

``ops_run(job)`` wraps a block: it times it and writes the row when the block ends, with
outcome ``failed`` and the error when the block raises (the exception still propagates) or
when the block calls ``run.fail(message)`` to report a failed check without raising. The
block adds its figures to ``run.details``, which must be JSON-serializable (anything else
is stored as its ``str``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from foundryflow.store.db import session_scope
from foundryflow.store.ops import OpsOutcome, OpsRun

log = logging.getLogger(__name__)
MAX_ERROR_LENGTH = 10_000


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(details, default=str))
    return result


def record_run(
    job: str,
    started_at: datetime,
    outcome: OpsOutcome | str,
    details: dict[str, Any] | None = None,
    error: str | None = None,
    *,
    finished_at: datetime | None = None,
    duration_seconds: float | None = None,
) -> int:
    """Write one ``ops_runs`` row in its own transaction; returns its id.

    ``finished_at`` defaults to now and ``duration_seconds`` to the wall-clock difference.
    """
    finished = finished_at or datetime.now(UTC)
    duration = (
        duration_seconds
        if duration_seconds is not None
        else max((finished - started_at).total_seconds(), 0.0)
    )
    row = OpsRun(
        job=job,
        started_at=started_at,
        finished_at=finished,
        duration_seconds=duration,
        outcome=OpsOutcome(outcome),
        details=_jsonable(details or {}),
        error=error[:MAX_ERROR_LENGTH] if error else None,
    )
    with session_scope() as session:
        session.add(row)
        session.flush()
        return row.id


@dataclass
class RunHandle:
    """What the block of ``ops_run`` sees: its job, figures to record, a way to fail."""

    job: str
    started_at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def fail(self, message: str) -> None:
        """Record the run as failed with ``message``, without raising."""
        self.error = message

    @property
    def failed(self) -> bool:
        return self.error is not None


@contextmanager
def ops_run(job: str) -> Iterator[RunHandle]:
    """Time the block and record it as one run of ``job`` (see module docstring)."""
    handle = RunHandle(job=job, started_at=datetime.now(UTC))
    clock = time.monotonic()
    try:
        yield handle
    except BaseException as exc:
        duration = time.monotonic() - clock
        error = f"{type(exc).__name__}: {exc}"
        try:
            record_run(
                job,
                handle.started_at,
                OpsOutcome.FAILED,
                handle.details,
                error,
                finished_at=handle.started_at + timedelta(seconds=duration),
                duration_seconds=duration,
            )
        except Exception:  # the block's own error is the one to report
            log.exception("could not record the failed %s run", job)
        raise
    duration = time.monotonic() - clock
    record_run(
        job,
        handle.started_at,
        OpsOutcome.FAILED if handle.failed else OpsOutcome.SUCCEEDED,
        handle.details,
        handle.error,
        finished_at=handle.started_at + timedelta(seconds=duration),
        duration_seconds=duration,
    )


def last_run(job: str, outcome: OpsOutcome | str | None = None) -> OpsRun | None:
    """The most recent run of ``job`` (of that ``outcome`` if given), or None."""
    query = select(OpsRun).where(OpsRun.job == job)
    if outcome is not None:
        query = query.where(OpsRun.outcome == OpsOutcome(outcome))
    query = query.order_by(OpsRun.started_at.desc(), OpsRun.id.desc()).limit(1)
    with session_scope() as session:
        return session.scalars(query).first()
