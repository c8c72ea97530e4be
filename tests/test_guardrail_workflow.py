"""``guardrail-deployment-workflow``: seed 000's steps 4-12 from one params form, run for
real on Airflow (``dag.test()``) and through the rendered Argo template.

The example configuration in ``pipelines/examples/`` is the one the README runs; here each
test gives it a project of its own, so runs never see each other's endpoints.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from foundryflow.api import create_app
from foundryflow.compile.argo import CONNECTIONS_SECRET, render_documents
from foundryflow.config import REPO_ROOT
from foundryflow.configsync import GuardrailConfigStore
from foundryflow.guardrail.demo import PROVIDERS, demo_id, seed_demo
from foundryflow.runtime import fanout, progress, run_step, start_execution
from foundryflow.spec.loader import PipelineCatalog
from foundryflow.store.db import session_scope
from foundryflow.store.guardrail import (
    ClusterRelease,
    Endpoint,
    GuardrailDeployment,
    GuardrailProbe,
    GuardrailProfile,
    GuardrailRule,
    GuardrailWorkflow,
    ProviderType,
    WorkflowStatus,
)
from tests.argo_local import LocalArgoRunner
from tests.test_airflow_dags import execution_of, run, states
from tests.test_argo_local_run import runner  # noqa: F401  (fixture)
from tests.test_guardrail_actions_deploy import _remove_leftovers

pytestmark = pytest.mark.airflow

PIPELINE = "guardrail-deployment-workflow"
EXAMPLE = REPO_ROOT / "pipelines" / "examples" / "guardrail-demo.json"
HF = PROVIDERS[0]["name"]


@pytest.fixture(scope="module", autouse=True)
def demo() -> None:
    with session_scope() as session:
        seed_demo(session)


@pytest.fixture
def project() -> Iterator[UUID]:
    project_id = uuid.uuid4()
    yield project_id
    _remove_leftovers(project_id)


def example(project_id: UUID, **changes: Any) -> dict[str, Any]:
    conf: dict[str, Any] = json.loads(EXAMPLE.read_text())
    conf["project_id"] = str(project_id)
    conf["profile"]["name"] = f"demo-{uuid.uuid4().hex[:8]}"
    return conf | changes


def workflow(workflow_id: UUID) -> GuardrailWorkflow | None:
    with session_scope() as session:
        record = session.get(GuardrailWorkflow, workflow_id)
        if record is not None:
            session.expunge(record)
        return record


def releases(project_id: UUID) -> list[str]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(ClusterRelease.name).where(
                    ClusterRelease.namespace == f"guardrail-{project_id}"
                )
            )
        )


def test_example_ids_are_the_demo_ids() -> None:
    conf = json.loads(EXAMPLE.read_text())
    assert conf["provider_id"] == str(demo_id(HF))
    assert [s["id"] for s in conf["probe_selections"]] == [
        str(demo_id(HF, "harmful-content")),
        str(demo_id(HF, "pii")),
    ]


def test_first_run_deploys_then_a_second_run_reuses_the_endpoint(
    dags: dict[str, Any], project: UUID, redis_client: Any
) -> None:
    dag = dags[PIPELINE]
    dr = run(dag, example(project))
    assert str(dr.state) == "success", states(dr)
    report = execution_of(dag, dr)
    assert report.status == "COMPLETED", report.error
    outputs = report.outputs or {}
    assert outputs["skipped_steps"] == [5, 10]  # Llama Guard is onboarded; standalone
    [url] = outputs["endpoint_urls"]
    assert url.endswith(f".guardrail-{project}.svc.cluster.local:8000")
    assert outputs["redis_version"] == 1
    stored = GuardrailConfigStore(redis_client).read(outputs["profile_id"])
    assert stored is not None and str(stored.config.deployment_id) == outputs["deployment_id"]
    record = workflow(report.id)
    assert record is not None and record.status is WorkflowStatus.COMPLETED
    assert str(record.deployment_id) == outputs["deployment_id"]
    assert record.models_to_deploy and record.per_model_configs and record.recommended_clusters
    assert len(record.deployed_endpoint_ids or []) == 1
    assert {s.id: s.status for s in report.steps}["validate_credential"] == "SKIPPED"

    again = run(dag, example(project))
    assert str(again.state) == "success", states(again)
    second = execution_of(dag, again)
    assert second.status == "COMPLETED", second.error
    assert (second.outputs or {})["skipped_steps"] == [5, 6, 7, 8, 10]
    statuses = {s.id: s.status for s in second.steps}
    assert statuses["simulate"] == statuses["deploy_models"] == "SKIPPED"
    assert (second.outputs or {})["endpoint_urls"] == []
    assert len(releases(project)) == 1  # the endpoint of the first run serves both
    record = workflow(second.id)
    assert record is not None and record.skip_to_step == 9


def test_a_model_to_onboard_without_a_credential_fails_before_anything_is_written(
    dags: dict[str, Any], project: UUID
) -> None:
    uri = f"test-org/never-onboarded-{uuid.uuid4().hex[:8]}"  # no other test can onboard it
    with session_scope() as session:
        probe = GuardrailProbe(
            provider_id=demo_id(HF), name=f"probe-{uuid.uuid4().hex[:8]}", description="t"
        )
        probe.rules.append(
            GuardrailRule(
                name="needs-onboarding",
                description="t",
                model_uri=uri,
                model_provider_type=ProviderType.HUGGINGFACE,
                severity_threshold=0.5,
                guard_types=["input"],
            )
        )
        session.add(probe)
        session.flush()
        probe_id = probe.id
    conf = example(project, probe_selections=[{"id": str(probe_id)}], model_specs={})
    dag = dags[PIPELINE]
    dr = run(dag, conf)
    assert str(dr.state) == "failed"
    report = execution_of(dag, dr)
    assert f"{uri} must be onboarded first" in (report.error or "")
    assert "credential_id" in (report.error or "")
    assert workflow(report.id) is None
    assert releases(project) == []


def test_a_failed_deploy_rolls_everything_back(
    dags: dict[str, Any], project: UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOUNDRYFLOW_LOCAL_CLUSTER_FAIL", "gr-llama-guard-3-8b-*")
    dag = dags[PIPELINE]
    dr = run(dag, example(project))
    assert str(dr.state) == "failed"
    ti = states(dr)
    assert ti["deploy_models"] == "failed" and ti["rollback"] == "success", ti
    report = execution_of(dag, dr)
    assert report.status == "FAILED" and "injected" in (report.error or "")
    record = workflow(report.id)
    assert record is not None and record.status is WorkflowStatus.FAILED
    assert "injected" in (record.error or "")
    assert releases(project) == []
    with session_scope() as session:
        for table in (GuardrailProfile, GuardrailDeployment, Endpoint):
            rows = session.scalars(select(table).where(table.project_id == project)).all()
            assert rows == [], table


def test_bad_selection_is_refused_with_every_problem(dags: dict[str, Any], project: UUID) -> None:
    rule_of_pii = demo_id(HF, "pii", "email-address")
    conf = example(
        project,
        probe_selections=[
            {"id": str(demo_id(HF, "harmful-content")), "rules": [{"id": str(rule_of_pii)}]},
            {"id": str(uuid.uuid4())},
        ],
    )
    dag = dags[PIPELINE]
    report = execution_of(dag, run(dag, conf))
    assert report.status == "FAILED"
    error = report.error or ""
    assert f"rule {rule_of_pii} belongs to probe" in error
    assert "does not exist or is not offered here" in error
    assert releases(project) == []


def test_argo_template_runs_the_workflow(
    runner: LocalArgoRunner,  # noqa: F811
    project: UUID,
) -> None:
    documents = render_documents(PipelineCatalog().get(PIPELINE))
    template = next(d for d in documents if d["kind"] == "WorkflowTemplate")
    params = {
        key: value if isinstance(value, str) else json.dumps(value)
        for key, value in example(project).items()
    }
    wf = runner.submit(template, params)
    assert wf.status == "Succeeded", [(p.task, p.stderr[-400:]) for p in wf.pods]
    report = progress(UUID(wf.uid))
    assert report.engine == "argo" and report.status == "COMPLETED"
    assert len((report.outputs or {})["endpoint_urls"]) == 1
    assert len(releases(project)) == 1


@pytest.mark.parametrize("with_secret", [True, False])
def test_argo_pods_read_credentials_from_the_connections_secret(
    runner: LocalArgoRunner,  # noqa: F811
    with_secret: bool,
) -> None:
    token = "hf_" + "Z" * 34
    secrets = dict(runner.secrets)
    if with_secret:
        secrets[CONNECTIONS_SECRET] = {
            "AIRFLOW_CONN_ARGO_HF": json.dumps({"conn_type": "huggingface", "password": token})
        }
    pods = LocalArgoRunner(secrets, runner.env | {"FOUNDRYFLOW_OFFLINE": "1"})
    documents = render_documents(PipelineCatalog().get("guardrail-model-onboarding"))
    template = next(d for d in documents if d["kind"] == "WorkflowTemplate")
    models = [{"model_uri": "meta-llama/Llama-Guard-3-1B", "model_provider_type": "huggingface"}]
    wf = pods.submit(
        template,
        {
            "workflow_id": str(uuid.uuid4()),
            "models_to_onboard": json.dumps(models),
            "credential_id": "argo_hf",
            "user_id": "tester",
            "callback_topics": "[]",
        },
    )
    report = progress(UUID(wf.uid))
    statuses = {s.id: s.status for s in report.steps}
    if with_secret:
        assert wf.status == "Succeeded", [(p.task, p.stderr[-400:]) for p in wf.pods]
        assert statuses["validate_credential"] == "COMPLETED"
    else:
        assert wf.status == "Failed"
        assert statuses["validate_credential"] == "FAILED"
        assert "argo_hf" in (report.error or "")
    assert all(token not in pod.stdout + pod.stderr for pod in wf.pods)


def test_cancelling_after_the_deploy_rolls_everything_back(project: UUID) -> None:
    """Cancellation (here through the plugin's API) triggers the same rollback as a failure."""
    pipeline = PipelineCatalog().get(PIPELINE)
    execution = start_execution(
        pipeline, example(project), engine="argo", engine_run_id=f"wf-{project.hex[:8]}"
    )
    run_step(execution, "identify")
    for step in ("validate_credential", "onboard_models", "update_rules"):
        assert run_step(execution, step).status == "SKIPPED"
    for index in fanout(execution, "simulate"):
        assert run_step(execution, "simulate", map_index=index).ok
    for step in ("aggregate", "recommend", "plan", "deploy_models"):
        outcome = run_step(execution, step)
        assert outcome.ok, outcome.error
    assert len(releases(project)) == 1

    client = TestClient(create_app())
    answer = client.post(
        f"/api/v1/executions/{execution}/cancel", params={"reason": "changed mind"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "CANCELLED"
    assert releases(project) == []
    record = workflow(execution)
    assert record is not None and record.status is WorkflowStatus.FAILED
    assert "cancelled: changed mind" in (record.error or "")
    assert run_step(execution, "create_profile").status == "SKIPPED"
    with session_scope() as session:
        for table in (GuardrailProfile, GuardrailDeployment, Endpoint):
            rows = session.scalars(select(table).where(table.project_id == project)).all()
            assert rows == [], table
    missing = client.post(f"/api/v1/executions/{uuid.uuid4()}/cancel")
    assert missing.status_code == 404
