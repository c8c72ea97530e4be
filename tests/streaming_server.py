"""A small OpenAI-compatible streaming server with known delays, for the ``http`` runner.

Real HTTP (uvicorn, in its own process so its timing does not share a GIL with the client):
``POST /v1/completions`` and ``POST /v1/chat/completions`` with ``stream: true`` answer with
Server-Sent Events: headers at once (and a role-only chunk for chat, as vLLM does), the first
token after ``ttft_ms``, then one token every ``token_delay_ms`` on an absolute schedule, an
optional ``usage`` chunk (when asked with ``stream_options.include_usage``) and
``data: [DONE]``. ``GET /v1/models`` lists one model.

Behaviour is changed at run time with ``POST /_control`` (a JSON :class:`Behaviour`, which
also resets the counters); ``GET /_stats`` returns the counters, among them the most
requests ever in flight at once. Error modes: every ``fail_every``-th request answers
HTTP 500, every ``drop_every``-th drops the connection after ``drop_after`` tokens, every
``stall_every``-th sends nothing after the headers until the client goes away.

    python tests/streaming_server.py --port 8001      # by hand
    with StreamingServer() as server: ...             # from tests
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import selectors
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import httpx

MODEL = "test-model"
DROP_MESSAGE = "ASGI callable returned without completing response."


@dataclass
class Behaviour:
    ttft_ms: float = 50.0
    token_delay_ms: float = 10.0
    tokens: int = 16
    """Tokens per answer (fewer if the request's max_tokens is smaller)."""
    tokens_per_chunk: int = 1
    fail_every: int = 0
    drop_every: int = 0
    drop_after: int = 3
    stall_every: int = 0
    api_key: str | None = None
    """When set, requests without ``Authorization: Bearer <api_key>`` get HTTP 401."""


class State:
    def __init__(self) -> None:
        self.behaviour = Behaviour()
        self.reset()

    def reset(self) -> None:
        self.generation = getattr(self, "generation", 0) + 1
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.completed = 0
        self.bodies: list[dict[str, Any]] = []


state = State()


async def _read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return body
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _json_response(send: Any, status: int, payload: Any) -> None:
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": data})


def _event(payload: Any) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _chunk(chat: bool, text: str, index: int) -> dict[str, Any]:
    choice: dict[str, Any] = (
        {"index": 0, "delta": {"content": text}, "finish_reason": None}
        if chat
        else {"index": 0, "text": text, "finish_reason": None}
    )
    return {
        "id": f"cmpl-{index}",
        "object": "chat.completion.chunk" if chat else "text_completion",
        "model": MODEL,
        "choices": [choice],
    }


async def _stream(scope: Any, receive: Any, send: Any, chat: bool) -> None:
    request = json.loads(await _read_body(receive) or b"{}")
    b = state.behaviour
    generation = state.generation
    state.requests += 1
    number = state.requests
    state.bodies.append(request)
    if b.api_key is not None:
        auth = dict(scope["headers"]).get(b"authorization", b"").decode()
        if auth != f"Bearer {b.api_key}":
            await _json_response(send, 401, {"error": {"message": "bad api key"}})
            return
    if b.fail_every and number % b.fail_every == 0:
        await _json_response(send, 500, {"error": {"message": f"injected failure {number}"}})
        return
    state.in_flight += 1
    state.max_in_flight = max(state.max_in_flight, state.in_flight)
    try:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        if chat:
            role = {
                "id": "c",
                "model": MODEL,
                "choices": [{"index": 0, "delta": {"role": "assistant"}}],
            }
            await send({"type": "http.response.body", "body": _event(role), "more_body": True})
        if b.stall_every and number % b.stall_every == 0:
            await _read_body(receive)  # returns when the client disconnects
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        tokens = min(b.tokens, int(request.get("max_tokens") or b.tokens))
        sent = 0
        while sent < tokens:
            due = start + (b.ttft_ms + sent * b.token_delay_ms) / 1000
            await asyncio.sleep(max(0.0, due - loop.time()))
            if b.drop_every and number % b.drop_every == 0 and sent >= b.drop_after:
                return  # without finishing the chunked body: uvicorn closes the connection
            take = min(b.tokens_per_chunk, tokens - sent)
            text = "".join(f" t{sent + i}" for i in range(take))
            body = _event(_chunk(chat, text, number))
            await send({"type": "http.response.body", "body": body, "more_body": True})
            sent += take
        if (request.get("stream_options") or {}).get("include_usage"):
            prompt = request.get("prompt") or " ".join(
                m["content"] for m in request.get("messages", [])
            )
            usage = {
                "prompt_tokens": len(prompt.split()),
                "completion_tokens": tokens,
                "total_tokens": len(prompt.split()) + tokens,
            }
            final = {"id": f"cmpl-{number}", "model": MODEL, "choices": [], "usage": usage}
            await send({"type": "http.response.body", "body": _event(final), "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        if generation == state.generation:
            state.completed += 1
    finally:
        if generation == state.generation:
            state.in_flight -= 1


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    method, path = scope["method"], scope["path"]
    if method == "POST" and path == "/v1/completions":
        await _stream(scope, receive, send, chat=False)
    elif method == "POST" and path == "/v1/chat/completions":
        await _stream(scope, receive, send, chat=True)
    elif method == "GET" and path == "/v1/models":
        await _json_response(send, 200, {"object": "list", "data": [{"id": MODEL}]})
    elif method == "POST" and path == "/_control":
        state.behaviour = Behaviour(**json.loads(await _read_body(receive)))
        state.reset()
        await _json_response(send, 200, asdict(state.behaviour))
    elif method == "GET" and path == "/_stats":
        stats = {
            k: getattr(state, k)
            for k in ("requests", "in_flight", "max_in_flight", "completed", "bodies")
        }
        await _json_response(send, 200, stats)
    else:
        await _json_response(send, 404, {"error": {"message": f"no route {method} {path}"}})


class _HideIntendedDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != DROP_MESSAGE


def serve(port: int, announce: bool = False) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)  # connections queue here until uvicorn accepts them
    logging.getLogger("uvicorn.error").addFilter(_HideIntendedDrops())
    if announce:
        print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", backlog=2048
    )
    uvicorn.Server(config).run(sockets=[sock])


class StreamingServer:
    """The server in a child process on a free 127.0.0.1 port."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> StreamingServer:
        self._process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--port", "0", "--announce"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout=30):
                self.__exit__()
                raise RuntimeError("streaming server did not announce its port within 30 s")
        line = self._process.stdout.readline()
        if not line.startswith("PORT "):
            self.__exit__()
            raise RuntimeError(f"streaming server failed to start: {line!r}")
        self.base_url = f"http://127.0.0.1:{int(line.split()[1])}"
        deadline = time.monotonic() + 30
        while True:  # until uvicorn answers
            try:
                self.stats()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None

    def configure(self, **behaviour: Any) -> Behaviour:
        """Replace the behaviour (unset fields take their defaults) and reset the counters."""
        unknown = set(behaviour) - {f.name for f in fields(Behaviour)}
        if unknown:
            raise TypeError(f"unknown behaviour {sorted(unknown)}")
        response = httpx.post(f"{self.base_url}/_control", json=behaviour, timeout=10)
        response.raise_for_status()
        return Behaviour(**response.json())

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.base_url}/_stats", timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--announce", action="store_true", help="print PORT <n> when bound")
    parser.add_argument("--ttft-ms", type=float, default=Behaviour.ttft_ms)
    parser.add_argument("--token-delay-ms", type=float, default=Behaviour.token_delay_ms)
    parser.add_argument("--tokens", type=int, default=Behaviour.tokens)
    args = parser.parse_args()
    state.behaviour = Behaviour(
        ttft_ms=args.ttft_ms, token_delay_ms=args.token_delay_ms, tokens=args.tokens
    )
    serve(args.port, announce=args.announce)


if __name__ == "__main__":
    main()
