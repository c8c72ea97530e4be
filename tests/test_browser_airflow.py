"""The 5-minute tour of the README, done by a real browser: ``foundryflow up`` on a fresh
database brings Airflow up with every DAG and no import errors; headless Chromium logs in,
fills the trigger form of ``guardrail-deployment-workflow`` from the example configuration
(drop-down, JSON textarea, Monaco JSON editors), triggers it and reads the successful run.

``FOUNDRYFLOW_UPDATE_SCREENSHOTS=1`` writes the screenshots to ``docs/screenshots/`` (the
README embeds them); otherwise they go to the test's tmp_path, so the suite leaves the
tree clean.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
import yaml

from foundryflow.config import REPO_ROOT
from tests.browser import (
    chromium,
    fill_json_textarea,
    fill_text,
    login,
    missing_browser,
    new_page,
    open_trigger_form,
    paste_into_editor,
    select_option,
    set_switch,
)
from tests.test_up import airflow_sessions, free_port, http, kill_sessions

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser())),
]

DAG_ID = "guardrail-deployment-workflow"
EXAMPLE = REPO_ROOT / "pipelines" / "examples" / "guardrail-demo.json"
USECASE_DAGS = {"usecase-agent-rag", "usecase-rag-memory"}
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
UP_TIMEOUT, DAGS_TIMEOUT, RUN_TIMEOUT = 180, 90, 180

# how each parameter of the example is entered: the widget Airflow renders for its Param
WIDGETS: dict[str, Any] = {
    "provider_id": fill_text,
    "project_id": fill_text,
    "probe_selections": fill_json_textarea,  # spec type json: ["object", "array"]
    "hardware_mode": select_option,  # enum: a drop-down
    "model_specs": paste_into_editor,  # object: Monaco JSON editor
    "is_standalone": set_switch,
    "profile": paste_into_editor,
    "user_id": fill_text,
}


@dataclass
class Up:
    base: str
    user: str
    password: str
    home: Path
    output: Path

    def log_tail(self) -> str:
        standalone = self.home / "airflow" / "standalone.log"
        tail = standalone.read_text(errors="replace")[-3000:] if standalone.exists() else ""
        up = self.output.read_text(errors="replace")
        return f"\nup output:\n{up}\nstandalone.log tail:\n{tail}"


@pytest.fixture
def scratch_database(database_url: str) -> Iterator[str]:
    """An empty database on the test server (``postgresql://postgres@127.0.0.1:5432`` or the
    embedded one), so ``up`` migrates and seeds it exactly as on a fresh machine."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    admin = url.set(drivername="postgresql", database="postgres")
    admin_url = admin.render_as_string(hide_password=False)
    name = f"ff_browser_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.Error as exc:
        pytest.skip(f"cannot create a scratch database next to the test database: {exc}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def foundryflow_up(tmp_path: Path, database_url: str) -> Iterator[Up]:
    """``foundryflow up`` as a user starts it: no AIRFLOW_* / FOUNDRYFLOW_* settings of the
    test session leak in (only the services' URLs and a fresh home); always stopped."""
    port = free_port()
    home = tmp_path / "home"
    output = tmp_path / "up.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "FOUNDRYFLOW_"))}
    env |= {
        "FOUNDRYFLOW_DATABASE_URL": database_url,
        "FOUNDRYFLOW_REDIS_URL": os.environ["FOUNDRYFLOW_REDIS_URL"],
        "FOUNDRYFLOW_HOME": str(home),
        "COLUMNS": "200",  # the login line must not wrap
    }
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "foundryflow.cli", "up", "--port", str(port)],
            env=env,
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    up = Up(f"http://localhost:{port}", "", "", home, output)
    sessions: set[int] = set()
    try:
        deadline = time.monotonic() + UP_TIMEOUT
        while "Airflow is up" not in (text := output.read_text(errors="replace")):
            assert proc.poll() is None, f"up exited with {proc.returncode}{up.log_tail()}"
            assert time.monotonic() < deadline, f"Airflow not up in {UP_TIMEOUT} s{up.log_tail()}"
            time.sleep(1)
        sessions = airflow_sessions(proc.pid)
        login_line = re.search(r"login\s+(\S+) / (\S+)", text)
        assert login_line, text
        up.user, up.password = login_line.groups()
        yield up
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: up stops Airflow, then itself
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        left = kill_sessions(sessions)
    assert left == [], f"Airflow processes still running after up stopped: {left}"


def our_dag_ids() -> set[str]:
    """Every pipeline in pipelines/ plus the use-case DAGs."""
    names = {
        yaml.safe_load(p.read_text())["name"] for p in (REPO_ROOT / "pipelines").glob("*.yaml")
    }
    return names | USECASE_DAGS


def api(up: Up, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
    """One REST call; a busy API server (scheduler, DAG processor and tasks share the
    machine) may not answer within ``http``'s 10 s once, so timeouts are retried for 60 s."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return http(method, f"{up.base}{path}", body, token=token)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def api_token(up: Up) -> str:
    credentials = {"username": up.user, "password": up.password}
    status, body = api(up, "POST", "/auth/token", credentials)
    assert status == 201, body
    return str(body["access_token"])


def wait_for_dags(up: Up, token: str, expected: set[str]) -> set[str]:
    deadline = time.monotonic() + DAGS_TIMEOUT
    while True:
        status, body = api(up, "GET", "/api/v2/dags?limit=100", token=token)
        assert status == 200, body
        listed = {dag["dag_id"] for dag in body["dags"]}
        if expected <= listed:
            return listed
        assert time.monotonic() < deadline, f"missing DAGs: {sorted(expected - listed)}"
        time.sleep(2)


def assert_no_import_errors(up: Up, token: str) -> None:
    status, body = api(up, "GET", "/api/v2/importErrors", token=token)
    assert status == 200, body
    assert body["total_entries"] == 0, json.dumps(body["import_errors"], indent=1)


def run_path(run_id: str) -> str:
    return f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}"


def wait_for_run(up: Up, token: str, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        status, run = api(up, "GET", run_path(run_id), token=token)
        assert status == 200, run
        if run["state"] not in ("queued", "running"):
            return dict(run)
        assert time.monotonic() < deadline, f"run still {run['state']}{up.log_tail()}"
        time.sleep(2)


def task_instances(up: Up, token: str, run_id: str) -> list[dict[str, Any]]:
    status, body = api(up, "GET", f"{run_path(run_id)}/taskInstances?limit=100", token=token)
    assert status == 200, body
    return list(body["task_instances"])


def forget_config(redis_client: Any, profile_id: str) -> None:
    """The test Redis is shared: remove the config the run synced (key and history)."""
    from foundryflow.configsync import GuardrailConfigStore

    store = GuardrailConfigStore(redis_client)
    redis_client.delete(store.key(profile_id), store.history_key(profile_id))


def test_the_readme_tour_in_a_real_browser(
    tmp_path: Path, scratch_database: str, redis_client: Any
) -> None:
    from playwright.sync_api import expect

    from foundryflow.configsync import GuardrailConfigStore

    shots = SCREENSHOTS if os.environ.get("FOUNDRYFLOW_UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    conf: dict[str, Any] = json.loads(EXAMPLE.read_text())
    conf["profile"]["name"] = f"tour-{uuid.uuid4().hex[:8]}"  # unique per project
    assert set(conf) == set(WIDGETS), "the example has parameters this test cannot enter"
    summary: dict[str, Any] = {}

    with foundryflow_up(tmp_path, scratch_database) as up:
        token = api_token(up)
        expected = our_dag_ids()
        listed = wait_for_dags(up, token, expected)
        assert listed == expected, f"unexpected DAGs: {sorted(listed - expected)}"
        assert_no_import_errors(up, token)

        try:
            with chromium() as browser:
                page = new_page(browser, up.base)
                login(page, up.base, up.user, up.password)
                dialog = open_trigger_form(page, up.base, DAG_ID)
                # a new DAG is paused; the form unpauses it on trigger
                unpause = dialog.get_by_role("checkbox", name=re.compile(rf"^Unpause {DAG_ID}"))
                expect(unpause).to_be_checked()
                for name, value in conf.items():
                    WIDGETS[name](dialog, name, value)
                submit = dialog.get_by_test_id("trigger-dag-submit")
                expect(submit).to_be_enabled()

                # the picture: no field focused, JSON textareas from their first line
                dialog.get_by_role("heading").first.click()
                dialog.locator("textarea").evaluate_all("all => all.forEach(t => t.scrollTop = 0)")
                page.set_viewport_size({"width": 1400, "height": 2400})  # the whole form
                dialog.screenshot(path=shots / "airflow-trigger-form.png")
                page.set_viewport_size({"width": 1400, "height": 1000})

                submit.click()
                page.wait_for_url(re.compile(rf"/dags/{DAG_ID}/runs/[^/?]+"))
                match = re.search(rf"/dags/{DAG_ID}/runs/([^/?]+)", page.url)
                assert match, page.url
                run_id = unquote(match.group(1))

                run = wait_for_run(up, token, run_id)
                tis = task_instances(up, token, run_id)
                states = {t["task_id"]: t["state"] for t in tis}
                assert run["state"] == "success", f"{states}{up.log_tail()}"
                assert run["triggered_by"] == "ui"
                # what the form sent is the example, parameter by parameter
                assert {k: run["conf"][k] for k in conf} == conf
                assert run["conf"]["credential_id"] is None

                # the run page: the run's state and every task's, as the UI shows them
                page.reload()
                heading = page.get_by_role("heading", name=run_id, exact=True)
                badge = heading.locator("xpath=..").get_by_test_id("state-badge")
                expect(badge).to_have_text("Success", timeout=30_000)
                rows = page.get_by_role("row").filter(has=page.get_by_test_id("table-cell-state"))
                expect(rows).to_have_count(len(tis))
                ui_states = {
                    row.get_by_test_id("truncated-text").first.inner_text(): row.get_by_test_id(
                        "table-cell-state"
                    ).inner_text()
                    for row in rows.all()
                }
                assert ui_states["ff_finish"] == "Success", ui_states
                assert ui_states["deploy_models"] == ui_states["sync_redis"] == "Success"
                # Llama Guard 3 8B is in the catalog: no onboarding; nothing failed: no rollback
                for skipped in ("validate_credential", "onboard_models", "ff_rollback"):
                    assert ui_states[skipped] == "Skipped", ui_states
                assert set(ui_states.values()) <= {"Success", "Skipped"}, ui_states
                page.screenshot(path=shots / "airflow-run-success.png")

                # the run's summary, from our plugin's API in the same browser session
                api = f"{up.base}/foundryflow/api/v1/executions"
                response = page.request.get(f"{api}?pipeline={DAG_ID}")
                assert response.ok, response.text()
                [execution] = [
                    e for e in response.json() if e["engine_run_id"] == f"{DAG_ID}/{run_id}"
                ]
                response = page.request.get(f"{api}/{execution['id']}/progress")
                assert response.ok, response.text()
                summary = response.json()

            assert summary["status"] == "COMPLETED", summary["error"]
            assert summary["percent"] == 100.0
            outputs = summary["outputs"]
            assert outputs["skipped_steps"] == [5, 10]  # onboarding (catalog) and standalone
            [endpoint] = outputs["endpoint_urls"]  # a fresh database: one new vLLM endpoint
            assert endpoint.endswith(f".guardrail-{conf['project_id']}.svc.cluster.local:8000")
            assert outputs["redis_version"] == 1
            stored = GuardrailConfigStore(redis_client).read(outputs["profile_id"])
            assert (
                stored is not None and str(stored.config.deployment_id) == outputs["deployment_id"]
            )
            assert_no_import_errors(up, token)
        finally:
            if profile_id := (summary.get("outputs") or {}).get("profile_id"):
                forget_config(redis_client, profile_id)
