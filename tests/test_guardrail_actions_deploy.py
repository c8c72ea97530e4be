"""The deployment actions of seed 000 (deploy_models, create_profile, create_deployment,
build_config, sync_redis, rollback), run for real: the ``guardrail-deployment`` DAG with
``dag.test()`` on PostgreSQL, Redis and the local cluster backend (which renders the chart).

For each of the five deployment steps one run makes that step fail for real and the test
checks afterwards that nothing of the run is left: no profile, deployment, rule deployment,
Redis key, release, allocation or endpoint of it; the onboarded models are kept; the workflow
record is FAILED with the error. How each step is made to fail:

- deploy_models: ``FOUNDRYFLOW_LOCAL_CLUSTER_FAIL`` matches the second model's release, so the
  first model is installed and must be taken down by the step itself;
- create_profile: the probe selection names a rule of another probe;
- create_deployment: ``endpoint_ids`` names an endpoint that does not exist;
- build_config: a rule reuses an endpoint that is still pending and has no URL yet (the seed
  makes pending endpoints reusable, but a config cannot point at an endpoint without a URL);
- sync_redis: the profile's Redis key holds a damaged entry, which the store refuses to
  overwrite. The profile id is only known once create_profile ran, so the test holds a table
  lock that makes create_deployment wait until a watcher has written that entry.

The demo data (``seed_demo``) provides probes, rules and clusters; a probe of this module adds
a rule on a second onboarded guard model, so no test onboards a demo model other tests expect
not to be onboarded. Every test uses a project of its own.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import delete, func, select, text

from foundryflow.actions import Action, ActionContext
from foundryflow.actions.guardrail.build_config import BuildConfig
from foundryflow.actions.guardrail.create_deployment import CreateDeployment
from foundryflow.actions.guardrail.create_profile import CreateProfile
from foundryflow.actions.guardrail.deploy_models import DeployModels
from foundryflow.actions.guardrail.rollback import Rollback
from foundryflow.cluster.backends import backend_for
from foundryflow.configsync import GuardrailConfigStore
from foundryflow.guardrail.demo import LLAMA_GUARD, seed_demo
from foundryflow.store.catalog import Model
from foundryflow.store.db import get_engine, session_factory, session_scope
from foundryflow.store.guardrail import (
    ClusterAllocation,
    ClusterRelease,
    Endpoint,
    EndpointStatus,
    GuardrailDeployment,
    GuardrailProbe,
    GuardrailProfile,
    GuardrailProvider,
    GuardrailRule,
    GuardrailRuleDeployment,
    GuardrailWorkflow,
    ProviderType,
    WorkflowStatus,
)
from foundryflow.store.models import StepRun
from tests.test_airflow_dags import execution_of, run, states

pytestmark = pytest.mark.airflow

PIPELINE = "guardrail-deployment"
SMALL_GUARD = "meta-llama/Llama-Guard-3-1B"
"""In the reference catalog, so onboarded; no demo rule uses it."""
APP_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
FAIL_ENV = "FOUNDRYFLOW_LOCAL_CLUSTER_FAIL"
STEPS = ("deploy_models", "create_profile", "create_deployment", "build_config", "sync_redis")


# --------------------------------------------------------------------------- fixtures
@dataclass(frozen=True)
class Demo:
    probes: dict[str, UUID]
    rules: dict[str, UUID]
    """``<probe>/<rule>`` -> id."""
    clusters: dict[str, UUID]
    models: dict[str, int]


@dataclass(frozen=True)
class Project:
    id: UUID
    workflow_id: UUID
    target_endpoint_id: UUID
    """The application endpoint the guardrail protects (not deployed by the pipeline)."""


@pytest.fixture(scope="module")
def demo() -> Demo:
    with session_scope() as session:
        seed_demo(session)
        small = session.scalars(select(Model).where(Model.uri == SMALL_GUARD)).one()
        provider = session.scalars(
            select(GuardrailProvider).where(GuardrailProvider.name == "test-deploy-actions")
        ).one_or_none()
        if provider is None:
            provider = GuardrailProvider(
                name="test-deploy-actions",
                type=ProviderType.HUGGINGFACE,
                description="Probes of tests/test_guardrail_actions_deploy.py",
                credential_conn_id="test_deploy_actions",
            )
            probe = GuardrailProbe(provider=provider, name="small-guard", description="test")
            session.add(
                GuardrailRule(
                    probe=probe,
                    name="unsafe",
                    description="Llama Guard 3 1B: unsafe",
                    model_uri=SMALL_GUARD,
                    model_provider_type=ProviderType.HUGGINGFACE,
                    model_id=small.id,
                    severity_threshold=0.5,
                    guard_types=["input", "output"],
                )
            )
            session.flush()
        probes = {
            name: probe_id
            for probe_id, name in session.execute(select(GuardrailProbe.id, GuardrailProbe.name))
        }
        rules = {
            f"{probe}/{rule}": rule_id
            for rule_id, rule, probe in session.execute(
                select(GuardrailRule.id, GuardrailRule.name, GuardrailProbe.name).join(
                    GuardrailRule.probe
                )
            )
        }
        clusters = dict(session.execute(text("SELECT name, id FROM clusters")).tuples().all())
        models = dict(session.execute(select(Model.uri, Model.id)).tuples().all())
    return Demo(probes, rules, clusters, models)


@pytest.fixture
def project(demo: Demo) -> Iterator[Project]:
    project_id = uuid.uuid4()
    with session_scope() as session:
        workflow = GuardrailWorkflow(project_id=project_id, created_by="tester", current_step=12)
        target = Endpoint(
            project_id=project_id,
            name="chat-app",
            model_id=demo.models[APP_MODEL],
            cluster_id=demo.clusters["demo-l40s"],
            url="http://chat-app.apps.svc.cluster.local:8000",
            status=EndpointStatus.RUNNING,
        )
        session.add_all([workflow, target])
        session.flush()
        created = Project(project_id, workflow.id, target.id)
    yield created
    _remove_leftovers(project_id)


def _remove_leftovers(project_id: UUID) -> None:
    """Safety net for a failed assertion: no release of a test may hold GPUs that the next
    tests (or other modules of the session) count on."""
    with session_scope() as session:
        session.execute(
            delete(GuardrailDeployment).where(GuardrailDeployment.project_id == project_id)
        )
        session.execute(delete(GuardrailProfile).where(GuardrailProfile.project_id == project_id))
        releases = session.execute(
            select(ClusterRelease.cluster_id, ClusterRelease.name, ClusterRelease.namespace).where(
                ClusterRelease.namespace == f"guardrail-{project_id}"
            )
        ).all()
    for cluster_id, name, namespace in releases:
        backend_for(cluster_id).uninstall(name, namespace)
    with session_scope() as session:
        session.execute(delete(Endpoint).where(Endpoint.project_id == project_id))


@pytest.fixture
def store(redis_client: Any) -> GuardrailConfigStore:
    return GuardrailConfigStore(redis_client)


# --------------------------------------------------------------------------- helpers
def deploy_entry(demo: Demo, rule: str, model: str, cluster: str = "demo-h100") -> dict[str, Any]:
    return {
        "rule_id": str(demo.rules[rule]),
        "model_id": demo.models[model],
        "cluster_id": str(demo.clusters[cluster]),
        "deployment_config": {"tp": 1, "replicas": 1, "node_pool": "h100-x8"},
    }


def conf(demo: Demo, project: Project, **changes: Any) -> dict[str, Any]:
    """Two Llama Guard rules (one with its own threshold) and the pattern-only PII probe,
    guarding the project's chat endpoint; Llama Guard 3 8B is deployed."""
    base: dict[str, Any] = {
        "workflow_id": str(project.workflow_id),
        "profile_config": {
            "name": "support-bot",
            "description": "Guards the support chat",
            "guard_types": ["input", "output"],
            "severity_threshold": 0.7,
        },
        "project_id": str(project.id),
        "endpoint_ids": [str(project.target_endpoint_id)],
        "is_standalone": False,
        "models_to_deploy": [
            deploy_entry(demo, "harmful-content/violent-crimes", LLAMA_GUARD),
            deploy_entry(demo, "harmful-content/hate", LLAMA_GUARD),
        ],
        "models_to_reuse": [],
        "probe_selections": [
            {
                "id": str(demo.probes["harmful-content"]),
                "rules": [
                    {"id": str(demo.rules["harmful-content/violent-crimes"])},
                    {"id": str(demo.rules["harmful-content/hate"]), "severity_threshold": 0.9},
                ],
            },
            {"id": str(demo.probes["pii"]), "rules": None},
        ],
        "user_id": "user-42",
    }
    return {**base, **changes}


def step_rows(execution_id: UUID) -> dict[str, StepRun]:
    with session_scope() as session:
        rows = session.scalars(select(StepRun).where(StepRun.execution_id == execution_id))
        return {row.step_id: row for row in rows}


def count(model: Any, *where: Any) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def releases_of(project: Project) -> list[ClusterRelease]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(ClusterRelease).where(ClusterRelease.namespace == f"guardrail-{project.id}")
            )
        )


def context(execution_id: UUID | None = None) -> ActionContext:
    """What an engine hands an action, for calling one directly."""
    return ActionContext(
        execution_id=execution_id or uuid.uuid4(),
        pipeline=PIPELINE,
        step_id="direct",
        attempt=1,
        map_index=None,
        session_factory=session_factory(),
        log=logging.getLogger("test.guardrail"),
        publish=lambda kind, fields: None,
    )


def call(action: type[Action[Any, Any]], params: dict[str, Any], ctx: ActionContext) -> Any:
    """Validate params as the runtime does, then run the action."""
    return action().run(ctx, action.Params.model_validate(params))


def assert_rolled_back(
    project: Project, demo: Demo, execution_id: UUID, store: GuardrailConfigStore
) -> dict[str, StepRun]:
    """Nothing of the run is left, onboarded models are kept; returns the step rows."""
    rows = step_rows(execution_id)
    assert rows["rollback"].status.value == "COMPLETED", rows["rollback"].error
    assert count(GuardrailProfile, GuardrailProfile.project_id == project.id) == 0
    assert count(GuardrailDeployment, GuardrailDeployment.project_id == project.id) == 0
    profile_id = (rows["create_profile"].outputs or {}).get("profile_id")
    deployment_id = (rows["create_deployment"].outputs or {}).get("deployment_id")
    if deployment_id is not None:
        assert (
            count(GuardrailRuleDeployment, GuardrailRuleDeployment.deployment_id == deployment_id)
            == 0
        )
    if profile_id is not None:
        assert store.read(profile_id) is None
        assert not store.history(profile_id)
    assert releases_of(project) == []
    with session_scope() as session:
        allocations = session.scalar(
            select(func.count())
            .select_from(ClusterAllocation)
            .join(ClusterRelease, ClusterRelease.id == ClusterAllocation.release_id)
            .where(ClusterRelease.namespace == f"guardrail-{project.id}")
        )
        assert allocations == 0
        names = set(session.scalars(select(Endpoint.name).where(Endpoint.project_id == project.id)))
        assert not any(name.startswith("gr-") for name in names), names
        assert "chat-app" in names  # the guarded endpoint is not the run's to remove
        for uri in (LLAMA_GUARD, SMALL_GUARD):  # onboarded models stay, and so do rule links
            assert session.scalar(select(Model.id).where(Model.uri == uri)) == demo.models[uri]
        linked = session.scalar(
            select(GuardrailRule.model_id).where(
                GuardrailRule.id == demo.rules["harmful-content/hate"]
            )
        )
        assert linked == demo.models[LLAMA_GUARD]
    return rows


def assert_workflow_failed(project: Project, *fragments: str) -> str:
    with session_scope() as session:
        workflow = session.get_one(GuardrailWorkflow, project.workflow_id)
        assert workflow.status is WorkflowStatus.FAILED
        error = workflow.error or ""
    for fragment in fragments:
        assert fragment in error, error
    return error


def run_failing(dags: dict[str, Any], run_conf: dict[str, Any], failed: str) -> UUID:
    """Runs the DAG, checks that ``failed`` failed, the steps after it did not run and the
    rollback step ran; returns the execution id."""
    dag = dags[PIPELINE]
    dr = run(dag, run_conf)
    assert str(dr.state) == "failed"
    ti = states(dr)
    position = STEPS.index(failed)
    assert all(ti[step] == "success" for step in STEPS[:position]), ti
    assert ti[failed] == "failed", ti
    assert all(ti[step] != "success" for step in STEPS[position + 1 :]), ti
    assert ti["rollback"] == "success", ti
    report = execution_of(dag, dr)
    assert report.status == "FAILED"
    return report.id


# --------------------------------------------------------------------------- success
def test_pipeline_deploys_and_publishes_the_config(
    dags: dict[str, Any], demo: Demo, project: Project, store: GuardrailConfigStore
) -> None:
    dag = dags[PIPELINE]
    dr = run(dag, conf(demo, project))

    assert str(dr.state) == "success"
    ti = states(dr)
    assert all(ti[step] == "success" for step in STEPS), ti
    assert ti["rollback"] == "skipped"
    report = execution_of(dag, dr)
    assert report.status == "COMPLETED"
    rows = step_rows(report.id)
    profile_id = UUID(rows["create_profile"].outputs["profile_id"])  # type: ignore[index]
    deployment_id = UUID(rows["create_deployment"].outputs["deployment_id"])  # type: ignore[index]

    # one release for the model both rules need, on the chosen pool, with its endpoint
    [release] = releases_of(project)
    assert release.name.startswith("gr-llama-guard-3-8b-")
    assert release.cluster_id == demo.clusters["demo-h100"]
    deployed = rows["deploy_models"].outputs or {}
    assert [r["release"] for r in deployed["results"]] == [release.name, release.name]
    with session_scope() as session:
        endpoint = session.scalars(select(Endpoint).where(Endpoint.release_id == release.id)).one()
        assert endpoint.project_id == project.id
        assert endpoint.status is EndpointStatus.RUNNING
        assert endpoint.url == (
            f"http://{release.name}-model-endpoint.guardrail-{project.id}.svc.cluster.local:8000"
        )
        allocations = session.scalars(
            select(ClusterAllocation).where(ClusterAllocation.release_id == release.id)
        ).all()
        assert [(a.devices_used, a.model_id) for a in allocations] == [
            (1, demo.models[LLAMA_GUARD])
        ]
        assert deployed["endpoint_ids"] == [str(endpoint.id)]
        assert report.outputs == {
            "profile_id": str(profile_id),
            "deployment_id": str(deployment_id),
            "endpoint_urls": [endpoint.url],
        }

        profile = session.get_one(GuardrailProfile, profile_id)
        assert (profile.name, profile.created_by) == ("support-bot", "user-42")
        selections = {s.probe_id: s.rule_ids for s in profile.probe_selections}
        assert selections.keys() == {demo.probes["harmful-content"], demo.probes["pii"]}
        assert set(selections[demo.probes["harmful-content"]] or ()) == {
            demo.rules["harmful-content/violent-crimes"],
            demo.rules["harmful-content/hate"],
        }
        assert selections[demo.probes["pii"]] is None  # all rules of the probe
        deployment = session.get_one(GuardrailDeployment, deployment_id)
        assert [t.endpoint_id for t in deployment.targets] == [project.target_endpoint_id]
        assert {(rd.rule_id, rd.endpoint_id) for rd in deployment.rule_deployments} == {
            (demo.rules["harmful-content/violent-crimes"], endpoint.id),
            (demo.rules["harmful-content/hate"], endpoint.id),
        }

    stored = store.read(profile_id)
    assert stored is not None and stored.version == 1
    assert rows["sync_redis"].outputs == {
        "key": store.key(profile_id),
        "version": 1,
        "sha256": stored.sha256,
    }
    config = stored.config
    assert config.deployment_id == deployment_id
    assert config.target_endpoint_ids == (project.target_endpoint_id,)
    assert {uri: e.url for uri, e in config.endpoints.items()} == {LLAMA_GUARD: endpoint.url}
    rules = {rule.rule_name: rule for probe in config.probes for rule in probe.rules}
    assert set(rules) == {"violent-crimes", "hate", "email-address", "credit-card-number"}
    assert rules["hate"].severity_threshold == 0.9  # the rule's own override
    assert rules["violent-crimes"].severity_threshold == 0.7  # the profile's
    assert rules["email-address"].model_uri is None


def test_standalone_run_reusing_an_endpoint_deploys_nothing(
    dags: dict[str, Any], demo: Demo, project: Project, store: GuardrailConfigStore
) -> None:
    with session_scope() as session:
        reused = Endpoint(
            project_id=project.id,
            name="small-guard",
            model_id=demo.models[SMALL_GUARD],
            cluster_id=demo.clusters["demo-l40s"],
            url="http://small-guard.guards.svc.cluster.local:8000",
            status=EndpointStatus.UNHEALTHY,  # reusable, with a warning (seed I1)
        )
        session.add(reused)
        session.flush()
        reused_id = reused.id
    run_conf = conf(
        demo,
        project,
        is_standalone=True,
        endpoint_ids=None,
        models_to_deploy=[],
        models_to_reuse=[
            {
                "rule_id": str(demo.rules["small-guard/unsafe"]),
                "model_id": demo.models[SMALL_GUARD],
                "endpoint_id": str(reused_id),
            }
        ],
        probe_selections=[{"id": str(demo.probes["small-guard"]), "guard_types": ["output"]}],
    )
    dag = dags[PIPELINE]
    dr = run(dag, run_conf)

    assert str(dr.state) == "success", states(dr)
    report = execution_of(dag, dr)
    assert releases_of(project) == []
    profile_id = report.outputs["profile_id"]  # type: ignore[index]
    stored = store.read(profile_id)
    assert stored is not None
    assert stored.config.target_endpoint_ids == ()
    assert stored.config.endpoints[SMALL_GUARD].endpoint_id == reused_id
    [probe] = stored.config.probes
    assert [(r.rule_name, r.guard_types) for r in probe.rules] == [("unsafe", ("output",))]


def test_rollback_removes_a_complete_deployment_and_is_idempotent(
    dags: dict[str, Any], demo: Demo, project: Project, store: GuardrailConfigStore
) -> None:
    """What cancelling after a successful run does: the same rollback, called directly."""
    dag = dags[PIPELINE]
    dr = run(dag, conf(demo, project))
    assert str(dr.state) == "success"
    report = execution_of(dag, dr)
    rows = step_rows(report.id)
    params = {
        "workflow_id": str(project.workflow_id),
        "profile_id": rows["create_profile"].outputs["profile_id"],  # type: ignore[index]
        "deployment_id": rows["create_deployment"].outputs["deployment_id"],  # type: ignore[index]
        "deployed_endpoint_ids": rows["deploy_models"].outputs["endpoint_ids"],  # type: ignore[index]
        "reason": "cancelled by the user",
    }

    first = call(Rollback, params, context(report.id))
    assert first.redis_config_deleted is True
    assert [str(d) for d in first.deployment_ids] == [params["deployment_id"]]
    assert first.profile_deleted is True
    assert len(first.releases_uninstalled) == 1
    assert [str(e) for e in first.endpoint_ids] == params["deployed_endpoint_ids"]
    assert first.workflow_marked_failed is True
    assert count(GuardrailProfile, GuardrailProfile.project_id == project.id) == 0
    assert releases_of(project) == []
    assert store.read(params["profile_id"]) is None
    assert assert_workflow_failed(project) == "cancelled by the user"

    again = call(Rollback, params, context(report.id))
    assert again.model_dump() == {
        "redis_config_deleted": False,
        "deployment_ids": [],
        "profile_deleted": False,
        "releases_uninstalled": [],
        "endpoint_ids": [],
        "workflow_marked_failed": True,
    }


# --------------------------------------------------------------------------- failures
def test_deploy_models_failure_takes_down_its_own_installs(
    dags: dict[str, Any],
    demo: Demo,
    project: Project,
    store: GuardrailConfigStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(FAIL_ENV, "gr-llama-guard-3-1b-*")
    run_conf = conf(
        demo,
        project,
        models_to_deploy=[
            deploy_entry(demo, "harmful-content/violent-crimes", LLAMA_GUARD),
            deploy_entry(demo, "small-guard/unsafe", SMALL_GUARD),
        ],
        probe_selections=[
            {
                "id": str(demo.probes["harmful-content"]),
                "rules": [{"id": str(demo.rules["harmful-content/violent-crimes"])}],
            },
            {"id": str(demo.probes["small-guard"])},
        ],
    )
    execution_id = run_failing(dags, run_conf, "deploy_models")

    rows = assert_rolled_back(project, demo, execution_id, store)
    error = rows["deploy_models"].error or ""
    assert SMALL_GUARD in error and f"injected by {FAIL_ENV}" in error, error
    # Llama Guard 8B was installed first and went down again
    assert "uninstalled what had been installed before it: gr-llama-guard-3-8b-" in error
    # the step cleaned up after itself: rollback found nothing of it left to uninstall
    assert rows["rollback"].outputs["releases_uninstalled"] == []  # type: ignore[index]
    assert_workflow_failed(project, "deploy_models", SMALL_GUARD, f"injected by {FAIL_ENV}")


def test_create_profile_failure_rolls_back_the_deployed_models(
    dags: dict[str, Any], demo: Demo, project: Project, store: GuardrailConfigStore
) -> None:
    foreign = demo.rules["pii/email-address"]
    run_conf = conf(
        demo,
        project,
        probe_selections=[
            {
                "id": str(demo.probes["harmful-content"]),
                "rules": [
                    {"id": str(demo.rules["harmful-content/violent-crimes"])},
                    {"id": str(demo.rules["harmful-content/hate"])},
                    {"id": str(foreign)},
                ],
            }
        ],
    )
    execution_id = run_failing(dags, run_conf, "create_profile")

    rows = assert_rolled_back(project, demo, execution_id, store)
    message = f"rule {foreign} belongs to probe {demo.probes['pii']}"
    assert message in (rows["create_profile"].error or "")
    assert len(rows["rollback"].outputs["releases_uninstalled"]) == 1  # type: ignore[index]
    assert_workflow_failed(project, "create_profile", message)


def test_create_deployment_failure_rolls_back_profile_and_models(
    dags: dict[str, Any], demo: Demo, project: Project, store: GuardrailConfigStore
) -> None:
    unknown = uuid.uuid4()
    run_conf = conf(demo, project, endpoint_ids=[str(project.target_endpoint_id), str(unknown)])
    execution_id = run_failing(dags, run_conf, "create_deployment")

    rows = assert_rolled_back(project, demo, execution_id, store)
    assert rows["rollback"].outputs["profile_deleted"] is True  # type: ignore[index]
    assert_workflow_failed(project, "create_deployment", "unknown endpoints", str(unknown))


def test_build_config_failure_keeps_the_reused_endpoint(
    dags: dict[str, Any], demo: Demo, project: Project, store: GuardrailConfigStore
) -> None:
    with session_scope() as session:
        pending = Endpoint(
            project_id=project.id,
            name="small-guard-pending",
            model_id=demo.models[SMALL_GUARD],
            cluster_id=demo.clusters["demo-l40s"],
            status=EndpointStatus.PENDING,  # reusable (seed), but no URL yet
        )
        session.add(pending)
        session.flush()
        pending_id = pending.id
    run_conf = conf(
        demo,
        project,
        models_to_reuse=[
            {
                "rule_id": str(demo.rules["small-guard/unsafe"]),
                "model_id": demo.models[SMALL_GUARD],
                "endpoint_id": str(pending_id),
            }
        ],
        probe_selections=[
            *conf(demo, project)["probe_selections"],
            {"id": str(demo.probes["small-guard"])},
        ],
    )
    execution_id = run_failing(dags, run_conf, "build_config")

    rows = assert_rolled_back(project, demo, execution_id, store)
    assert rows["rollback"].outputs["deployment_ids"] == [  # type: ignore[index]
        rows["create_deployment"].outputs["deployment_id"]  # type: ignore[index]
    ]
    assert_workflow_failed(project, "build_config", "has no URL yet", "pending")
    assert count(Endpoint, Endpoint.id == pending_id) == 1  # reused, so not the run's


@contextmanager
def damaged_entry_once_profile_exists(project: Project, redis_client: Any) -> Iterator[None]:
    """Writes a damaged entry at the Redis key of the run's profile as soon as the profile
    exists. Until then a lock on ``guardrail_deployments`` keeps create_deployment's INSERT
    waiting, so the entry is in place before sync_redis, whatever the timing."""
    connection = get_engine().connect()
    transaction = connection.begin()
    connection.execute(text("LOCK TABLE guardrail_deployments IN SHARE ROW EXCLUSIVE MODE"))
    written: list[str] = []

    def watch() -> None:
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not written:
                with session_scope() as session:
                    profile_id = session.scalar(
                        select(GuardrailProfile.id).where(GuardrailProfile.project_id == project.id)
                    )
                if profile_id is not None:
                    key = GuardrailConfigStore(redis_client).key(profile_id)
                    redis_client.set(key, '{"version": 1, "config": "cut off')
                    written.append(key)
                time.sleep(0.02)
        finally:
            transaction.commit()
            connection.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        watcher.join()
    assert written, "the run never created its profile"


def test_sync_redis_failure_removes_everything_including_the_damaged_entry(
    dags: dict[str, Any],
    demo: Demo,
    project: Project,
    store: GuardrailConfigStore,
    redis_client: Any,
) -> None:
    with damaged_entry_once_profile_exists(project, redis_client):
        execution_id = run_failing(dags, conf(demo, project), "sync_redis")

    rows = assert_rolled_back(project, demo, execution_id, store)
    assert rows["rollback"].outputs["redis_config_deleted"] is True  # type: ignore[index]
    assert "not a valid stored config" in (rows["sync_redis"].error or "")
    assert_workflow_failed(project, "sync_redis", "refusing to overwrite")


# --------------------------------------------------------------------------- bad inputs
def test_missing_required_params_are_refused_before_anything_runs(
    dags: dict[str, Any], demo: Demo, project: Project
) -> None:
    from airflow.sdk.exceptions import ParamValidationError

    run_conf = conf(demo, project)
    del run_conf["probe_selections"]
    with pytest.raises(ParamValidationError, match="probe_selections"):
        run(dags[PIPELINE], run_conf)
    assert releases_of(project) == []
    assert count(GuardrailProfile, GuardrailProfile.project_id == project.id) == 0

    with pytest.raises(ValueError, match="project_id"):
        CreateProfile.Params.model_validate({"config": {}, "probe_selections": [], "user_id": "u"})


def test_bad_probe_selection_is_refused_with_every_problem_and_nothing_written(
    demo: Demo, project: Project
) -> None:
    unknown_probe, unknown_rule = uuid.uuid4(), uuid.uuid4()
    foreign = demo.rules["pii/email-address"]
    params = {
        "config": conf(demo, project)["profile_config"],
        "project_id": str(project.id),
        "user_id": "user-42",
        "probe_selections": [
            {"id": str(unknown_probe)},
            {
                "id": str(demo.probes["harmful-content"]),
                "rules": [{"id": str(unknown_rule)}, {"id": str(foreign)}],
            },
        ],
    }
    with pytest.raises(ValueError) as caught:
        call(CreateProfile, params, context())
    message = str(caught.value)
    assert f"probe {unknown_probe} does not exist" in message
    assert f"rule {unknown_rule} does not exist" in message
    assert f"rule {foreign} belongs to probe {demo.probes['pii']}" in message
    assert count(GuardrailProfile, GuardrailProfile.project_id == project.id) == 0


def test_probe_whose_rules_inspect_nothing_chosen_is_refused(demo: Demo, project: Project) -> None:
    params = {
        "config": {**conf(demo, project)["profile_config"], "guard_types": ["output"]},
        "project_id": str(project.id),
        "user_id": "user-42",
        "probe_selections": [{"id": str(demo.probes["prompt-injection"])}],  # prompts only
    }
    with pytest.raises(ValueError, match="none of its selected rules inspects output"):
        call(CreateProfile, params, context())
    assert count(GuardrailProfile, GuardrailProfile.project_id == project.id) == 0


def test_bad_models_to_deploy_are_refused_before_any_install(demo: Demo, project: Project) -> None:
    params = {
        "project_id": str(project.id),
        "user_id": "user-42",
        "models": [
            deploy_entry(demo, "harmful-content/hate", LLAMA_GUARD),
            deploy_entry(demo, "harmful-content/violent-crimes", SMALL_GUARD),  # wrong model
            {**deploy_entry(demo, "small-guard/unsafe", SMALL_GUARD), "model_id": 10**9},
            {
                **deploy_entry(demo, "harmful-content/hate", LLAMA_GUARD),
                "cluster_id": str(uuid.uuid4()),
            },
        ],
    }
    with pytest.raises(ValueError) as caught:
        call(DeployModels, params, context())
    message = str(caught.value)
    assert f"does not use model {SMALL_GUARD}" in message
    assert f"model {10**9} is not in the registry" in message
    assert "does not exist" in message
    assert releases_of(project) == []


def test_create_deployment_refuses_inconsistent_models(demo: Demo, project: Project) -> None:
    ctx = context()
    profile = call(
        CreateProfile,
        {
            "config": conf(demo, project)["profile_config"],
            "project_id": str(project.id),
            "user_id": "user-42",
            "probe_selections": [{"id": str(demo.probes["small-guard"])}],
        },
        ctx,
    )
    with session_scope() as session:
        failed = Endpoint(
            project_id=project.id,
            name="small-guard-failed",
            model_id=demo.models[SMALL_GUARD],
            cluster_id=demo.clusters["demo-l40s"],
            status=EndpointStatus.FAILURE,
        )
        session.add(failed)
        session.flush()
        failed_id = failed.id
    base = {
        "profile_id": str(profile.profile_id),
        "project_id": str(project.id),
        "endpoint_ids": [str(project.target_endpoint_id)],
        "is_standalone": True,
        "deployed_models": [],
        "reused_models": [],
        "user_id": "user-42",
    }
    cases = {
        "a standalone deployment guards no endpoints": {},
        "no endpoint serves it": {"is_standalone": False},
        "is failure and cannot be reused": {
            "is_standalone": False,
            "reused_models": [
                {
                    "rule_id": str(demo.rules["small-guard/unsafe"]),
                    "model_id": demo.models[SMALL_GUARD],
                    "endpoint_id": str(failed_id),
                }
            ],
        },
        f"serves {APP_MODEL}, but rule": {
            "is_standalone": False,
            "reused_models": [
                {
                    "rule_id": str(demo.rules["small-guard/unsafe"]),
                    "model_id": demo.models[APP_MODEL],
                    "endpoint_id": str(project.target_endpoint_id),
                }
            ],
        },
    }
    for expected, change in cases.items():
        with pytest.raises(ValueError, match=expected):
            call(CreateDeployment, {**base, **change}, ctx)
    assert count(GuardrailDeployment, GuardrailDeployment.project_id == project.id) == 0


# --------------------------------------------------------------------------- rollback
def test_rollback_finds_the_releases_of_its_execution_without_endpoint_ids(
    demo: Demo, project: Project
) -> None:
    """A deploy step killed before it recorded outputs leaves releases no step output names:
    rollback still finds them by the execution annotation."""
    ctx = context()
    params = {
        "project_id": str(project.id),
        "user_id": "user-42",
        "models": [deploy_entry(demo, "small-guard/unsafe", SMALL_GUARD, "demo-l40s")],
    }
    params["models"][0]["deployment_config"] = {"tp": 1}
    deployed = call(DeployModels, params, ctx)
    [release] = releases_of(project)
    assert deployed.results[0].release == release.name

    other = call(
        Rollback,
        {"workflow_id": "not-a-uuid", "deployed_endpoint_ids": [], "reason": "x"},
        context(),
    )
    assert other.releases_uninstalled == [] and other.workflow_marked_failed is False
    assert len(releases_of(project)) == 1  # another execution's rollback leaves it alone

    swept = call(
        Rollback,
        {"workflow_id": str(project.workflow_id), "deployed_endpoint_ids": [], "reason": "killed"},
        ctx,
    )
    assert swept.releases_uninstalled == [f"{release.namespace}/{release.name}"]
    assert swept.endpoint_ids == deployed.endpoint_ids
    assert releases_of(project) == []
    assert count(Endpoint, Endpoint.id.in_(deployed.endpoint_ids)) == 0


def test_build_config_is_deterministic(demo: Demo, project: Project) -> None:
    """build_config called twice gives the same document, so a retried run syncs nothing new;
    a standalone profile of pattern rules needs no endpoint at all."""
    ctx = context()
    profile = call(
        CreateProfile,
        {
            "config": conf(demo, project)["profile_config"],
            "project_id": str(project.id),
            "user_id": "user-42",
            "probe_selections": [{"id": str(demo.probes["pii"])}],
        },
        ctx,
    )
    deployment = call(
        CreateDeployment,
        {
            "profile_id": str(profile.profile_id),
            "project_id": str(project.id),
            "endpoint_ids": None,
            "is_standalone": True,
            "deployed_models": [],
            "reused_models": [],
            "user_id": "user-42",
        },
        ctx,
    )
    ids = {"profile_id": str(profile.profile_id), "deployment_id": str(deployment.deployment_id)}
    first = call(BuildConfig, ids, ctx).config
    assert call(BuildConfig, ids, ctx).config == first
    assert [r["rule_name"] for p in first["probes"] for r in p["rules"]] == sorted(
        ["email-address", "credit-card-number"],
        key=lambda name: str(demo.rules[f"pii/{name}"]),
    )
