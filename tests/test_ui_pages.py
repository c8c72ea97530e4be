"""The progress pages (``/foundryflow/ui/...``): over HTTP with the TestClient, and in
Debian's Chromium driven by Playwright against a real uvicorn server, with the app mounted
at ``/foundryflow`` as the Airflow plugin mounts it.

Executions are made by the runtime itself (``start_execution``, ``run_step``, ``rollback``,
``finish_execution``), matrices by the queue (``populate``, ``claim_batch``, ``complete``,
``fail``); only timestamps are rewritten, to spread a drain over half an hour.

Screenshots go to a temporary directory; with ``FOUNDRYFLOW_UPDATE_SCREENSHOTS=1`` they
replace ``docs/screenshots/progress-execution.png`` and ``progress-matrix.png``.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from foundryflow.api import create_app
from foundryflow.benchmark.queue import claim_batch, complete, fail
from foundryflow.runtime import finish_execution, rollback, run_step, start_execution
from foundryflow.spec.loader import PipelineCatalog, parse_pipeline
from foundryflow.spec.model import Pipeline
from foundryflow.store.db import get_engine
from tests.test_matrix import Catalog, drop_test_rows, make_catalog
from tests.test_queue import new_matrix, status_counts

REPO = Path(__file__).resolve().parent.parent
HOSTILE = "<script>alert(1)</script>"
HOSTILE_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app())


@pytest.fixture(scope="module")
def catalog() -> Iterator[Catalog]:
    catalog = make_catalog()
    yield catalog
    drop_test_rows(catalog)


def linear() -> Pipeline:
    return PipelineCatalog().get("t-linear")


def run_id() -> str:
    return f"ui-{uuid.uuid4().hex[:10]}"


def hostile_pipeline() -> Pipeline:
    """Creates a resource, then fails with the message given as a param; rolls back."""
    spec = {
        "name": f"ui-{uuid.uuid4().hex[:8]}",
        "parameters": [{"name": "message", "type": "string", "required": True}],
        "settings": {"on_failure": "rollback"},
        "steps": [
            {"id": "make", "action": "test.resource", "params": {"name": "a"}},
            {
                "id": "boom",
                "action": "test.fail",
                "depends_on": ["make"],
                "params": {"message": "{{ params.message }}"},
            },
        ],
    }
    return parse_pipeline(spec, "test")


def finished_linear(engine: str = "argo", engine_run_id: str | None = None) -> uuid.UUID:
    """A completed run; ``mode: slow`` runs every step, so later runs have an ETA."""
    execution = start_execution(
        linear(), {"a": 1, "mode": "slow"}, engine=engine, engine_run_id=engine_run_id or run_id()
    )
    for step in ("first", "second", "only_slow", "last"):
        run_step(execution, step)
    finish_execution(execution)
    return execution


def failed_rollback() -> uuid.UUID:
    """t-rollback failing at ``explode``, compensated, cleaned up, finished."""
    execution = start_execution(
        PipelineCatalog().get("t-rollback"), {}, engine="argo", engine_run_id=run_id()
    )
    for step in ("make_a", "make_b", "explode"):
        run_step(execution, step)
    rollback(execution)
    run_step(execution, "cleanup")
    finish_execution(execution)
    return execution


def html_of(client: TestClient, path: str, status: int = 200) -> str:
    response = client.get(path)
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def step_rows(html: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-step="([^"]+)" data-status="([^"]+)">', html))


# --- executions over HTTP -----------------------------------------------------------------


def test_listing_shows_both_engines_and_filters(client: TestClient) -> None:
    argo = finished_linear("argo")
    airflow_run = f"t-linear/manual__{uuid.uuid4().hex[:6]}"
    airflow = finished_linear("airflow", airflow_run)
    running = start_execution(linear(), {"a": 2}, engine="argo", engine_run_id=run_id())

    html = html_of(client, "/ui/executions?pipeline=t-linear")
    for execution in (argo, airflow, running):
        assert f'href="executions/{execution}"' in html
    assert airflow_run in html and ">argo<" in html and ">airflow<" in html
    assert 'data-refresh-ms="5000"' in html  # a running execution is listed

    only_argo = html_of(client, "/ui/executions?pipeline=t-linear&engine=argo&status=completed")
    assert str(argo) in only_argo
    assert str(airflow) not in only_argo and str(running) not in only_argo
    row = re.search(
        rf'<tr data-execution="{argo}" data-status="COMPLETED">(.*?)</tr>', only_argo, re.S
    )
    assert row and "4/4 · 100.0 %" in row.group(1)


def test_execution_page_shows_steps_percent_and_refreshes_while_running(
    client: TestClient,
) -> None:
    finished_linear()  # history, so the running one has an ETA
    execution = start_execution(linear(), {"a": 1}, engine="argo", engine_run_id=run_id())
    run_step(execution, "first")

    html = html_of(client, f"/ui/executions/{execution}")
    assert step_rows(html) == {
        "first": "COMPLETED",
        "second": "PENDING",
        "only_slow": "PENDING",
        "last": "PENDING",
    }
    assert 'id="percent">25.0 %' in html and "1 of 4 steps" in html
    assert 'aria-valuenow="25.0"' in html and "width: 25.0%" in html
    assert 'data-refresh-ms="3000"' in html
    assert re.search(r'id="eta">\d', html), "the ETA comes from the finished run's durations"
    assert "First sum" in html and "test.add" in html  # step name and action

    for step in ("second", "only_slow", "last"):
        run_step(execution, step)
    finish_execution(execution)
    html = html_of(client, f"/ui/executions/{execution}")
    assert step_rows(html)["only_slow"] == "SKIPPED"
    assert 'id="percent">100.0 %' in html and 'data-refresh-ms="0"' in html
    assert "&#34;total&#34;: 7" in html  # outputs, pretty JSON (escaped quotes)
    assert "condition is false" in html  # the skip's reason
    assert 'href="../../api/v1/executions/' in html


def test_failed_execution_shows_error_and_rollback_outcome(client: TestClient) -> None:
    execution = failed_rollback()
    html = html_of(client, f"/ui/executions/{execution}")
    assert step_rows(html) == {
        "make_a": "COMPENSATED",
        "make_b": "COMPENSATED",
        "explode": "FAILED",
        "cleanup": "COMPLETED",
    }
    assert '<span class="badge b-failed">FAILED</span>' in html
    assert "RuntimeError: exploded on purpose" in html
    assert "Rollback: completed" in html
    assert "Undone, last first: <code>make_b</code>, <code>make_a</code>." in html
    assert 'data-refresh-ms="0"' in html


def test_hostile_values_are_escaped_everywhere(client: TestClient) -> None:
    hostile_run = f'<img src=x onerror="alert(2)">{uuid.uuid4().hex[:6]}'
    execution = start_execution(
        hostile_pipeline(), {"message": HOSTILE}, engine="argo", engine_run_id=hostile_run
    )
    run_step(execution, "make")
    run_step(execution, "boom")
    rollback(execution)
    finish_execution(execution)

    for page in (f"/ui/executions/{execution}", "/ui/executions"):
        html = html_of(client, page)
        assert HOSTILE not in html and "<img src=x" not in html
        assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    html = html_of(client, f"/ui/executions/{execution}")
    assert f"RuntimeError: {HOSTILE_ESCAPED}" in html  # step error and execution error
    assert f"&#34;message&#34;: &#34;{HOSTILE_ESCAPED}&#34;" in html  # params
    assert "<script>" in html  # the page's own auto-refresh script, once
    assert html.count("<script") == 1


def test_unknown_and_malformed_ids_get_pages(client: TestClient) -> None:
    missing = uuid.uuid4()
    html = html_of(client, f"/ui/executions/{missing}", 404)
    assert "Execution not found" in html and str(missing) in html
    html = html_of(client, "/ui/executions/not-a-uuid", 422)
    assert "Malformed execution id" in html and "&#39;not-a-uuid&#39;" in html
    html = html_of(client, f"/ui/executions/{HOSTILE}", 404)  # a path segment with slashes
    assert HOSTILE not in html
    html = html_of(client, "/ui/executions/%3Cb%3Ex", 422)
    assert "<b>x" not in html and "&lt;b&gt;x" in html
    assert "Unknown status" in html_of(client, "/ui/executions?status=EXPLODED", 422)
    assert "Bad offset" in html_of(client, "/ui/executions?offset=-1", 422)
    assert "Malformed model version id" in html_of(client, "/ui/matrix/abc", 422)
    assert "Model version not found" in html_of(client, "/ui/matrix/2147483000", 404)
    assert "Page not found" in html_of(client, "/ui/nothing/here", 404)
    # the JSON API keeps its JSON errors
    assert client.get("/api/v1/executions/not-a-uuid/progress").status_code == 422
    assert client.get("/api/v1/matrix/2147483000").status_code == 404


def test_airflow_dag_run_link_redirects_to_its_execution(client: TestClient) -> None:
    dag_run = f"manual__2026-01-01T00:00:00+00:00-{uuid.uuid4().hex[:6]}"
    execution = finished_linear("airflow", f"t-linear/{dag_run}")
    response = client.get(
        "/ui/airflow-run",
        params={"dag_id": "t-linear", "run_id": dag_run},
        follow_redirects=False,
    )
    assert response.status_code == 307
    assert response.headers["location"] == f"executions/{execution}"  # relative: any prefix
    html = html_of(client, f"/ui/executions/{execution}")
    assert (
        f'href="../../../dags/t-linear/runs/{dag_run.replace(":", "%3A").replace("+", "%2B")}"'
        in html
    )

    html = html_of(client, "/ui/airflow-run?dag_id=other&run_id=nope", 404)
    assert "No foundryflow execution for this DAG run" in html
    assert 'data-refresh-ms="5000"' in html  # the start task may not have run yet


def test_ui_root_redirects_to_the_executions(client: TestClient) -> None:
    assert client.get("/ui", follow_redirects=False).headers["location"] == "ui/executions"
    assert client.get("/ui/", follow_redirects=False).headers["location"] == "executions"


# --- the matrix ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Drain:
    """A matrix half drained over the last half hour (see :func:`drained_matrix`)."""

    version: int
    total: int
    counts: dict[str, int]
    stale_id: int
    claims_in_window: int
    first_claim_in_window_ago: float
    """Seconds between the first claim in the 10-minute window and the rewrite."""


COMPLETED, FAILED, RETRIED, RUNNING = 40, 6, 4, 10


def drained_matrix(catalog: Catalog) -> Drain:
    """Populate a matrix and move it through the queue: COMPLETED configs completed,
    FAILED failed for good, RETRIED failed once and back to pending, RUNNING still held
    (the oldest without a heartbeat for 3 h: stale), the rest never claimed.

    Then the timestamps are spread like a real drain, relative to the database's now T:
    created at T-3.5h; completed config i claimed at T-31min+40s*i, done 40 s later;
    failed ones claimed at T-25.5min+2.5min*j; running ones claimed in the last 4 min.
    """
    version, total = new_matrix(catalog)
    assert total >= COMPLETED + FAILED + RETRIED + RUNNING
    claimed = [
        c.id for c in claim_batch("ui-worker", COMPLETED + FAILED + RETRIED + RUNNING, version)
    ]
    now = datetime.now(UTC)
    done, failed, retried, running = (
        claimed[:COMPLETED],
        claimed[COMPLETED : COMPLETED + FAILED],
        claimed[COMPLETED + FAILED : COMPLETED + FAILED + RETRIED],
        claimed[COMPLETED + FAILED + RETRIED :],
    )
    for config in done:
        assert complete(config, "ui-worker", "test", {"tps": 1.0}, now, now)
    for config in failed:
        assert fail(config, "ui-worker", "CUDA out of memory", max_attempts=1) == "failed"
    for config in retried:
        assert fail(config, "ui-worker", "connection reset", max_attempts=3) == "pending"

    def at(seconds: float) -> str:
        return f"now() - interval '{seconds} seconds'"

    with get_engine().begin() as conn:
        conn.execute(
            text(
                f"UPDATE benchmark_configs SET created_at = {at(3.5 * 3600)} "
                "WHERE model_version_id = :v"
            ),
            {"v": version},
        )
        for i, config in enumerate(done):
            claim = 1860 - 40 * i
            conn.execute(
                text(
                    f"UPDATE benchmark_configs SET claimed_at = {at(claim)}, "
                    f"heartbeat_at = {at(claim - 40)}, completed_at = {at(claim - 40)}, "
                    f"updated_at = {at(claim - 40)} WHERE id = :id"
                ),
                {"id": config},
            )
        for j, config in enumerate(failed):
            claim = 1530 - 150 * j
            conn.execute(
                text(
                    f"UPDATE benchmark_configs SET claimed_at = {at(claim)}, "
                    f"completed_at = {at(claim - 60)}, updated_at = {at(claim - 60)} "
                    "WHERE id = :id"
                ),
                {"id": config},
            )
        conn.execute(
            text(f"UPDATE benchmark_configs SET updated_at = {at(1200)} WHERE id = ANY(:ids)"),
            {"ids": retried},
        )
        for k, config in enumerate(running):
            claim = 3 * 3600 if k == 0 else 240 - 20 * k
            conn.execute(
                text(
                    f"UPDATE benchmark_configs SET claimed_at = {at(claim)}, "
                    f"heartbeat_at = {at(claim if k == 0 else 30)} WHERE id = :id"
                ),
                {"id": config},
            )
    counts = {
        "pending": total - COMPLETED - FAILED - RUNNING,
        "running": RUNNING,
        "completed": COMPLETED,
        "failed": FAILED,
    }
    assert status_counts(version) == {k: v for k, v in counts.items() if v}
    in_window = [1860 - 40 * i for i in range(COMPLETED) if 1860 - 40 * i <= 600]
    in_window += [240 - 20 * k for k in range(1, RUNNING)]
    return Drain(version, total, counts, running[0], len(in_window), max(in_window))


@pytest.fixture
def drain(catalog: Catalog) -> Drain:
    return drained_matrix(catalog)


def test_matrix_json_counts_claim_rate_and_stale_rows(client: TestClient, drain: Drain) -> None:
    body = client.get(f"/api/v1/matrix/{drain.version}").json()
    assert {s: body["progress"][s] for s in drain.counts} == drain.counts
    assert body["claims_in_window"] == drain.claims_in_window == 17
    # the rate rule of queue.progress: claims over the time since the first of them
    expected = drain.claims_in_window / drain.first_claim_in_window_ago * 60
    assert expected * 0.95 < body["claim_rate_per_minute"] <= expected
    assert body["claims_total"] == COMPLETED + FAILED + RETRIED + RUNNING
    assert body["stale_count"] == 1 and [r["id"] for r in body["stale_rows"]] == [drain.stale_id]
    assert {r["last_error"] for r in body["failures"]} == {
        "CUDA out of memory",
        "connection reset",
    }
    listed = {m["model_version_id"]: m for m in client.get("/api/v1/matrix").json()}
    assert listed[drain.version]["stale"] == 1 and listed[drain.version]["active"] is True


def test_matrix_timeline_reconstructs_counts_over_time(client: TestClient, drain: Drain) -> None:
    body = client.get(f"/api/v1/matrix/{drain.version}/timeline").json()
    points = body["points"]
    assert body["series"] == ["pending", "running", "completed", "failed"]
    assert body["bucket_seconds"] == 120  # 3.5 h in at most 120 buckets
    assert 100 <= len(points) <= 121
    assert points[0] | {"at": None} == {"at": None, **dict.fromkeys(body["series"], 0)}
    assert {s: points[-1][s] for s in body["series"]} == drain.counts
    for before, after in itertools.pairwise(points):
        assert before["at"] <= after["at"]
        assert before["completed"] <= after["completed"] and before["failed"] <= after["failed"]
    for point in points[1:]:
        assert sum(point[s] for s in body["series"]) == drain.total  # all created at once
    # between the stale claim (T-3h) and the drain (T-31min) only the stale config ran
    quiet = points[30:60]  # 2-minute buckets from T-3.5h: T-2.5h to T-1.5h
    assert all(p["running"] == 1 and p["completed"] == 0 for p in quiet)
    assert max(p["running"] for p in points) >= RUNNING


def polylines(html: str) -> dict[str, list[tuple[float, float]]]:
    svg = re.search(r"<svg class=\"plot\".*?</svg>", html, re.S)
    assert svg, "no plot"
    root = ET.fromstring(svg.group(0))
    ns = {"svg": "http://www.w3.org/2000/svg"}
    lines = {}
    for line in root.iterfind(".//svg:polyline", ns):
        coords = [tuple(map(float, pair.split(","))) for pair in line.get("points", "").split()]
        lines[line.get("data-status", "")] = coords
    legend = [
        "".join(entry.itertext()) for entry in root.iterfind(".//svg:g[@class='legend-entry']", ns)
    ]
    assert legend == [f"{s} ({n})" for s, n in lines_counts(html).items()]
    return lines


def lines_counts(html: str) -> dict[str, int]:
    return {
        status: int(count)
        for status, count in re.findall(
            r'data-count="(pending|running|completed|failed)"><div class="label">\w+</div>\s*'
            r'<div class="value">(\d+)</div>',
            html,
        )
    }


def test_matrix_pages_show_counts_rates_stale_rows_and_plot(
    client: TestClient, drain: Drain
) -> None:
    listing = html_of(client, "/ui/matrix")
    row = re.search(rf'<tr data-model-version="{drain.version}">(.*?)</tr>', listing, re.S)
    assert row and f'href="matrix/{drain.version}"' in row.group(1)
    cells = re.findall(r'<td class="num">(?:<span class="badge b-failed">)?(\d+)', row.group(1))
    c = drain.counts
    assert cells == [str(v) for v in (*c.values(), 1, drain.total)]

    html = html_of(client, f"/ui/matrix/{drain.version}")
    assert lines_counts(html) == drain.counts
    assert re.search(r'id="claim-rate">.*?<div class="value">1\.\d/min', html, re.S)
    assert f"{drain.claims_in_window} claims in the last 10.0 min" in html
    assert re.search(rf'<tr data-config="{drain.stale_id}">', html)
    assert "Stale configs (1)" in html and "CUDA out of memory" in html
    assert 'data-refresh-ms="5000"' in html  # work is pending

    lines = polylines(html)
    assert list(lines) == ["pending", "running", "completed", "failed"]
    timeline = client.get(f"/api/v1/matrix/{drain.version}/timeline").json()["points"]
    for status, coords in lines.items():
        assert len(coords) == len(timeline), status
        xs = [x for x, _ in coords]
        assert xs == sorted(xs) and xs[0] < xs[-1]
        assert all(44 <= y <= 320 - 44 for _, y in coords)  # inside the plot area
    # 40 completed and 4 pending now: the completed line ends higher (smaller y), and the
    # pending line, which began at all 60 configs, ends lower than it began
    assert lines["completed"][-1][1] < lines["pending"][-1][1]
    assert lines["pending"][1][1] < lines["pending"][-1][1]


def test_drained_matrix_stops_refreshing(client: TestClient, catalog: Catalog) -> None:
    version, total = new_matrix(catalog, batch_sizes=[1], sequence_lengths=[512])
    now = datetime.now(UTC)
    while batch := claim_batch("ui-drain", 7, version):
        for config in batch:
            complete(config.id, "ui-drain", "test", {}, now, now)
    html = html_of(client, f"/ui/matrix/{version}")
    assert 'data-refresh-ms="0"' in html and lines_counts(html)["completed"] == total
    assert 'id="eta">' in html and ">done<" in html


# --- in the browser -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The app under ``/foundryflow`` (as the plugin mounts it), served by uvicorn."""
    import uvicorn

    parent = FastAPI()
    parent.mount("/foundryflow", create_app())
    port = free_port()
    config = uvicorn.Config(parent, host="127.0.0.1", port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/foundryflow"
    running.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])"
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield browser
        browser.close()


def screenshot_path(tmp_path: Path, name: str) -> Path:
    if os.environ.get("FOUNDRYFLOW_UPDATE_SCREENSHOTS") == "1":
        folder = REPO / "docs" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name
    return tmp_path / name


def test_browser_execution_page_updates_itself(server: str, browser: Any, tmp_path: Path) -> None:
    finished_linear()  # history for the ETA
    failed_rollback()  # another engine run, failed, in the list
    execution = start_execution(
        linear(), {"a": 20, "mode": "slow"}, engine="argo", engine_run_id=run_id()
    )
    run_step(execution, "first")
    run_step(execution, "second")

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server}/ui/executions?pipeline=t-linear")
    page.click(f'#executions a[href="executions/{execution}"] >> nth=0')
    page.wait_for_url(f"{server}/ui/executions/{execution}")

    rows = page.locator("#steps tbody tr")
    assert rows.count() == 4
    assert page.locator('tr[data-step="second"] .badge').inner_text() == "COMPLETED"
    bar = page.locator("#progress .bar").bounding_box()
    fill = page.locator("#progress .fill").bounding_box()
    assert bar and fill and bar["width"] > 100
    assert fill["width"] / bar["width"] == pytest.approx(0.5, abs=0.02)
    assert page.locator("#percent").inner_text() == "50.0 %"
    page.screenshot(path=str(screenshot_path(tmp_path, "progress-execution.png")), full_page=True)

    page.evaluate("window.__notReloaded = true")
    run_step(execution, "only_slow")
    page.wait_for_selector('tr[data-step="only_slow"][data-status="COMPLETED"]', timeout=10_000)
    assert page.locator("#percent").inner_text() == "75.0 %"
    run_step(execution, "last")
    finish_execution(execution)
    page.wait_for_selector('#status .badge:text("COMPLETED")', timeout=10_000)
    assert page.locator("#percent").inner_text() == "100.0 %"
    fill = page.locator("#progress .fill").bounding_box()
    assert fill and fill["width"] == pytest.approx(bar["width"], abs=2)
    assert page.evaluate("window.__notReloaded") is True, "the page was reloaded, not patched"
    assert page.locator("main").get_attribute("data-refresh-ms") == "0"
    assert "up to date" in page.locator("#refresh-state").inner_text()
    assert page.locator("#outputs").inner_text().startswith("{")

    page.set_viewport_size({"width": 390, "height": 800})  # a phone: no sideways page
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert errors == []
    page.close()


def test_browser_matrix_page_plots_the_timeline(
    server: str, browser: Any, catalog: Catalog, tmp_path: Path
) -> None:
    drain = drained_matrix(catalog)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server}/ui/matrix")
    page.click(f'a[href="matrix/{drain.version}"]')
    page.wait_for_url(f"{server}/ui/matrix/{drain.version}")

    plot = page.locator("svg.plot")
    box = plot.bounding_box()
    assert box and box["width"] > 600 and box["height"] > 200
    assert page.locator("svg.plot polyline").count() == 4
    for status, count in drain.counts.items():
        entry = page.locator(f'svg.plot .legend-entry[data-status="{status}"]')
        assert entry.is_visible() and entry.text_content() == f"{status} ({count})"
        line = page.locator(f'svg.plot polyline[data-status="{status}"]').bounding_box()
        assert line and line["width"] > 0.9 * (box["width"] - 80)  # spans the time axis
    stroke = page.eval_on_selector(
        'svg.plot polyline[data-status="failed"]', "e => getComputedStyle(e).stroke"
    )
    assert stroke == "rgb(220, 38, 38)"
    assert page.locator(f'#stale tr[data-config="{drain.stale_id}"]').is_visible()
    assert page.locator("#claim-rate .value").inner_text().endswith("/min")
    page.screenshot(path=str(screenshot_path(tmp_path, "progress-matrix.png")), full_page=True)

    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert (plot.bounding_box() or {"width": 0})["width"] <= 390
    assert errors == []
    page.close()
