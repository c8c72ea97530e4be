"""Operations state (seed 002): the durable event history and the record of maintenance runs.

``event_log`` keeps every step and execution event (Redis Streams are capped notifications;
this is the history). It is range-partitioned by month on ``created_at`` so old months are
dropped whole instead of deleted row by row; ``ops.maintain_partitions`` creates the months
ahead and drops the ones past retention. ``ops_runs`` records each maintenance job run
(backup, restore check, Redis reconcile, vacuum, partitions) with its outcome and figures,
which the runbooks and the Prometheus metrics read.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, DateTime, Float, Identity, Index, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from foundryflow.store.models import Base, str_enum

EVENT_LOG = "event_log"


class EventLog(Base):
    """One event; the primary key includes the partition key, as PostgreSQL requires."""

    __tablename__ = EVENT_LOG
    __table_args__ = (
        Index("ix_event_log_execution_id", "execution_id"),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), primary_key=True
    )
    type: Mapped[str] = mapped_column(String(64))
    execution_id: Mapped[UUID | None]
    pipeline: Mapped[str | None] = mapped_column(String(63))
    step_id: Mapped[str | None] = mapped_column(String(63))
    fields: Mapped[dict[str, Any]]


class OpsOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class OpsRun(Base):
    """One run of a maintenance job and what it found or did (``details``)."""

    __tablename__ = "ops_runs"
    __table_args__ = (Index("ix_ops_runs_job_started_at", "job", "started_at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    job: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_seconds: Mapped[float] = mapped_column(Float)
    outcome: Mapped[OpsOutcome] = mapped_column(str_enum(OpsOutcome, "ops_outcome"))
    details: Mapped[dict[str, Any]]
    error: Mapped[str | None] = mapped_column(Text)
