"""The durable event history: every event, as the ``foundryflow.event_listeners`` entry point.

``record_event`` runs after the transaction that raised the event has committed (see
``foundryflow.runtime.events``) and costs one INSERT in its own short transaction. When the
month's partition of ``event_log`` is missing (the maintenance job has not run, a month
boundary was crossed), it creates that month on the spot and inserts again, once, so no
event is lost at a month boundary.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from foundryflow.config import get_settings
from foundryflow.ops.maintenance import ensure_month_partition
from foundryflow.store.db import get_engine
from foundryflow.store.ops import EventLog

log = logging.getLogger(__name__)
NO_PARTITION_SQLSTATE = "23514"  # check_violation, as "no partition of relation ... found"


def _short(value: Any, length: int) -> str | None:
    if value is None or value == "":
        return None
    return str(value)[:length]


def _execution_id(value: Any) -> UUID | None:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        return None


def event_row(
    event_type: str, fields: dict[str, Any], created_at: datetime | None = None
) -> dict[str, Any]:
    """The ``event_log`` values of one event (``created_at`` left to the server if None)."""
    row: dict[str, Any] = {
        "type": event_type[:64],
        "execution_id": _execution_id(fields.get("execution_id")),
        "pipeline": _short(fields.get("pipeline"), 63),
        "step_id": _short(fields.get("step_id"), 63),
        "fields": json.loads(json.dumps(fields, default=str)),
    }
    if created_at is not None:
        row["created_at"] = created_at
    return row


def _missing_partition(exc: IntegrityError) -> bool:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) == NO_PARTITION_SQLSTATE and "no partition" in str(orig)


def record_event(
    event_type: str, fields: dict[str, Any], *, created_at: datetime | None = None
) -> None:
    """Store one event in ``event_log``; ``created_at`` defaults to the server's ``now()``."""
    if get_settings().database_url is None:
        log.debug("FOUNDRYFLOW_DATABASE_URL not set; event %s not recorded", event_type)
        return
    engine = get_engine()
    row = event_row(event_type, fields, created_at)
    try:
        with engine.begin() as connection:
            connection.execute(insert(EventLog).values(**row))
        return
    except IntegrityError as exc:
        if not _missing_partition(exc):
            raise
    # The month of the row is fixed now (the server's clock, as the default would be), so the
    # partition created and the row inserted agree even across midnight of the last day.
    with engine.begin() as connection:
        when = created_at or connection.execute(select(func.now())).scalar_one()
        ensure_month_partition(connection, when)
    log.warning("event_log had no partition for %s: created it", when.isoformat())
    with engine.begin() as connection:
        connection.execute(insert(EventLog).values(**{**row, "created_at": when}))
