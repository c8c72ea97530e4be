"""The Airflow plugin as Airflow itself loads it: from the plugins folder, validated by the
datamodel of Airflow's ``/api/v2/plugins`` (which the UI builds its menu from), mounted by
Airflow's own ``init_plugins``; every menu entry's ``href`` must reach a page of the app.

Last, the real thing: ``airflow api-server`` with this plugin, its UI in Debian's Chromium:
the menu lists the pages, they render in the UI's iframe, and a DAG run's "foundryflow
progress" tab shows that run's execution, updating itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from foundryflow.runtime import finish_execution, run_step, start_execution
from foundryflow.spec.loader import PipelineCatalog


def encode_uri_component(value: str) -> str:
    """JavaScript's encodeURIComponent, which the Airflow UI applies to ``{DAG_ID}`` and
    ``{RUN_ID}`` before it loads the view."""
    return quote(value, safe="-_.!~*'()")


@pytest.fixture(scope="module")
def plugin_info() -> dict[str, Any]:
    from airflow import plugins_manager

    assert not any("foundryflow" in path for path in plugins_manager.get_import_errors())
    found = [info for info in plugins_manager.get_plugin_info() if info["name"] == "foundryflow"]
    assert len(found) == 1, "the plugins folder holds one foundryflow plugin"
    return found[0]


@pytest.fixture(scope="module")
def airflow_app(airflow_db: Path) -> TestClient:
    """A FastAPI app with the plugins mounted as the Airflow API server mounts them."""
    from airflow.api_fastapi.app import init_plugins

    app = FastAPI()
    init_plugins(app)
    return TestClient(app)


@pytest.fixture(scope="module")
def airflow_token(airflow_db: Path) -> str:
    """A JWT of Airflow's auth manager, as ``POST /auth/token`` hands out."""
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return create_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="ADMIN"))


def test_the_plugin_routes_need_an_airflow_user(
    airflow_app: TestClient, airflow_token: str
) -> None:
    """Airflow leaves plugin apps open; ours cancel runs and change deployments."""
    for method, path in [
        ("GET", "/foundryflow/api/v1/executions"),
        ("POST", f"/foundryflow/api/v1/executions/{uuid.uuid4()}/cancel"),
        ("GET", "/foundryflow/api/v1/pipelines/deployments"),
        ("DELETE", f"/foundryflow/api/v1/pipelines/deployments/{uuid.uuid4()}"),
        ("GET", "/foundryflow/ui/executions"),
    ]:
        assert airflow_app.request(method, path).status_code == 401, path
        forged = airflow_app.request(method, path, headers={"Authorization": "Bearer forged"})
        assert forged.status_code in (401, 403), path
    signed = {"Authorization": f"Bearer {airflow_token}"}
    assert airflow_app.get("/foundryflow/api/v1/executions", headers=signed).status_code == 200
    assert airflow_app.get("/foundryflow/metrics").status_code == 200  # Prometheus scrapes it


def test_external_views_validate_against_airflows_datamodel(plugin_info: dict[str, Any]) -> None:
    from airflow import plugins_manager
    from airflow.api_fastapi.core_api.datamodels.plugins import PluginResponse

    response = PluginResponse.model_validate(plugin_info)  # what GET /api/v2/plugins does
    views = {view.name: view for view in response.external_views}
    assert {name: (v.destination, v.category, v.href) for name, v in views.items()} == {
        "Pipeline executions": ("nav", "foundryflow", "foundryflow/ui/executions"),
        "Benchmark matrix": ("nav", "foundryflow", "foundryflow/ui/matrix"),
        "foundryflow progress": (
            "dag_run",
            None,
            "foundryflow/ui/airflow-run?dag_id={DAG_ID}&run_id={RUN_ID}",
        ),
    }
    for view in views.values():
        assert not view.href.startswith("/"), "relative, so the base URL applies"
        assert view.url_route, "without url_route the UI links out instead of embedding"
    # the UI drops views whose url_route another plugin took: ours must all survive
    kept, _ = plugins_manager._get_ui_plugins()
    routes = {view["url_route"] for view in kept}
    assert {"foundryflow-executions", "foundryflow-matrix", "foundryflow-run"} <= routes


def test_hrefs_reach_the_pages(
    plugin_info: dict[str, Any], airflow_app: TestClient, airflow_token: str
) -> None:
    dag_run = f"manual__2026-02-03T04:05:06.789+00:00-{uuid.uuid4().hex[:6]}"
    execution = start_execution(
        PipelineCatalog().get("t-linear"),
        {"a": 3},
        engine="airflow",
        engine_run_id=f"t-linear/{dag_run}",
    )
    run_step(execution, "first")
    finish_execution(execution, engine_failed=True, engine_message="stopped in the test")

    for view in plugin_info["external_views"]:
        href = view["href"]
        if view["destination"] != "nav":
            href = href.replace("{DAG_ID}", encode_uri_component("t-linear")).replace(
                "{RUN_ID}", encode_uri_component(dag_run)
            )
        response = airflow_app.get(  # the UI's base URL is "/" here
            "/" + href, headers={"Authorization": f"Bearer {airflow_token}"}
        )
        assert response.status_code == 200, (view["name"], response.status_code)
        assert response.headers["content-type"].startswith("text/html")
        if view["destination"] == "dag_run":
            assert str(response.url).endswith(f"/foundryflow/ui/executions/{execution}")
            assert 'data-step="first" data-status="COMPLETED"' in response.text
            assert "stopped in the test" in response.text


# --- the real Airflow UI ------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"airflow api-server exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"airflow api-server did not answer {url}: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def airflow_ui(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``airflow api-server`` on a free port, every user an admin (no login), with the
    DAGs serialized so DAG runs can be created; stopped (its process group) afterwards."""
    from tests.test_ui_pages import free_port

    env = os.environ | {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
    subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "reserialize"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port = free_port()
    log = tmp_path_factory.mktemp("airflow-api") / "api-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/foundryflow/ui/executions", process, log)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def trigger(base: str, dag_id: str, conf: dict[str, Any]) -> str:
    request = urllib.request.Request(
        f"{base}/api/v2/dags/{dag_id}/dagRuns",
        data=json.dumps({"logical_date": None, "conf": conf}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        run_id: str = json.load(response)["dag_run_id"]
        return run_id


@pytest.mark.airflow
def test_airflow_ui_lists_embeds_and_links_the_pages(airflow_ui: str) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    # a DAG run queued in Airflow (no scheduler here), and the execution its start task
    # records: engine "airflow", engine_run_id "<dag_id>/<run_id>"
    run_id = trigger(airflow_ui, "t-linear", {"a": 4})
    execution = start_execution(
        PipelineCatalog().get("t-linear"),
        {"a": 4},
        engine="airflow",
        engine_run_id=f"t-linear/{run_id}",
    )
    run_step(execution, "first")

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{airflow_ui}/")
        page.get_by_role("button", name="Plugins").click()
        page.get_by_role("menuitem", name="foundryflow").hover()
        entries = page.get_by_role("menuitem")
        entries.filter(has_text="Benchmark matrix").wait_for()
        assert {"Pipeline executions", "Benchmark matrix"} <= set(entries.all_inner_texts())
        entries.filter(has_text="Pipeline executions").click()
        page.wait_for_url("**/plugin/foundryflow-executions")
        frame = page.frame_locator('iframe[title="Pipeline executions"]')
        frame.locator(f'#executions tr[data-execution="{execution}"]').wait_for()

        page.goto(f"{airflow_ui}/dags/t-linear/runs/{quote(run_id, safe='')}")
        page.get_by_text("foundryflow progress", exact=True).click()
        page.wait_for_url("**/plugin/foundryflow-run")
        frame = page.frame_locator('iframe[title="foundryflow progress"]')
        frame.locator('#steps tr[data-step="first"][data-status="COMPLETED"]').wait_for()
        assert frame.locator("#percent").inner_text() == "25.0 %"
        for step in ("second", "only_slow", "last"):
            run_step(execution, step)
        finish_execution(execution)
        frame.locator('#status .badge:text("COMPLETED")').wait_for(timeout=15_000)
        assert frame.locator("#percent").inner_text() == "100.0 %"
        browser.close()
