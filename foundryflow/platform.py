"""The local platform: embedded services + migrations + Airflow, for ``up`` and ``run``.

Airflow reads its configuration when it is first imported, so everything here sets the
environment *before* importing Airflow, and the long-running components run as child
processes (``airflow standalone``) that inherit it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from foundryflow.config import REPO_ROOT, Settings, get_settings
from foundryflow.embedded import ServiceUrls, platform_services

AIRFLOW_USER = "admin"


@dataclass(frozen=True)
class AirflowLocal:
    """Where the local Airflow keeps its state and how to reach its UI."""

    home: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def passwords_file(self) -> Path:
        return self.home / "passwords.json"

    def password(self) -> str:
        """The admin password, generated once per checkout (never a fixed default)."""
        if self.passwords_file.exists():
            return str(json.loads(self.passwords_file.read_text())[AIRFLOW_USER])
        self.home.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(12)
        self.passwords_file.write_text(json.dumps({AIRFLOW_USER: password}))
        self.passwords_file.chmod(0o600)
        return password

    def environment(self, services: ServiceUrls, settings: Settings) -> dict[str, str]:
        """Environment for Airflow processes: our DAGs and plugins, our state, no examples."""
        return {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
            ),
            # standalone starts its components as `airflow ...`: the venv must be on PATH.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "FOUNDRYFLOW_DATABASE_URL": services.database_url,
            "FOUNDRYFLOW_REDIS_URL": services.redis_url,
            "FOUNDRYFLOW_PIPELINES_PATH": json.dumps([str(p) for p in settings.pipelines_path]),
        }


def airflow_local(port: int = 8080, settings: Settings | None = None) -> AirflowLocal:
    return AirflowLocal(home=(settings or get_settings()).home / "airflow", port=port)


def _airflow_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "airflow", *args]


def migrate_airflow(env: dict[str, str]) -> None:
    """``airflow db migrate`` once per Airflow version (it takes seconds, not minutes)."""
    import importlib.metadata

    marker = Path(env["AIRFLOW_HOME"]) / f".migrated-{importlib.metadata.version('apache-airflow')}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        _airflow_cli("db", "migrate"),
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    marker.touch()


def _seed_empty_catalog() -> None:
    """A fresh platform gets the reference catalog and the guardrail demo data (providers,
    probes, rules, two local clusters), so every pipeline has something to work on out of
    the box (``pipelines/examples/``); a catalog someone has filled is left as it is."""
    from sqlalchemy import exists, select

    from foundryflow.guardrail.demo import seed_demo
    from foundryflow.store.catalog import HardwareConfig
    from foundryflow.store.db import session_scope

    with session_scope() as session:
        if not session.scalar(select(exists().select_from(HardwareConfig))):
            seed_demo(session)  # the reference catalog first, then the demo rows on it


@contextmanager
def platform(port: int = 8080) -> Iterator[tuple[ServiceUrls, AirflowLocal, dict[str, str]]]:
    """Services up, our schema migrated, Airflow configured and migrated; stops services."""
    from foundryflow.store import migrate

    settings = get_settings()
    with platform_services(settings) as services:
        migrate.upgrade(url=services.database_url)
        airflow = airflow_local(port, settings)
        airflow.password()
        env = airflow.environment(services, settings)
        os.environ.update(env)
        get_settings.cache_clear()
        _seed_empty_catalog()
        migrate_airflow(env)
        yield services, airflow, env


def wait_for_airflow(
    airflow: AirflowLocal, process: subprocess.Popen[bytes], timeout: float
) -> None:
    """Block until the API server answers its health check (or the process dies)."""
    deadline = time.monotonic() + timeout
    health = f"{airflow.url}/api/v2/monitor/health"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"airflow standalone exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError(f"Airflow did not answer on {health} within {timeout:.0f}s")


def start_airflow(env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    """``airflow standalone`` in its own process group, so one signal stops all of it."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            _airflow_cli("standalone"),
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_process_group(
    process: subprocess.Popen[bytes], timeout: float = 30, grace: float = 10
) -> None:
    """Stop ``airflow standalone`` and everything it started.

    SIGINT first, and up to ``timeout`` for standalone to shut its components down.
    Standalone terminates and waits for its direct children only; what they started (the
    api-server's server process, the LocalExecutor's workers) is left to them. So whatever
    is still in standalone's process group once it has exited or timed out gets SIGTERM,
    then SIGKILL after ``grace``: ``up`` never returns with part of Airflow still holding
    the port.
    """
    with suppress(ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break  # nothing is left of the group
        if _group_gone(process, grace):
            break
    process.wait()


def _group_gone(process: subprocess.Popen[bytes], within: float) -> bool:
    """Wait up to ``within`` seconds for every member of the process group led by
    ``process`` to exit (the leader is reaped here: a zombie would still count)."""
    deadline = time.monotonic() + within
    while True:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
