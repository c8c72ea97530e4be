"""The benchmark-matrix workflow API (seed 003, 2.2) over HTTP, against the real queue."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from foundryflow.api import create_app
from foundryflow.store.db import get_engine
from tests.test_matrix import Catalog, drop_test_rows, make_catalog
from tests.test_queue import assert_exactly_once, new_matrix, query, status_counts


@pytest.fixture(scope="module")
def catalog() -> Iterator[Catalog]:
    catalog = make_catalog()
    yield catalog
    drop_test_rows(catalog)


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app())


def get_batch(client: TestClient, worker: str, version: int, n: int) -> list[dict[str, Any]]:
    response = client.post(
        "/api/v1/workflow/configs/get-batch",
        json={"worker_id": worker, "batch_size": n, "model_version_id": version},
    )
    assert response.status_code == 200, response.text
    return response.json()["configs"]


def completed(worker: str, **metrics: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "status": "completed",
        "worker_id": worker,
        "runner": "api-test",
        "metrics": metrics,
        "started_at": (now - timedelta(seconds=1)).isoformat(),
        "finished_at": now.isoformat(),
    }


def test_workers_drain_a_matrix_over_http_exactly_once(
    client: TestClient, catalog: Catalog
) -> None:
    version, count = new_matrix(catalog)
    seen: set[int] = set()
    while batch := get_batch(client, "w-a", version, 7) + get_batch(client, "w-b", version, 5):
        assert seen.isdisjoint(c["id"] for c in batch)
        seen.update(c["id"] for c in batch)
        for config in batch:
            assert config["hardware"].startswith(catalog.tag)
            body = completed(config["claimed_by"], tokens_per_second=12.5)
            response = client.post(f"/api/v1/workflow/configs/{config['id']}/status", json=body)
            assert response.json() == {"config_id": config["id"], "status": "completed"}
    assert len(seen) == count
    assert_exactly_once(version, count)

    progress = client.get(f"/api/v1/workflow/progress/{version}").json()
    assert progress | {"rate_per_minute": 0} == {
        "model_version_id": version,
        "pending": 0,
        "running": 0,
        "completed": count,
        "failed": 0,
        "total": count,
        "percent": 100.0,
        "rate_per_minute": 0,
        "eta_seconds": 0.0,
        "window_minutes": 10.0,
    }
    assert progress["rate_per_minute"] > 0


def test_failed_is_retried_then_final_and_pending_releases(
    client: TestClient, catalog: Catalog
) -> None:
    version, _ = new_matrix(catalog)
    [config] = get_batch(client, "w-f", version, 1)
    url = f"/api/v1/workflow/configs/{config['id']}/status"
    failed = {"status": "failed", "worker_id": "w-f", "error": "OOM", "max_attempts": 2}
    assert client.post(url, json=failed).json()["status"] == "pending"  # attempt 1 of 2

    [again] = get_batch(client, "w-f", version, 1)
    assert again["id"] == config["id"] and again["attempts"] == 2
    assert client.post(url, json=failed).json()["status"] == "failed"
    assert query("SELECT last_error FROM benchmark_configs WHERE id = :i", i=config["id"]) == [
        ("OOM",)
    ]

    [other] = get_batch(client, "w-f", version, 1)
    released = client.post(
        f"/api/v1/workflow/configs/{other['id']}/status",
        json={"status": "pending", "worker_id": "w-f"},
    )
    assert released.json() == {"config_id": other["id"], "status": "pending"}
    assert query("SELECT attempts FROM benchmark_configs WHERE id = :i", i=other["id"]) == [(0,)]


def test_updates_are_fenced_on_the_claiming_worker(client: TestClient, catalog: Catalog) -> None:
    version, _ = new_matrix(catalog)
    [config] = get_batch(client, "owner", version, 1)
    url = f"/api/v1/workflow/configs/{config['id']}/status"

    thief = client.post(url, json=completed("thief", x=1))
    assert thief.status_code == 409 and "not running under worker 'thief'" in thief.text
    assert client.post(url, json=completed("owner", x=1)).status_code == 200
    twice = client.post(url, json=completed("owner", x=2))
    assert twice.status_code == 409 and "is completed" in twice.text
    results = query("SELECT count(*) FROM benchmark_results WHERE config_id = :i", i=config["id"])
    assert results == [(1,)]

    missing = client.post("/api/v1/workflow/configs/987654321/status", json=completed("owner"))
    assert missing.status_code == 404 and "does not exist" in missing.text


def test_reset_stale_returns_dead_claims(client: TestClient, catalog: Catalog) -> None:
    version, _ = new_matrix(catalog)
    [config] = get_batch(client, "dead", version, 1)
    with get_engine().begin() as conn:
        conn.execute(
            text(
                "UPDATE benchmark_configs SET heartbeat_at = now() - interval '3 hours'"
                " WHERE id = :i"
            ),
            {"i": config["id"]},
        )
    fresh = client.post(
        "/api/v1/workflow/maintenance/reset-stale", json={"older_than_minutes": 300}
    )
    assert fresh.json() == {"reset": 0}
    assert client.post("/api/v1/workflow/maintenance/reset-stale").json()["reset"] >= 1
    assert status_counts(version).get("running", 0) == 0


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "detail"),
    [
        ("post", "/configs/get-batch", {"worker_id": "", "batch_size": 1}, 422, "worker_id"),
        ("post", "/configs/get-batch", {"worker_id": "w", "batch_size": 0}, 422, "batch_size"),
        ("post", "/configs/get-batch", {"worker_id": "w", "batch_size": "ten"}, 422, "batch_size"),
        ("post", "/configs/get-batch", {"worker_id": "w", "sneaky": 1}, 422, "sneaky"),
        ("post", "/configs/1/status", {"status": "exploded", "worker_id": "w"}, 422, "status"),
        ("post", "/configs/1/status", {"status": "failed", "worker_id": "w"}, 422, "error"),
        ("post", "/configs/x/status", {"status": "pending", "worker_id": "w"}, 422, "config_id"),
        (
            "post",
            "/configs/1/status",
            completed("w") | {"started_at": "2026-01-01T00:00:00"},
            422,
            "timezone",
        ),
        (
            "post",
            "/configs/1/status",
            completed("w") | {"finished_at": "2000-01-01T00:00:00Z"},
            422,
            "before started_at",
        ),
        ("get", "/progress/987654321", None, 404, "does not exist"),
        ("get", "/progress/1?window_minutes=0", None, 422, "positive"),
        ("post", "/maintenance/reset-stale", {"older_than_minutes": -5}, 422, "older_than"),
    ],
)
def test_bad_requests_are_clear_and_change_nothing(
    client: TestClient,
    method: str,
    url: str,
    body: dict[str, Any] | None,
    status: int,
    detail: str,
) -> None:
    before = query("SELECT status, count(*) FROM benchmark_configs GROUP BY status ORDER BY 1")
    kwargs = {} if body is None else {"json": body}
    response = getattr(client, method)("/api/v1/workflow" + url, **kwargs)
    assert response.status_code == status, response.text
    assert detail in response.text
    after = query("SELECT status, count(*) FROM benchmark_configs GROUP BY status ORDER BY 1")
    assert before == after
