"""The guardrail schema's promises, checked by PostgreSQL itself: cascades and restrictions
(rollback's order), uniqueness, enum and CHECK values, and an idempotent demo seed.

Rows are tagged per test: the session's database is shared by every test module.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from foundryflow.benchmark.seed import seed_catalog
from foundryflow.cluster.base import ReleaseState
from foundryflow.guardrail.demo import LLAMA_GUARD, PROMPT_GUARD, seed_demo
from foundryflow.store.catalog import HardwareConfig, Model
from foundryflow.store.db import session_scope
from foundryflow.store.guardrail import (
    Cluster,
    ClusterAllocation,
    ClusterBackendName,
    ClusterNode,
    ClusterRelease,
    Endpoint,
    EndpointStatus,
    GuardrailDeployment,
    GuardrailDeploymentTarget,
    GuardrailProbe,
    GuardrailProfile,
    GuardrailProfileProbe,
    GuardrailProfileRule,
    GuardrailProvider,
    GuardrailRule,
    GuardrailRuleDeployment,
    GuardrailWorkflow,
    HardwareMode,
    ProviderType,
    WorkflowStatus,
)
from foundryflow.store.models import Execution, ExecutionStatus


@dataclass
class World:
    """One small deployed guardrail: ids of every row, for the assertions."""

    tag: str
    project_id: uuid.UUID
    provider_id: uuid.UUID
    probe_id: uuid.UUID
    other_probe_id: uuid.UUID
    rule_id: uuid.UUID
    other_rule_id: uuid.UUID
    model_id: int
    hardware_config_id: int
    cluster_id: uuid.UUID
    node_id: uuid.UUID
    release_id: uuid.UUID
    endpoint_id: uuid.UUID
    target_endpoint_id: uuid.UUID
    profile_id: uuid.UUID
    profile_probe_id: uuid.UUID
    deployment_id: uuid.UUID


def _rule(probe: GuardrailProbe, name: str, model: Model | None = None) -> GuardrailRule:
    return GuardrailRule(
        probe=probe,
        name=name,
        description="test",
        model_uri=None if model is None else model.uri,
        model_provider_type=None if model is None else ProviderType.HUGGINGFACE,
        model=model,
        severity_threshold=0.5,
        guard_types=["input", "output"],
    )


def _endpoint(
    tag: str, name: str, project: uuid.UUID, model: Model, cluster: Cluster, **more: Any
) -> Endpoint:
    return Endpoint(
        project_id=project,
        name=f"{name}-{tag}",
        model=model,
        cluster=cluster,
        status=EndpointStatus.RUNNING,
        **more,
    )


@pytest.fixture(scope="module")
def hardware_id() -> int:
    with session_scope() as session:
        seed_catalog(session)
        return session.scalars(
            select(HardwareConfig.id).where(HardwareConfig.name == "l4-24gb-x1")
        ).one()


@pytest.fixture
def world(hardware_id: int) -> World:
    tag = uuid.uuid4().hex[:8]
    project = uuid.uuid4()
    with session_scope() as session:
        hardware = session.get_one(HardwareConfig, hardware_id)
        provider = GuardrailProvider(
            name=f"test-provider-{tag}",
            type=ProviderType.HUGGINGFACE,
            description="test",
            credential_conn_id=f"test_hf_{tag}",
        )
        probe = GuardrailProbe(provider=provider, name=f"probe-{tag}", description="test")
        other_probe = GuardrailProbe(provider=provider, name=f"other-{tag}", description="test")
        model = Model(
            uri=f"test-guardrail/store-{tag}",
            family="llama",
            parameter_count=1_498_482_688,
            num_layers=16,
            hidden_size=2048,
            num_attention_heads=32,
            num_kv_heads=8,
            max_context=131072,
        )
        rule, other_rule = _rule(probe, "model-rule", model), _rule(other_probe, "other-rule")
        cluster = Cluster(name=f"test-cluster-{tag}", backend=ClusterBackendName.LOCAL)
        node = ClusterNode(cluster=cluster, name="gpus", hardware=hardware, count=2)
        release = ClusterRelease(
            cluster=cluster,
            name=f"guard-{tag}",
            namespace="guardrails",
            chart="charts/model-endpoint",
            values={"model": model.uri},
            status=ReleaseState.DEPLOYED,
        )
        profile = GuardrailProfile(
            project_id=project, name=f"profile-{tag}", guard_types=["input"], severity_threshold=0.5
        )
        session.add_all([rule, other_rule, node, release, profile])
        session.flush()

        served = _endpoint(tag, "served", project, model, cluster, release_id=release.id)
        target = _endpoint(tag, "target", project, model, cluster)
        selection = GuardrailProfileProbe(profile=profile, probe_id=probe.id)
        selection.rules.append(GuardrailProfileRule(rule_id=rule.id))
        allocation = ClusterAllocation(
            release_id=release.id,
            node_id=node.id,
            model_id=model.id,
            hardware_mode=HardwareMode.DEDICATED,
            devices_used=1,
            memory_gb=20.5,
        )
        session.add_all([served, target, selection, allocation])
        session.flush()

        deployment = GuardrailDeployment(profile=profile, project_id=project)
        deployment.targets.append(GuardrailDeploymentTarget(endpoint_id=target.id))
        deployment.rule_deployments.extend(
            [
                GuardrailRuleDeployment(rule_id=rule.id, endpoint_id=served.id),
                GuardrailRuleDeployment(rule_id=other_rule.id),  # a rule without a model
            ]
        )
        session.add(deployment)
        session.flush()
        return World(
            tag=tag,
            project_id=project,
            provider_id=provider.id,
            probe_id=probe.id,
            other_probe_id=other_probe.id,
            rule_id=rule.id,
            other_rule_id=other_rule.id,
            model_id=model.id,
            hardware_config_id=hardware.id,
            cluster_id=cluster.id,
            node_id=node.id,
            release_id=release.id,
            endpoint_id=served.id,
            target_endpoint_id=target.id,
            profile_id=profile.id,
            profile_probe_id=selection.id,
            deployment_id=deployment.id,
        )


def count(session: Session, model: Any, *where: Any) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def refused(change: Callable[[Session], object], constraint: str) -> None:
    """The change fails in PostgreSQL, naming the constraint, and nothing is written."""
    with pytest.raises(IntegrityError, match=constraint), session_scope() as session:
        change(session)
        session.flush()


# --------------------------------------------------------------------------- cascades
def test_deleting_a_deployment_cascades_to_its_rule_deployments_and_targets(world: World) -> None:
    with session_scope() as session:
        deployment = session.get_one(GuardrailDeployment, world.deployment_id)
        assert not deployment.is_standalone and len(deployment.rule_deployments) == 2
    with session_scope() as session:
        # a plain DELETE, as rollback issues it: the database does the cascading
        session.execute(
            delete(GuardrailDeployment).where(GuardrailDeployment.id == world.deployment_id)
        )
    with session_scope() as session:
        where = GuardrailRuleDeployment.deployment_id == world.deployment_id
        assert count(session, GuardrailRuleDeployment, where) == 0
        target = GuardrailDeploymentTarget.deployment_id == world.deployment_id
        assert count(session, GuardrailDeploymentTarget, target) == 0
        # what the deployment used is untouched
        assert session.get(GuardrailProfile, world.profile_id) is not None
        assert session.get(Endpoint, world.endpoint_id) is not None
        assert session.get(GuardrailRule, world.rule_id) is not None


def test_rollback_order_is_enforced(world: World) -> None:
    # endpoints, rules and profiles in use by a profile or deployment cannot go first
    refused(
        lambda s: s.execute(delete(Endpoint).where(Endpoint.id == world.endpoint_id)),
        "fk_guardrail_rule_deployments_endpoint_id_endpoints",
    )
    refused(
        lambda s: s.execute(delete(Endpoint).where(Endpoint.id == world.target_endpoint_id)),
        "fk_guardrail_deployment_targets_endpoint_id_endpoints",
    )
    refused(
        lambda s: s.execute(delete(GuardrailRule).where(GuardrailRule.id == world.rule_id)),
        "fk_guardrail_profile_rules_rule",
    )
    refused(
        lambda s: s.execute(delete(GuardrailRule).where(GuardrailRule.id == world.other_rule_id)),
        "fk_guardrail_rule_deployments_rule_id_guardrail_rules",
    )
    refused(
        lambda s: s.execute(
            delete(GuardrailProfile).where(GuardrailProfile.id == world.profile_id)
        ),
        "fk_guardrail_deployments_profile_id_guardrail_profiles",
    )
    # in the right order everything goes, and the profile takes its selections with it
    with session_scope() as session:
        for statement in (
            delete(GuardrailDeployment).where(GuardrailDeployment.id == world.deployment_id),
            delete(GuardrailProfile).where(GuardrailProfile.id == world.profile_id),
            delete(ClusterRelease).where(ClusterRelease.id == world.release_id),
        ):
            session.execute(statement)
    with session_scope() as session:
        assert (
            count(
                session, GuardrailProfileProbe, GuardrailProfileProbe.id == world.profile_probe_id
            )
            == 0
        )
        assert (
            count(
                session,
                GuardrailProfileRule,
                GuardrailProfileRule.profile_probe_id == world.profile_probe_id,
            )
            == 0
        )
        # uninstalling the release freed its allocation and removed its endpoint
        assert count(session, ClusterAllocation, ClusterAllocation.node_id == world.node_id) == 0
        assert session.get(Endpoint, world.endpoint_id) is None
        # onboarded models are kept (seed J2)
        assert session.get(Model, world.model_id) is not None


def test_removing_a_model_from_the_registry_unlinks_its_rules(world: World) -> None:
    with session_scope() as session:
        session.execute(
            delete(GuardrailDeployment).where(GuardrailDeployment.id == world.deployment_id)
        )
        session.execute(delete(Endpoint).where(Endpoint.project_id == world.project_id))
        session.execute(delete(ClusterRelease).where(ClusterRelease.id == world.release_id))
        session.execute(delete(Model).where(Model.id == world.model_id))
    with session_scope() as session:
        rule = session.get_one(GuardrailRule, world.rule_id)
        assert rule.model_id is None and rule.model_uri == f"test-guardrail/store-{world.tag}"


# --------------------------------------------------------------------------- integrity
def test_a_selected_rule_must_belong_to_the_selected_probe(world: World) -> None:
    refused(
        lambda s: s.add(
            GuardrailProfileRule(
                profile_probe_id=world.profile_probe_id,
                probe_id=world.probe_id,
                rule_id=world.other_rule_id,
            )
        ),
        "fk_guardrail_profile_rules_rule",
    )
    refused(
        lambda s: s.add(
            GuardrailProfileRule(
                profile_probe_id=world.profile_probe_id,
                probe_id=world.other_probe_id,
                rule_id=world.other_rule_id,
            )
        ),
        "fk_guardrail_profile_rules_selection",
    )
    with session_scope() as session:
        selection = session.get_one(GuardrailProfileProbe, world.profile_probe_id)
        assert selection.rule_ids == [world.rule_id]
        all_rules = GuardrailProfileProbe(
            profile_id=world.profile_id, probe_id=world.other_probe_id
        )
        session.add(all_rules)
        session.flush()
        assert all_rules.rule_ids is None  # no rows: every rule of the probe


@pytest.mark.parametrize(
    ("make", "constraint"),
    [
        (
            lambda w: GuardrailProvider(
                name=f"test-provider-{w.tag}", type="openai", description=""
            ),
            "uq_guardrail_providers_name",
        ),
        (
            lambda w: GuardrailProbe(
                provider_id=w.provider_id, name=f"probe-{w.tag}", description=""
            ),
            "uq_guardrail_probes_provider_id_name",
        ),
        (
            lambda w: GuardrailRule(
                probe_id=w.probe_id,
                name="model-rule",
                description="",
                severity_threshold=0.1,
                guard_types=["input"],
            ),
            "uq_guardrail_rules_probe_id_name",
        ),
        (
            lambda w: ClusterNode(
                cluster_id=w.cluster_id,
                name="gpus",
                hardware_config_id=w.hardware_config_id,
                count=1,
            ),
            "uq_cluster_nodes_cluster_id_name",
        ),
        (
            lambda w: ClusterRelease(
                cluster_id=w.cluster_id,
                name=f"guard-{w.tag}",
                namespace="guardrails",
                chart="other",
                values={},
                status=ReleaseState.FAILED,
            ),
            "uq_cluster_releases_cluster_id_namespace_name",
        ),
        (
            lambda w: Endpoint(
                project_id=w.project_id,
                name=f"served-{w.tag}",
                model_id=w.model_id,
                cluster_id=w.cluster_id,
                status=EndpointStatus.PENDING,
            ),
            "uq_endpoints_project_id_name",
        ),
        (
            lambda w: GuardrailProfile(
                project_id=w.project_id,
                name=f"profile-{w.tag}",
                guard_types=["output"],
                severity_threshold=0.9,
            ),
            "uq_guardrail_profiles_project_id_name",
        ),
        (
            lambda w: GuardrailProfileProbe(profile_id=w.profile_id, probe_id=w.probe_id),
            "uq_guardrail_profile_probes_profile_id_probe_id",
        ),
        (
            lambda w: GuardrailRuleDeployment(deployment_id=w.deployment_id, rule_id=w.rule_id),
            "uq_guardrail_rule_deployments_deployment_id_rule_id",
        ),
    ],
    ids=[
        "provider",
        "probe",
        "rule",
        "node",
        "release",
        "endpoint",
        "profile",
        "profile-probe",
        "rule-deployment",
    ],
)
def test_uniqueness(world: World, make: Callable[[World], object], constraint: str) -> None:
    refused(lambda s: s.add(make(world)), constraint)


@pytest.mark.parametrize(
    ("statement", "constraint"),
    [
        ("UPDATE endpoints SET status = 'RUNNING' WHERE id = :endpoint", "endpoint_status"),
        ("UPDATE endpoints SET status = 'deleted' WHERE id = :endpoint", "endpoint_status"),
        ("UPDATE guardrail_providers SET type = 'bedrock' WHERE id = :provider", "provider_type"),
        (
            "UPDATE cluster_releases SET status = 'pending_install' WHERE id = :release",
            "release_status",
        ),
        (
            "UPDATE guardrail_rules SET guard_types = ARRAY['sideways'] WHERE id = :rule",
            "guard_types_known",
        ),
        (
            "UPDATE guardrail_rules SET guard_types = ARRAY[]::varchar[] WHERE id = :rule",
            "guard_types_known",
        ),
        (
            "UPDATE guardrail_rules SET severity_threshold = 1.01 WHERE id = :rule",
            "severity_range",
        ),
        (
            "UPDATE guardrail_rules SET model_provider_type = NULL WHERE id = :rule",
            "model_fields_together",
        ),
        (
            "UPDATE guardrail_rules SET model_uri = NULL, model_provider_type = NULL"
            " WHERE id = :rule",
            "model_id_needs_uri",
        ),
        (
            "UPDATE guardrail_providers SET credential_conn_id = 'postgres://u:secret@db/x'"
            " WHERE id = :provider",
            "conn_id_shape",
        ),
        (
            "UPDATE guardrail_providers SET credential_conn_id = 'hf token with spaces'"
            " WHERE id = :provider",
            "conn_id_shape",
        ),
        ("UPDATE cluster_nodes SET count = 0 WHERE id = :node", "count_positive"),
        ("UPDATE cluster_releases SET revision = 0 WHERE id = :release", "revision_positive"),
        (
            "UPDATE cluster_allocations SET devices_used = 0 WHERE node_id = :node",
            "devices_positive",
        ),
    ],
)
def test_checks_refuse_bad_values(world: World, statement: str, constraint: str) -> None:
    ids = {
        "endpoint": world.endpoint_id,
        "provider": world.provider_id,
        "release": world.release_id,
        "rule": world.rule_id,
        "node": world.node_id,
    }
    refused(lambda s: s.execute(text(statement), ids), constraint)


def test_enums_are_stored_by_their_seed_values(world: World) -> None:
    with session_scope() as session:
        raw = session.execute(
            text(
                "SELECT e.status, p.type, r.status, r.namespace FROM endpoints e"
                " JOIN guardrail_providers p ON p.id = :provider"
                " JOIN cluster_releases r ON r.id = e.release_id WHERE e.id = :endpoint"
            ),
            {"provider": world.provider_id, "endpoint": world.endpoint_id},
        ).one()
        assert tuple(raw) == ("running", "huggingface", "deployed", "guardrails")
        session.execute(
            update(Endpoint)
            .where(Endpoint.id == world.endpoint_id)
            .values(status=EndpointStatus.UNHEALTHY)
        )
    with session_scope() as session:
        assert session.get_one(Endpoint, world.endpoint_id).status is EndpointStatus.UNHEALTHY


# --------------------------------------------------------------------------- workflow record
def test_workflow_record_holds_the_step_data(world: World) -> None:
    execution_id = uuid.uuid4()
    endpoint_ids = [world.endpoint_id, uuid.uuid4()]
    with session_scope() as session:
        session.add(
            Execution(
                id=execution_id,
                pipeline="guardrail-deployment",
                version="1.0",
                spec={},
                engine="test",
                engine_run_id=f"guardrail-{world.tag}",
                params={"workflow_id": "x"},
                status=ExecutionStatus.FAILED,
            )
        )
        workflow = GuardrailWorkflow(
            project_id=world.project_id,
            provider_id=world.provider_id,
            current_step=12,
            model_statuses=[{"rule_id": str(world.rule_id), "status": "running"}],
            skip_to_step=9,
            pipeline_execution_id=execution_id,
            pipeline_results={"deployment_id": str(world.deployment_id)},
            recommended_clusters=[{"cluster_id": str(world.cluster_id)}],
            per_model_configs=[{"tp": 1}],
            models_to_deploy=[],
            models_to_reuse=[{"rule_id": str(world.rule_id)}],
            deployment_id=world.deployment_id,
            deployed_endpoint_ids=endpoint_ids,
        )
        session.add(workflow)
        session.flush()
        workflow_id = workflow.id
        assert workflow.status is WorkflowStatus.IN_PROGRESS
    with session_scope() as session:
        stored = session.get_one(GuardrailWorkflow, workflow_id)
        assert stored.pipeline_status is ExecutionStatus.FAILED
        assert stored.deployed_endpoint_ids == endpoint_ids
        assert stored.model_statuses == [{"rule_id": str(world.rule_id), "status": "running"}]
        # rollback removes the deployment and ops may prune executions: the record stays
        session.execute(
            delete(GuardrailDeployment).where(GuardrailDeployment.id == world.deployment_id)
        )
        session.execute(delete(Execution).where(Execution.id == execution_id))
    with session_scope() as session:
        stored = session.get_one(GuardrailWorkflow, workflow_id)
        assert stored.deployment_id is None and stored.pipeline_execution_id is None
        assert stored.pipeline_status is None
        assert stored.deployed_endpoint_ids == endpoint_ids
    refused(
        lambda s: s.execute(
            update(GuardrailWorkflow)
            .where(GuardrailWorkflow.id == workflow_id)
            .values(skip_to_step=13)
        ),
        "skip_to_step_range",
    )


# --------------------------------------------------------------------------- demo seed
DEMO_TABLES = (GuardrailProvider, GuardrailProbe, GuardrailRule, Cluster, ClusterNode)


def test_demo_seed_is_idempotent_and_keeps_onboarding_links() -> None:
    tag = uuid.uuid4().hex[:8]
    with session_scope() as session:
        first = seed_demo(session)
    with session_scope() as session:
        before = [count(session, table) for table in DEMO_TABLES]
        ids = set(session.scalars(select(GuardrailRule.id)))
        llama_guard = session.scalar(select(Model.id).where(Model.uri == LLAMA_GUARD))
        linked = set(
            session.scalars(
                select(GuardrailRule.model_id).where(GuardrailRule.model_uri == LLAMA_GUARD)
            )
        )
        assert linked == {llama_guard}
        # onboarding links Prompt Guard's rules; this stand-in model keeps the registry clean
        stand_in = Model(
            uri=f"test-guardrail/prompt-guard-{tag}",
            family="deberta-v2",
            parameter_count=279_000_000,
            num_layers=12,
            hidden_size=768,
            num_attention_heads=12,
            num_kv_heads=12,
            max_context=512,
        )
        session.add(stand_in)
        session.flush()
        stand_in_id = stand_in.id
        prompt_guard_rules = GuardrailRule.model_uri == PROMPT_GUARD
        session.execute(
            update(GuardrailRule).where(prompt_guard_rules).values(model_id=stand_in_id)
        )
    try:
        with session_scope() as session:
            again = seed_demo(session)
        with session_scope() as session:
            assert again == first
            assert [count(session, table) for table in DEMO_TABLES] == before
            assert set(session.scalars(select(GuardrailRule.id))) == ids
            kept = set(session.scalars(select(GuardrailRule.model_id).where(prompt_guard_rules)))
            assert kept == {stand_in_id}
    finally:
        with session_scope() as session:
            session.execute(update(GuardrailRule).where(prompt_guard_rules).values(model_id=None))
            session.execute(delete(Model).where(Model.id == stand_in_id))
    assert (first.providers, first.clusters, first.nodes) == (3, 2, 4)


def test_demo_clusters_use_the_hardware_catalog() -> None:
    with session_scope() as session:
        seed_demo(session)
        rows = session.execute(
            select(Cluster.name, ClusterNode.name, HardwareConfig.name, ClusterNode.count)
            .join(ClusterNode.cluster)
            .join(ClusterNode.hardware)
            .where(Cluster.name.like("demo-%"))
            .order_by(Cluster.name, ClusterNode.name)
        ).all()
        node = session.scalars(select(ClusterNode).where(ClusterNode.name == "h100-x8")).first()
        assert node is not None and node.total_devices == 16
    assert [tuple(row) for row in rows] == [
        ("demo-h100", "cpu", "xeon-8480plus-2s", 2),
        ("demo-h100", "h100-x8", "h100-sxm-80gb-x8", 2),
        ("demo-l40s", "l4-x1", "l4-24gb-x1", 4),
        ("demo-l40s", "l40s-x4", "l40s-48gb-x4", 2),
    ]
