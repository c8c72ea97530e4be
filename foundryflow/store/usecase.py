"""Use-case deployments (seed 004): one row per deployed use case, one per component.

The rows are what ``foundryflow usecase status`` and the UI read; the pipeline run that
deploys them is the truth they are derived from (:mod:`foundryflow.usecase.status`), so
they can always be rebuilt from ``step_runs`` and never disagree with the engine for long.
A component row also keeps the Helm release it created, so stopping a deployment knows
exactly what to uninstall even after the run's own records are purged.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from foundryflow.store.guardrail import JSON_LIST, Cluster
from foundryflow.store.models import Base, str_enum


class DeploymentStatus(StrEnum):
    """Where a use-case deployment stands as a whole."""

    PENDING = "PENDING"
    DEPLOYING = "DEPLOYING"
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"

    @property
    def active(self) -> bool:
        """Holds (or may still create) releases on the cluster."""
        return self in (
            DeploymentStatus.PENDING,
            DeploymentStatus.DEPLOYING,
            DeploymentStatus.RUNNING,
        )


class ComponentStatus(StrEnum):
    """Where one component stands; RUNNING..PENDING follow the seed's step status map."""

    PENDING = "PENDING"
    DEPLOYING = "DEPLOYING"
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    """Optional and not selected, or never reached because an earlier step failed."""
    STOPPED = "STOPPED"
    """Its release was uninstalled (stop, or rollback of a failed deployment)."""


class UseCaseDeployment(Base):
    """A use case deployed (or being deployed) from a template onto one cluster.

    ``name`` is unique per cluster among deployments that still hold releases (a partial
    unique index), so a stopped deployment's name can be used again.
    """

    __tablename__ = "usecase_deployments"
    __table_args__ = (
        Index(
            "uq_usecase_deployments_active_name",
            "cluster_id",
            "name",
            unique=True,
            postgresql_where=text("status NOT IN ('STOPPED', 'FAILED')"),
        ),
        Index("ix_usecase_deployments_execution_id", "execution_id", unique=True),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(30), comment="DNS label; prefixes release names.")
    template: Mapped[str] = mapped_column(String(63))
    template_version: Mapped[str] = mapped_column(String(32))
    pipeline: Mapped[str] = mapped_column(String(63), comment="The pipeline that deploys it.")
    cluster_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clusters.id"))
    namespace: Mapped[str] = mapped_column(String(63))
    selections: Mapped[dict[str, Any]]
    parameters: Mapped[dict[str, Any]]
    status: Mapped[DeploymentStatus] = mapped_column(
        str_enum(DeploymentStatus, "usecase_deployment_status"), default=DeploymentStatus.PENDING
    )
    execution_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("executions.id", ondelete="SET NULL"),
        comment="The pipeline run deploying it (seed: pipeline_execution_id).",
    )
    error: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str | None] = mapped_column(Text, comment="Last notification sent.")
    created_by: Mapped[str | None] = mapped_column(String(250))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    cluster: Mapped[Cluster] = relationship()
    components: Mapped[list[UseCaseComponent]] = relationship(
        back_populates="deployment",
        cascade="all, delete-orphan",
        order_by="UseCaseComponent.position",
    )


class UseCaseComponent(Base):
    """One component of a deployment (seed: ComponentDeployment); ``name`` is its step id."""

    __tablename__ = "usecase_components"
    __table_args__ = (UniqueConstraint("deployment_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    deployment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("usecase_deployments.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(63))
    type: Mapped[str] = mapped_column(String(16))
    position: Mapped[int] = mapped_column(comment="Deployment order; stop goes in reverse.")
    selected: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[ComponentStatus] = mapped_column(
        str_enum(ComponentStatus, "usecase_component_status"), default=ComponentStatus.PENDING
    )
    release_name: Mapped[str | None] = mapped_column(String(53))
    namespace: Mapped[str | None] = mapped_column(String(63))
    chart: Mapped[str | None] = mapped_column(String(512))
    job_id: Mapped[str | None] = mapped_column(String(64))
    endpoint_url: Mapped[str | None] = mapped_column(String(512))
    services: Mapped[list[str]] = mapped_column(JSON_LIST, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    deployment: Mapped[UseCaseDeployment] = relationship(back_populates="components")
