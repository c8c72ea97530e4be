"""Guardrail state (seed 000): providers, probes and rules; clusters, releases, allocations
and endpoints; profiles, deployments and the workflow record that the UI reads.

Design choices that the rest of the guardrail code relies on:

- The model registry is the catalog's ``models`` table, not a second one: it already holds
  the architecture the simulator needs and is unique by ``uri``. A rule that needs a model
  names it by ``model_uri`` and links it through ``model_id`` once it is onboarded; "not in
  the registry" (seed: ``not_onboarded``) means no ``models`` row for that uri.
- Secrets never enter these tables. Where a credential is needed (a provider's API key, a
  Hugging Face token, a cluster's kubeconfig) we keep the id of an Airflow connection, and a
  CHECK makes sure the column holds an id-shaped string, not a URI or key with spaces.
- Projects and users belong to the calling application; they are scoped by id only.
- Rollback order is enforced by the foreign keys: parts go with their whole (rule
  deployments with their deployment, a release's allocations and endpoint with it, a
  profile's selections with it); anything still in use elsewhere refuses to go, loudly,
  instead of leaving a half-deployed guardrail behind.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from foundryflow.cluster.base import ReleaseState
from foundryflow.store.catalog import HardwareConfig, Model
from foundryflow.store.models import Base, Execution, ExecutionStatus, str_enum

JSON_LIST = JSON().with_variant(JSONB(), "postgresql")
"""Typed JSON arrays (the Base maps only ``dict[str, Any]`` to JSONB by itself)."""

CONN_ID_PATTERN = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,249}$"
"""An Airflow connection id, as :func:`foundryflow.cluster.base.check_conn_id` accepts it; a
URI, or a pasted secret with ``:``, ``/`` or spaces, fails it."""

SEVERITY_RANGE = "BETWEEN 0 AND 1"


class ProviderType(StrEnum):
    """Where a guardrail provider's checks (or a rule's model) come from."""

    HUGGINGFACE = "huggingface"
    OPENAI = "openai"
    AZURE = "azure"
    AWS = "aws"
    LOCAL = "local"


class GuardType(StrEnum):
    """What a rule inspects: the prompt going in or the reply coming out."""

    INPUT = "input"
    OUTPUT = "output"


class ClusterBackendName(StrEnum):
    """The ``name`` of the :class:`foundryflow.cluster.ClusterBackend` that drives a cluster."""

    HELM = "helm"
    LOCAL = "local"


class EndpointStatus(StrEnum):
    """The deployed statuses of seed 000 (its ``EndpointStatusEnum``)."""

    RUNNING = "running"
    UNHEALTHY = "unhealthy"
    DEPLOYING = "deploying"
    PENDING = "pending"
    FAILURE = "failure"
    DELETING = "deleting"


class HardwareMode(StrEnum):
    """Dedicated: whole machines per model. Shared: models may share a machine's free devices
    (never one device: each replica holds whole GPUs)."""

    DEDICATED = "dedicated"
    SHARED = "shared"


class WorkflowStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _guard_types() -> ARRAY[str]:
    return ARRAY(String(16))


def _guard_types_check() -> CheckConstraint:
    """Every element a known guard type, and at least one (NULL, where allowed: no override)."""
    known = ", ".join(f"'{member.value}'" for member in GuardType)
    return CheckConstraint(
        f"cardinality(guard_types) > 0 AND guard_types <@ ARRAY[{known}]::varchar[]",
        name="guard_types_known",
    )


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


def _updated_at() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now())


# --------------------------------------------------------------------------- catalog
class GuardrailProvider(Base):
    """A source of probes (step 1). ``credential_conn_id`` names an Airflow connection."""

    __tablename__ = "guardrail_providers"
    __table_args__ = (
        CheckConstraint(f"credential_conn_id ~ '{CONN_ID_PATTERN}'", name="conn_id_shape"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    type: Mapped[ProviderType] = mapped_column(str_enum(ProviderType, "provider_type"))
    description: Mapped[str] = mapped_column(Text)
    credential_conn_id: Mapped[str | None] = mapped_column(
        String(250), comment="Airflow connection id; the secret stays in Airflow."
    )
    created_at: Mapped[datetime] = _created_at()

    probes: Mapped[list[GuardrailProbe]] = relationship(
        back_populates="provider", order_by="GuardrailProbe.name"
    )


class GuardrailProbe(Base):
    """A group of rules a user selects as one (step 3)."""

    __tablename__ = "guardrail_probes"
    __table_args__ = (UniqueConstraint("provider_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guardrail_providers.id"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()

    provider: Mapped[GuardrailProvider] = relationship(back_populates="probes")
    rules: Mapped[list[GuardrailRule]] = relationship(
        back_populates="probe", order_by="GuardrailRule.name", passive_deletes=True
    )


class GuardrailRule(Base):
    """One check of a probe. Model-based rules name the model they need by ``model_uri``;
    ``model_id`` stays NULL until that model is onboarded (``update_rule_model_ids``)."""

    __tablename__ = "guardrail_rules"
    __table_args__ = (
        UniqueConstraint("probe_id", "name"),
        # the target of profile selections' composite key: a selected rule is of its probe
        UniqueConstraint("probe_id", "id"),
        CheckConstraint(
            "(model_uri IS NULL) = (model_provider_type IS NULL)", name="model_fields_together"
        ),
        CheckConstraint("model_id IS NULL OR model_uri IS NOT NULL", name="model_id_needs_uri"),
        CheckConstraint(f"severity_threshold {SEVERITY_RANGE}", name="severity_range"),
        _guard_types_check(),
        Index("ix_guardrail_rules_model_uri", "model_uri"),
        Index("ix_guardrail_rules_model_id", "model_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    probe_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("guardrail_probes.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    model_uri: Mapped[str | None] = mapped_column(String(200), comment="NULL: not model-based.")
    model_provider_type: Mapped[ProviderType | None] = mapped_column(
        str_enum(ProviderType, "model_provider_type")
    )
    model_id: Mapped[int | None] = mapped_column(
        ForeignKey("models.id", ondelete="SET NULL"), comment="Set once the model is onboarded."
    )
    severity_threshold: Mapped[float] = mapped_column(Float, comment="Default; 0..1.")
    guard_types: Mapped[list[str]] = mapped_column(_guard_types())
    created_at: Mapped[datetime] = _created_at()

    probe: Mapped[GuardrailProbe] = relationship(back_populates="rules")
    model: Mapped[Model | None] = relationship()


# --------------------------------------------------------------------------- clusters
class Cluster(Base):
    """A place endpoints run. ``kubeconfig_conn_id`` names an Airflow connection (helm)."""

    __tablename__ = "clusters"
    __table_args__ = (
        CheckConstraint(f"kubeconfig_conn_id ~ '{CONN_ID_PATTERN}'", name="conn_id_shape"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    backend: Mapped[ClusterBackendName] = mapped_column(
        str_enum(ClusterBackendName, "cluster_backend")
    )
    kubeconfig_conn_id: Mapped[str | None] = mapped_column(String(250))
    created_at: Mapped[datetime] = _created_at()

    nodes: Mapped[list[ClusterNode]] = relationship(
        back_populates="cluster", order_by="ClusterNode.name", passive_deletes=True
    )


class ClusterNode(Base):
    """``count`` identical machines of one hardware shape from the catalog (a node pool)."""

    __tablename__ = "cluster_nodes"
    __table_args__ = (
        UniqueConstraint("cluster_id", "name"),
        CheckConstraint("count > 0", name="count_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    cluster_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    hardware_config_id: Mapped[int] = mapped_column(ForeignKey("hardware_configs.id"))
    count: Mapped[int] = mapped_column(comment="Machines of this shape.")

    cluster: Mapped[Cluster] = relationship(back_populates="nodes")
    hardware: Mapped[HardwareConfig] = relationship()

    @property
    def total_devices(self) -> int:
        return self.count * self.hardware.device_count


class ClusterRelease(Base):
    """A Helm release we installed: the local backend's inventory, the helm backend's record
    of what to uninstall. Deleting it frees its allocations and removes its endpoint.
    Its states are the cluster contract's, so both backends report them alike."""

    __tablename__ = "cluster_releases"
    __table_args__ = (
        UniqueConstraint("cluster_id", "namespace", "name"),
        CheckConstraint("revision > 0", name="revision_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    cluster_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clusters.id"))
    name: Mapped[str] = mapped_column(String(53), comment="Helm's limit for release names.")
    namespace: Mapped[str] = mapped_column(String(63))
    chart: Mapped[str] = mapped_column(String(200))
    chart_version: Mapped[str | None] = mapped_column(String(40), comment="Remote charts only.")
    values: Mapped[dict[str, Any]]
    endpoints: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON_LIST,
        default=list,
        server_default=text("'[]'::jsonb"),
        comment="In-cluster URLs of the release's Services.",
    )
    workloads: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON_LIST,
        default=list,
        server_default=text("'[]'::jsonb"),
        comment="Deployments and StatefulSets of the release with their replicas.",
    )
    revision: Mapped[int] = mapped_column(default=1, comment="Helm's, 1 on first install.")
    status: Mapped[ReleaseState] = mapped_column(str_enum(ReleaseState, "release_status"))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    cluster: Mapped[Cluster] = relationship()


class ClusterAllocation(Base):
    """Devices and memory a release's model holds on a node pool: what cluster fit adds up
    before placing the next model (seed 000, D3: cumulative usage)."""

    __tablename__ = "cluster_allocations"
    __table_args__ = (
        CheckConstraint("devices_used > 0", name="devices_positive"),
        CheckConstraint("memory_gb > 0", name="memory_positive"),
        Index("ix_cluster_allocations_node_id", "node_id"),
        Index("ix_cluster_allocations_release_id", "release_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    release_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("cluster_releases.id", ondelete="CASCADE")
    )
    node_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("cluster_nodes.id"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    hardware_mode: Mapped[HardwareMode] = mapped_column(str_enum(HardwareMode, "hardware_mode"))
    devices_used: Mapped[int]
    memory_gb: Mapped[float] = mapped_column(Float, comment="Across all devices used.")
    created_at: Mapped[datetime] = _created_at()

    node: Mapped[ClusterNode] = relationship()


class Endpoint(Base):
    """A served model of a project; its status is the seed's deployed status set."""

    __tablename__ = "endpoints"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        # model status derivation: a project's endpoints of the rules' models
        Index("ix_endpoints_project_id_model_id", "project_id", "model_id"),
        Index("ix_endpoints_release_id", "release_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(100))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    cluster_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("clusters.id"))
    release_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("cluster_releases.id", ondelete="CASCADE")
    )
    url: Mapped[str | None] = mapped_column(String(500), comment="Known once deployed.")
    status: Mapped[EndpointStatus] = mapped_column(str_enum(EndpointStatus, "endpoint_status"))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    cluster: Mapped[Cluster] = relationship()
    model: Mapped[Model] = relationship()


# --------------------------------------------------------------------------- profiles
class GuardrailProfile(Base):
    """What a deployment enforces: the probe selections and the profile-wide settings."""

    __tablename__ = "guardrail_profiles"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        CheckConstraint(f"severity_threshold {SEVERITY_RANGE}", name="severity_range"),
        _guard_types_check(),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    guard_types: Mapped[list[str]] = mapped_column(_guard_types())
    severity_threshold: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = _created_at()

    probe_selections: Mapped[list[GuardrailProfileProbe]] = relationship(
        back_populates="profile", cascade="all, delete-orphan", passive_deletes=True
    )


class GuardrailProfileProbe(Base):
    """A probe selected in a profile, with optional overrides. No selected rules = all rules
    of the probe (seed: ``rules`` null or empty), so "all" has exactly one spelling."""

    __tablename__ = "guardrail_profile_probes"
    __table_args__ = (
        UniqueConstraint("profile_id", "probe_id"),
        UniqueConstraint("id", "probe_id"),  # target of the selected rules' composite key
        CheckConstraint(
            f"severity_threshold IS NULL OR severity_threshold {SEVERITY_RANGE}",
            name="severity_range",
        ),
        _guard_types_check(),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    profile_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("guardrail_profiles.id", ondelete="CASCADE")
    )
    probe_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guardrail_probes.id"))
    severity_threshold: Mapped[float | None] = mapped_column(Float)
    guard_types: Mapped[list[str] | None] = mapped_column(_guard_types())

    profile: Mapped[GuardrailProfile] = relationship(back_populates="probe_selections")
    rules: Mapped[list[GuardrailProfileRule]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def rule_ids(self) -> list[uuid.UUID] | None:
        """The selected rule ids, or None for "all rules of the probe"."""
        return [rule.rule_id for rule in self.rules] or None


class GuardrailProfileRule(Base):
    """A rule picked explicitly in a probe selection. The composite keys make the database
    refuse a rule of another probe, whatever code wrote the row."""

    __tablename__ = "guardrail_profile_rules"
    __table_args__ = (
        ForeignKeyConstraint(
            ["profile_probe_id", "probe_id"],
            ["guardrail_profile_probes.id", "guardrail_profile_probes.probe_id"],
            name="fk_guardrail_profile_rules_selection",
            ondelete="CASCADE",
        ),
        ForeignKeyConstraint(
            ["probe_id", "rule_id"],
            ["guardrail_rules.probe_id", "guardrail_rules.id"],
            name="fk_guardrail_profile_rules_rule",
        ),
        CheckConstraint(
            f"severity_threshold IS NULL OR severity_threshold {SEVERITY_RANGE}",
            name="severity_range",
        ),
        _guard_types_check(),
    )

    profile_probe_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    probe_id: Mapped[uuid.UUID]
    rule_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    severity_threshold: Mapped[float | None] = mapped_column(Float)
    guard_types: Mapped[list[str] | None] = mapped_column(_guard_types())


# --------------------------------------------------------------------------- deployments
class GuardrailDeployment(Base):
    """A profile put to work in a project: standalone, or guarding the target endpoints."""

    __tablename__ = "guardrail_deployments"
    __table_args__ = (Index("ix_guardrail_deployments_profile_id", "profile_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    profile_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guardrail_profiles.id"))
    project_id: Mapped[uuid.UUID]
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = _created_at()

    profile: Mapped[GuardrailProfile] = relationship()
    targets: Mapped[list[GuardrailDeploymentTarget]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )
    rule_deployments: Mapped[list[GuardrailRuleDeployment]] = relationship(
        back_populates="deployment", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def is_standalone(self) -> bool:
        return not self.targets


class GuardrailDeploymentTarget(Base):
    """An endpoint a deployment guards (step 10); none means standalone (step 9)."""

    __tablename__ = "guardrail_deployment_targets"
    __table_args__ = (Index("ix_guardrail_deployment_targets_endpoint_id", "endpoint_id"),)

    deployment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("guardrail_deployments.id", ondelete="CASCADE"), primary_key=True
    )
    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("endpoints.id"), primary_key=True)


class GuardrailRuleDeployment(Base):
    """Which endpoint serves a rule's model in a deployment (NULL for rules without a
    model). Cascades with its deployment: rollback deletes the deployment only (seed J2)."""

    __tablename__ = "guardrail_rule_deployments"
    __table_args__ = (
        UniqueConstraint("deployment_id", "rule_id"),
        Index("ix_guardrail_rule_deployments_endpoint_id", "endpoint_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    deployment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("guardrail_deployments.id", ondelete="CASCADE")
    )
    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("guardrail_rules.id"))
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("endpoints.id"))
    created_at: Mapped[datetime] = _created_at()

    deployment: Mapped[GuardrailDeployment] = relationship(back_populates="rule_deployments")


# --------------------------------------------------------------------------- workflow
class GuardrailWorkflow(Base):
    """The step data of seed 000's ``RetrieveWorkflowStepData``, one row per workflow run.

    The pipeline inputs are the executions' params; this row holds what the steps found
    and decided. Only the current pipeline run is referenced, as in the seed: earlier runs
    of a workflow are the executions whose params carry its ``workflow_id``. Its status is
    read from that execution rather than copied, so it cannot go stale.
    """

    __tablename__ = "guardrail_workflows"
    __table_args__ = (
        CheckConstraint("current_step BETWEEN 1 AND 12", name="current_step_range"),
        CheckConstraint("skip_to_step BETWEEN 1 AND 12", name="skip_to_step_range"),
        Index("ix_guardrail_workflows_project_id_created_at", "project_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID | None] = mapped_column(comment="Known from step 2.")
    provider_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("guardrail_providers.id", ondelete="SET NULL"), comment="Known from step 1."
    )
    created_by: Mapped[str | None] = mapped_column(String(100))
    current_step: Mapped[int] = mapped_column(SmallInteger, default=1)
    status: Mapped[WorkflowStatus] = mapped_column(
        str_enum(WorkflowStatus, "workflow_status"), default=WorkflowStatus.IN_PROGRESS
    )
    error: Mapped[str | None] = mapped_column(Text)
    model_statuses: Mapped[list[dict[str, Any]] | None] = mapped_column(
        JSON_LIST, comment="GuardrailModelStatus per model-based rule (step 4)."
    )
    skip_to_step: Mapped[int | None] = mapped_column(SmallInteger)
    pipeline_execution_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("executions.id", ondelete="SET NULL")
    )
    pipeline_results: Mapped[dict[str, Any] | None]
    recommended_clusters: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON_LIST)
    per_model_configs: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON_LIST)
    models_to_deploy: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON_LIST)
    models_to_reuse: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON_LIST)
    deployment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("guardrail_deployments.id", ondelete="SET NULL")
    )
    deployed_endpoint_ids: Mapped[list[uuid.UUID] | None] = mapped_column(
        ARRAY(Uuid), comment="Kept after rollback deletes the endpoints: the audit trail."
    )
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    pipeline_execution: Mapped[Execution | None] = relationship()

    @property
    def pipeline_status(self) -> ExecutionStatus | None:
        execution = self.pipeline_execution
        return None if execution is None else execution.status
