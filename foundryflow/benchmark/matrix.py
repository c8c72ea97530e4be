"""Populate the benchmark matrix of one model version (seed 003, phase 3.1).

The matrix is the cartesian product hardware x framework x workload x batch size x
sequence length, minus the hardware the model's weights cannot fit on. It is written to
``benchmark_configs`` (the queue workers drain) instead of travelling through Argo
parameters, whose 1 MB limit a 9,000-config matrix already exceeds.

Rows go in with COPY into a temporary table and one ``INSERT ... SELECT ... ON CONFLICT DO
NOTHING``: COPY is the fastest way into PostgreSQL, and the conflict clause makes a re-run
(or two populates racing) insert only what is missing. All of it is one transaction, so a
failed populate leaves nothing behind.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from foundryflow.benchmark import queries
from foundryflow.sim.constants import BYTES_PER_PARAM
from foundryflow.store.catalog import (
    HardwareConfig,
    InferenceFramework,
    Model,
    ModelVersion,
    UseCase,
)
from foundryflow.store.db import get_engine

MAX_BATCH_SIZE = 4096
MAX_SEQUENCE_LENGTH = 1_048_576
DEFAULT_BATCH_SIZES = (1, 8, 32, 64, 128)
DEFAULT_SEQUENCE_LENGTHS = (512, 1024, 2048, 4096, 8192)

USABLE_MEMORY_FRACTION = 0.9
"""Share of device memory the weights may take. The rest is for what every serving engine
needs besides weights: CUDA context and allocator slack, activations, and at least a few
KV-cache blocks. vLLM, by default, takes 0.9 of GPU memory for weights and KV cache
together (``gpu_memory_utilization``), so weights above that do not even load there."""

WORKLOAD_ORDER = (
    "chatbot",
    "guardrail",
    "code_generation",
    "classification",
    "translation",
    "rag",
    "agent",
    "summarization",
    "long_context_qa",
    "batch_inference",
)
"""Workloads by how directly a person waits on each response: chat first, then what sits in
the path of every chat request (guardrails), then the other interactive ones, offline batch
last. A workload not listed ranks after all of these."""


_Named = TypeVar("_Named", HardwareConfig, InferenceFramework, UseCase)


class MatrixError(ValueError):
    """A request the caller can fix (unknown names, unknown model version); nothing written."""


class ModelVersionNotFoundError(MatrixError):
    pass


Positive = Annotated[int, Field(gt=0)]
Name = Annotated[str, Field(min_length=1, max_length=80)]


class MatrixFilters(BaseModel):
    """Which part of the matrix to populate; ``None`` for a dimension means all of it.

    Names are checked against the catalog by :func:`populate` (that needs the database);
    everything that can be checked without it is checked here.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    hardware: list[Name] | None = None
    frameworks: list[Name] | None = None
    workloads: list[Name] | None = None
    batch_sizes: list[Annotated[Positive, Field(le=MAX_BATCH_SIZE)]] = Field(
        default_factory=lambda: list(DEFAULT_BATCH_SIZES)
    )
    sequence_lengths: list[Annotated[Positive, Field(le=MAX_SEQUENCE_LENGTH)]] = Field(
        default_factory=lambda: list(DEFAULT_SEQUENCE_LENGTHS)
    )

    @field_validator("hardware", "frameworks", "workloads", "batch_sizes", "sequence_lengths")
    @classmethod
    def _non_empty_unique(
        cls, values: list[str] | list[int] | None, info: ValidationInfo
    ) -> list[str] | list[int] | None:
        if values is None:
            return None
        what = (info.field_name or "value").replace("_", " ")
        if not values:
            raise ValueError(f"give at least one of the {what}, or leave the option out")
        duplicates = sorted(str(v) for v, n in Counter(values).items() if n > 1)
        if duplicates:
            raise ValueError(f"duplicate {what}: {', '.join(duplicates)}")
        return values


@dataclass(frozen=True)
class PopulateResult:
    """``inserted + already_present + skipped_not_fitting == total_candidates``."""

    inserted: int
    already_present: int
    skipped_not_fitting: int
    total_candidates: int
    seconds: float


class MemoryShape(Protocol):
    device_count: int
    memory_gb_per_device: float


def priority(workload: str, batch_size: int) -> int:
    """Claim order of a config; lower runs first.

    The seed's rule: chatbot at batch 1 — the single-user interactive case everyone asks
    about first — is 100. Every other config gets

        200 + 50 x rank(workload) + 25 x ⌈log2(batch_size)⌉

    where ``rank`` is the workload's place in :data:`WORKLOAD_ORDER` (0 = chatbot, 10 for a
    workload not listed). The rule is monotone: a more interactive workload or a smaller
    batch never runs later; log2 because batch sizes are swept in powers of two, so each
    doubling is one step. The bounds hold by construction: rank ≤ 10 and batch ≤ 4096
    (⌈log2⌉ ≤ 12) give 200 ≤ priority ≤ 1000.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {batch_size}")
    if workload == "chatbot" and batch_size == 1:
        return 100
    rank = WORKLOAD_ORDER.index(workload) if workload in WORKLOAD_ORDER else len(WORKLOAD_ORDER)
    return 200 + 50 * rank + 25 * math.ceil(math.log2(batch_size))


def weights_fit(parameter_count: int, dtype: str, hardware: MemoryShape) -> bool:
    """Whether the weights alone fit in the node's memory, leaving the usable margin.

    ``parameter_count x bytes per weight ≤ device_count x memory_gb_per_device x 10⁹ x``
    :data:`USABLE_MEMORY_FRACTION`. Memory is in vendor GB (10⁹ bytes), the smaller reading
    of "80 GB", so a config never passes by a unit confusion. KV cache is not counted: it
    depends on batch and sequence length, and whether it fits is what the benchmark finds.
    """
    try:
        bytes_per_weight = BYTES_PER_PARAM[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(BYTES_PER_PARAM)}") from None
    capacity = hardware.device_count * hardware.memory_gb_per_device * 1e9
    return parameter_count * bytes_per_weight <= capacity * USABLE_MEMORY_FRACTION


def _select(rows: Sequence[_Named], wanted: list[str] | None, what: str) -> list[_Named]:
    """The rows named in ``wanted`` (all if None), or an error naming the unknown ones."""
    if wanted is None:
        return list(rows)
    by_name = {row.name: row for row in rows}
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        raise MatrixError(
            f"unknown {what}: {', '.join(unknown)}; known: {', '.join(sorted(by_name)) or 'none'}"
        )
    return [by_name[name] for name in wanted]


def _copy_blocks(pairs: Sequence[tuple[int, int]], cells: Sequence[str]) -> Iterator[str]:
    """COPY text for every (hardware, framework) pair x every (workload, batch, seq) cell.

    A million rows are built by ``str.join`` in C, one block per pair: the per-row Python
    loop this replaces took longer than the COPY itself.
    """
    for hardware_id, framework_id in pairs:
        prefix = f"{hardware_id}\t{framework_id}\t"
        yield prefix + f"\n{prefix}".join(cells) + "\n"


def populate(
    model_version_id: int, filters: MatrixFilters | None = None, engine: Engine | None = None
) -> PopulateResult:
    """Insert the missing configs of ``model_version_id``'s matrix, in one transaction."""
    filters = filters or MatrixFilters()
    started = time.perf_counter()
    with (engine or get_engine()).begin() as conn:
        with Session(bind=conn) as session:
            found = session.execute(
                select(Model.parameter_count, ModelVersion.dtype)
                .join(ModelVersion.model)
                .where(ModelVersion.id == model_version_id)
            ).one_or_none()
            if found is None:
                raise ModelVersionNotFoundError(
                    f"model version {model_version_id} does not exist; "
                    "register the model version first"
                )
            parameter_count, dtype = found
            if dtype not in BYTES_PER_PARAM:
                raise MatrixError(
                    f"model version {model_version_id} has dtype {dtype!r}, which has no known "
                    f"size per weight; known: {', '.join(BYTES_PER_PARAM)}"
                )
            hardware = _select(
                session.scalars(select(HardwareConfig).order_by(HardwareConfig.id)).all(),
                filters.hardware,
                "hardware",
            )
            frameworks = _select(
                session.scalars(select(InferenceFramework).order_by(InferenceFramework.id)).all(),
                filters.frameworks,
                "frameworks",
            )
            use_cases = _select(
                session.scalars(select(UseCase).order_by(UseCase.id)).all(),
                filters.workloads,
                "workloads",
            )
        cells = [
            f"{use_case.id}\t{batch}\t{seq}\t{priority(use_case.name, batch)}"
            for use_case, batch, seq in itertools.product(
                use_cases, filters.batch_sizes, filters.sequence_lengths
            )
        ]
        fitting: list[tuple[int, int]] = []
        skipped_pairs = 0
        for hw, fw in itertools.product(hardware, frameworks):
            if hw.device_type not in fw.device_types:
                continue
            if weights_fit(parameter_count, dtype, hw):
                fitting.append((hw.id, fw.id))
            else:
                skipped_pairs += 1
        inserted = 0
        if fitting and cells:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor:
                cursor.execute(queries.CREATE_LOAD_TABLE)
                with cursor.copy(queries.COPY_LOAD) as copy:
                    for block in _copy_blocks(fitting, cells):
                        copy.write(block)
                cursor.execute(queries.INSERT_FROM_LOAD, {"model_version_id": model_version_id})
                inserted = cursor.rowcount
    fitting_count = len(fitting) * len(cells)
    skipped = skipped_pairs * len(cells)
    return PopulateResult(
        inserted=inserted,
        already_present=fitting_count - inserted,
        skipped_not_fitting=skipped,
        total_candidates=fitting_count + skipped,
        seconds=time.perf_counter() - started,
    )
