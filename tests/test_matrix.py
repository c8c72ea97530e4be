"""Matrix population against the real PostgreSQL: counts, fit, idempotency, priorities.

Each test builds its own small catalog (names tagged per test) and model versions, so the
exact cartesian counts do not depend on what the seed or other tests put in the catalog.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert

from foundryflow.benchmark.matrix import (
    WORKLOAD_ORDER,
    MatrixError,
    MatrixFilters,
    ModelVersionNotFoundError,
    populate,
    priority,
    weights_fit,
)
from foundryflow.store.catalog import (
    BenchmarkConfig,
    HardwareConfig,
    InferenceFramework,
    Model,
    ModelVersion,
    UseCase,
)
from foundryflow.store.db import session_scope

MODEL_PREFIX = "test-matrix/"
"""URI prefix of the models these tests create, so teardown can remove exactly them."""
B405 = 405_853_388_800
B8 = 8_030_261_248


def _hardware(name: str, device_type: str, count: int, memory_gb: float) -> HardwareConfig:
    return HardwareConfig(
        name=name,
        vendor="test",
        device_type=device_type,
        device_model=name,
        device_count=count,
        memory_gb_per_device=memory_gb,
        memory_bandwidth_gbps=1000,
        peak_bf16_tflops=100,
        peak_fp8_tflops=None,
        interconnect="test",
        interconnect_bandwidth_gbps=100,
        source="test fixture",
    )


@dataclass(frozen=True)
class Catalog:
    """Three hardware shapes, two frameworks (one GPU-only), two workloads."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def small_gpu(self) -> str:  # 1 x 24 GB
        return f"{self.tag}-gpu-24gb-x1"

    @property
    def big_gpu(self) -> str:  # 8 x 80 GB = 640 GB
        return f"{self.tag}-gpu-80gb-x8"

    @property
    def cpu(self) -> str:  # 2 x 768 GB
        return f"{self.tag}-cpu-2s"

    @property
    def gpu_only(self) -> str:
        return f"{self.tag}-gpu-only"

    @property
    def any_device(self) -> str:
        return f"{self.tag}-any-device"

    @property
    def offline(self) -> str:
        return f"{self.tag}-offline"

    def filters(self, **overrides: Any) -> MatrixFilters:
        values: dict[str, Any] = {
            "hardware": [self.small_gpu, self.big_gpu, self.cpu],
            "frameworks": [self.gpu_only, self.any_device],
            "workloads": ["chatbot", self.offline],
            "batch_sizes": [1, 8],
            "sequence_lengths": [512, 1024, 2048],
        }
        return MatrixFilters(**(values | overrides))


def make_catalog() -> Catalog:
    catalog = Catalog()
    with session_scope() as session:
        session.add_all(
            [
                _hardware(catalog.small_gpu, "gpu", 1, 24),
                _hardware(catalog.big_gpu, "gpu", 8, 80),
                _hardware(catalog.cpu, "cpu", 2, 768),
                InferenceFramework(
                    name=catalog.gpu_only, version="1", device_types=["gpu"], description="t"
                ),
                InferenceFramework(
                    name=catalog.any_device,
                    version="1",
                    device_types=["gpu", "cpu"],
                    description="t",
                ),
            ]
        )
        for name in ("chatbot", catalog.offline):
            session.execute(
                insert(UseCase)
                .values(
                    name=name,
                    description="t",
                    input_tokens=512,
                    output_tokens=256,
                    target_ttft_ms=500,
                    target_e2e_ms=10000,
                )
                .on_conflict_do_nothing(index_elements=["name"])
            )
    return catalog


def drop_test_rows(catalog: Catalog) -> None:
    """Remove what the tests created, so other test modules see the catalog they seeded."""
    with session_scope() as session:
        session.execute(
            text(
                "DELETE FROM benchmark_results r USING benchmark_configs c, model_versions v,"
                " models m WHERE r.config_id = c.id AND c.model_version_id = v.id"
                " AND v.model_id = m.id AND m.uri LIKE :prefix"
            ),
            {"prefix": MODEL_PREFIX + "%"},
        )
        session.execute(delete(Model).where(Model.uri.like(MODEL_PREFIX + "%")))  # cascades
        session.execute(delete(HardwareConfig).where(HardwareConfig.name.like(catalog.tag + "-%")))
        session.execute(
            delete(InferenceFramework).where(InferenceFramework.name.like(catalog.tag + "-%"))
        )
        session.execute(delete(UseCase).where(UseCase.name == catalog.offline))


def make_version(parameter_count: int = B8, dtype: str = "bf16") -> int:
    with session_scope() as session:
        model = Model(
            uri=f"{MODEL_PREFIX}{uuid.uuid4().hex}",
            family="test",
            parameter_count=parameter_count,
            num_layers=32,
            hidden_size=4096,
            num_attention_heads=32,
            num_kv_heads=8,
            max_context=131072,
        )
        version = ModelVersion(model=model, version="1", dtype=dtype)
        session.add(version)
        session.flush()
        return version.id


def config_rows(model_version_id: int) -> list[BenchmarkConfig]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(BenchmarkConfig)
                .where(BenchmarkConfig.model_version_id == model_version_id)
                .order_by(BenchmarkConfig.id)
            )
        )


@pytest.fixture(scope="module")
def catalog() -> Iterator[Catalog]:
    catalog = make_catalog()
    yield catalog
    drop_test_rows(catalog)


# --- pure rules -----------------------------------------------------------------------------


def test_priority_rule() -> None:
    assert priority("chatbot", 1) == 100
    assert priority("chatbot", 2) == 225
    assert priority("guardrail", 1) == 250
    assert priority("never-heard-of-it", 4096) == 1000
    workloads = [*WORKLOAD_ORDER, "unlisted"]
    batches = [1, 2, 3, 8, 32, 100, 128, 1024, 4096]
    for workload, batch in itertools.product(workloads, batches):
        value = priority(workload, batch)
        if (workload, batch) != ("chatbot", 1):
            assert 200 <= value <= 1000
        assert value >= priority("chatbot", 1)
    for workload in workloads:  # never later for a smaller batch
        values = [priority(workload, b) for b in batches]
        assert values == sorted(values)
    for batch in batches:  # never later for a more interactive workload
        values = [priority(w, batch) for w in workloads]
        assert values == sorted(values)
    with pytest.raises(ValueError, match="batch_size"):
        priority("chatbot", 0)


def test_weights_fit() -> None:
    small = _hardware("s", "gpu", 1, 24)
    assert not weights_fit(B405, "bf16", small)  # 811 GB of weights on 24 GB
    assert not weights_fit(B405, "bf16", _hardware("h100x8", "gpu", 8, 80))  # 576 GB usable
    assert weights_fit(B405, "bf16", _hardware("h200x8", "gpu", 8, 141))  # 1015 GB usable
    assert weights_fit(B405, "int4", _hardware("h100x8", "gpu", 8, 80))  # 203 GB
    assert weights_fit(B8, "bf16", small)  # 16.1 GB <= 21.6 GB usable
    assert not weights_fit(12_000_000_000, "bf16", small)  # 24 GB: fits raw, not with margin
    assert weights_fit(12_000_000_000, "fp8", small)
    with pytest.raises(
        ValueError, match="unknown dtype 'fp64'; known: fp32, bf16, fp16, fp8, int8, int4"
    ):
        weights_fit(B8, "fp64", small)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"batch_sizes": [0]}, "greater than 0"),
        ({"batch_sizes": [4097]}, "less than or equal to 4096"),
        ({"sequence_lengths": [1_048_577]}, "less than or equal to 1048576"),
        ({"batch_sizes": [1, 8, 1]}, "duplicate batch sizes: 1"),
        ({"hardware": ["a", "a"]}, "duplicate hardware: a"),
        ({"workloads": []}, "give at least one of the workloads"),
        ({"frameworks": [""]}, "at least 1 character"),
        ({"gpus": ["x"]}, "Extra inputs are not permitted"),
    ],
)
def test_filters_are_validated(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MatrixFilters(**values)


def test_filter_defaults() -> None:
    filters = MatrixFilters()
    assert filters.batch_sizes == [1, 8, 32, 64, 128]
    assert filters.sequence_lengths == [512, 1024, 2048, 4096, 8192]
    assert filters.hardware is filters.frameworks is filters.workloads is None


# --- population -----------------------------------------------------------------------------


def test_populate_counts_are_the_filtered_cartesian_product(catalog: Catalog) -> None:
    version = make_version(B8)
    result = populate(version, catalog.filters())
    # pairs: small_gpu x 2, big_gpu x 2, cpu x any_device only = 5; cells: 2 x 2 x 3 = 12
    assert (result.inserted, result.already_present, result.skipped_not_fitting) == (60, 0, 0)
    assert result.total_candidates == 60
    rows = config_rows(version)
    assert len(rows) == 60
    assert {r.status.value for r in rows} == {"pending"}
    assert {(r.batch_size, r.sequence_length) for r in rows} == set(
        itertools.product([1, 8], [512, 1024, 2048])
    )
    assert {r.workload_type for r in rows} == {"chatbot", catalog.offline}
    for row in rows:
        assert row.priority == priority(row.workload_type, row.batch_size)
        assert row.attempts == 0 and row.claimed_by is None


def test_populate_skips_hardware_the_weights_do_not_fit(catalog: Catalog) -> None:
    version = make_version(B405, "bf16")  # 811 GB: only the 2 x 768 GB CPU node holds it
    result = populate(version, catalog.filters())
    assert result.inserted == 12  # cpu x any_device x 12 cells
    assert result.skipped_not_fitting == 48  # 24 GB (2 frameworks) + 640 GB (2) x 12
    assert result.total_candidates == 60
    hardware_ids = {r.hardware_config_id for r in config_rows(version)}
    with session_scope() as session:
        names = set(
            session.scalars(select(HardwareConfig.name).where(HardwareConfig.id.in_(hardware_ids)))
        )
    assert names == {catalog.cpu}


def test_populate_is_idempotent_and_fills_gaps(catalog: Catalog) -> None:
    version = make_version(B8)
    first = populate(version, catalog.filters(batch_sizes=[1]))
    assert (first.inserted, first.already_present) == (30, 0)
    again = populate(version, catalog.filters(batch_sizes=[1]))
    assert (again.inserted, again.already_present, again.total_candidates) == (0, 30, 30)
    wider = populate(version, catalog.filters(batch_sizes=[1, 8]))
    assert (wider.inserted, wider.already_present) == (30, 30)
    assert len(config_rows(version)) == 60


def test_populate_without_filters_takes_the_whole_catalog(catalog: Catalog) -> None:
    version = make_version(B8)
    result = populate(version, MatrixFilters(batch_sizes=[1], sequence_lengths=[512]))
    with session_scope() as session:
        hardware = session.scalars(select(HardwareConfig)).all()
        frameworks = session.scalars(select(InferenceFramework)).all()
        use_cases = session.execute(select(func.count()).select_from(UseCase)).scalar_one()
    pairs = sum(h.device_type in f.device_types for h in hardware for f in frameworks)
    assert result.total_candidates == pairs * use_cases
    assert result.inserted + result.skipped_not_fitting == result.total_candidates
    assert result.inserted == len(config_rows(version))


@pytest.mark.parametrize(
    ("dimension", "expected"),
    [
        ("hardware", "unknown hardware: nope-gpu; known: "),
        ("frameworks", "unknown frameworks: nope-gpu; known: "),
        ("workloads", "unknown workloads: nope-gpu; known: "),
    ],
)
def test_unknown_names_are_clear_errors_and_write_nothing(
    catalog: Catalog, dimension: str, expected: str
) -> None:
    version = make_version(B8)
    current = getattr(catalog.filters(), dimension)
    with pytest.raises(MatrixError, match=expected) as caught:
        populate(version, catalog.filters(**{dimension: [*current, "nope-gpu"]}))
    assert current[0] in str(caught.value)  # the known names are listed
    assert config_rows(version) == []


def test_unknown_model_version_is_a_clear_error() -> None:
    with pytest.raises(ModelVersionNotFoundError, match="model version 2147483000 does not"):
        populate(2_147_483_000, MatrixFilters())


def test_unknown_dtype_writes_nothing(catalog: Catalog) -> None:
    version = make_version(B8, "fp64")
    with pytest.raises(MatrixError, match="dtype 'fp64', which has no known size per weight"):
        populate(version, catalog.filters())
    assert config_rows(version) == []
