"""The reference catalog: complete, plausible, and idempotent to seed."""

from __future__ import annotations

from sqlalchemy import func, select
from typer.testing import CliRunner

from foundryflow.benchmark.seed import HARDWARE, seed_catalog
from foundryflow.cli import app
from foundryflow.store.catalog import (
    HardwareConfig,
    InferenceFramework,
    Model,
    ModelVersion,
    UseCase,
)
from foundryflow.store.db import session_scope

TABLES = (HardwareConfig, InferenceFramework, UseCase, Model, ModelVersion)


def counts() -> list[int]:
    with session_scope() as session:
        return [session.scalar(select(func.count()).select_from(t)) or 0 for t in TABLES]


def test_seed_is_idempotent_through_the_cli() -> None:
    first = CliRunner().invoke(app, ["db", "seed"])
    assert first.exit_code == 0, first.output
    assert "20 hardware configs, 3 frameworks, 10 use cases" in first.output
    after_first = counts()
    assert CliRunner().invoke(app, ["db", "seed"]).exit_code == 0
    assert counts() == after_first
    assert after_first[0] >= 20 and after_first[1] == 3 and after_first[2] >= 10


def test_catalog_figures_are_consistent() -> None:
    with session_scope() as session:
        seed_catalog(session)
        rows = {h.name: h for h in session.scalars(select(HardwareConfig))}
        frameworks = {f.name for f in session.scalars(select(InferenceFramework))}
    assert frameworks == {"vllm", "tgi", "lmdeploy"}
    assert {h["device_type"] for h in HARDWARE} == {"gpu", "cpu", "hpu"}
    for row in rows.values():
        assert row.memory_gb_per_device > 0 and row.memory_bandwidth_gbps > 0
        assert row.peak_bf16_tflops > 0 and row.source
        assert row.peak_fp8_tflops is None or row.peak_fp8_tflops >= row.peak_bf16_tflops
    # spot-check against the datasheets
    assert rows["h100-sxm-80gb-x8"].total_memory_gb == 640
    assert rows["h100-sxm-80gb-x1"].memory_bandwidth_gbps == 3350
    assert rows["mi300x-192gb-x1"].peak_fp8_tflops == 2614.9
