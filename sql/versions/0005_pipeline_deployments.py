"""Pipeline deployments (seed 001) with their revision history; the workloads a release
runs, kept on the release so its instance counts can be reported without a cluster.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("deploying", "active", "updating", "failed", "deleting", "deleted")
PHASES = ("pending", "progressing", "running", "stopped")
ACTIONS = ("create", "update", "rollback", "delete")
OUTCOMES = ("succeeded", "failed")


def _enum(name: str, values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.add_column(
        "cluster_releases",
        sa.Column(
            "workloads",
            postgresql.JSONB(),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
            comment="Deployments and StatefulSets of the release with their replicas.",
        ),
    )
    op.create_table(
        "pipeline_deployments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "deployment_name",
            sa.String(length=53),
            nullable=False,
            comment="Also the Helm release.",
        ),
        sa.Column("pipeline_name", sa.String(length=63), nullable=False),
        sa.Column("pipeline_version", sa.String(length=32), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("cluster_id", sa.Uuid(), nullable=False),
        sa.Column(
            "target_nodes",
            postgresql.JSONB(),
            nullable=False,
            comment="Node selector of the runners.",
        ),
        sa.Column("parameters", postgresql.JSONB(), nullable=False),
        sa.Column("resources", postgresql.JSONB(), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column(
            "interval_seconds",
            sa.Integer(),
            nullable=False,
            comment="Pause between a runner's runs.",
        ),
        sa.Column("status", _enum("pipeline_deployment_status", STATUSES), nullable=False),
        sa.Column("phase", _enum("pipeline_deployment_phase", PHASES), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False, comment="Current revision."),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=250), nullable=False),
        sa.Column("updated_by", sa.String(length=250), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column(
            "deleted_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="Soft delete; purged 30 days later.",
        ),
        sa.CheckConstraint(
            "replicas >= 0", name=op.f("ck_pipeline_deployments_replicas_not_negative")
        ),
        sa.CheckConstraint("revision >= 1", name=op.f("ck_pipeline_deployments_revision_positive")),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["clusters.id"],
            name=op.f("fk_pipeline_deployments_cluster_id_clusters"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_deployments")),
    )
    op.create_index(
        "uq_pipeline_deployments_live_name",
        "pipeline_deployments",
        ["deployment_name", "namespace"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_index("ix_pipeline_deployments_namespace", "pipeline_deployments", ["namespace"])
    op.create_index("ix_pipeline_deployments_status", "pipeline_deployments", ["status"])
    op.create_table(
        "pipeline_deployment_revisions",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("action", _enum("revision_action", ACTIONS), nullable=False),
        sa.Column("actor", sa.String(length=250), nullable=False),
        sa.Column("changes", postgresql.JSONB(), nullable=False, comment="field -> {from, to}"),
        sa.Column(
            "spec", postgresql.JSONB(), nullable=False, comment="The whole desired state after it."
        ),
        sa.Column(
            "helm_revision", sa.Integer(), nullable=True, comment="The release revision it made."
        ),
        sa.Column("rolled_back_to", sa.Integer(), nullable=True),
        sa.Column("outcome", _enum("revision_outcome", OUTCOMES), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        _timestamp("created_at"),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["pipeline_deployments.id"],
            name=op.f("fk_pipeline_deployment_revisions_deployment_id_pipeline_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pipeline_deployment_revisions")),
        sa.UniqueConstraint(
            "deployment_id",
            "revision",
            name=op.f("uq_pipeline_deployment_revisions_deployment_id_revision"),
        ),
    )


def downgrade() -> None:
    op.drop_table("pipeline_deployment_revisions")
    op.drop_index("ix_pipeline_deployments_status", table_name="pipeline_deployments")
    op.drop_index("ix_pipeline_deployments_namespace", table_name="pipeline_deployments")
    op.drop_index("uq_pipeline_deployments_live_name", table_name="pipeline_deployments")
    op.drop_table("pipeline_deployments")
    op.drop_column("cluster_releases", "workloads")
