"""Execution state shared by both engines: one row per run, one per step (and item).

Outputs live here, keyed by execution and step, rather than in XComs or Argo parameters:
Argo's 1 MB output limit cannot bite, and progress, ETA and rollback read one place.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON().with_variant(JSONB(), "postgresql")}


class ExecutionStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class StepStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    COMPENSATED = "COMPENSATED"
    """Completed, then undone by rollback."""

    @property
    def finished(self) -> bool:
        return self not in (StepStatus.PENDING, StepStatus.RUNNING)


class RollbackStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


def str_enum(enum: type[StrEnum], name: str) -> Enum:
    """A status column: stored by value (``"running"``, as the seeds and UIs spell them) in a
    VARCHAR with a CHECK, so adding a member is a migration of a constraint, not of a type."""
    return Enum(
        enum,
        name=name,
        native_enum=False,
        length=16,
        create_constraint=True,
        validate_strings=True,
        values_callable=lambda members: [member.value for member in members],
    )


class Execution(Base):
    __tablename__ = "executions"
    __table_args__ = (
        UniqueConstraint("engine", "engine_run_id"),
        Index("ix_executions_pipeline_created", "pipeline", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(comment="The spec as it was when the run began.")
    engine: Mapped[str] = mapped_column(String(16))
    engine_run_id: Mapped[str] = mapped_column(String(250))
    params: Mapped[dict[str, Any]]
    status: Mapped[ExecutionStatus] = mapped_column(
        str_enum(ExecutionStatus, "execution_status"), default=ExecutionStatus.RUNNING
    )
    error: Mapped[str | None] = mapped_column(Text)
    outputs: Mapped[dict[str, Any] | None]
    rollback_status: Mapped[RollbackStatus | None] = mapped_column(
        str_enum(RollbackStatus, "rollback_status")
    )
    rollback_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    steps: Mapped[list[StepRun]] = relationship(
        back_populates="execution", cascade="all, delete-orphan", order_by="StepRun.id"
    )


class StepRun(Base):
    """A step of an execution; fan-out steps have one row per item (``map_index`` >= 0)
    beside their parent row (``map_index`` = -1) that holds the rendered item list."""

    __tablename__ = "step_runs"
    __table_args__ = (
        UniqueConstraint("execution_id", "step_id", "map_index"),
        Index("ix_step_runs_history", "pipeline", "step_id", "status", "finished_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("executions.id", ondelete="CASCADE"))
    pipeline: Mapped[str] = mapped_column(String(63), comment="Denormalised for ETA history.")
    step_id: Mapped[str] = mapped_column(String(63))
    map_index: Mapped[int] = mapped_column(Integer, default=-1)
    status: Mapped[StepStatus] = mapped_column(
        str_enum(StepStatus, "step_status"), default=StepStatus.PENDING
    )
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any] | None] = mapped_column(comment="Params after rendering.")
    outputs: Mapped[dict[str, Any] | None]
    items: Mapped[list[Any] | None] = mapped_column(
        JSON().with_variant(JSONB(), "postgresql"), comment="Fan-out items (parent row only)."
    )
    error: Mapped[str | None] = mapped_column(Text)
    compensation_error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    execution: Mapped[Execution] = relationship(back_populates="steps")

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
