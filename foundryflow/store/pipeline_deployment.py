"""Pipeline deployments (seed 001): named, versioned pools of pipeline runners on a cluster.

``pipeline_deployments`` is the seed's table (unique name per namespace, status, phase,
soft delete). ``pipeline_deployment_revisions`` is the history the seed asks for ("track
all deployment changes, audit log, rollback"): every change is one row with who made it,
when, what changed and the complete desired state after it, so rolling back to revision N
means deploying that row's ``spec`` again (with ``helm rollback`` where the backend keeps
Helm's own history, ``helm_revision``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from foundryflow.store.guardrail import Cluster
from foundryflow.store.models import Base, str_enum


class DeploymentStatus(StrEnum):
    """The seed's lifecycle: what the platform is doing with the deployment."""

    DEPLOYING = "deploying"
    ACTIVE = "active"
    UPDATING = "updating"
    FAILED = "failed"
    DELETING = "deleting"
    DELETED = "deleted"


class DeploymentPhase(StrEnum):
    """What the runners are doing, from the cluster's instance counts."""

    PENDING = "pending"
    PROGRESSING = "progressing"
    RUNNING = "running"
    STOPPED = "stopped"


class RevisionAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    ROLLBACK = "rollback"
    DELETE = "delete"


class RevisionOutcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PipelineDeployment(Base):
    __tablename__ = "pipeline_deployments"
    __table_args__ = (
        Index(
            "uq_pipeline_deployments_live_name",
            "deployment_name",
            "namespace",
            unique=True,
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index("ix_pipeline_deployments_namespace", "namespace"),
        Index("ix_pipeline_deployments_status", "status"),
        CheckConstraint("replicas >= 0", name="replicas_not_negative"),
        CheckConstraint("revision >= 1", name="revision_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    deployment_name: Mapped[str] = mapped_column(String(53), comment="Also the Helm release.")
    pipeline_name: Mapped[str] = mapped_column(String(63))
    pipeline_version: Mapped[str] = mapped_column(String(32))
    namespace: Mapped[str] = mapped_column(String(63))
    cluster_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clusters.id"))
    target_nodes: Mapped[dict[str, Any]] = mapped_column(comment="Node selector of the runners.")
    parameters: Mapped[dict[str, Any]]
    resources: Mapped[dict[str, Any]]
    replicas: Mapped[int]
    interval_seconds: Mapped[int] = mapped_column(comment="Pause between a runner's runs.")
    status: Mapped[DeploymentStatus] = mapped_column(
        str_enum(DeploymentStatus, "pipeline_deployment_status")
    )
    phase: Mapped[DeploymentPhase | None] = mapped_column(
        str_enum(DeploymentPhase, "pipeline_deployment_phase")
    )
    revision: Mapped[int] = mapped_column(default=1, comment="Current revision.")
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(250))
    updated_by: Mapped[str] = mapped_column(String(250))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    deleted_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), comment="Soft delete; purged 30 days later."
    )

    cluster: Mapped[Cluster] = relationship()
    revisions: Mapped[list[PipelineDeploymentRevision]] = relationship(
        back_populates="deployment",
        cascade="all, delete-orphan",
        order_by="PipelineDeploymentRevision.revision",
    )


class PipelineDeploymentRevision(Base):
    """One change of a deployment: the audit trail and what ``rollback`` returns to."""

    __tablename__ = "pipeline_deployment_revisions"
    __table_args__ = (UniqueConstraint("deployment_id", "revision"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    deployment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pipeline_deployments.id", ondelete="CASCADE")
    )
    revision: Mapped[int]
    action: Mapped[RevisionAction] = mapped_column(str_enum(RevisionAction, "revision_action"))
    actor: Mapped[str] = mapped_column(String(250))
    changes: Mapped[dict[str, Any]] = mapped_column(comment="field -> {from, to}")
    spec: Mapped[dict[str, Any]] = mapped_column(comment="The whole desired state after it.")
    helm_revision: Mapped[int | None] = mapped_column(comment="The release revision it made.")
    rolled_back_to: Mapped[int | None]
    outcome: Mapped[RevisionOutcome] = mapped_column(str_enum(RevisionOutcome, "revision_outcome"))
    error: Mapped[str | None] = mapped_column(Text)
    duration_seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    deployment: Mapped[PipelineDeployment] = relationship(back_populates="revisions")
