"""Use cases (seed 004): use-case deployments and their components; the endpoints a
release serves, kept on the release itself.

``cluster_releases.endpoints`` lets a release that serves no registered model (an agent
runtime, a vector database) still report its URLs; the guardrail ``endpoints`` table stays
for model endpoints owned by a project.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEPLOYMENT_STATUSES = ("PENDING", "DEPLOYING", "RUNNING", "FAILED", "STOPPING", "STOPPED")
COMPONENT_STATUSES = ("PENDING", "DEPLOYING", "RUNNING", "FAILED", "SKIPPED", "STOPPED")


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
            "endpoints",
            postgresql.JSONB(),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
            comment="In-cluster URLs of the release's Services.",
        ),
    )
    op.create_table(
        "usecase_deployments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "name",
            sa.String(length=30),
            nullable=False,
            comment="DNS label; prefixes release names.",
        ),
        sa.Column("template", sa.String(length=63), nullable=False),
        sa.Column("template_version", sa.String(length=32), nullable=False),
        sa.Column(
            "pipeline",
            sa.String(length=63),
            nullable=False,
            comment="The pipeline that deploys it.",
        ),
        sa.Column("cluster_id", sa.Uuid(), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("selections", postgresql.JSONB(), nullable=False),
        sa.Column("parameters", postgresql.JSONB(), nullable=False),
        sa.Column(
            "status", _enum("usecase_deployment_status", DEPLOYMENT_STATUSES), nullable=False
        ),
        sa.Column(
            "execution_id",
            sa.Uuid(),
            nullable=True,
            comment="The pipeline run deploying it (seed: pipeline_execution_id).",
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True, comment="Last notification sent."),
        sa.Column("created_by", sa.String(length=250), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["clusters.id"],
            name=op.f("fk_usecase_deployments_cluster_id_clusters"),
        ),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_usecase_deployments_execution_id_executions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usecase_deployments")),
    )
    op.create_index(
        "uq_usecase_deployments_active_name",
        "usecase_deployments",
        ["cluster_id", "name"],
        unique=True,
        postgresql_where=sa.text("status NOT IN ('STOPPED', 'FAILED')"),
    )
    op.create_index(
        "ix_usecase_deployments_execution_id",
        "usecase_deployments",
        ["execution_id"],
        unique=True,
    )
    op.create_table(
        "usecase_components",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column(
            "position",
            sa.Integer(),
            nullable=False,
            comment="Deployment order; stop goes in reverse.",
        ),
        sa.Column("selected", sa.String(length=100), nullable=True),
        sa.Column("status", _enum("usecase_component_status", COMPONENT_STATUSES), nullable=False),
        sa.Column("release_name", sa.String(length=53), nullable=True),
        sa.Column("namespace", sa.String(length=63), nullable=True),
        sa.Column("chart", sa.String(length=512), nullable=True),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("endpoint_url", sa.String(length=512), nullable=True),
        sa.Column("services", postgresql.JSONB(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _timestamp("updated_at"),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["usecase_deployments.id"],
            name=op.f("fk_usecase_components_deployment_id_usecase_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usecase_components")),
        sa.UniqueConstraint(
            "deployment_id", "name", name=op.f("uq_usecase_components_deployment_id_name")
        ),
    )


def downgrade() -> None:
    op.drop_table("usecase_components")
    op.drop_index("ix_usecase_deployments_execution_id", table_name="usecase_deployments")
    op.drop_index("uq_usecase_deployments_active_name", table_name="usecase_deployments")
    op.drop_table("usecase_deployments")
    op.drop_column("cluster_releases", "endpoints")
