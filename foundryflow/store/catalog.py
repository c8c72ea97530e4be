"""The catalog (hardware, frameworks, use cases, models) and the benchmark matrix.

The matrix lives here rather than in Argo parameters (seed 003): PostgreSQL is the queue,
workers claim rows with ``FOR UPDATE SKIP LOCKED``; see :mod:`foundryflow.benchmark.queue`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from foundryflow.store.models import Base


class HardwareConfig(Base):
    """A node shape one model replica can run on; figures from vendor spec sheets.

    Per-device figures (memory, bandwidth, TFLOPs) times ``device_count`` give the node;
    CPU nodes have ``device_count`` 1 and describe the sockets' DRAM and matrix units.
    """

    __tablename__ = "hardware_configs"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    vendor: Mapped[str] = mapped_column(String(40))
    device_type: Mapped[str] = mapped_column(String(8), comment="gpu | cpu | hpu")
    device_model: Mapped[str] = mapped_column(String(80))
    device_count: Mapped[int]
    memory_gb_per_device: Mapped[float] = mapped_column(Float)
    memory_bandwidth_gbps: Mapped[float] = mapped_column(Float, comment="GB/s per device")
    peak_bf16_tflops: Mapped[float] = mapped_column(Float, comment="dense, per device")
    peak_fp8_tflops: Mapped[float | None] = mapped_column(Float, comment="dense, per device")
    interconnect: Mapped[str] = mapped_column(String(40))
    interconnect_bandwidth_gbps: Mapped[float] = mapped_column(Float, comment="GB/s per device")
    source: Mapped[str] = mapped_column(Text, comment="Where the figures come from.")

    @property
    def total_memory_gb(self) -> float:
        return self.memory_gb_per_device * self.device_count


class InferenceFramework(Base):
    __tablename__ = "inference_frameworks"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    version: Mapped[str] = mapped_column(String(20))
    device_types: Mapped[list[str]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    description: Mapped[str] = mapped_column(Text)


class UseCase(Base):
    """A workload type: what requests look like and what latency users accept."""

    __tablename__ = "use_case_taxonomy"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    description: Mapped[str] = mapped_column(Text)
    input_tokens: Mapped[int]
    output_tokens: Mapped[int]
    target_ttft_ms: Mapped[int]
    target_e2e_ms: Mapped[int]


class Model(Base):
    """A model in the registry; architecture fields come from its ``config.json``."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    uri: Mapped[str] = mapped_column(String(200), unique=True)
    family: Mapped[str] = mapped_column(String(60))
    parameter_count: Mapped[int] = mapped_column(BigInteger)
    num_layers: Mapped[int]
    hidden_size: Mapped[int]
    num_attention_heads: Mapped[int]
    num_kv_heads: Mapped[int]
    max_context: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    versions: Mapped[list[ModelVersion]] = relationship(back_populates="model")


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version", "dtype"),)

    id: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(40))
    dtype: Mapped[str] = mapped_column(String(8), comment="bf16 | fp8 | int4: bytes per weight")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    model: Mapped[Model] = relationship(back_populates="versions")


class ConfigStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class BenchmarkConfig(Base):
    """One cell of the matrix; a row is claimed by exactly one worker at a time."""

    __tablename__ = "benchmark_configs"
    __table_args__ = (
        UniqueConstraint(
            "model_version_id",
            "hardware_config_id",
            "framework_id",
            "workload_type",
            "batch_size",
            "sequence_length",
            name="uq_benchmark_configs_cell",
        ),
        # The claim query: WHERE status = 'pending' ORDER BY priority, id — an index scan
        # that touches pending rows only, however many are completed.
        Index(
            "ix_benchmark_configs_claim",
            "priority",
            "id",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_benchmark_configs_lease",
            "heartbeat_at",
            postgresql_where=text("status = 'running'"),
        ),
        Index("ix_benchmark_configs_progress", "model_version_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE")
    )
    hardware_config_id: Mapped[int] = mapped_column(ForeignKey("hardware_configs.id"))
    framework_id: Mapped[int] = mapped_column(ForeignKey("inference_frameworks.id"))
    workload_type: Mapped[str] = mapped_column(String(40))
    batch_size: Mapped[int]
    sequence_length: Mapped[int]
    status: Mapped[ConfigStatus] = mapped_column(
        Enum(
            ConfigStatus,
            name="config_status",
            native_enum=False,
            length=16,
            create_constraint=True,
            values_callable=lambda e: [m.value for m in e],
        ),
        server_default=ConfigStatus.PENDING.value,
    )
    priority: Mapped[int] = mapped_column(Integer, comment="Lower runs first (seed 003).")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BenchmarkResult(Base):
    """Measured metrics; ``config_id`` is nullable so results from before the matrix stay."""

    __tablename__ = "benchmark_results"
    __table_args__ = (
        # exactly one result per config, whatever workers crash or retry
        Index(
            "uq_benchmark_results_config",
            "config_id",
            unique=True,
            postgresql_where=text("config_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    config_id: Mapped[int | None] = mapped_column(
        ForeignKey("benchmark_configs.id", ondelete="SET NULL")
    )
    runner: Mapped[str] = mapped_column(String(40))
    worker_id: Mapped[str | None] = mapped_column(String(200))
    metrics: Mapped[dict[str, Any]]
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
