"""Guardrail domain (seed 000): providers, probes, rules; clusters, node pools, releases,
allocations, endpoints; profiles with probe selections, deployments, rule deployments and
the workflow record.

Enum values and CHECK expressions are written out here rather than imported from the ORM:
a migration must keep meaning what it meant when it was written.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROVIDER_TYPES = ("huggingface", "openai", "azure", "aws", "local")
CLUSTER_BACKENDS = ("helm", "local")
RELEASE_STATUSES = (
    "unknown",
    "deployed",
    "uninstalled",
    "superseded",
    "failed",
    "uninstalling",
    "pending-install",
    "pending-upgrade",
    "pending-rollback",
)
ENDPOINT_STATUSES = ("running", "unhealthy", "deploying", "pending", "failure", "deleting")
HARDWARE_MODES = ("dedicated", "shared")
WORKFLOW_STATUSES = ("in_progress", "completed", "failed", "cancelled")

CONN_ID_SHAPE = "~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,249}$'"
GUARD_TYPES_KNOWN = (
    "cardinality(guard_types) > 0 AND guard_types <@ ARRAY['input', 'output']::varchar[]"
)
OPTIONAL_SEVERITY = "severity_threshold IS NULL OR severity_threshold BETWEEN 0 AND 1"


def _enum(name: str, values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def _guard_types(nullable: bool) -> sa.Column[list[str]]:
    return sa.Column("guard_types", postgresql.ARRAY(sa.String(length=16)), nullable=nullable)


def _guard_types_check(table: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(GUARD_TYPES_KNOWN, name=op.f(f"ck_{table}_guard_types_known"))


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _fk(
    table: str, column: str, target: str, ondelete: str | None = None
) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        name=op.f(f"fk_{table}_{column}_{target}"),
        ondelete=ondelete,
    )


def upgrade() -> None:
    _create_catalog()
    _create_clusters()
    _create_profiles_and_deployments()
    _create_workflows()


def _create_catalog() -> None:
    op.create_table(
        "guardrail_providers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("type", _enum("provider_type", PROVIDER_TYPES), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "credential_conn_id",
            sa.String(length=250),
            nullable=True,
            comment="Airflow connection id; the secret stays in Airflow.",
        ),
        _timestamp("created_at"),
        sa.CheckConstraint(
            f"credential_conn_id {CONN_ID_SHAPE}",
            name=op.f("ck_guardrail_providers_conn_id_shape"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardrail_providers")),
        sa.UniqueConstraint("name", name=op.f("uq_guardrail_providers_name")),
    )
    op.create_table(
        "guardrail_probes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        _timestamp("created_at"),
        _fk("guardrail_probes", "provider_id", "guardrail_providers"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardrail_probes")),
        sa.UniqueConstraint(
            "provider_id", "name", name=op.f("uq_guardrail_probes_provider_id_name")
        ),
    )
    op.create_table(
        "guardrail_rules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("probe_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column(
            "model_uri", sa.String(length=200), nullable=True, comment="NULL: not model-based."
        ),
        sa.Column("model_provider_type", _enum("model_provider_type", PROVIDER_TYPES)),
        sa.Column(
            "model_id", sa.Integer(), nullable=True, comment="Set once the model is onboarded."
        ),
        sa.Column("severity_threshold", sa.Float(), nullable=False, comment="Default; 0..1."),
        _guard_types(nullable=False),
        _timestamp("created_at"),
        _guard_types_check("guardrail_rules"),
        sa.CheckConstraint(
            "(model_uri IS NULL) = (model_provider_type IS NULL)",
            name=op.f("ck_guardrail_rules_model_fields_together"),
        ),
        sa.CheckConstraint(
            "model_id IS NULL OR model_uri IS NOT NULL",
            name=op.f("ck_guardrail_rules_model_id_needs_uri"),
        ),
        sa.CheckConstraint(
            "severity_threshold BETWEEN 0 AND 1", name=op.f("ck_guardrail_rules_severity_range")
        ),
        _fk("guardrail_rules", "model_id", "models", ondelete="SET NULL"),
        _fk("guardrail_rules", "probe_id", "guardrail_probes", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardrail_rules")),
        sa.UniqueConstraint("probe_id", "id", name=op.f("uq_guardrail_rules_probe_id_id")),
        sa.UniqueConstraint("probe_id", "name", name=op.f("uq_guardrail_rules_probe_id_name")),
    )
    op.create_index("ix_guardrail_rules_model_id", "guardrail_rules", ["model_id"])
    op.create_index("ix_guardrail_rules_model_uri", "guardrail_rules", ["model_uri"])


def _create_clusters() -> None:
    op.create_table(
        "clusters",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("backend", _enum("cluster_backend", CLUSTER_BACKENDS), nullable=False),
        sa.Column("kubeconfig_conn_id", sa.String(length=250), nullable=True),
        _timestamp("created_at"),
        sa.CheckConstraint(
            f"kubeconfig_conn_id {CONN_ID_SHAPE}", name=op.f("ck_clusters_conn_id_shape")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clusters")),
        sa.UniqueConstraint("name", name=op.f("uq_clusters_name")),
    )
    op.create_table(
        "cluster_nodes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("cluster_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("hardware_config_id", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False, comment="Machines of this shape."),
        sa.CheckConstraint("count > 0", name=op.f("ck_cluster_nodes_count_positive")),
        _fk("cluster_nodes", "cluster_id", "clusters", ondelete="CASCADE"),
        _fk("cluster_nodes", "hardware_config_id", "hardware_configs"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_nodes")),
        sa.UniqueConstraint("cluster_id", "name", name=op.f("uq_cluster_nodes_cluster_id_name")),
    )
    op.create_table(
        "cluster_releases",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("cluster_id", sa.Uuid(), nullable=False),
        sa.Column(
            "name",
            sa.String(length=53),
            nullable=False,
            comment="Helm's limit for release names.",
        ),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("chart", sa.String(length=200), nullable=False),
        sa.Column(
            "chart_version", sa.String(length=40), nullable=True, comment="Remote charts only."
        ),
        sa.Column("values", postgresql.JSONB(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False, comment="Helm's, 1 on first install."),
        sa.Column("status", _enum("release_status", RELEASE_STATUSES), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint("revision > 0", name=op.f("ck_cluster_releases_revision_positive")),
        _fk("cluster_releases", "cluster_id", "clusters"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_releases")),
        sa.UniqueConstraint(
            "cluster_id",
            "namespace",
            "name",
            name=op.f("uq_cluster_releases_cluster_id_namespace_name"),
        ),
    )
    op.create_table(
        "cluster_allocations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("release_id", sa.Uuid(), nullable=False),
        sa.Column("node_id", sa.Uuid(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("hardware_mode", _enum("hardware_mode", HARDWARE_MODES), nullable=False),
        sa.Column("devices_used", sa.Integer(), nullable=False),
        sa.Column("memory_gb", sa.Float(), nullable=False, comment="Across all devices used."),
        _timestamp("created_at"),
        sa.CheckConstraint(
            "devices_used > 0", name=op.f("ck_cluster_allocations_devices_positive")
        ),
        sa.CheckConstraint("memory_gb > 0", name=op.f("ck_cluster_allocations_memory_positive")),
        _fk("cluster_allocations", "model_id", "models"),
        _fk("cluster_allocations", "node_id", "cluster_nodes"),
        _fk("cluster_allocations", "release_id", "cluster_releases", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_allocations")),
    )
    op.create_index("ix_cluster_allocations_node_id", "cluster_allocations", ["node_id"])
    op.create_index("ix_cluster_allocations_release_id", "cluster_allocations", ["release_id"])
    op.create_table(
        "endpoints",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("cluster_id", sa.Uuid(), nullable=False),
        sa.Column("release_id", sa.Uuid(), nullable=True),
        sa.Column("url", sa.String(length=500), nullable=True, comment="Known once deployed."),
        sa.Column("status", _enum("endpoint_status", ENDPOINT_STATUSES), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _fk("endpoints", "cluster_id", "clusters"),
        _fk("endpoints", "model_id", "models"),
        _fk("endpoints", "release_id", "cluster_releases", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_endpoints")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_endpoints_project_id_name")),
    )
    op.create_index("ix_endpoints_project_id_model_id", "endpoints", ["project_id", "model_id"])
    op.create_index("ix_endpoints_release_id", "endpoints", ["release_id"])


def _create_profiles_and_deployments() -> None:
    op.create_table(
        "guardrail_profiles",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        _guard_types(nullable=False),
        sa.Column("severity_threshold", sa.Float(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        _timestamp("created_at"),
        _guard_types_check("guardrail_profiles"),
        sa.CheckConstraint(
            "severity_threshold BETWEEN 0 AND 1",
            name=op.f("ck_guardrail_profiles_severity_range"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardrail_profiles")),
        sa.UniqueConstraint(
            "project_id", "name", name=op.f("uq_guardrail_profiles_project_id_name")
        ),
    )
    op.create_table(
        "guardrail_profile_probes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("probe_id", sa.Uuid(), nullable=False),
        sa.Column("severity_threshold", sa.Float(), nullable=True),
        _guard_types(nullable=True),
        _guard_types_check("guardrail_profile_probes"),
        sa.CheckConstraint(
            OPTIONAL_SEVERITY, name=op.f("ck_guardrail_profile_probes_severity_range")
        ),
        _fk("guardrail_profile_probes", "probe_id", "guardrail_probes"),
        _fk("guardrail_profile_probes", "profile_id", "guardrail_profiles", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardrail_profile_probes")),
        sa.UniqueConstraint("id", "probe_id", name=op.f("uq_guardrail_profile_probes_id_probe_id")),
        sa.UniqueConstraint(
            "profile_id", "probe_id", name=op.f("uq_guardrail_profile_probes_profile_id_probe_id")
        ),
    )
    op.create_table(
        "guardrail_profile_rules",
        sa.Column("profile_probe_id", sa.Uuid(), nullable=False),
        sa.Column("probe_id", sa.Uuid(), nullable=False),
        sa.Column("rule_id", sa.Uuid(), nullable=False),
        sa.Column("severity_threshold", sa.Float(), nullable=True),
        _guard_types(nullable=True),
        _guard_types_check("guardrail_profile_rules"),
        sa.CheckConstraint(
            OPTIONAL_SEVERITY, name=op.f("ck_guardrail_profile_rules_severity_range")
        ),
        sa.ForeignKeyConstraint(
            ["probe_id", "rule_id"],
            ["guardrail_rules.probe_id", "guardrail_rules.id"],
            name="fk_guardrail_profile_rules_rule",
        ),
        sa.ForeignKeyConstraint(
            ["profile_probe_id", "probe_id"],
            ["guardrail_profile_probes.id", "guardrail_profile_probes.probe_id"],
            name="fk_guardrail_profile_rules_selection",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "profile_probe_id", "rule_id", name=op.f("pk_guardrail_profile_rules")
        ),
    )
    op.create_table(
        "guardrail_deployments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("profile_id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        _timestamp("created_at"),
        _fk("guardrail_deployments", "profile_id", "guardrail_profiles"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardrail_deployments")),
    )
    op.create_index("ix_guardrail_deployments_profile_id", "guardrail_deployments", ["profile_id"])
    op.create_table(
        "guardrail_deployment_targets",
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        _fk(
            "guardrail_deployment_targets",
            "deployment_id",
            "guardrail_deployments",
            ondelete="CASCADE",
        ),
        _fk("guardrail_deployment_targets", "endpoint_id", "endpoints"),
        sa.PrimaryKeyConstraint(
            "deployment_id", "endpoint_id", name=op.f("pk_guardrail_deployment_targets")
        ),
    )
    op.create_index(
        "ix_guardrail_deployment_targets_endpoint_id",
        "guardrail_deployment_targets",
        ["endpoint_id"],
    )
    op.create_table(
        "guardrail_rule_deployments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("rule_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=True),
        _timestamp("created_at"),
        _fk(
            "guardrail_rule_deployments",
            "deployment_id",
            "guardrail_deployments",
            ondelete="CASCADE",
        ),
        _fk("guardrail_rule_deployments", "endpoint_id", "endpoints"),
        _fk("guardrail_rule_deployments", "rule_id", "guardrail_rules"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardrail_rule_deployments")),
        sa.UniqueConstraint(
            "deployment_id",
            "rule_id",
            name=op.f("uq_guardrail_rule_deployments_deployment_id_rule_id"),
        ),
    )
    op.create_index(
        "ix_guardrail_rule_deployments_endpoint_id",
        "guardrail_rule_deployments",
        ["endpoint_id"],
    )


def _create_workflows() -> None:
    op.create_table(
        "guardrail_workflows",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=True, comment="Known from step 2."),
        sa.Column("provider_id", sa.Uuid(), nullable=True, comment="Known from step 1."),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.Column("current_step", sa.SmallInteger(), nullable=False),
        sa.Column("status", _enum("workflow_status", WORKFLOW_STATUSES), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "model_statuses",
            postgresql.JSONB(),
            nullable=True,
            comment="GuardrailModelStatus per model-based rule (step 4).",
        ),
        sa.Column("skip_to_step", sa.SmallInteger(), nullable=True),
        sa.Column("pipeline_execution_id", sa.Uuid(), nullable=True),
        sa.Column("pipeline_results", postgresql.JSONB(), nullable=True),
        sa.Column("recommended_clusters", postgresql.JSONB(), nullable=True),
        sa.Column("per_model_configs", postgresql.JSONB(), nullable=True),
        sa.Column("models_to_deploy", postgresql.JSONB(), nullable=True),
        sa.Column("models_to_reuse", postgresql.JSONB(), nullable=True),
        sa.Column("deployment_id", sa.Uuid(), nullable=True),
        sa.Column(
            "deployed_endpoint_ids",
            postgresql.ARRAY(sa.Uuid()),
            nullable=True,
            comment="Kept after rollback deletes the endpoints: the audit trail.",
        ),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(
            "current_step BETWEEN 1 AND 12",
            name=op.f("ck_guardrail_workflows_current_step_range"),
        ),
        sa.CheckConstraint(
            "skip_to_step BETWEEN 1 AND 12",
            name=op.f("ck_guardrail_workflows_skip_to_step_range"),
        ),
        _fk("guardrail_workflows", "deployment_id", "guardrail_deployments", ondelete="SET NULL"),
        _fk("guardrail_workflows", "pipeline_execution_id", "executions", ondelete="SET NULL"),
        _fk("guardrail_workflows", "provider_id", "guardrail_providers", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardrail_workflows")),
    )
    op.create_index(
        "ix_guardrail_workflows_project_id_created_at",
        "guardrail_workflows",
        ["project_id", "created_at"],
    )


def downgrade() -> None:
    """Drop in reverse order of dependency; dropping a table drops its indexes too."""
    for table in (
        "guardrail_workflows",
        "guardrail_rule_deployments",
        "guardrail_deployment_targets",
        "guardrail_deployments",
        "guardrail_profile_rules",
        "guardrail_profile_probes",
        "guardrail_profiles",
        "endpoints",
        "cluster_allocations",
        "cluster_releases",
        "cluster_nodes",
        "clusters",
        "guardrail_rules",
        "guardrail_probes",
        "guardrail_providers",
    ):
        op.drop_table(table)
