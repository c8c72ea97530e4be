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
from foundryflow.platform import stop_process_group

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


def _stat(pid: int) -> tuple[str, int, int] | None:
    """State, parent pid and session id of a live process (None if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid, _, session = text[text.rindex(")") + 2 :].split()[:4]
    return state, int(ppid), int(session)


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def airflow_sessions(up_pid: int) -> set[int]:
    """The sessions of what ``up`` started (standalone runs in a session of its own).

    Found by session, not by environment or command line: Airflow's components set their
    process titles, which overwrites what /proc shows of both.
    """
    return {pid for pid in _pids() if (stat := _stat(pid)) and stat[1] == up_pid}


def session_members(sessions: set[int]) -> list[int]:
    """Live processes of ``sessions`` (zombies are gone already)."""
    return [
        pid for pid in _pids() if (stat := _stat(pid)) and stat[2] in sessions and stat[0] != "Z"
    ]


def kill_sessions(sessions: set[int]) -> list[int]:
    """SIGKILL what is left of ``sessions``; returns what was left."""
    left = session_members(sessions)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


STUBBORN_GROUP = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import signal, time\\n"
    "for sig in (signal.SIGINT, signal.SIGTERM): signal.signal(sig, signal.SIG_IGN)\\n"
    "print(flush=True)\\ntime.sleep(600)"], stdout=subprocess.PIPE)
child.stdout.readline()  # its handlers are set
print(child.pid, flush=True)
time.sleep(600)
"""
"""A group leader that dies on SIGINT and leaves a child that ignores SIGINT and SIGTERM: a
component whose parent has gone, still in the group."""


def test_stopping_the_airflow_group_leaves_nothing_behind() -> None:
    leader = subprocess.Popen(
        [sys.executable, "-c", STUBBORN_GROUP], stdout=subprocess.PIPE, start_new_session=True
    )
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    try:
        stop_process_group(leader, timeout=2, grace=0.5)
        assert leader.returncode is not None
        deadline = time.monotonic() + 10  # the orphan is init's to reap
        while (stat := _stat(child)) and stat[0] != "Z":
            assert time.monotonic() < deadline, f"child {child} still running: {stat}"
            time.sleep(0.1)
    finally:
        kill_sessions({leader.pid})
        leader.wait()


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
    base = f"http://localhost:{port}"
    sessions: set[int] = set()

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
            # as a CI job or `nohup up &` starts it: Ctrl-C must still stop it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        deadline = time.monotonic() + 240
        while "Airflow is up" not in output.read_text(errors="replace"):
            assert proc.poll() is None, f"up exited with {proc.returncode}\n{log_tail()}"
            assert time.monotonic() < deadline, f"Airflow not up within 240 s\n{log_tail()}"
            time.sleep(1)
        sessions = airflow_sessions(proc.pid)
        assert sessions, "up started no process of its own"
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
        assert session_members(sessions) == [], "Airflow processes left running"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        kill_sessions(sessions)
