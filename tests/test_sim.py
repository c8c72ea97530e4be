"""The serving simulator: physics against published figures, the capacity formula of seed 002,
recommendations, the ``simulate`` command and the matrix's ``simulate`` runner.

The physics tests build their inputs from the seed's reference rows (no database); the CLI
and runner tests read the catalog from the test PostgreSQL, seeded here, plus rows of their
own (URIs and names under ``test-sim``) that are removed afterwards.
"""

from __future__ import annotations

import itertools
import json
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import EntryPoint
from typing import Any

import pytest
import typer
from pydantic import ValidationError
from sqlalchemy import delete, text, update
from typer.testing import CliRunner

from foundryflow.benchmark import seed
from foundryflow.benchmark.matrix import MatrixFilters, populate
from foundryflow.benchmark.queue import ClaimedConfig
from foundryflow.benchmark.runners import GROUP, RunnerOptionsError, RunnerRegistry
from foundryflow.benchmark.worker import drain
from foundryflow.config import get_settings
from foundryflow.sim.capacity import capacity_rps, slots_for_rps
from foundryflow.sim.cli import simulate_command
from foundryflow.sim.constants import (
    ACTIVATION_BYTES_PER_TOKEN_HIDDEN,
    ACTIVATION_PROFILE_TOKENS,
    ALLREDUCE_LATENCY_S,
    BANDWIDTH_EFFICIENCY,
    COMPUTE_EFFICIENCY,
    GPU_MEMORY_UTILIZATION,
    RUNTIME_RESERVE_GB,
    TP_RESERVE_GB,
)
from foundryflow.sim.model import SimulationError, simulate, tp_degrees
from foundryflow.sim.recommend import recommend
from foundryflow.sim.runner import SimulateOptions, SimulateRunner
from foundryflow.sim.specs import HardwareSpec, ModelSpec, Workload
from foundryflow.store.catalog import (
    ConfigStatus,
    HardwareConfig,
    Model,
    ModelVersion,
)
from foundryflow.store.db import session_scope

L8 = "meta-llama/Llama-3.1-8B-Instruct"
L70 = "meta-llama/Llama-3.1-70B-Instruct"
QWEN = "Qwen/Qwen2.5-7B-Instruct"
H100 = "h100-sxm-80gb-x1"
H100X8 = "h100-sxm-80gb-x8"
PREFIX = "test-sim"
"""URIs and hardware names these tests add to the database; removed at the end."""
WIDE = {"COLUMNS": "1000"}  # rich wraps error messages at 80 columns otherwise
SIMULATE = EntryPoint("simulate", "foundryflow.sim.runner:SimulateRunner", GROUP)


def model(uri: str, dtype: str = "bf16", **changes: Any) -> ModelSpec:
    """A seeded model, as the catalog holds it (a transient row: no database)."""
    row = next(m for m in seed.MODELS if m["uri"] == uri) | changes
    return ModelSpec.from_catalog(Model(**row), dtype)


def hardware(name: str) -> HardwareSpec:
    return HardwareSpec.from_catalog(
        HardwareConfig(**next(h for h in seed.HARDWARE if h["name"] == name))
    )


def workload(
    concurrency: int = 1, input_tokens: int = 512, output_tokens: int = 256, **targets: Any
) -> Workload:
    return Workload(
        concurrency=concurrency, input_tokens=input_tokens, output_tokens=output_tokens, **targets
    )


def flat(text_: str) -> str:
    return " ".join(text_.split())


# --------------------------------------------------------------------------- physics


def test_weight_memory_by_dtype() -> None:
    """Llama-3.1-8B in bf16 is the ~16 GB every model card and vLLM log shows (vLLM reports
    'Model loading took 14.99 GiB' = 16.1 GB)."""
    bf16 = model(L8).weight_bytes
    assert bf16 / 1e9 == pytest.approx(16.06, abs=0.01)
    assert model(L8, "fp16").weight_bytes == bf16
    assert model(L8, "fp8").weight_bytes == model(L8, "int8").weight_bytes == bf16 / 2
    assert model(L8, "int4").weight_bytes == bf16 / 4
    assert model(L8, "fp32").weight_bytes == bf16 * 2
    assert model(L70).weight_bytes / 1e9 == pytest.approx(141.1, abs=0.1)


def test_kv_cache_per_token_is_gqa_aware() -> None:
    """2 (K, V) x 32 layers x 8 KV heads x 128 head_dim x 2 bytes = 128 KiB for Llama-3.1-8B;
    without grouped-query attention (32 KV heads) it would be 4 times that."""
    assert model(L8).kv_bytes_per_token == 128 * 1024
    assert model(L8, num_kv_heads=32).kv_bytes_per_token == 512 * 1024
    assert model(L70).kv_bytes_per_token == 2 * 80 * 8 * 128 * 2  # 320 KiB
    assert model(L8, "int4").kv_bytes_per_token == 128 * 1024  # the KV cache stays 16-bit
    assert model(L8, "fp32").kv_bytes_per_token == 256 * 1024


def test_kv_heads_split_over_tp_then_replicate() -> None:
    llama = model(L8)
    assert [llama.kv_bytes_per_token_per_device(tp) for tp in (1, 2, 4, 8)] == [
        128 * 1024,
        64 * 1024,
        32 * 1024,
        16 * 1024,
    ]
    qwen = model(QWEN)  # 4 KV heads: at tp=8 each device would need half a head
    assert qwen.kv_bytes_per_token_per_device(4) == qwen.kv_bytes_per_token // 4
    assert model(L8, num_kv_heads=4).kv_bytes_per_token_per_device(8) == 2 * 32 * 1 * 128 * 2


def test_70b_does_not_fit_one_80gb_gpu_but_fits_tp4() -> None:
    llama70 = model(L70)
    one = simulate(llama70, hardware(H100), workload())
    assert not one.fits
    assert one.weights_gb > one.memory_budget_gb == pytest.approx(80 * GPU_MEMORY_UTILIZATION)
    by_tp = {tp: simulate(llama70, hardware(H100X8), workload(), tp) for tp in (1, 2, 4, 8)}
    assert by_tp[4].fits and by_tp[8].fits
    # tp=2: 70.6 GB of weights per GPU against 72 GB usable leaves no room for the rest when
    # "80 GB" is read as 80e9 bytes (real H100s have 85e9; vLLM then loads it with a few
    # thousand tokens of KV cache). Conservative on purpose, see constants.GB.
    assert not by_tp[2].fits
    assert by_tp[2].weights_gb == pytest.approx(70.55, abs=0.01)


def test_decode_and_prefill_of_8b_on_h100_are_in_published_ranges() -> None:
    """Batch 1, 512 in / 256 out: ~6 ms per token (≈165 tokens/s single stream) and a
    512-token prefill of tens of milliseconds."""
    p = simulate(model(L8), hardware(H100), workload())
    assert 5 <= p.tpot_ms <= 15
    assert 5 <= p.ttft_ms <= 50
    assert p.e2e_ms == pytest.approx(p.ttft_ms + 255 * p.tpot_ms)
    assert p.output_tokens_per_s == pytest.approx(256 / (p.e2e_ms / 1000))
    assert p.fits and 16 < p.memory_gb < 25


def test_one_replica_by_hand() -> None:
    """Round figures worked through the documented formulas (constants from the module)."""
    spec = ModelSpec(
        name="round",
        parameter_count=1_000_000_000,
        num_layers=10,
        hidden_size=1000,
        num_attention_heads=10,
        num_kv_heads=10,
        max_context=4096,
    )
    node = HardwareSpec(
        name="round-x2",
        device_count=2,
        memory_gb_per_device=100,
        memory_bandwidth_gbps=1000,
        peak_bf16_tflops=100,
        interconnect_bandwidth_gbps=100,
    )
    p = simulate(spec, node, workload(1, 1000, 11))
    kv_per_token = 2 * 10 * 10 * 100 * 2  # 40,000 bytes
    activations = ACTIVATION_PROFILE_TOKENS * 1000 * ACTIVATION_BYTES_PER_TOKEN_HIDDEN
    assert p.memory_gb * 1e9 == pytest.approx(
        2e9 + 1 * 1011 * kv_per_token + activations + RUNTIME_RESERVE_GB * 1e9
    )
    flops = 100e12 * COMPUTE_EFFICIENCY
    bandwidth = 1000e9 * BANDWIDTH_EFFICIENCY
    prefill = (2e9 * 1000 + 2 * 10 * 1000 * 1000**2) / flops  # compute bound
    step = (2e9 + 1005.5 * kv_per_token) / bandwidth  # bandwidth bound, mean context
    assert p.prefill_ms == pytest.approx(prefill * 1e3)
    assert p.decode_step_ms == pytest.approx(step * 1e3)
    assert p.ttft_ms == pytest.approx(prefill * 1e3)  # alone: no batch in flight to wait for
    assert p.e2e_ms == pytest.approx((prefill + 10 * step) * 1e3)

    # tp=2: half the weights and KV per device, plus 2 ring all-reduces per layer of
    # tokens x hidden x 2 bytes, (2 (tp - 1) / tp) = 1 of it over 50 GB/s each way
    two = simulate(spec, node, workload(1, 1000, 11), tp=2)
    comm_step = 2 * 10 * (ALLREDUCE_LATENCY_S + 1 * 1000 * 2 / 50e9)
    assert two.decode_step_ms == pytest.approx(
        ((1e9 + 1005.5 * kv_per_token / 2) / bandwidth + comm_step) * 1e3
    )
    comm_prefill = 2 * 10 * (ALLREDUCE_LATENCY_S + 1000 * 1000 * 2 / 50e9)
    assert two.prefill_ms == pytest.approx((prefill / 2 + comm_prefill) * 1e3)
    assert two.runtime_gb == RUNTIME_RESERVE_GB + TP_RESERVE_GB

    # a batch of 4: each TTFT waits half a step in flight; each token waits 3 other prefills
    four = simulate(spec, node, workload(4, 1000, 11))
    assert four.ttft_ms == pytest.approx(four.prefill_ms + four.decode_step_ms / 2)
    assert four.tpot_ms == pytest.approx(four.decode_step_ms + 3 * four.prefill_ms / 11)


def test_more_concurrency_means_slower_tokens_and_more_memory() -> None:
    llama, node = model(L8), hardware(H100)
    runs = [simulate(llama, node, workload(c)) for c in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
    for fewer, more in itertools.pairwise(runs):
        assert more.tpot_ms > fewer.tpot_ms
        assert more.ttft_ms >= fewer.ttft_ms
        assert more.memory_gb > fewer.memory_gb
        assert more.output_tokens_per_s > fewer.output_tokens_per_s  # batching pays off


def test_higher_tp_means_less_memory_per_gpu_and_faster_tokens() -> None:
    llama70, node = model(L70), hardware(H100X8)
    runs = [simulate(llama70, node, workload(8), tp) for tp in tp_degrees(node)]
    assert [p.tp for p in runs] == [1, 2, 4, 8]
    for lower, higher in itertools.pairwise(runs):
        assert higher.memory_gb < lower.memory_gb
        assert higher.tpot_ms < lower.tpot_ms


def test_slower_interconnect_costs_tensor_parallel_time() -> None:
    nvlink = hardware("l40s-48gb-x4").model_copy(update={"interconnect_bandwidth_gbps": 900})
    pcie = hardware("l40s-48gb-x4")
    llama = model(L8)
    assert (
        simulate(llama, pcie, workload(), 1).tpot_ms
        == simulate(llama, nvlink, workload(), 1).tpot_ms
    )
    assert (
        simulate(llama, pcie, workload(), 4).ttft_ms
        > simulate(llama, nvlink, workload(), 4).ttft_ms
    )


def test_fp8_uses_fp8_tensor_cores_where_the_device_has_them() -> None:
    long_prompt = workload(1, 4096, 64)
    h100, a100 = hardware(H100), hardware("a100-sxm-80gb-x1")
    assert simulate(model(L8, "fp8"), h100, long_prompt).prefill_ms == pytest.approx(
        simulate(model(L8), h100, long_prompt).prefill_ms / 2, rel=0.01
    )
    assert simulate(model(L8, "fp8"), a100, long_prompt).prefill_ms == pytest.approx(
        simulate(model(L8), a100, long_prompt).prefill_ms, rel=0.01
    )
    # decode is bandwidth bound: half the bytes, about half the time
    assert (
        simulate(model(L8, "fp8"), h100, workload()).tpot_ms
        < 0.6 * simulate(model(L8), h100, workload()).tpot_ms
    )


# --------------------------------------------------------------------------- capacity (seed 002)


def test_capacity_formula_reproduces_the_seed_example() -> None:
    """Seed 002 at 70 ms: 14 RPS -> 1 pod, 50 -> 4, 100 -> 7, 1000 -> 70; a 2x spike buffer on
    50 RPS provisions for 100 RPS: 7 pods."""
    assert capacity_rps(70) == pytest.approx(14.2857, abs=1e-4)
    assert capacity_rps(70, slots=7) == pytest.approx(100)
    assert [slots_for_rps(rps, 70) for rps in (14, 50, 100, 1000)] == [1, 4, 7, 70]
    assert slots_for_rps(50, 70, spike_buffer=True) == 7
    assert slots_for_rps(0.001, 70) == 1


@pytest.mark.parametrize(("rps", "latency"), [(0, 70), (-1, 70), (10, 0)])
def test_capacity_formula_rejects_nonsense(rps: float, latency: float) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        slots_for_rps(rps, latency)


# --------------------------------------------------------------------------- recommend


def seeded_hardware() -> list[HardwareSpec]:
    return [hardware(h["name"]) for h in seed.HARDWARE]


def test_recommend_8b_chatbot_over_the_whole_catalog() -> None:
    chatbot = workload(16, target_ttft_ms=500, target_e2e_ms=10_000)
    results = recommend(model(L8), seeded_hardware(), chatbot)
    assert len(results) == len(seed.HARDWARE)
    feasible = [r for r in results if r.feasible]
    infeasible = [r for r in results if not r.feasible]
    assert results == feasible + infeasible
    gpus = [r.gpus_total or 0 for r in feasible]
    assert gpus == sorted(gpus) and gpus[0] == 1
    by_name = {r.hardware: r for r in results}
    big = by_name[H100X8]
    assert (big.tp, big.replicas, big.gpus_total, big.nodes, big.rejected) == (1, 1, 1, 1, ())
    # the CPU sockets: 14.7 dense TFLOPs cannot prefill 512 tokens of an 8B in 500 ms
    epyc = by_name["epyc-9654-2s"]
    assert not epyc.feasible and "TTFT" in (epyc.reason or "")
    for r in infeasible:
        assert r.reason and r.tp is None and r.gpus_total is None
    for r in feasible:
        assert r.fits
        assert r.prediction.ttft_ms <= 500 and r.prediction.e2e_ms <= 10_000
    document = json.loads(json.dumps([r.as_dict() for r in results], allow_nan=False))
    assert document[0]["gpus_total"] == 1 and document[0]["reason"] is None
    assert document[-1]["feasible"] is False and document[-1]["tp"] is None
    assert document[-1]["reason"] == infeasible[-1].reason


def test_recommend_70b_picks_the_smallest_tp_that_fits_and_says_why_not_less() -> None:
    options = [hardware(f"h100-sxm-80gb-x{n}") for n in (8, 4, 2, 1)]
    results = recommend(model(L70), options, workload(8, target_ttft_ms=1000, target_e2e_ms=20_000))
    assert [(r.hardware, r.feasible, r.tp, r.gpus_total) for r in results] == [
        ("h100-sxm-80gb-x4", True, 4, 4),
        ("h100-sxm-80gb-x8", True, 4, 4),  # tp=8 works too, but uses twice the GPUs
        ("h100-sxm-80gb-x1", False, None, None),
        ("h100-sxm-80gb-x2", False, None, None),
    ]
    x8, x1 = results[1], results[2]
    assert [line.split(":")[0] for line in x8.rejected] == ["tp=1", "tp=2"]
    assert "per device, 72.0 GB usable" in x8.rejected[0]
    assert x1.reason is not None and x1.reason.startswith("tp=1: needs 1")
    assert not x1.fits and x1.prediction.tp == 1


def test_recommend_meets_a_tight_ttft_with_more_tp() -> None:
    long_prompt = workload(1, 8192, 64, target_ttft_ms=250)
    [result] = recommend(model(L8), [hardware(H100X8)], long_prompt)
    assert result.tp == 2
    assert len(result.rejected) == 1 and result.rejected[0].startswith("tp=1: TTFT ")
    assert result.prediction.ttft_ms <= 250


def test_recommend_lists_tp_degrees_the_heads_do_not_allow() -> None:
    [result] = recommend(model(QWEN), [hardware(H100X8)], workload(4))
    assert result.tp == 1
    assert result.rejected == ("tp=8: 28 attention heads do not split over 8 devices",)


def test_replicas_follow_the_capacity_formula_and_the_spike_buffer_doubles_them() -> None:
    llama, node = model(L8), hardware(H100)
    e2e = simulate(llama, node, workload(4)).e2e_ms
    [steady] = recommend(llama, [node], workload(4, target_rps=20))
    [spiky] = recommend(llama, [node], workload(4, target_rps=20, spike_buffer=True))
    assert steady.replicas == math.ceil(math.ceil(20 * e2e / 1000) / 4)
    assert spiky.replicas == math.ceil(math.ceil(40 * e2e / 1000) / 4)
    assert steady.replicas is not None and spiky.replicas is not None
    assert steady.replicas >= 2
    assert 2 * steady.replicas - 1 <= spiky.replicas <= 2 * steady.replicas
    assert spiky.gpus_total == spiky.replicas and spiky.nodes == spiky.replicas


def test_equal_gpu_counts_prefer_the_smaller_tp() -> None:
    """tp=1 x 2 replicas and tp=2 x 1 replica use 2 GPUs each: the smaller TP is chosen."""
    llama, node = model(L8), hardware("h100-sxm-80gb-x2")
    cap1 = capacity_rps(simulate(llama, node, workload(8), 1).e2e_ms, 8)
    cap2 = capacity_rps(simulate(llama, node, workload(8), 2).e2e_ms, 8)
    assert cap1 < cap2 < 2 * cap1
    [result] = recommend(llama, [node], workload(8, target_rps=cap2 * 0.999))
    assert (result.tp, result.replicas, result.gpus_total) == (1, 2, 2)


def test_context_and_tp_errors_are_clear() -> None:
    with pytest.raises(
        SimulationError,
        match=rf"32768 input \+ 512 output tokens exceed {QWEN}'s context of 32768",
    ):
        recommend(model(QWEN), [hardware(H100)], workload(1, 32768, 512))
    with pytest.raises(
        SimulationError,
        match=r"tp=2 is not possible .* not offered by h100-sxm-80gb-x1; possible: 1$",
    ):
        simulate(model(L8), hardware(H100), workload(), tp=2)
    with pytest.raises(
        SimulationError, match=r"tp=8 is not possible .*28 attention heads .*; possible: 1, 2, 4$"
    ):
        simulate(model(QWEN), hardware(H100X8), workload(), tp=8)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: workload(concurrency=-1),
            "concurrency\n  Input should be greater than or equal to 1",
        ),
        (
            lambda: workload(input_tokens=0),
            "input_tokens\n  Input should be greater than or equal to 1",
        ),
        (
            lambda: workload(output_tokens=0),
            "output_tokens\n  Input should be greater than or equal to 1",
        ),
        (
            lambda: workload(spike_buffer=True),
            "spike_buffer doubles target_rps: give target_rps too",
        ),
        (
            lambda: workload(target_ttft_ms=500, target_e2e_ms=100),
            "target_e2e_ms 100 is below target_ttft_ms 500",
        ),
        (
            lambda: workload(target_rps=float("inf")),
            "target_rps\n  Input should be a finite number",
        ),
        (
            lambda: model(L8, "fp6"),
            "dtype\n  Input should be 'fp32', 'bf16', 'fp16', 'fp8', 'int8' or 'int4'",
        ),
        (
            lambda: model(L8, num_kv_heads=5),
            "num_attention_heads 32 is not a multiple of num_kv_heads 5",
        ),
        (
            lambda: model(L8, hidden_size=4100),
            "hidden_size 4100 is not a multiple of num_attention_heads 32",
        ),
        (
            lambda: HardwareSpec(**(hardware(H100).model_dump() | {"memory_gb_per_device": 0})),
            "memory_gb_per_device\n  Input should be greater than 0",
        ),
    ],
)
def test_bad_inputs_are_rejected_with_the_field_named(build: Any, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        build()
    assert message in str(raised.value)


# --------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def seeded(database_url: str) -> Iterator[None]:
    """The seeded catalog, plus a database-only model with an fp8 and an int4 version and a
    database-only hardware row."""
    with session_scope() as session:
        seed.seed_catalog(session)
        row = next(m for m in seed.MODELS if m["uri"] == L8)
        both = Model(**(row | {"uri": f"{PREFIX}/two-dtypes"}))
        fp8 = Model(**(row | {"uri": f"{PREFIX}/Only-FP8"}))
        session.add_all(
            [
                ModelVersion(model=both, version="1", dtype="fp8"),
                ModelVersion(model=both, version="2", dtype="int4"),
                ModelVersion(model=fp8, version="1", dtype="fp8"),
                HardwareConfig(
                    **(
                        next(h for h in seed.HARDWARE if h["name"] == H100)
                        | {"name": f"{PREFIX}-gpu"}
                    )
                ),
            ]
        )
    yield
    with session_scope() as session:
        session.execute(
            text(
                "DELETE FROM benchmark_results r USING benchmark_configs c, model_versions v,"
                " models m WHERE r.config_id = c.id AND c.model_version_id = v.id"
                " AND v.model_id = m.id AND m.uri LIKE :prefix"
            ),
            {"prefix": PREFIX + "/%"},
        )
        session.execute(delete(Model).where(Model.uri.like(PREFIX + "/%")))
        session.execute(delete(HardwareConfig).where(HardwareConfig.name.like(PREFIX + "-%")))


@pytest.fixture
def cli() -> Iterator[Any]:
    app = typer.Typer()
    app.command("simulate")(simulate_command)

    @app.callback()
    def main() -> None:
        """Keeps ``simulate`` a subcommand, as in foundryflow's app."""

    runner = CliRunner(env=WIDE)
    yield lambda *args: runner.invoke(app, ["simulate", *args])


def args(
    model_name: str = L8, hardware_name: str = H100, *extra: str, concurrency: int = 8
) -> list[str]:
    return [
        "--model", model_name, "--hardware", hardware_name, "--concurrency", str(concurrency),
        "--input-tokens", "512", "--output-tokens", "256", *extra,
    ]  # fmt: skip


def test_cli_text(cli: Any, seeded: None) -> None:
    result = cli(*args())
    assert result.exit_code == 0, result.output
    p = simulate(model(L8), hardware(H100), workload(8))
    out = result.stdout
    assert f"{L8} (bf16) on {H100}, tp=1\n" in out
    assert "seed catalog" not in out
    assert "concurrency 8, 512 input + 256 output tokens" in out
    assert f"TTFT        {p.ttft_ms:,.1f} ms" in out
    assert f"TPOT        {p.tpot_ms:,.2f} ms" in out
    assert f"end-to-end  {p.e2e_ms:,.1f} ms" in out
    assert f"tokens/s    {p.output_tokens_per_s:,.1f} output tokens/s" in out
    assert f"memory/GPU  {p.memory_gb:,.1f} GB of 72.0 GB usable: fits (weights 16.1," in out


def test_cli_json_and_short_names(cli: Any, seeded: None) -> None:
    by_uri = cli(*args(L8, H100, "--json"))
    assert by_uri.exit_code == 0, by_uri.output
    document = json.loads(by_uri.stdout)
    p = simulate(model(L8), hardware(H100), workload(8))
    assert document == {
        "model": L8,
        "dtype": "bf16",
        "hardware": H100,
        "catalog": "database",
        **p.as_dict(),
    }
    assert cli(*args("llama-3.1-8b-instruct", H100.upper(), "--json")).stdout == by_uri.stdout


def test_cli_reads_the_database(cli: Any, seeded: None) -> None:
    """Rows only the database has; a model's only version decides its default dtype."""
    result = cli(*args(f"{PREFIX}/only-fp8", f"{PREFIX}-gpu", "--json"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dtype"] == "fp8"
    ambiguous = cli(*args("two-dtypes", H100))
    assert ambiguous.exit_code == 2
    assert f"model {PREFIX}/two-dtypes has versions in fp8, int4: choose one dtype" in flat(
        ambiguous.stderr
    )
    chosen = cli(*args("two-dtypes", H100, "--dtype", "int4", "--json"))
    assert json.loads(chosen.stdout)["weights_gb"] == pytest.approx(
        model(L8, "int4").weight_bytes / 1e9
    )


def test_cli_picks_the_smallest_tp_that_fits(cli: Any, seeded: None) -> None:
    auto = json.loads(cli(*args(L70, H100X8, "--json")).stdout)
    assert (auto["tp"], auto["fits"]) == (4, True)
    forced = json.loads(cli(*args(L70, H100X8, "--tp", "8", "--json")).stdout)
    assert forced["tp"] == 8 and forced["memory_gb"] < auto["memory_gb"]
    too_big = cli(*args(L70, H100))
    assert too_big.exit_code == 0
    assert "DOES NOT FIT" in too_big.stdout


@pytest.mark.parametrize(
    ("argv", "messages"),
    [
        (
            args("Llama-9", H100),
            [
                "error: unknown model 'Llama-9'; known (URI, or the part after the last /): ",
                f" {L8}, ",
                f" {PREFIX}/Only-FP8",
            ],
        ),
        (
            args(L8, "h100"),
            ["error: unknown hardware 'h100'; known: ", " a10-24gb-x1, ", f" {H100X8}"],
        ),
        (
            args(L8, H100, "--tp", "3"),
            [f"error: tp=3 is not possible for {L8} on {H100}: not offered by {H100}; possible: 1"],
        ),
        (
            args(concurrency=-1),
            ["error: --concurrency: Input should be greater than or equal to 1"],
        ),
        (
            args(L8, H100, "--dtype", "fp6"),
            ["error: --dtype: Input should be 'fp32', 'bf16', 'fp16', 'fp8', 'int8' or 'int4'"],
        ),
        (
            [*args(QWEN, H100)[:-2], "--output-tokens", "32768"],
            [
                "error: 512 input + 32768 output tokens exceed "
                "Qwen/Qwen2.5-7B-Instruct's context of 32768 tokens"
            ],
        ),
    ],
)
def test_cli_user_errors_exit_2(
    cli: Any, seeded: None, argv: list[str], messages: list[str]
) -> None:
    result = cli(*argv)
    assert result.exit_code == 2
    for message in messages:
        assert message in flat(result.stderr)
    assert result.stdout == ""


def test_cli_without_a_database_uses_the_seed(cli: Any, seeded: None) -> None:
    with_db = json.loads(cli(*args(L8, "l4-24gb-x1", "--json")).stdout)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("FOUNDRYFLOW_DATABASE_URL")
        get_settings.cache_clear()
        try:
            seed_only = json.loads(cli(*args(L8, "l4-24gb-x1", "--json")).stdout)
            text_out = cli(*args()).stdout
            unknown = cli(*args(L8, f"{PREFIX}-gpu"))
        finally:
            patch.undo()
            get_settings.cache_clear()
    assert seed_only == with_db | {"catalog": "seed"}
    assert "[seed catalog: FOUNDRYFLOW_DATABASE_URL not set]" in text_out
    assert unknown.exit_code == 2 and f"unknown hardware '{PREFIX}-gpu'" in unknown.stderr


# --------------------------------------------------------------------------- the runner


def new_version() -> int:
    """A model version of Llama-3.1-8B's architecture under a URI of its own, so its matrix
    holds exactly what the test populates."""
    row = next(m for m in seed.MODELS if m["uri"] == L8)
    with session_scope() as session:
        version = ModelVersion(
            model=Model(**(row | {"uri": f"{PREFIX}/{uuid.uuid4().hex}"})),
            version="1",
            dtype="bf16",
        )
        session.add(version)
        session.flush()
        return version.id


def test_runner_drains_a_matrix(seeded: None) -> None:
    version = new_version()
    filters = MatrixFilters(
        hardware=[H100, "l4-24gb-x1"],
        frameworks=["vllm"],
        workloads=["chatbot"],
        batch_sizes=[1, 128],
        sequence_lengths=[1024, 8192],
    )
    assert populate(version, filters).inserted == 8
    runner = RunnerRegistry(entry_points=[SIMULATE]).create("simulate", {})
    assert isinstance(runner, SimulateRunner)

    summary = drain("sim-worker", runner, batch=3, model_version_id=version, max_attempts=1)

    with session_scope() as session:
        rows = session.execute(
            text(
                "SELECT h.name, c.batch_size, c.sequence_length, c.status, c.last_error,"
                " r.runner, r.metrics FROM benchmark_configs c"
                " JOIN hardware_configs h ON h.id = c.hardware_config_id"
                " LEFT JOIN benchmark_results r ON r.config_id = c.id"
                " WHERE c.model_version_id = :version"
            ),
            {"version": version},
        ).all()
    failed = {
        (r.name, r.batch_size, r.sequence_length): r.last_error
        for r in rows
        if r.status == ConfigStatus.FAILED.value
    }
    # batch 128 does not fit a 24 GB L4 at any length, nor 128 x 8192 tokens an 80 GB H100
    # (the errors are in the assertion's message: a wrong set says why each run failed)
    expected = {("l4-24gb-x1", 128, 1024), ("l4-24gb-x1", 128, 8192), (H100, 128, 8192)}
    assert set(failed) == expected, failed
    assert (summary.completed, summary.failed) == (5, 3)
    for row in rows:
        if row.status == ConfigStatus.FAILED.value:
            assert "does not fit" in row.last_error and "GB usable" in row.last_error
            assert row.metrics is None
    done = {(r.name, r.batch_size, r.sequence_length): r.metrics for r in rows if r.metrics}
    assert len(done) == 5 and all(r.runner == "simulate" for r in rows if r.metrics)

    metrics = done[(H100, 128, 1024)]
    p = simulate(model(L8), hardware(H100), workload(128, 1024 - 128, 128))
    assert metrics["simulated"] is True
    assert (metrics["model"].startswith(PREFIX), metrics["hardware"], metrics["framework"]) == (
        True,
        H100,
        "vllm",
    )
    assert (
        metrics["concurrency"],
        metrics["input_tokens"],
        metrics["max_tokens"],
        metrics["tp"],
    ) == (128, 896, 128, 1)
    assert metrics["ttft_ms_p50"] == metrics["ttft_ms_mean"] == round(p.ttft_ms, 3)
    assert metrics["tpot_ms_p50"] == metrics["itl_ms_p50"] == round(p.tpot_ms, 3)
    assert metrics["e2e_ms_p50"] == round(p.e2e_ms, 3)
    assert metrics["output_tokens_per_s"] == round(p.output_tokens_per_s, 3)
    assert metrics["requests_per_s"] == round(p.requests_per_s, 3)
    assert "ttft_ms_p99" not in metrics  # a prediction has no spread


@dataclass(frozen=True)
class BareCell:
    """A cell without catalog names (as tests/test_runners.py's)."""

    id: int = 1
    workload_type: str = "chatbot"
    batch_size: int = 1
    sequence_length: int = 512


def claimed(hardware_name: str, model_uri: str = L8, batch_size: int = 1) -> ClaimedConfig:
    return ClaimedConfig(
        id=1, model_version_id=1, hardware_config_id=1, framework_id=1, workload_type="chatbot",
        batch_size=batch_size, sequence_length=1024, priority=100, attempts=1, claimed_by="t",
        claimed_at=datetime.now(UTC), hardware=hardware_name, framework="vllm",
        model_uri=model_uri, dtype="bf16",
    )  # fmt: skip


def test_runner_caches_catalog_figures(seeded: None) -> None:
    """Figures are read once per name: a change to the row shows in a new runner only."""
    name = f"{PREFIX}-{uuid.uuid4().hex[:8]}"
    with session_scope() as session:
        session.add(
            HardwareConfig(**(next(h for h in seed.HARDWARE if h["name"] == H100) | {"name": name}))
        )
    runner = SimulateRunner(SimulateOptions())
    before = runner.run(claimed(name))
    with session_scope() as session:
        session.execute(
            update(HardwareConfig)
            .where(HardwareConfig.name == name)
            .values(memory_bandwidth_gbps=1675)
        )
    assert runner.run(claimed(name)) == before
    after = SimulateRunner(SimulateOptions()).run(claimed(name))
    assert after["tpot_ms_p50"] > 1.9 * before["tpot_ms_p50"]


def test_runner_options_and_bad_cells(seeded: None) -> None:
    registry = RunnerRegistry(entry_points=[SIMULATE])
    runner = registry.create("simulate", {"max_tokens": "64", "tp": "2"})
    assert isinstance(runner, SimulateRunner)
    assert runner.options == SimulateOptions(max_tokens=64, tp=2)
    assert runner.run(claimed(H100X8))["tp"] == 2
    with pytest.raises(SimulationError, match=r"tp=2 is not possible .* possible: 1"):
        runner.run(claimed(H100))
    with pytest.raises(
        RunnerOptionsError, match="unknown option 'colour' \\(known: max_tokens, tp\\)"
    ):
        registry.create("simulate", {"colour": "red"})
    with pytest.raises(
        RunnerOptionsError, match="max_tokens: Input should be greater than or equal to 1"
    ):
        registry.create("simulate", {"max_tokens": "0"})
    with pytest.raises(TypeError, match="needs a claimed config with hardware"):
        runner.run(BareCell())
    with pytest.raises(LookupError, match="hardware 'no-such-node' is not in the catalog"):
        runner.run(claimed("no-such-node"))
    with pytest.raises(LookupError, match="model 'org/no-such-model' is not in the catalog"):
        runner.run(claimed(H100, "org/no-such-model"))
