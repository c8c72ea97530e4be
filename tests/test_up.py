"""``foundryflow up``: the real local platform (Airflow standalone) starts, serves our DAGs
through its REST API, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from foundryflow.config import REPO_ROOT

GUARDRAIL_DAGS = {
    "guardrail-cluster-recommendation",
    "guardrail-deployment",
    "guardrail-model-onboarding",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids of live processes whose environment has ``name=value`` (i.e. started for us)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = next(
                line
                for line in (entry / "status").read_text().splitlines()
                if line.startswith("State:")
            )
        except (OSError, StopIteration):
            continue
        if needle in environ and "zombie" not in state:
            found.append(int(entry.name))
    return found


@pytest.mark.airflow
def test_up_serves_dags_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "home"
    output = tmp_path / "up.out"
    env = {
        **os.environ,
        # conftest already points these at the test services: nothing embedded is started
        "FOUNDRYFLOW_DATABASE_URL": os.environ["FOUNDRYFLOW_DATABASE_URL"],
        "FOUNDRYFLOW_REDIS_URL": os.environ["FOUNDRYFLOW_REDIS_URL"],
        "FOUNDRYFLOW_HOME": str(home),
        "COLUMNS": "200",
        # No activated virtualenv: `up` itself must make `airflow` findable for standalone.
        "PATH": os.pathsep.join(
            p
            for p in os.environ.get("PATH", "").split(os.pathsep)
            if Path(p).resolve() != Path(sys.executable).parent.resolve()
        ),
    }
    env.pop("VIRTUAL_ENV", None)
    airflow_home = str(home / "airflow")
    base = f"http://localhost:{port}"

    def log_tail() -> str:
        standalone = home / "airflow" / "standalone.log"
        tail = standalone.read_text(errors="replace")[-3000:] if standalone.exists() else ""
        return f"up output:\n{output.read_text(errors='replace')}\nstandalone.log tail:\n{tail}"

    with output.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "foundryflow.cli", "up", "--port", str(port)],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while "Airflow is up" not in output.read_text(errors="replace"):
            assert proc.poll() is None, f"up exited with {proc.returncode}\n{log_tail()}"
            assert time.monotonic() < deadline, f"Airflow not up within 240 s\n{log_tail()}"
            time.sleep(1)
        text = output.read_text(errors="replace")
        assert f"Airflow is up: {base}" in text
        login = re.search(r"login\s+(\S+) / (\S+)", text)
        assert login, text
        user, password = login.groups()
        assert user == "admin"
        stored = json.loads((home / "airflow" / "passwords.json").read_text())
        assert stored == {"admin": password}
        assert (home / "airflow" / "passwords.json").stat().st_mode & 0o077 == 0

        wrong = {"username": "admin", "password": "wrong"}
        status, body = http("POST", f"{base}/auth/token", wrong)
        assert status == 401, body
        status, body = http("POST", f"{base}/auth/token", {"username": user, "password": password})
        assert status == 201, body
        token = body["access_token"]

        status, _ = http("GET", f"{base}/api/v2/dags")
        assert status == 401  # the API is not open without a token

        dag_ids: set[str] = set()
        deadline = time.monotonic() + 120
        while not (GUARDRAIL_DAGS | {"t-linear"}) <= dag_ids:
            assert time.monotonic() < deadline, f"DAGs listed: {sorted(dag_ids)}\n{log_tail()}"
            time.sleep(2)
            status, body = http("GET", f"{base}/api/v2/dags?limit=100", token=token)
            assert status == 200, body
            dag_ids = {dag["dag_id"] for dag in body["dags"]}

        status, body = http("GET", f"{base}/api/v2/importErrors", token=token)
        assert status == 200, body
        assert body["total_entries"] == 0, json.dumps(body["import_errors"], indent=1)

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"up did not stop within 60 s of Ctrl-C\n{log_tail()}")
        assert code == 0, log_tail()
        assert "stopped" in output.read_text(errors="replace")
        assert not port_open(port)
        deadline = time.monotonic() + 10
        while left := processes_with_env("AIRFLOW_HOME", airflow_home):
            assert time.monotonic() < deadline, f"Airflow processes left running: {left}"
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in processes_with_env("AIRFLOW_HOME", airflow_home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
