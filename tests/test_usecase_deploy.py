"""Use cases deployed for real (seed 004): the template's pipeline on Airflow (``dag.test``),
as an Argo Workflow (local runner, real ``foundryflow`` pods) and from the command line,
onto a local cluster whose releases are rendered by Helm's engine and validated.

Each test gets a cluster of its own, so GPU accounting never depends on other tests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from sqlalchemy import select, update

from foundryflow.cluster.local import FAIL_ENV
from foundryflow.compile.airflow import build_dag
from foundryflow.compile.argo import build_workflow
from foundryflow.guardrail.demo import seed_demo
from foundryflow.runtime import run_step, start_execution
from foundryflow.store.db import session_scope
from foundryflow.store.guardrail import Cluster, ClusterRelease
from foundryflow.store.usecase import (
    ComponentStatus,
    DeploymentStatus,
    UseCaseComponent,
    UseCaseDeployment,
)
from foundryflow.usecase import service
from foundryflow.usecase.builder import DeploymentRequest, build_pipeline
from foundryflow.usecase.catalog import load_catalog
from foundryflow.usecase.pipelines import scan
from foundryflow.usecase.service import (
    DeploymentError,
    create_deployment,
    load_deployment,
    stop_deployment,
)
from foundryflow.usecase.template import find_template
from tests.argo_local import LocalArgoRunner
from tests.test_airflow_dags import execution_of, run, states
from tests.test_argo_local_run import runner  # noqa: F401  (fixture)
from tests.test_cli import flat, ok, pod

pytestmark = pytest.mark.airflow

CATALOG = load_catalog()


@pytest.fixture(scope="module", autouse=True)
def demo(airflow_db: Path) -> None:
    """Airflow's metadata database for dag.test, and the catalog the templates pick from."""
    with session_scope() as session:
        seed_demo(session)  # the catalog: hardware shapes and the LLMs the templates pick


@pytest.fixture(autouse=True)
def no_injected_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FAIL_ENV, raising=False)


@pytest.fixture
def gpu_cluster(make_cluster: Callable[[list[tuple[str, str, int]]], str]) -> str:
    return make_cluster([("h100", "h100-sxm-80gb-x8", 1), ("cpu", "xeon-8480plus-2s", 2)])


def topic() -> str:
    return f"foundryflow-test:usecase:{uuid.uuid4().hex}"


def conf(cluster: str, name: str = "my-agent", **more: Any) -> dict[str, Any]:
    return {"deployment_name": name, "cluster": cluster, **more}


def release_values(cluster: str) -> dict[str, dict[str, Any]]:
    with session_scope() as session:
        rows = session.execute(
            select(ClusterRelease.name, ClusterRelease.values)
            .join(Cluster, Cluster.id == ClusterRelease.cluster_id)
            .where(Cluster.name == cluster)
        ).all()
    return {name: values for name, values in rows}


def deployment_of(execution_id: UUID) -> UseCaseDeployment:
    with session_scope() as session:
        deployment_id = session.scalars(
            select(UseCaseDeployment.id).where(UseCaseDeployment.execution_id == execution_id)
        ).one()
    return load_deployment(deployment_id, sync=False)  # as the event listener left it


def statuses(record: UseCaseDeployment) -> dict[str, str]:
    return {c.name: c.status.value for c in record.components}


def events(redis_client: Any, stream: str) -> list[dict[str, str]]:
    return [fields for _, fields in redis_client.xrange(stream)]


def agent_rag_dag() -> Any:
    return build_dag(scan()[0]["usecase-agent-rag"])


# --------------------------------------------------------------------------- Airflow
def test_airflow_run_deploys_in_order_records_status_and_stop_uninstalls_in_reverse(
    gpu_cluster: str, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    dag = agent_rag_dag()
    stream = topic()
    dr = run(dag, conf(gpu_cluster, callback_topics=[stream], chunk_size=1024))
    assert str(dr.state) == "success", states(dr)
    report = execution_of(dag, dr)
    assert report.status == "COMPLETED", report.error

    record = deployment_of(report.id)  # kept up to date by the listener, not by `status`
    assert record.status is DeploymentStatus.RUNNING
    assert record.template == "agent-rag" and record.namespace == "uc-my-agent"
    assert statuses(record) == {
        "vector_db": "RUNNING",
        "llm": "RUNNING",
        "agent_runtime": "RUNNING",
    }
    by_name = {c.name: c for c in record.components}
    llm_url = "http://my-agent-llm-model-endpoint.uc-my-agent.svc.cluster.local:8000"
    assert by_name["llm"].endpoint_url == llm_url
    assert by_name["llm"].selected == "llama-3-8b"
    assert by_name["vector_db"].endpoint_url == (
        "http://my-agent-vector-db-stateful-service.uc-my-agent.svc.cluster.local:6333"
    )
    assert by_name["agent_runtime"].job_id and by_name["agent_runtime"].services
    assert record.message == "Use case 'my-agent' (agent-rag) deployed successfully"

    # outputs flowed into the agent's values; the parameter kept its JSON type
    agent = release_values(gpu_cluster)["my-agent-agent-runtime"]
    assert agent["llmEndpoint"] == llm_url
    assert agent["vectordbEndpoint"] == by_name["vector_db"].endpoint_url
    assert agent["chunkSize"] == 1024

    seen = events(redis_client, stream)
    kinds = [e["type"] for e in seen]
    assert kinds[0] == "execution.started" and kinds[-1] == "execution.completed"
    assert "action.usecase.notification" in kinds
    started = [e["step_id"] for e in seen if e["type"] == "step.started"]
    assert started == ["cluster_health", "vector_db", "llm", "agent_runtime", "notify_complete"]

    # a stale record is rebuilt from the run on read
    with session_scope() as session:
        session.execute(
            update(UseCaseComponent)
            .where(UseCaseComponent.deployment_id == record.id)
            .values(status=ComponentStatus.PENDING)
        )
    assert statuses(load_deployment(record.id)) == statuses(record)

    uninstalled: list[str] = []
    real = service.uninstall_chart
    monkeypatch.setattr(
        service,
        "uninstall_chart",
        lambda cluster, release, namespace: (
            uninstalled.append(release),
            real(cluster, release, namespace),
        ),
    )
    stopped = stop_deployment(record.id)
    assert stopped.ok and not stopped.cancelled_run
    assert uninstalled == ["my-agent-agent-runtime", "my-agent-llm", "my-agent-vector-db"]
    assert release_values(gpu_cluster) == {}
    final = load_deployment(record.id)
    assert final.status is DeploymentStatus.STOPPED
    assert set(statuses(final).values()) == {"STOPPED"}
    assert stop_deployment(record.id).uninstalled == []  # stopping again changes nothing

    # the name is free again once stopped
    again = run(dag, conf(gpu_cluster))
    assert str(again.state) == "success", states(again)


def test_a_failed_component_rolls_back_what_was_deployed_newest_first(
    gpu_cluster: str, redis_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAIL_ENV, "*-agent-runtime")
    dag = agent_rag_dag()
    stream = topic()
    dr = run(dag, conf(gpu_cluster, name="broken", callback_topics=[stream]))
    assert str(dr.state) == "failed"
    report = execution_of(dag, dr)
    assert report.status == "FAILED" and "injected" in (report.error or "")

    record = deployment_of(report.id)
    assert record.status is DeploymentStatus.FAILED and "injected" in (record.error or "")
    assert statuses(record) == {"vector_db": "STOPPED", "llm": "STOPPED", "agent_runtime": "FAILED"}
    assert "injected" in (
        next(c for c in record.components if c.name == "agent_runtime").error or ""
    )
    assert release_values(gpu_cluster) == {}
    done = next(
        e for e in events(redis_client, stream) if e["type"] == "execution.rollback_completed"
    )
    assert json.loads(done["compensated"]) == ["llm", "vector_db"]


def test_a_cluster_without_the_minimum_gpus_fails_before_any_release(
    make_cluster: Callable[[list[tuple[str, str, int]]], str],
) -> None:
    cpu_only = make_cluster([("cpu", "xeon-8480plus-2s", 2)])
    dag = agent_rag_dag()
    dr = run(dag, conf(cpu_only, name="no-gpu"))
    report = execution_of(dag, dr)
    assert report.status == "FAILED"
    assert "has 0 free NVIDIA GPU(s)" in (report.error or "")
    assert {s.id: s.status for s in report.steps}["vector_db"] == "SKIPPED"
    assert release_values(cpu_only) == {}


def test_the_rag_memory_template_deploys_its_parallel_components(gpu_cluster: str) -> None:
    dag = build_dag(scan()[0]["usecase-rag-memory"])
    dr = run(dag, conf(gpu_cluster, name="rag", ingest_worker=True, memory_store="redis"))
    assert str(dr.state) == "success", states(dr)
    record = deployment_of(execution_of(dag, dr).id)
    assert set(statuses(record).values()) == {"RUNNING"}
    api = release_values(gpu_cluster)["rag-rag-api"]
    assert api["memoryEndpoint"] == (
        "http://rag-memory-store-stateful-service.uc-rag.svc.cluster.local:6379"
    )
    assert api["replicaCount"] == 2


# --------------------------------------------------------------------------- stop while running
def test_stop_cancels_a_running_deployment_and_its_rollback_uninstalls(gpu_cluster: str) -> None:
    template = find_template("agent-rag")
    request = DeploymentRequest(name="halfway", cluster=gpu_cluster)
    deployment_id = create_deployment(template, CATALOG, request)
    with pytest.raises(DeploymentError, match="already active"):
        create_deployment(template, CATALOG, request)  # one active deployment per name

    pipeline = build_pipeline(template, CATALOG, request)
    execution_id = start_execution(
        pipeline,
        {"deployment_id": str(deployment_id)},
        engine="local",
        engine_run_id=f"halfway-{uuid.uuid4().hex[:6]}",
    )
    for step in ("cluster_health", "vector_db"):
        assert run_step(execution_id, step).status.value == "COMPLETED"
    assert load_deployment(deployment_id).status is DeploymentStatus.DEPLOYING

    report = stop_deployment(deployment_id)
    assert report.ok and report.cancelled_run
    assert report.uninstalled == []  # the cancelled run's rollback already uninstalled it
    assert release_values(gpu_cluster) == {}
    assert run_step(execution_id, "llm").status.value == "SKIPPED"  # the engine's next task
    assert release_values(gpu_cluster) == {}
    record = load_deployment(deployment_id)
    assert record.status is DeploymentStatus.STOPPED
    assert statuses(record) == {
        "vector_db": "STOPPED",
        "llm": "SKIPPED",
        "agent_runtime": "SKIPPED",
    }


def test_unknown_deployments_are_reported() -> None:
    with pytest.raises(DeploymentError, match="no use-case deployment"):
        stop_deployment(uuid.uuid4())
    with pytest.raises(DeploymentError, match="no use-case deployment"):
        load_deployment(uuid.uuid4())


# --------------------------------------------------------------------------- Argo
def test_the_rendered_argo_workflow_deploys_with_real_pods(
    gpu_cluster: str,
    runner: LocalArgoRunner,  # noqa: F811
) -> None:
    request = DeploymentRequest(name="argo-agent", cluster=gpu_cluster)
    pipeline = build_pipeline(find_template("agent-rag"), CATALOG, request)
    workflow = build_workflow(pipeline, generate_name="usecase-agent-rag-argo-agent")
    done = runner.submit(workflow)
    assert done.status == "Succeeded", [(p.task, p.stderr[-400:]) for p in done.pods]
    record = deployment_of(UUID(done.uid))  # recorded by the pods' own event listener
    assert record.status is DeploymentStatus.RUNNING
    assert set(statuses(record).values()) == {"RUNNING"}
    assert "argo-agent-agent-runtime" in release_values(gpu_cluster)


# --------------------------------------------------------------------------- command line
def test_cli_deploy_status_and_stop(gpu_cluster: str, tmp_path: Path) -> None:
    request_file = tmp_path / "request.yaml"
    request_file.write_text(
        yaml.safe_dump(
            {"name": "cli-agent", "cluster": gpu_cluster, "selections": {"llm": "mistral-7b"}}
        )
    )
    deployed = ok(
        pod("usecase", "deploy", "agent-rag", "--request", str(request_file), timeout=240)
    )
    text = flat(deployed.stdout)
    assert "COMPLETED" in text and "cli-agent" in text
    deployment_id = text.split("deployment ")[1].split()[0]

    shown = json.loads(ok(pod("usecase", "status", deployment_id, "--json")).stdout)
    assert shown["status"] == "RUNNING"
    assert {c["name"]: c["selected"] for c in shown["components"]}["llm"] == "mistral-7b"

    stopped = flat(ok(pod("usecase", "stop", deployment_id)).stdout)
    assert "uninstalled cli-agent-agent-runtime" in stopped
    assert stopped.index("cli-agent-agent-runtime") < stopped.index("cli-agent-vector-db")
    assert release_values(gpu_cluster) == {}


def test_cli_refuses_bad_requests_with_what_to_change(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "cluster": "c", "selections": {"llm": "gpt-4"}}))
    refused = ok(pod("usecase", "render", "agent-rag", "--request", str(bad)), 2)
    assert "selections.llm: 'gpt-4' is not one of" in flat(refused.stderr)
    unknown = ok(pod("usecase", "render", "no-such-template", "--request", str(bad)), 2)
    assert "no use-case template named 'no-such-template'" in flat(unknown.stderr)
    assert "is not a deployment id" in flat(ok(pod("usecase", "status", "nope"), 2).stderr)
