"""A load test against an OpenAI-compatible streaming endpoint, and the ``http`` runner.

One cell of the matrix = one closed-loop load test:

* **concurrency** = the cell's batch size: that many workers, each sending its next request
  as soon as the previous one finished, so exactly ``batch_size`` requests are in flight;
* **requests** = concurrency x ``rounds``;
* **output length** = ``max_tokens``, at most half the cell's ``sequence_length``;
  **prompt length** = ``sequence_length - max_tokens`` tokens, approximated without a
  tokenizer by that many common English words (one BPE token each, with their leading
  space, in GPT/Llama-style tokenizers; chat templates add a few tokens). Every request gets
  a different prompt (seeded, reproducible) so prefix caching cannot skip the prefill. When
  the server reports ``usage``, the real prompt length is in ``prompt_tokens_mean``.

Requests are ``POST {base_url}/v1/completions`` (or ``/v1/chat/completions``) with
``stream: true``; the answer is Server-Sent Events, ``data: {json}`` per chunk and
``data: [DONE]`` at the end. Per request we keep: time to first token (the first chunk
carrying text; a chat chunk with only the role does not count), the gaps between
text-carrying chunks (inter-token latency), end-to-end latency (until ``[DONE]``) and the
output tokens (``usage.completion_tokens`` when the server sends it, which it is asked to
with ``stream_options.include_usage``; otherwise the number of text-carrying chunks).

A request fails on HTTP status >= 400, a timeout (connecting, or the whole request), a
stream broken before ``[DONE]``, an error object in the stream, or a chunk that does not
parse; failures are counted by kind and the first message is kept. Latency figures come
from successful requests only.

:func:`summarise` turns samples into the aggregate metrics (all latencies in ms):
``ttft_ms_*``, ``tpot_ms_*`` (per request ``(e2e - ttft) / (output_tokens - 1)``),
``itl_ms_*``, ``e2e_ms_*`` each as ``_mean/_p50/_p90/_p99``; ``output_tokens_per_s`` (all
successful output tokens / wall time), ``requests_per_s`` (successful requests / wall time),
``errors``, ``error_rate``, ``error_kinds``, ``first_error``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import Field, field_validator

from foundryflow.benchmark.runners import BaseRunner, BenchmarkCell, RunnerOptions

log = logging.getLogger(__name__)
T = TypeVar("T")

Api = Literal["completions", "chat"]
PATHS: dict[str, str] = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}

# Common English words that are one token each (with the leading space) in GPT-2/cl100k
# and Llama/Mistral tokenizers.
_WORD_TEXT = (
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend "
    "father power hour game line end member law car city community name president team "
    "minute idea kid body information back parent face others level office door health "
    "person art war history party result change morning reason research girl guy moment air "
    "teacher force"
)
WORDS = tuple(_WORD_TEXT.split())


# --------------------------------------------------------------------------- samples


@dataclass
class RequestSample:
    """One request as the client saw it; times are ``time.perf_counter()`` seconds."""

    start: float
    end: float
    ok: bool
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int | None = None
    error_kind: str | None = None
    """``http_<status>``, ``timeout``, ``connect``, ``stream``, ``server``, ``protocol``,
    ``http`` (other httpx errors)."""
    error: str | None = None

    @property
    def e2e_s(self) -> float:
        return self.end - self.start

    @property
    def tpot_s(self) -> float | None:
        if self.ttft_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); ``values`` non-empty."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _stats(prefix: str, seconds: Sequence[float]) -> dict[str, float | None]:
    if not seconds:
        return {f"{prefix}_{k}": None for k in ("mean", "p50", "p90", "p99")}
    ms = [s * 1000 for s in seconds]
    return {
        f"{prefix}_mean": round(sum(ms) / len(ms), 3),
        f"{prefix}_p50": round(percentile(ms, 50), 3),
        f"{prefix}_p90": round(percentile(ms, 90), 3),
        f"{prefix}_p99": round(percentile(ms, 99), 3),
    }


def summarise(samples: Iterable[RequestSample]) -> dict[str, Any]:
    """Aggregate metrics of a load test (pure; JSON-serialisable; no NaN — None instead).

    Wall time runs from the first request's start to the last one's end.
    """
    samples = list(samples)
    ok = [s for s in samples if s.ok]
    failed = sorted((s for s in samples if not s.ok), key=lambda s: s.end)
    duration = (max(s.end for s in samples) - min(s.start for s in samples)) if samples else 0.0
    tokens = sum(s.output_tokens for s in ok)
    prompt = [s.prompt_tokens for s in ok if s.prompt_tokens is not None]

    def rate(count: float) -> float | None:
        return round(count / duration, 3) if duration > 0 else None

    return {
        "requests_total": len(samples),
        "requests_ok": len(ok),
        "errors": len(failed),
        "error_rate": round(len(failed) / len(samples), 4) if samples else None,
        "error_kinds": dict(Counter(s.error_kind or "unknown" for s in failed)),
        "first_error": failed[0].error if failed else None,
        "duration_s": round(duration, 4),
        "requests_per_s": rate(len(ok)),
        "output_tokens_total": tokens,
        "output_tokens_per_s": rate(tokens),
        "output_tokens_mean": round(tokens / len(ok), 3) if ok else None,
        "prompt_tokens_mean": round(sum(prompt) / len(prompt), 3) if prompt else None,
        **_stats("ttft_ms", [s.ttft_s for s in ok if s.ttft_s is not None]),
        **_stats("tpot_ms", [t for s in ok if (t := s.tpot_s) is not None]),
        **_stats("itl_ms", [gap for s in ok for gap in s.itl_s]),
        **_stats("e2e_ms", [s.e2e_s for s in ok]),
    }


# --------------------------------------------------------------------------- the load test


@dataclass(frozen=True)
class LoadTestPlan:
    url: str
    """The full endpoint, e.g. ``http://127.0.0.1:8000/v1/completions``."""
    api: Api
    model: str | None
    concurrency: int
    rounds: int
    input_tokens: int
    max_tokens: int
    timeout_s: float = 300.0
    """Per request, from sending to ``[DONE]``."""
    connect_timeout_s: float = 10.0
    include_usage: bool = True
    seed: int = 0
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Sent with every request (``Authorization``); kept out of ``repr``."""

    @property
    def requests(self) -> int:
        return self.concurrency * self.rounds


def make_prompt(tokens: int, rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(tokens))


def request_body(plan: LoadTestPlan, prompt: str) -> dict[str, Any]:
    body: dict[str, Any] = {"max_tokens": plan.max_tokens, "stream": True, "temperature": 0.0}
    if plan.model is not None:
        body["model"] = plan.model
    if plan.api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if plan.include_usage:
        body["stream_options"] = {"include_usage": True}
    return body


class _Failed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _chunk_text(chunk: Mapping[str, Any], api: Api) -> str:
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    choice = choices[0]
    if api == "completions":
        return str(choice.get("text") or "")
    delta = choice.get("delta") or {}
    # reasoning models stream their reasoning first: those are generated tokens too
    return "".join(
        str(delta.get(key) or "") for key in ("reasoning_content", "reasoning", "content")
    )


def _error_message(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    try:
        payload = json.loads(text)
    except ValueError:
        return text[:300]
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:300]
    if isinstance(error, str):
        return error[:300]
    return text[:300]


async def _sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The ``data`` field of each Server-Sent Event (multi-line data joined by newlines)."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


async def one_request(client: httpx.AsyncClient, plan: LoadTestPlan, prompt: str) -> RequestSample:
    start = time.perf_counter()
    ttft: float | None = None
    last: float | None = None
    itl: list[float] = []
    chunks = 0
    usage_tokens: int | None = None
    prompt_tokens: int | None = None
    try:
        async with asyncio.timeout(plan.timeout_s):
            body = request_body(plan, prompt)
            async with client.stream("POST", plan.url, json=body) as response:
                if response.status_code >= 400:
                    detail = _error_message(await response.aread())
                    raise _Failed(
                        f"http_{response.status_code}", f"HTTP {response.status_code}: {detail}"
                    )
                done = False
                async for data in _sse_data(response):
                    if data.strip() == "[DONE]":
                        done = True
                        continue
                    try:
                        chunk = json.loads(data)
                        if not isinstance(chunk, dict):
                            raise ValueError("not a JSON object")
                        if chunk.get("error"):
                            raise _Failed(
                                "server", f"error in stream: {_error_message(data.encode())}"
                            )
                        text = _chunk_text(chunk, plan.api)
                        usage = chunk.get("usage")
                        if isinstance(usage, dict):
                            if usage.get("completion_tokens") is not None:
                                usage_tokens = int(usage["completion_tokens"])
                            if usage.get("prompt_tokens") is not None:
                                prompt_tokens = int(usage["prompt_tokens"])
                    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
                        raise _Failed(
                            "protocol", f"unparseable chunk {data[:120]!r}: {exc}"
                        ) from exc
                    if text:
                        now = time.perf_counter()
                        if last is None:
                            ttft = now - start
                        else:
                            itl.append(now - last)
                        last = now
                        chunks += 1
                if not done:
                    raise _Failed("stream", f"stream ended without [DONE] after {chunks} chunks")
    except _Failed as exc:
        return RequestSample(start, time.perf_counter(), False, error_kind=exc.kind, error=str(exc))
    except (TimeoutError, httpx.TimeoutException) as exc:
        what = type(exc).__name__ if isinstance(exc, httpx.TimeoutException) else "total"
        message = f"timed out ({what}) after {time.perf_counter() - start:.3f}s, {chunks} chunks"
        return RequestSample(start, time.perf_counter(), False, error_kind="timeout", error=message)
    except httpx.ConnectError as exc:
        message = f"cannot connect to {plan.url}: {exc}"
        return RequestSample(start, time.perf_counter(), False, error_kind="connect", error=message)
    except httpx.TransportError as exc:  # RemoteProtocolError, ReadError, ...
        message = f"stream broken after {chunks} chunks: {type(exc).__name__}: {exc}"
        return RequestSample(start, time.perf_counter(), False, error_kind="stream", error=message)
    except httpx.HTTPError as exc:  # decoding and other request errors
        message = f"{type(exc).__name__} after {chunks} chunks: {exc}"
        return RequestSample(start, time.perf_counter(), False, error_kind="http", error=message)
    end = time.perf_counter()
    return RequestSample(
        start,
        end,
        True,
        ttft_s=ttft,
        itl_s=itl,
        output_tokens=usage_tokens if usage_tokens is not None else chunks,
        prompt_tokens=prompt_tokens,
    )


async def run_load_test(plan: LoadTestPlan) -> list[RequestSample]:
    """Closed loop: ``plan.concurrency`` workers, ``plan.rounds`` requests each."""
    if plan.concurrency < 1 or plan.rounds < 1:
        raise ValueError("concurrency and rounds must be at least 1")
    rng = random.Random(plan.seed)
    prompts = [make_prompt(plan.input_tokens, rng) for _ in range(plan.requests)]
    samples: list[RequestSample] = []

    async def worker(index: int, http: httpx.AsyncClient) -> None:
        for round_ in range(plan.rounds):
            samples.append(
                await one_request(http, plan, prompts[round_ * plan.concurrency + index])
            )

    # the total per-request timeout is enforced around each request (asyncio.timeout)
    timeout = httpx.Timeout(None, connect=plan.connect_timeout_s)
    # no connection cap: httpx's default pool (100) would silently cap the concurrency
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=plan.concurrency)
    async with (
        httpx.AsyncClient(timeout=timeout, limits=limits, headers=dict(plan.headers)) as http,
        asyncio.TaskGroup() as group,
    ):
        for index in range(plan.concurrency):
            group.create_task(worker(index, http))
    return samples


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run`` — in a fresh thread when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


# --------------------------------------------------------------------------- the runner

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class HttpOptions(RunnerOptions):
    base_url: str
    """``http(s)://host[:port][/prefix]``; a trailing ``/v1`` is accepted and dropped."""
    model: str | None = None
    """The served model name; when unset, the first one ``GET /v1/models`` lists."""
    api: Api = "completions"
    rounds: int = Field(default=2, ge=1, le=10_000)
    max_tokens: int = Field(default=128, ge=1, le=1_000_000)
    timeout_seconds: float = Field(default=300.0, gt=0)
    """Per request, from sending to the end of the stream."""
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    include_usage: bool = True
    """Ask for ``usage`` in the stream (``stream_options``); off for servers that reject it."""
    api_key_env: str | None = None
    """The *name* of an environment variable holding a bearer token."""
    seed: int = 0

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https"):
            raise ValueError(
                f"must be an http:// or https:// URL, not {parts.scheme or 'no'} scheme"
            )
        if not parts.hostname:
            raise ValueError("has no host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials (use api_key_env)")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"bad port: {exc}") from None
        path = parts.path.rstrip("/")
        path = path.removesuffix("/v1")
        return urlunsplit((parts.scheme, parts.netloc, path, "", ""))

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError("must be the name of an environment variable, not a token")
        return value


class LoadTestFailedError(RuntimeError):
    """Every request of a cell failed: nothing was measured."""


class HttpRunner(BaseRunner[HttpOptions]):
    """Load-tests an OpenAI-compatible streaming endpoint; concurrency = batch size."""

    name: ClassVar[str] = "http"
    Options: ClassVar[type[RunnerOptions]] = HttpOptions

    def __init__(self, options: HttpOptions) -> None:
        super().__init__(options)
        if options.api_key_env is not None and not os.environ.get(options.api_key_env):
            raise ValueError(f"api_key_env: environment variable {options.api_key_env} is not set")
        self._model = options.model

    @property
    def endpoint(self) -> str:
        return self.options.base_url + PATHS[self.options.api]

    def _headers(self) -> dict[str, str]:
        if self.options.api_key_env is None:
            return {}
        token = os.environ.get(self.options.api_key_env)
        if not token:
            raise RuntimeError(f"environment variable {self.options.api_key_env} is not set")
        return {"Authorization": f"Bearer {token}"}

    def plan(self, cell: BenchmarkCell, model: str | None) -> LoadTestPlan:
        if cell.batch_size < 1:
            raise ValueError(f"config {cell.id}: batch_size {cell.batch_size} < 1")
        if cell.sequence_length < 2:
            raise ValueError(f"config {cell.id}: sequence_length {cell.sequence_length} < 2")
        max_tokens = min(self.options.max_tokens, cell.sequence_length // 2)
        return LoadTestPlan(
            url=self.endpoint,
            api=self.options.api,
            model=model,
            concurrency=cell.batch_size,
            rounds=self.options.rounds,
            input_tokens=cell.sequence_length - max_tokens,
            max_tokens=max_tokens,
            timeout_s=self.options.timeout_seconds,
            connect_timeout_s=self.options.connect_timeout_seconds,
            include_usage=self.options.include_usage,
            seed=self.options.seed + cell.id,
            headers=self._headers(),
        )

    async def _discover_model(self, headers: Mapping[str, str]) -> str:
        url = self.options.base_url + "/v1/models"
        timeout = httpx.Timeout(
            self.options.timeout_seconds, connect=self.options.connect_timeout_seconds
        )
        async with httpx.AsyncClient(timeout=timeout, headers=dict(headers)) as client:
            response = await client.get(url)
        if response.status_code >= 400:
            raise RuntimeError(
                f"GET {url}: HTTP {response.status_code}: {_error_message(response.content)}"
            )
        try:
            return str(response.json()["data"][0]["id"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise RuntimeError(f"GET {url}: no model listed ({exc}); set the model option") from exc

    async def arun(self, cell: BenchmarkCell) -> dict[str, Any]:
        headers = self._headers()
        if self._model is None:
            self._model = await self._discover_model(headers)
        plan = self.plan(cell, self._model)
        log.info(
            "config %s: %s concurrency=%d rounds=%d input~%d max_tokens=%d",
            cell.id,
            plan.url,
            plan.concurrency,
            plan.rounds,
            plan.input_tokens,
            plan.max_tokens,
        )
        summary = summarise(await run_load_test(plan))
        if summary["requests_ok"] == 0:
            raise LoadTestFailedError(
                f"all {summary['requests_total']} requests to {plan.url} failed; "
                f"first error: {summary['first_error']}"
            )
        return {
            "runner": self.name,
            "endpoint": plan.url,
            "api": plan.api,
            "model": plan.model,
            "workload_type": cell.workload_type,
            "batch_size": cell.batch_size,
            "sequence_length": cell.sequence_length,
            "concurrency": plan.concurrency,
            "rounds": plan.rounds,
            "input_tokens": plan.input_tokens,
            "max_tokens": plan.max_tokens,
            **summary,
        }

    def run(self, cell: BenchmarkCell) -> dict[str, Any]:
        return _run_coroutine(lambda: self.arun(cell))
