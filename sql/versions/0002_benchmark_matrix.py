"""Catalog (hardware, frameworks, use cases, models) and the benchmark matrix queue.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hardware_configs",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("vendor", sa.String(length=40), nullable=False),
        sa.Column("device_type", sa.String(length=8), nullable=False, comment="gpu | cpu | hpu"),
        sa.Column("device_model", sa.String(length=80), nullable=False),
        sa.Column("device_count", sa.Integer(), nullable=False),
        sa.Column("memory_gb_per_device", sa.Float(), nullable=False),
        sa.Column("memory_bandwidth_gbps", sa.Float(), nullable=False, comment="GB/s per device"),
        sa.Column("peak_bf16_tflops", sa.Float(), nullable=False, comment="dense, per device"),
        sa.Column("peak_fp8_tflops", sa.Float(), nullable=True, comment="dense, per device"),
        sa.Column("interconnect", sa.String(length=40), nullable=False),
        sa.Column(
            "interconnect_bandwidth_gbps", sa.Float(), nullable=False, comment="GB/s per device"
        ),
        sa.Column("source", sa.Text(), nullable=False, comment="Where the figures come from."),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hardware_configs")),
        sa.UniqueConstraint("name", name=op.f("uq_hardware_configs_name")),
    )
    op.create_table(
        "inference_frameworks",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("version", sa.String(length=20), nullable=False),
        sa.Column("device_types", postgresql.JSONB(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inference_frameworks")),
        sa.UniqueConstraint("name", name=op.f("uq_inference_frameworks_name")),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("uri", sa.String(length=200), nullable=False),
        sa.Column("family", sa.String(length=60), nullable=False),
        sa.Column("parameter_count", sa.BigInteger(), nullable=False),
        sa.Column("num_layers", sa.Integer(), nullable=False),
        sa.Column("hidden_size", sa.Integer(), nullable=False),
        sa.Column("num_attention_heads", sa.Integer(), nullable=False),
        sa.Column("num_kv_heads", sa.Integer(), nullable=False),
        sa.Column("max_context", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("uri", name=op.f("uq_models_uri")),
    )
    op.create_table(
        "use_case_taxonomy",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.Column("target_ttft_ms", sa.Integer(), nullable=False),
        sa.Column("target_e2e_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_use_case_taxonomy")),
        sa.UniqueConstraint("name", name=op.f("uq_use_case_taxonomy_name")),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), sa.Identity(always=False), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column(
            "dtype",
            sa.String(length=8),
            nullable=False,
            comment="bf16 | fp8 | int4: bytes per weight",
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_model_versions_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint(
            "model_id", "version", "dtype", name=op.f("uq_model_versions_model_id_version_dtype")
        ),
    )
    op.create_table(
        "benchmark_configs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("hardware_config_id", sa.Integer(), nullable=False),
        sa.Column("framework_id", sa.Integer(), nullable=False),
        sa.Column("workload_type", sa.String(length=40), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("sequence_length", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "running",
                "completed",
                "failed",
                name="config_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            server_default="pending",
            nullable=False,
        ),
        sa.Column("priority", sa.Integer(), nullable=False, comment="Lower runs first (seed 003)."),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["framework_id"],
            ["inference_frameworks.id"],
            name=op.f("fk_benchmark_configs_framework_id_inference_frameworks"),
        ),
        sa.ForeignKeyConstraint(
            ["hardware_config_id"],
            ["hardware_configs.id"],
            name=op.f("fk_benchmark_configs_hardware_config_id_hardware_configs"),
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_benchmark_configs_model_version_id_model_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benchmark_configs")),
        sa.UniqueConstraint(
            "model_version_id",
            "hardware_config_id",
            "framework_id",
            "workload_type",
            "batch_size",
            "sequence_length",
            name="uq_benchmark_configs_cell",
        ),
    )
    op.create_index(
        "ix_benchmark_configs_claim",
        "benchmark_configs",
        ["priority", "id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_benchmark_configs_lease",
        "benchmark_configs",
        ["heartbeat_at"],
        unique=False,
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_index(
        "ix_benchmark_configs_progress",
        "benchmark_configs",
        ["model_version_id", "status"],
        unique=False,
    )
    op.create_table(
        "benchmark_results",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("config_id", sa.BigInteger(), nullable=True),
        sa.Column("runner", sa.String(length=40), nullable=False),
        sa.Column("worker_id", sa.String(length=200), nullable=True),
        sa.Column("metrics", postgresql.JSONB(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["config_id"],
            ["benchmark_configs.id"],
            name=op.f("fk_benchmark_results_config_id_benchmark_configs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_benchmark_results")),
    )
    op.create_index(
        "uq_benchmark_results_config",
        "benchmark_results",
        ["config_id"],
        unique=True,
        postgresql_where=sa.text("config_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_benchmark_results_config",
        table_name="benchmark_results",
        postgresql_where=sa.text("config_id IS NOT NULL"),
    )
    op.drop_table("benchmark_results")
    op.drop_index("ix_benchmark_configs_progress", table_name="benchmark_configs")
    op.drop_index(
        "ix_benchmark_configs_lease",
        table_name="benchmark_configs",
        postgresql_where=sa.text("status = 'running'"),
    )
    op.drop_index(
        "ix_benchmark_configs_claim",
        table_name="benchmark_configs",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("benchmark_configs")
    op.drop_table("model_versions")
    op.drop_table("use_case_taxonomy")
    op.drop_table("models")
    op.drop_table("inference_frameworks")
    op.drop_table("hardware_configs")
