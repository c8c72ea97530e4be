"""Runners: the registry, the ``http`` runner's options, and its load test measured against a
real streaming server with known delays (tests/streaming_server.py)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from foundryflow.benchmark import runners
from foundryflow.benchmark.loadtest import (
    HttpOptions,
    HttpRunner,
    LoadTestFailedError,
    RequestSample,
    percentile,
    summarise,
)
from foundryflow.benchmark.runners import (
    GROUP,
    RunnerNotImplementedError,
    RunnerOptionsError,
    RunnerRegistry,
    UnknownRunnerError,
    parse_runner_options,
)
from tests.streaming_server import StreamingServer

HTTP = EntryPoint("http", "foundryflow.benchmark.loadtest:HttpRunner", GROUP)


@dataclass(frozen=True)
class Cell:
    """Shaped like queue.ClaimedConfig, as far as runners look."""

    id: int = 7
    workload_type: str = "chatbot"
    batch_size: int = 4
    sequence_length: int = 256


@pytest.fixture(scope="module")
def server() -> Iterator[StreamingServer]:
    with StreamingServer() as running:
        yield running


def http_runner(base_url: str, **options: Any) -> HttpRunner:
    runner = RunnerRegistry(entry_points=[HTTP]).create("http", {"base_url": base_url, **options})
    assert isinstance(runner, HttpRunner)
    return runner


# --------------------------------------------------------------------------- summarise


def sample(
    start: float, ttft: float, gaps: list[float], tokens: int | None = None
) -> RequestSample:
    end = start + ttft + sum(gaps)
    count = len(gaps) + 1 if tokens is None else tokens
    return RequestSample(start, end, True, ttft_s=ttft, itl_s=gaps, output_tokens=count)


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    assert percentile([7.0], 99) == 7.0


def test_summarise_known_samples() -> None:
    samples = [
        sample(0.0, 0.100, [0.010, 0.020, 0.030]),  # 4 tokens, e2e 160 ms, tpot 20 ms
        sample(0.5, 0.200, [0.040]),  # 2 tokens, e2e 240 ms, tpot 40 ms
        RequestSample(0.1, 0.3, False, error_kind="http_500", error="HTTP 500: second"),
        RequestSample(0.2, 0.25, False, error_kind="stream", error="stream broken: first"),
        sample(1.0, 0.050, [], tokens=1),  # one token: no tpot, no itl
    ]
    metrics = summarise(samples)
    assert json.loads(json.dumps(metrics, allow_nan=False)) == metrics
    assert metrics["requests_total"] == 5
    assert metrics["requests_ok"] == 3
    assert metrics["errors"] == 2
    assert metrics["error_rate"] == 0.4
    assert metrics["error_kinds"] == {"http_500": 1, "stream": 1}
    assert metrics["first_error"] == "stream broken: first"  # the one that ended first
    assert metrics["duration_s"] == 1.05  # 0.0 .. 1.05
    assert metrics["output_tokens_total"] == 7
    assert metrics["output_tokens_per_s"] == round(7 / 1.05, 3)
    assert metrics["requests_per_s"] == round(3 / 1.05, 3)
    assert metrics["ttft_ms_mean"] == pytest.approx(350 / 3, abs=1e-3)
    assert metrics["ttft_ms_p50"] == 100.0
    assert metrics["tpot_ms_mean"] == 30.0
    assert metrics["tpot_ms_p50"] == 30.0
    assert metrics["itl_ms_p50"] == 25.0  # of 10, 20, 30, 40
    assert metrics["itl_ms_p99"] == pytest.approx(39.7)
    assert metrics["e2e_ms_p50"] == 160.0
    assert metrics["prompt_tokens_mean"] is None


def test_summarise_nothing_measured_gives_none_not_nan() -> None:
    assert summarise([])["ttft_ms_p50"] is None
    failed = summarise([RequestSample(0.0, 1.0, False, error_kind="timeout", error="t")])
    json.dumps(failed, allow_nan=False)
    assert failed["errors"] == 1
    assert failed["error_rate"] == 1.0
    assert failed["output_tokens_per_s"] == 0.0
    assert all(failed[f"{m}_p50"] is None for m in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"))


# --------------------------------------------------------------------------- registry


def test_registry_unknown_runner_lists_the_known_ones() -> None:
    ghost = EntryPoint("ghost", "foundryflow.benchmark.no_such_module:Ghost", GROUP)
    registry = RunnerRegistry(entry_points=[HTTP, ghost])
    assert registry.names() == ["ghost", "http"]
    with pytest.raises(
        UnknownRunnerError, match=r"unknown runner 'nope' \(known runners: ghost, http\)"
    ):
        registry.get("nope")
    with pytest.raises(UnknownRunnerError, match="known runners: none registered"):
        RunnerRegistry(entry_points=[]).get("http")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("foundryflow.benchmark.no_such_module:Ghost", "registered .* but not implemented"),
        ("foundryflow.benchmark.loadtest:NoSuchRunner", "registered .* but not implemented"),
        ("json:dumps", "is not a foundryflow runner class"),
        ("foundryflow.benchmark.loadtest:HttpOptions", "is not a foundryflow runner class"),
    ],
)
def test_registry_registered_but_not_a_runner(value: str, message: str) -> None:
    registry = RunnerRegistry(entry_points=[EntryPoint("ghost", value, GROUP)])
    with pytest.raises(RunnerNotImplementedError, match=message):
        registry.get("ghost")
    assert registry.status("ghost") is not None


def test_registry_entry_point_name_must_be_the_runner_name() -> None:
    alias = EntryPoint("load", HTTP.value, GROUP)
    with pytest.raises(RunnerNotImplementedError, match="loads a runner named 'http'"):
        RunnerRegistry(entry_points=[alias]).get("load")


def test_registry_loads_once_and_reports_usable() -> None:
    registry = RunnerRegistry(entry_points=[HTTP])
    assert registry.get("http") is HttpRunner
    assert registry.get("http") is registry.get("http")
    assert registry.status("http") is None


def test_http_runner_is_installed_under_its_entry_point() -> None:
    """The real wiring: pyproject's ``foundryflow.runners`` group, read by ``get_runner``."""
    assert "http" in runners.registry.names()
    runner = runners.get_runner("http", base_url="http://127.0.0.1:9", rounds="3")
    assert isinstance(runner, HttpRunner)
    assert runner.options.rounds == 3


# --------------------------------------------------------------------------- options


def test_parse_runner_options() -> None:
    assert parse_runner_options(["rounds=3", "model=a=b", "api_key_env="]) == {
        "rounds": "3",
        "model": "a=b",
        "api_key_env": "",
    }
    with pytest.raises(RunnerOptionsError, match="not key=value"):
        parse_runner_options(["rounds"])
    with pytest.raises(RunnerOptionsError, match="given twice"):
        parse_runner_options(["rounds=1", "rounds=2"])


def test_string_options_from_the_cli_are_coerced_and_base_url_normalised() -> None:
    options = dict(
        base_url="https://llm.example:8443/serving/v1/",
        api="chat",
        rounds="5",
        max_tokens="64",
        timeout_seconds="2.5",
        include_usage="false",
    )
    runner = http_runner(**options)
    assert runner.options == HttpOptions(
        base_url="https://llm.example:8443/serving",
        api="chat",
        rounds=5,
        max_tokens=64,
        timeout_seconds=2.5,
        include_usage=False,
    )
    assert runner.endpoint == "https://llm.example:8443/serving/v1/chat/completions"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"base_url": "file:///etc/passwd"}, "base_url: .*http:// or https:// URL, not file"),
        ({"base_url": "ftp://host/x"}, "http:// or https://"),
        ({"base_url": "http://"}, "base_url: .*has no host"),
        ({"base_url": "http://user:pw@host"}, "must not carry credentials"),
        ({"base_url": "http://host:99999"}, "bad port"),
        ({}, "base_url: required"),
        ({"base_url": "http://h", "colour": "red"}, r"unknown option 'colour' \(known: api, "),
        (
            {"base_url": "http://h", "rounds": "-1"},
            "rounds: Input should be greater than or equal to 1",
        ),
        ({"base_url": "http://h", "rounds": "many"}, "rounds: Input should be a valid integer"),
        ({"base_url": "http://h", "max_tokens": "0"}, "max_tokens: Input should be greater"),
        (
            {"base_url": "http://h", "timeout_seconds": "0"},
            "timeout_seconds: Input should be greater",
        ),
        ({"base_url": "http://h", "api": "grpc"}, "api: Input should be 'completions' or 'chat'"),
        (
            {"base_url": "http://h", "api_key_env": "FF_NOT_SET_ANYWHERE"},
            "FF_NOT_SET_ANYWHERE is not set",
        ),
    ],
)
def test_bad_options_are_rejected(options: dict[str, str], message: str) -> None:
    with pytest.raises(RunnerOptionsError, match=f"runner 'http': invalid options: .*{message}"):
        RunnerRegistry(entry_points=[HTTP]).create("http", options)


def test_a_token_given_as_api_key_env_is_rejected_without_echoing_it() -> None:
    token = "sk-live-0123456789abcdef"
    with pytest.raises(RunnerOptionsError, match="name of an environment variable") as raised:
        http_runner("http://h", api_key_env=token)
    assert token not in str(raised.value)


# --------------------------------------------------------------------------- against the server


def assert_near(measured: float, configured: float, above: float) -> None:
    """At least what the server waited, and not much more (a loaded 2-core CI machine)."""
    assert configured <= measured < configured + above, (measured, configured)


def test_completions_timings_tokens_and_concurrency(server: StreamingServer) -> None:
    server.configure(ttft_ms=50, token_delay_ms=10, tokens=16)
    cell = Cell(batch_size=4, sequence_length=256)
    metrics = http_runner(server.base_url, rounds=2, max_tokens=32).run(cell)
    stats = server.stats()

    assert stats["max_in_flight"] == 4 == cell.batch_size
    assert stats["requests"] == stats["completed"] == 8
    assert metrics["requests_total"] == metrics["requests_ok"] == 8
    assert metrics["errors"] == 0
    assert metrics["first_error"] is None
    assert metrics["output_tokens_total"] == 8 * 16
    assert metrics["prompt_tokens_mean"] == 256 - 32  # words in the prompt, as the server counted
    assert_near(metrics["ttft_ms_p50"], 50, above=60)
    assert metrics["tpot_ms_p50"] == pytest.approx(10, abs=4)
    assert metrics["itl_ms_p50"] == pytest.approx(10, abs=5)
    assert_near(metrics["e2e_ms_p50"], 50 + 15 * 10, above=80)
    assert metrics["output_tokens_per_s"] == pytest.approx(
        metrics["output_tokens_total"] / metrics["duration_s"], rel=1e-3
    )
    assert metrics["requests_per_s"] == pytest.approx(8 / metrics["duration_s"], rel=1e-3)
    # the cell echoed, the plan recorded
    assert metrics["batch_size"] == metrics["concurrency"] == 4
    assert metrics["sequence_length"] == 256
    assert (metrics["input_tokens"], metrics["max_tokens"], metrics["rounds"]) == (224, 32, 2)
    assert metrics["model"] == "test-model"  # discovered through GET /v1/models
    json.dumps(metrics, allow_nan=False)

    body = stats["bodies"][0]
    assert body["stream"] is True
    assert body["max_tokens"] == 32
    assert body["model"] == "test-model"
    assert body["stream_options"] == {"include_usage": True}
    assert len(body["prompt"].split()) == 224
    assert len({b["prompt"] for b in stats["bodies"]}) == 8  # no two prompts alike


def test_chat_role_chunk_is_not_the_first_token_and_chunks_are_counted(
    server: StreamingServer,
) -> None:
    server.configure(ttft_ms=80, token_delay_ms=10, tokens=12)
    runner = http_runner(server.base_url, api="chat", rounds=1, include_usage="false")
    metrics = runner.run(Cell(batch_size=3))
    body = server.stats()["bodies"][0]
    assert "stream_options" not in body
    assert body["messages"][0]["role"] == "user"
    assert metrics["output_tokens_total"] == 3 * 12  # counted chunks: no usage was sent
    assert metrics["prompt_tokens_mean"] is None
    assert_near(metrics["ttft_ms_p50"], 80, above=60)  # the role chunk came at once
    assert metrics["tpot_ms_p50"] == pytest.approx(10, abs=4)


@pytest.mark.parametrize(("include_usage", "tokens_each"), [("true", 16), ("false", 4)])
def test_usage_counts_tokens_when_chunks_carry_several(
    server: StreamingServer, include_usage: str, tokens_each: int
) -> None:
    server.configure(ttft_ms=20, token_delay_ms=5, tokens=16, tokens_per_chunk=4)
    runner = http_runner(server.base_url, rounds=1, include_usage=include_usage)
    metrics = runner.run(Cell(batch_size=2))
    assert metrics["output_tokens_mean"] == tokens_each
    assert metrics["output_tokens_total"] == 2 * tokens_each


@pytest.mark.parametrize(("batch_size", "rounds"), [(1, 3), (128, 1)])
def test_in_flight_requests_equal_the_batch_size(
    server: StreamingServer, batch_size: int, rounds: int
) -> None:
    """128 is above httpx's default pool of 100 connections, which must not cap it."""
    server.configure(ttft_ms=600 if batch_size > 1 else 30, token_delay_ms=1, tokens=2)
    metrics = http_runner(server.base_url, rounds=rounds).run(Cell(batch_size=batch_size))
    stats = server.stats()
    assert metrics["errors"] == 0
    assert stats["requests"] == batch_size * rounds
    assert stats["max_in_flight"] == batch_size


def test_max_tokens_leaves_at_least_half_the_sequence_to_the_prompt(
    server: StreamingServer,
) -> None:
    server.configure(ttft_ms=5, token_delay_ms=1, tokens=16)
    metrics = http_runner(server.base_url, rounds=1, max_tokens=128).run(
        Cell(batch_size=1, sequence_length=20)
    )
    assert (metrics["input_tokens"], metrics["max_tokens"]) == (10, 10)
    assert metrics["output_tokens_total"] == 10


def test_http_errors_are_counted_with_the_first_message(server: StreamingServer) -> None:
    server.configure(ttft_ms=10, token_delay_ms=2, tokens=5, fail_every=3)
    metrics = http_runner(server.base_url, rounds=2).run(Cell(batch_size=3))
    assert metrics["requests_total"] == 6
    assert metrics["errors"] == 2
    assert metrics["error_rate"] == pytest.approx(2 / 6, abs=1e-4)
    assert metrics["error_kinds"] == {"http_500": 2}
    assert metrics["first_error"] == "HTTP 500: injected failure 3"
    assert metrics["output_tokens_total"] == 4 * 5  # failed requests do not count


def test_broken_streams_are_counted(server: StreamingServer) -> None:
    server.configure(ttft_ms=10, token_delay_ms=5, tokens=8, drop_every=2, drop_after=3)
    metrics = http_runner(server.base_url, rounds=2).run(Cell(batch_size=2))
    assert metrics["errors"] == 2
    assert metrics["error_kinds"] == {"stream": 2}
    assert metrics["first_error"].startswith("stream broken after 3 chunks: RemoteProtocolError")
    assert metrics["requests_ok"] == 2
    assert metrics["output_tokens_total"] == 2 * 8


def test_timeouts_are_counted(server: StreamingServer) -> None:
    server.configure(ttft_ms=10, token_delay_ms=1, tokens=4, stall_every=2)
    metrics = http_runner(server.base_url, rounds=1, timeout_seconds="0.4").run(Cell(batch_size=2))
    assert metrics["error_kinds"] == {"timeout": 1}
    assert metrics["first_error"].startswith("timed out (total) after 0.4")
    assert metrics["requests_ok"] == 1
    assert 0.4 <= metrics["duration_s"] < 1.0


def test_a_cell_where_every_request_failed_raises(server: StreamingServer) -> None:
    server.configure(fail_every=1)
    with pytest.raises(
        LoadTestFailedError, match=r"all 4 requests .* HTTP 500: injected failure 1"
    ):
        http_runner(server.base_url, rounds=2).run(Cell(batch_size=2))


def test_unreachable_server_fails_the_cell() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runner = http_runner(f"http://127.0.0.1:{port}", model="m", rounds=1)
    with pytest.raises(LoadTestFailedError, match="cannot connect"):
        runner.run(Cell(batch_size=2))


def test_api_key_env_is_sent_as_bearer_token(
    server: StreamingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.configure(ttft_ms=5, token_delay_ms=1, tokens=3, api_key="s3cret-token")
    monkeypatch.setenv("FF_TEST_LLM_KEY", "s3cret-token")
    runner = http_runner(server.base_url, rounds=1, api_key_env="FF_TEST_LLM_KEY")
    assert "s3cret" not in repr(runner.options) + repr(runner.plan(Cell(), "m"))
    assert runner.run(Cell(batch_size=2))["requests_ok"] == 2

    monkeypatch.setenv("FF_TEST_LLM_KEY", "wrong")
    with pytest.raises(LoadTestFailedError, match="HTTP 401: bad api key"):
        runner.run(Cell(batch_size=2))


def test_run_works_inside_a_running_event_loop(server: StreamingServer) -> None:
    server.configure(ttft_ms=5, token_delay_ms=1, tokens=3)
    runner = http_runner(server.base_url, rounds=1)

    async def from_async_code() -> dict[str, Any]:
        return runner.run(Cell(batch_size=2))

    assert asyncio.run(from_async_code())["output_tokens_total"] == 6
