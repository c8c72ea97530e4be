"""The matrix's ``simulate`` runner: a cell's metrics predicted instead of measured.

It fills a matrix in seconds where load tests take hours, gives a baseline to compare
measured cells with, and checks a matrix end to end without GPUs. A cell is read as the
``http`` runner reads it — concurrency = batch size, output = ``min(max_tokens,
sequence_length // 2)`` tokens, the rest of the sequence the prompt — and the metrics keep
that runner's keys where a prediction means the same thing (``ttft_ms_mean``/``_p50``,
``tpot_ms_*``, ``itl_ms_*``, ``e2e_ms_*``, ``output_tokens_per_s``, ``requests_per_s``),
plus ``"simulated": true``. A prediction has no spread, so there are no p90/p99, and no
request or error counts.

A cell that does not fit in memory fails, as a real run would fail to start; its error
says by how much.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import Field
from sqlalchemy import select

from foundryflow.benchmark.runners import BaseRunner, BenchmarkCell, RunnerOptions
from foundryflow.sim.model import Prediction, SimulationError, simulate
from foundryflow.sim.recommend import smallest_fitting
from foundryflow.sim.specs import HardwareSpec, ModelSpec, Workload
from foundryflow.store.catalog import HardwareConfig, Model
from foundryflow.store.db import session_scope


@runtime_checkable
class CatalogCell(Protocol):
    """What the runner needs of a cell besides :class:`BenchmarkCell`: the catalog names
    (``foundryflow.benchmark.queue.ClaimedConfig`` has them)."""

    @property
    def hardware(self) -> str: ...

    @property
    def framework(self) -> str: ...

    @property
    def model_uri(self) -> str: ...

    @property
    def dtype(self) -> str: ...


class SimulateOptions(RunnerOptions):
    max_tokens: int = Field(default=128, ge=1, le=1_000_000)
    """Output tokens at most; as the ``http`` runner, never more than half the sequence."""
    tp: int | None = Field(default=None, ge=1)
    """Tensor-parallel degree; default: the smallest that fits the cell in memory."""


class SimulateRunner(BaseRunner[SimulateOptions]):
    """Predicts each cell with :mod:`foundryflow.sim`; figures from the database's catalog."""

    name: ClassVar[str] = "simulate"
    Options: ClassVar[type[RunnerOptions]] = SimulateOptions

    def __init__(self, options: SimulateOptions) -> None:
        super().__init__(options)
        # catalog rows are reference data: fetched once per name for this runner's life
        self._hardware: dict[str, HardwareSpec] = {}
        self._models: dict[tuple[str, str], ModelSpec] = {}

    def _specs(self, cell: CatalogCell) -> tuple[ModelSpec, HardwareSpec]:
        model_key = (cell.model_uri, cell.dtype)
        if cell.hardware not in self._hardware or model_key not in self._models:
            with session_scope() as session:
                hardware = session.scalar(
                    select(HardwareConfig).where(HardwareConfig.name == cell.hardware)
                )
                model = session.scalar(select(Model).where(Model.uri == cell.model_uri))
                if hardware is None or model is None:
                    missing = "hardware" if hardware is None else "model"
                    name = cell.hardware if hardware is None else cell.model_uri
                    raise LookupError(f"{missing} {name!r} is not in the catalog")
                self._hardware[cell.hardware] = HardwareSpec.from_catalog(hardware)
                self._models[model_key] = ModelSpec.from_catalog(model, cell.dtype)
        return self._models[model_key], self._hardware[cell.hardware]

    def _predict(self, model: ModelSpec, hardware: HardwareSpec, workload: Workload) -> Prediction:
        if self.options.tp is None:
            return smallest_fitting(model, hardware, workload)
        return simulate(model, hardware, workload, self.options.tp)

    def run(self, cell: BenchmarkCell) -> dict[str, Any]:
        if not isinstance(cell, CatalogCell):
            raise TypeError(
                "the simulate runner needs a claimed config with hardware, framework, "
                "model_uri and dtype (foundryflow.benchmark.queue.ClaimedConfig)"
            )
        if cell.sequence_length < 2:
            raise ValueError(f"config {cell.id}: sequence_length {cell.sequence_length} < 2")
        output = min(self.options.max_tokens, cell.sequence_length // 2)
        workload = Workload(
            concurrency=cell.batch_size,
            input_tokens=cell.sequence_length - output,
            output_tokens=output,
        )
        model, hardware = self._specs(cell)
        p = self._predict(model, hardware, workload)
        if not p.fits:
            raise SimulationError(
                f"config {cell.id}: {model.name} ({model.dtype}) at batch {cell.batch_size} x "
                f"{cell.sequence_length} tokens does not fit {hardware.name} at tp={p.tp}: "
                f"needs {p.memory_gb:.1f} GB per device, {p.memory_budget_gb:.1f} GB usable"
            )
        return {
            "runner": self.name,
            "simulated": True,
            "model": model.name,
            "dtype": model.dtype,
            "hardware": hardware.name,
            "framework": cell.framework,
            "tp": p.tp,
            "workload_type": cell.workload_type,
            "batch_size": cell.batch_size,
            "sequence_length": cell.sequence_length,
            "concurrency": p.concurrency,
            "input_tokens": p.input_tokens,
            "max_tokens": p.output_tokens,
            "output_tokens_mean": p.output_tokens,
            "prompt_tokens_mean": p.input_tokens,
            "requests_per_s": round(p.requests_per_s, 3),
            "output_tokens_per_s": round(p.output_tokens_per_s, 3),
            **_point("ttft_ms", p.ttft_ms),
            **_point("tpot_ms", p.tpot_ms),
            **_point("itl_ms", p.tpot_ms),
            **_point("e2e_ms", p.e2e_ms),
            "memory_gb_per_device": round(p.memory_gb, 3),
            "memory_budget_gb_per_device": round(p.memory_budget_gb, 3),
            "kv_cache_gb_per_device": round(p.kv_cache_gb, 3),
        }


def _point(prefix: str, ms: float) -> dict[str, float]:
    """A predicted latency under the load test's keys that a single value fills."""
    value = round(ms, 3)
    return {f"{prefix}_mean": value, f"{prefix}_p50": value}
