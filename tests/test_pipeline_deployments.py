"""Pipeline deployments (seed 001): validation, the lifecycle on a local cluster (the real
pipeline-runner chart rendered and validated), the REST API over HTTP, the CLI, the
Airflow DAGs, the purge and the Prometheus metrics."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from foundryflow.api import create_app
from foundryflow.benchmark.seed import seed_catalog
from foundryflow.cli import app as cli
from foundryflow.cluster.local import FAIL_ENV
from foundryflow.config import get_settings
from foundryflow.pipeline_deployment import service
from foundryflow.pipeline_deployment.model import CreateRequest, UpdateRequest
from foundryflow.spec.loader import PipelineCatalog
from foundryflow.store.db import session_scope
from foundryflow.store.guardrail import Cluster, ClusterRelease
from foundryflow.store.pipeline_deployment import PipelineDeployment
from tests.test_airflow_dags import execution_of, run, states

MakeCluster = Callable[[list[tuple[str, str, int]]], str]
POOLS = [("h100", "h100-sxm-80gb-x8", 2), ("cpu", "xeon-8480plus-2s", 2)]


@pytest.fixture(scope="module", autouse=True)
def catalog() -> None:
    with session_scope() as session:
        seed_catalog(session)


@pytest.fixture(autouse=True)
def no_injected_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FAIL_ENV, raising=False)


@pytest.fixture
def cluster(make_cluster: MakeCluster) -> str:
    return make_cluster(POOLS)


@pytest.fixture
def api() -> Iterator[TestClient]:
    with TestClient(create_app()) as client:
        yield client


def request(cluster: str, **changes: Any) -> CreateRequest:
    fields: dict[str, Any] = {
        "pipeline_name": "spot-handler",
        "deployment_name": f"pool-{uuid.uuid4().hex[:8]}",
        "namespace": "runners",
        "cluster": cluster,
        "target_nodes": {"foundryflow.io/node-pool": "h100"},
        "parameters": {"older_than_minutes": 30},
        "replicas": 2,
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
    }
    return CreateRequest.model_validate(fields | changes)


def release(cluster: str, name: str) -> tuple[int, dict[str, Any]] | None:
    with session_scope() as session:
        row = session.execute(
            select(ClusterRelease.revision, ClusterRelease.values)
            .join(Cluster, Cluster.id == ClusterRelease.cluster_id)
            .where(Cluster.name == cluster, ClusterRelease.name == name)
        ).one_or_none()
    return None if row is None else (row[0], row[1])


def deploy(cluster: str, **changes: Any) -> UUID:
    outcome = service.run(service.begin_create(request(cluster, **changes), "alice"))
    return outcome.deployment_id


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pipeline_name": "no-such-pipeline"}, "no pipeline named 'no-such-pipeline'"),
        ({"parameters": {"older_than_minutes": "soon"}}, "older_than_minutes"),
        ({"parameters": {"older_than_minutes": 0}}, "older_than_minutes"),
        ({"parameters": {"surprise": 1}}, "surprise"),
    ],
)
def test_the_pipeline_and_its_parameters_are_checked_first(
    cluster: str, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(service.InvalidDeployment, match=re.escape(message)):
        service.begin_create(request(cluster, **changes), "alice")
    assert service.list_deployments(namespace="runners")["total"] == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"resources": {"requests": {"cpu": "1 core"}}}, "is not a Kubernetes quantity"),
        ({"resources": {"requests": {"cpu": "-1"}}}, "is not a Kubernetes quantity"),
        ({"resources": {"limits": {"memory": "1GB"}}}, "is not a Kubernetes quantity"),
        ({"resources": {"requests": {"memory": "0"}}}, "must be more than zero"),
        (
            {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}},
            "requests.memory 2Gi is more than limits.memory 1Gi",
        ),
        ({"resources": {"limits": {"cpu": "64"}}}, "more than this platform allows"),
        ({"resources": {"limits": {"gpu": "1"}}}, "limits.gpu"),
        ({"target_nodes": {"bad key!": "x"}}, "node label key 'bad key!'"),
        ({"target_nodes": {"-x.io/pool": "a"}}, "is not a DNS subdomain"),
        ({"target_nodes": {"pool": "a" * 64}}, "a value is at most 63"),
        ({"target_nodes": {f"k{i}": "v" for i in range(21)}}, "at most 20"),
        ({"replicas": 101}, "replicas 101 is more than 100"),
        ({"replicas": -1}, "greater than or equal to 0"),
        ({"deployment_name": "Prod_Pool"}, "deployment_name"),
        ({"deployment_name": "a" * 54}, "deployment_name"),
        ({"namespace": "../etc"}, "namespace"),
        ({"interval_seconds": 0}, "interval_seconds"),
    ],
)
def test_malformed_requests_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        request("c1", **changes)


def test_quantities_compare_by_value() -> None:
    fine = request("c1", resources={"requests": {"cpu": "500m"}, "limits": {"cpu": "0.5"}})
    assert fine.resources.limits == {"cpu": "0.5"}
    with pytest.raises(ValueError, match=r"requests\.cpu 1 is more than limits\.cpu 999m"):
        request("c1", resources={"requests": {"cpu": "1"}, "limits": {"cpu": "999m"}})


def test_resources_are_checked_with_the_charts_defaults(cluster: str) -> None:
    """Helm merges given values into the chart's: 2Gi requested alone would meet the
    default 1Gi limit on the cluster, so it is refused here."""
    lonely = request(cluster, resources={"requests": {"memory": "2Gi"}})
    with pytest.raises(service.InvalidDeployment, match=r"requests\.memory 2Gi is more than"):
        service.begin_create(lonely, "alice")
    deployment_id = deploy(
        cluster, resources={"requests": {"memory": "2Gi"}, "limits": {"memory": "4Gi"}}
    )
    values = (release(cluster, service.get(deployment_id)["deployment_name"]) or (0, {}))[1]
    assert values["resources"] == {
        "requests": {"cpu": "100m", "memory": "2Gi"},
        "limits": {"cpu": "1", "memory": "4Gi"},
    }
    assert values["connectionsSecret"] == {"name": "foundryflow-connections"}


def test_an_unknown_cluster_is_refused(cluster: str) -> None:
    with pytest.raises(service.InvalidDeployment, match="no cluster 'nowhere'"):
        service.begin_create(request("nowhere"), "alice")


# --------------------------------------------------------------------------- lifecycle
def test_deploy_update_rollback_delete_with_history(cluster: str) -> None:
    deployment_id = deploy(cluster)
    found = service.get(deployment_id)
    name = found["deployment_name"]
    assert (found["status"], found["phase"], found["revision"]) == ("active", "running", 1)
    assert found["instances"] == {"desired": 2, "ready": 2, "updated": 2}
    assert found["pipeline_version"] == "1.0"
    revision, values = release(cluster, name) or (0, {})
    assert revision == 1
    assert values["pipeline"] == "spot-handler"
    assert values["nodeSelector"] == {"foundryflow.io/node-pool": "h100"}
    assert values["parameters"] == {"older_than_minutes": 30}

    # seed: PATCH {"parameters": {...}, "resources": {"limits": {"memory": "1Gi"}}}
    patch = UpdateRequest(parameters={"max_attempts": 5}, resources={"limits": {"memory": "1Gi"}})
    outcome = service.run(service.begin_update(deployment_id, patch, "bob"))
    assert outcome.revision == 2
    found = service.get(deployment_id)
    assert found["parameters"] == {"older_than_minutes": 30, "max_attempts": 5}
    assert found["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},  # cpu: the chart's default, made explicit
    }
    assert (release(cluster, name) or (0, {}))[0] == 2

    scaled = service.run(service.begin_update(deployment_id, UpdateRequest(replicas=3), "bob"))
    assert service.get(deployment_id)["instances"]["desired"] == 3

    back = service.run(service.begin_rollback(deployment_id, 1, "carol"))
    assert back.revision == scaled.revision + 1 == 4
    found = service.get(deployment_id)
    assert found["parameters"] == {"older_than_minutes": 30}
    assert found["replicas"] == 2 and found["instances"]["desired"] == 2
    assert found["revision"] == 4

    history = service.revisions(deployment_id)
    assert [(r["revision"], r["action"], r["actor"]) for r in history] == [
        (1, "create", "alice"),
        (2, "update", "bob"),
        (3, "update", "bob"),
        (4, "rollback", "carol"),
    ]
    assert history[1]["changes"] == {
        "parameters": {
            "from": {"older_than_minutes": 30},
            "to": {"older_than_minutes": 30, "max_attempts": 5},
        },
        "resources": {
            "from": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "1", "memory": "512Mi"},
            },
            "to": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "1", "memory": "1Gi"},
            },
        },
    }
    assert history[3]["rolled_back_to"] == 1
    assert history[3]["changes"]["replicas"] == {"from": 3, "to": 2}
    assert all(r["outcome"] == "succeeded" for r in history)

    gone = service.run(service.begin_delete(deployment_id, "dave"))
    assert gone.status.value == "deleted"
    assert release(cluster, name) is None
    with pytest.raises(service.DeploymentNotFound):
        service.get(deployment_id)
    assert service.get(deployment_id, include_deleted=True)["status"] == "deleted"
    assert service.list_deployments(status=None)["deployments"] == [] or all(
        d["deployment_id"] != str(deployment_id) for d in service.list_deployments()["deployments"]
    )
    # the name is free again, in the same namespace
    deploy(cluster, deployment_name=name)


def test_names_are_unique_per_namespace_and_changes_do_not_overlap(cluster: str) -> None:
    deployment_id = deploy(cluster, deployment_name="unique-pool")
    with pytest.raises(service.DeploymentConflict, match="already exists in namespace"):
        service.begin_create(request(cluster, deployment_name="unique-pool"), "alice")
    deploy(cluster, deployment_name="unique-pool", namespace="elsewhere")

    change = service.begin_update(deployment_id, UpdateRequest(replicas=1), "bob")
    with pytest.raises(service.DeploymentConflict, match="is updating"):
        service.begin_update(deployment_id, UpdateRequest(replicas=3), "carol")
    service.run(change)
    with pytest.raises(service.InvalidDeployment, match="changes nothing"):
        service.begin_update(deployment_id, UpdateRequest(replicas=1), "bob")
    with pytest.raises(service.InvalidDeployment, match="nothing to update"):
        service.begin_update(deployment_id, UpdateRequest(), "bob")
    with pytest.raises(service.InvalidDeployment, match="has no revision 9"):
        service.begin_rollback(deployment_id, 9, "bob")
    with pytest.raises(service.InvalidDeployment, match="is the current one"):
        service.begin_rollback(deployment_id, 2, "bob")


def test_a_failed_update_keeps_the_running_revision(
    cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment_id = deploy(cluster, deployment_name="steady-pool")
    monkeypatch.setenv(FAIL_ENV, "steady-pool")
    outcome = service.carry_out(
        service.begin_update(deployment_id, UpdateRequest(replicas=5), "bob")
    )
    assert not outcome.ok and "injected" in (outcome.error or "")
    found = service.get(deployment_id)
    assert (found["status"], found["replicas"], found["revision"]) == ("active", 2, 1)
    assert "revision 2 (update) failed" in found["error"]
    history = service.revisions(deployment_id)
    assert [(r["revision"], r["outcome"]) for r in history] == [(1, "succeeded"), (2, "failed")]
    with pytest.raises(service.InvalidDeployment, match="was not deployed"):
        service.begin_rollback(deployment_id, 2, "bob")

    monkeypatch.setenv(FAIL_ENV, "broken-pool")
    created = service.carry_out(
        service.begin_create(request(cluster, deployment_name="broken-pool"), "alice")
    )
    assert not created.ok and created.status.value == "failed"


def test_purge_removes_only_deployments_deleted_long_enough_ago(cluster: str) -> None:
    old, recent = deploy(cluster), deploy(cluster)
    for deployment_id in (old, recent):
        service.run(service.begin_delete(deployment_id, "dave"))
    with session_scope() as session:
        session.execute(
            update(PipelineDeployment)
            .where(PipelineDeployment.id == old)
            .values(deleted_at=datetime.now(UTC) - timedelta(days=31))
        )
    assert service.purge() >= 1
    with session_scope() as session:
        assert session.get(PipelineDeployment, old) is None
        assert session.get(PipelineDeployment, recent) is not None
    assert get_settings().deployment_retention_days == 30


# --------------------------------------------------------------------------- REST API
def test_rest_api_over_http(cluster: str, api: TestClient) -> None:
    body = request(cluster).model_dump(mode="json")
    created = api.post(
        "/api/v1/pipelines/deployments", json=body, headers={"X-Foundryflow-Actor": "erin"}
    )
    assert created.status_code == 202, created.text
    answer = created.json()
    assert (answer["status"], answer["deployment_name"]) == ("deploying", body["deployment_name"])
    deployment_id = answer["deployment_id"]

    found = api.get(f"/api/v1/pipelines/deployments/{deployment_id}").json()
    assert found["status"] == "active"  # the background task ran before TestClient returned
    assert found["instances"] == {"desired": 2, "ready": 2, "updated": 2}

    again = api.post("/api/v1/pipelines/deployments", json=body)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    bad = api.post("/api/v1/pipelines/deployments", json=body | {"pipeline_name": "nope"})
    assert bad.status_code == 422 and "no pipeline named 'nope'" in bad.json()["detail"]
    hostile = api.post(
        "/api/v1/pipelines/deployments",
        json=body | {"deployment_name": "x; rm -rf /", "resources": {"limits": {"cpu": "lots"}}},
    )
    assert hostile.status_code == 422

    patched = api.patch(
        f"/api/v1/pipelines/deployments/{deployment_id}",
        json={"parameters": {"max_attempts": 4}, "resources": {"limits": {"memory": "1Gi"}}},
    )
    assert patched.status_code == 202, patched.text
    assert patched.json()["message"] == "Rolling update initiated"
    wrong = api.patch(f"/api/v1/pipelines/deployments/{deployment_id}", json={"replicas": "many"})
    assert wrong.status_code == 422

    rolled = api.post(
        f"/api/v1/pipelines/deployments/{deployment_id}/rollback", json={"revision": 1}
    )
    assert rolled.status_code == 202, rolled.text
    history = api.get(f"/api/v1/pipelines/deployments/{deployment_id}/revisions").json()
    assert [(r["action"], r["actor"]) for r in history] == [
        ("create", "erin"),
        ("update", "api"),
        ("rollback", "api"),
    ]

    listed = api.get(
        "/api/v1/pipelines/deployments", params={"namespace": "runners", "status": "active"}
    ).json()
    assert deployment_id in [d["deployment_id"] for d in listed["deployments"]]
    page = api.get("/api/v1/pipelines/deployments", params={"per_page": 1, "page": 1}).json()
    assert len(page["deployments"]) == 1 and page["total"] >= 1 and page["per_page"] == 1
    assert (
        api.get("/api/v1/pipelines/deployments", params={"status": "sideways"}).status_code == 422
    )

    deleted = api.delete(f"/api/v1/pipelines/deployments/{deployment_id}")
    assert deleted.status_code == 202 and deleted.json()["status"] == "deleting"
    assert api.get(f"/api/v1/pipelines/deployments/{deployment_id}").status_code == 404
    unknown = uuid.uuid4()
    assert api.get(f"/api/v1/pipelines/deployments/{unknown}").status_code == 404
    assert api.delete(f"/api/v1/pipelines/deployments/{unknown}").status_code == 404
    assert api.get("/api/v1/pipelines/deployments/not-a-uuid").status_code == 422


def test_metrics_count_deployments_by_status_durations_and_errors(
    cluster: str, api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy(cluster)
    monkeypatch.setenv(FAIL_ENV, "doomed-pool")
    service.carry_out(service.begin_create(request(cluster, deployment_name="doomed-pool"), "a"))
    text = api.get("/metrics").text

    def value(pattern: str) -> float:
        found = re.search(rf"^{pattern} (\S+)$", text, re.MULTILINE)
        assert found, (pattern, text)
        return float(found.group(1))

    assert value(r'foundryflow_deployment_total\{status="active"\}') >= 1
    assert value(r'foundryflow_deployment_total\{status="failed"\}') >= 1
    assert value(r'foundryflow_deployment_errors_total\{action="create"\}') >= 1
    assert value(r'foundryflow_deployment_duration_seconds_count\{action="create"\}') >= 2
    assert value(
        r'foundryflow_deployment_duration_seconds_bucket\{action="create",le="\+Inf"\}'
    ) == value(r'foundryflow_deployment_duration_seconds_count\{action="create"\}')
    assert "# TYPE foundryflow_deployment_duration_seconds histogram" in text


# --------------------------------------------------------------------------- CLI
def test_cli_mirrors_the_seed(cluster: str) -> None:
    runner = CliRunner(env={"COLUMNS": "1000", "FOUNDRYFLOW_ACTOR": "frank"})
    name = f"cli-{uuid.uuid4().hex[:6]}"
    deployed = runner.invoke(
        cli,
        [
            *("pipeline", "deploy", "--name", "spot-handler", "--deployment-name", name),
            *("--cluster", cluster, "--namespace", "runners"),
            *("--selector", "foundryflow.io/node-pool=h100", "--param", "older_than_minutes=45"),
            *("--replicas", "2", "--limits", "memory=512Mi"),
        ],
    )
    assert deployed.exit_code == 0, deployed.output
    deployment_id = re.search(r"deployment ([0-9a-f-]{36}) revision 1", deployed.output)
    assert deployment_id, deployed.output
    ident = deployment_id.group(1)

    listed = runner.invoke(cli, ["pipeline", "list-deployments", "--namespace", "runners"])
    assert listed.exit_code == 0 and name in listed.output
    shown = json.loads(runner.invoke(cli, ["pipeline", "get-deployment", ident, "--json"]).output)
    assert shown["parameters"] == {"older_than_minutes": 45}
    assert shown["instances"]["ready"] == 2

    updated = runner.invoke(
        cli, ["pipeline", "update-deployment", ident, "--param", "older_than_minutes=60"]
    )
    assert updated.exit_code == 0 and "revision 2" in updated.output, updated.output
    rolled = runner.invoke(cli, ["pipeline", "rollback-deployment", ident, "--revision", "1"])
    assert rolled.exit_code == 0 and "revision 3" in rolled.output, rolled.output
    history = runner.invoke(cli, ["pipeline", "deployment-history", ident])
    assert (
        history.exit_code == 0 and "frank" in history.output and "to revision 1" in history.output
    )
    deleted = runner.invoke(cli, ["pipeline", "delete-deployment", ident])
    assert deleted.exit_code == 0 and "deleted" in deleted.output

    bad = runner.invoke(
        cli,
        [
            *("pipeline", "deploy", "--name", "spot-handler", "--deployment-name", "x"),
            *("--cluster", cluster, "--param", "older_than_minutes=soon"),
        ],
    )
    assert bad.exit_code == 2 and "older_than_minutes" in bad.output
    assert runner.invoke(cli, ["pipeline", "get-deployment", "nope"]).exit_code == 2
    missing = runner.invoke(cli, ["pipeline", "get-deployment", str(uuid.uuid4())])
    assert missing.exit_code == 2 and "no pipeline deployment" in missing.output


# --------------------------------------------------------------------------- Airflow
@pytest.mark.airflow
def test_airflow_dags_deploy_and_purge(cluster: str, airflow_db: Any) -> None:
    from foundryflow.compile.airflow import build_dag

    catalog = PipelineCatalog(require_actions=False)
    dag = build_dag(catalog.get("pipeline-deploy"))
    name = f"dag-{uuid.uuid4().hex[:6]}"
    dr = run(
        dag,
        {
            "pipeline_name": "spot-handler",
            "deployment_name": name,
            "cluster": cluster,
            "target_nodes": {"foundryflow.io/node-pool": "h100"},
            "replicas": 3,
        },
    )
    assert str(dr.state) == "success", states(dr)
    report = execution_of(dag, dr)
    assert report.outputs is not None
    assert report.outputs["instances"] == {"desired": 3, "ready": 3, "updated": 3}
    deployment_id = report.outputs["deployment_id"]

    delete_dag = build_dag(catalog.get("pipeline-delete-deployment"))
    assert str(run(delete_dag, {"deployment_id": deployment_id}).state) == "success"
    with session_scope() as session:
        session.execute(
            update(PipelineDeployment)
            .where(PipelineDeployment.id == UUID(deployment_id))
            .values(deleted_at=datetime.now(UTC) - timedelta(days=40))
        )
    purge = catalog.get("pipeline-deployments-purge")
    assert purge.settings.schedule == "17 3 * * *"
    purged = run(build_dag(purge), {})
    assert str(purged.state) == "success"
    assert (execution_of(build_dag(purge), purged).outputs or {})["purged"] >= 1


# --------------------------------------------------------------------------- the runners
def test_a_runner_runs_its_pipeline_again_and_again_and_stops_on_sigterm(tmp_path: Any) -> None:
    """What each pod of charts/pipeline-runner runs, as a real process."""
    import signal
    import subprocess
    import sys
    import time

    from foundryflow.config import REPO_ROOT
    from foundryflow.store.models import Execution
    from tests.test_cli import ok, pod, pod_env

    params = tmp_path / "params.json"
    params.write_text(json.dumps({"a": 2}))
    worker = f"runner-{uuid.uuid4().hex[:6]}"
    done = ok(
        pod(
            *("pipeline", "work", "t-linear", "--params-file", str(params)),
            *("--worker-id", worker, "--interval", "0", "--max-runs", "2"),
        )
    )
    assert f"{worker}: stopped after 2 run(s)" in done.stdout
    with session_scope() as session:
        runs = session.execute(
            select(Execution.engine, Execution.status, Execution.outputs).where(
                Execution.engine_run_id.startswith(f"{worker}/")
            )
        ).all()
    assert len(runs) == 2
    assert {(engine, status.value) for engine, status, _ in runs} == {("inline", "COMPLETED")}
    assert all(outputs["total"] == 8 for _, _, outputs in runs)  # (2 + 5) + 1

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a": "two"}))
    refused = ok(
        pod("pipeline", "work", "t-linear", "--params-file", str(bad), "--worker-id", "w"), 2
    )
    assert "a: Input should be a valid integer" in refused.stderr

    waiting = subprocess.Popen(
        [
            *(sys.executable, "-m", "foundryflow.cli", "pipeline", "work", "t-linear"),
            *("--params-file", str(params), "--worker-id", f"{worker}-b", "--interval", "600"),
        ],
        env=pod_env(),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with session_scope() as session:
                finished = session.scalar(
                    select(Execution.id).where(
                        Execution.engine_run_id.startswith(f"{worker}-b/"),
                        Execution.finished_at.is_not(None),
                    )
                )
            if finished:
                break
            time.sleep(0.2)
        assert finished, "the runner's first run did not finish"
        started = time.monotonic()
        waiting.send_signal(signal.SIGTERM)
        out, _ = waiting.communicate(timeout=30)
        assert waiting.returncode == 0
        assert time.monotonic() - started < 10  # it does not sit out the 600 s interval
        assert "stopped after 1 run(s)" in out
    finally:
        if waiting.poll() is None:
            waiting.kill()
