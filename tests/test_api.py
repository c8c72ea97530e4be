"""The status API over HTTP (FastAPI TestClient), against the real database."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from foundryflow.api import create_app
from foundryflow.runtime import finish_execution, run_step, start_execution
from foundryflow.spec.loader import PipelineCatalog


def test_progress_and_listing() -> None:
    client = TestClient(create_app())
    pipeline = PipelineCatalog().get("t-linear")
    execution = start_execution(
        pipeline, {"a": 1}, engine="argo", engine_run_id=f"wf-{uuid.uuid4().hex[:6]}"
    )
    run_step(execution, "first")

    body = client.get(f"/api/v1/executions/{execution}/progress").json()
    assert body["engine"] == "argo" and body["percent"] == 25.0
    assert body["steps"][0] == body["steps"][0] | {
        "id": "first",
        "status": "COMPLETED",
        "attempt": 1,
    }

    for step in ("second", "only_slow", "last"):
        run_step(execution, step)
    finish_execution(execution)
    listed = client.get(
        "/api/v1/executions", params={"pipeline": "t-linear", "status": "COMPLETED"}
    ).json()
    assert str(execution) in [e["id"] for e in listed]
    assert all(e["pipeline"] == "t-linear" and e["status"] == "COMPLETED" for e in listed)


def test_bad_requests_get_clear_errors() -> None:
    client = TestClient(create_app())
    missing = client.get(f"/api/v1/executions/{uuid.uuid4()}/progress")
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]
    assert client.get("/api/v1/executions/not-a-uuid/progress").status_code == 422
    assert client.get("/api/v1/executions", params={"status": "EXPLODED"}).status_code == 422
    assert client.get("/api/v1/executions", params={"limit": 0}).status_code == 422
