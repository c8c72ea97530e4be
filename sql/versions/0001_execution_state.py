"""Execution state: one row per pipeline run, one per step (and fan-out item).

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXECUTION_STATUS = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED")
STEP_STATUS = ("PENDING", "RUNNING", "COMPLETED", "FAILED", "SKIPPED", "COMPENSATED")
ROLLBACK_STATUS = ("RUNNING", "COMPLETED", "FAILED")


def _status(name: str, values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16, create_constraint=True)


def upgrade() -> None:
    op.create_table(
        "executions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("pipeline", sa.String(63), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column(
            "spec", JSONB(), nullable=False, comment="The spec as it was when the run began."
        ),
        sa.Column("engine", sa.String(16), nullable=False),
        sa.Column("engine_run_id", sa.String(250), nullable=False),
        sa.Column("params", JSONB(), nullable=False),
        sa.Column("status", _status("execution_status", EXECUTION_STATUS), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("outputs", JSONB()),
        sa.Column("rollback_status", _status("rollback_status", ROLLBACK_STATUS)),
        sa.Column("rollback_error", sa.Text()),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_executions")),
        sa.UniqueConstraint(
            "engine", "engine_run_id", name=op.f("uq_executions_engine_engine_run_id")
        ),
    )
    op.create_index("ix_executions_pipeline_created", "executions", ["pipeline", "created_at"])
    op.create_table(
        "step_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column(
            "pipeline", sa.String(63), nullable=False, comment="Denormalised for ETA history."
        ),
        sa.Column("step_id", sa.String(63), nullable=False),
        sa.Column("map_index", sa.Integer(), nullable=False),
        sa.Column("status", _status("step_status", STEP_STATUS), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("params", JSONB(), comment="Params after rendering."),
        sa.Column("outputs", JSONB()),
        sa.Column("items", JSONB(), comment="Fan-out items (parent row only)."),
        sa.Column("error", sa.Text()),
        sa.Column("compensation_error", sa.Text()),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["executions.id"],
            name=op.f("fk_step_runs_execution_id_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_runs")),
        sa.UniqueConstraint(
            "execution_id",
            "step_id",
            "map_index",
            name=op.f("uq_step_runs_execution_id_step_id_map_index"),
        ),
    )
    op.create_index(
        "ix_step_runs_history", "step_runs", ["pipeline", "step_id", "status", "finished_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_step_runs_history", table_name="step_runs")
    op.drop_table("step_runs")
    op.drop_index("ix_executions_pipeline_created", table_name="executions")
    op.drop_table("executions")
