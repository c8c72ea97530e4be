"""Seed 000's rules: the status flags table row by row, rule selection, skip logic, and
status derivation against real rows in PostgreSQL (names tagged per test)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from pydantic import ValidationError
from sqlalchemy.orm import Session

from foundryflow.guardrail.status import (
    EndpointFacts,
    GuardrailModelStatus,
    ModelDeploymentStatus,
    ProbeSelection,
    RuleCatalog,
    RuleModelRef,
    RuleSelectionError,
    WorkflowStep,
    count_models,
    derive_model_status,
    load_rule_catalog,
    plan_skips,
    query_model_statuses,
    select_rules,
)
from foundryflow.store.catalog import Model
from foundryflow.store.db import session_scope
from foundryflow.store.guardrail import (
    Cluster,
    ClusterBackendName,
    Endpoint,
    EndpointStatus,
    GuardrailProbe,
    GuardrailProvider,
    GuardrailRule,
    ProviderType,
)

S = ModelDeploymentStatus

# --------------------------------------------------------------------------- flags table
FLAGS_TABLE = [
    # status, requires_onboarding, requires_deployment, can_reuse, show_warning
    (S.NOT_ONBOARDED, True, True, False, False),
    (S.ONBOARDED, False, True, False, False),
    (S.RUNNING, False, False, True, False),
    (S.UNHEALTHY, False, False, True, True),
    (S.DEPLOYING, False, False, True, False),
    (S.PENDING, False, False, True, False),
    (S.FAILURE, False, True, False, False),
    (S.DELETING, False, True, False, False),
]
"""Seed 000, "Status Derivation" table and the flag comments of GuardrailModelStatus."""


def model_status(status: ModelDeploymentStatus, uri: str = "org/guard") -> GuardrailModelStatus:
    return GuardrailModelStatus(
        rule_id=uuid.uuid4(),
        rule_name="rule",
        probe_id=uuid.uuid4(),
        probe_name="probe",
        model_uri=uri,
        model_id=None if status is S.NOT_ONBOARDED else 1,
        status=status,
    )


@pytest.mark.parametrize(
    ("status", "requires_onboarding", "requires_deployment", "can_reuse", "show_warning"),
    FLAGS_TABLE,
    ids=[row[0].value for row in FLAGS_TABLE],
)
def test_flags_table_row(
    status: ModelDeploymentStatus,
    requires_onboarding: bool,
    requires_deployment: bool,
    can_reuse: bool,
    show_warning: bool,
) -> None:
    expected = (requires_onboarding, requires_deployment, can_reuse, show_warning)
    assert (
        status.requires_onboarding,
        status.requires_deployment,
        status.can_reuse,
        status.show_warning,
    ) == expected
    dumped = model_status(status).model_dump(mode="json")
    assert dumped["status"] == status.value
    flags = ("requires_onboarding", "requires_deployment", "can_reuse", "show_warning")
    assert tuple(dumped[flag] for flag in flags) == expected


def test_flags_table_covers_exactly_the_seed_values() -> None:
    assert [row[0] for row in FLAGS_TABLE] == list(ModelDeploymentStatus)
    assert [s.value for s in ModelDeploymentStatus] == [
        "not_onboarded",
        "onboarded",
        "running",
        "unhealthy",
        "deploying",
        "pending",
        "failure",
        "deleting",
    ]
    # the deployed statuses are the endpoint statuses, value for value
    assert {e.value for e in EndpointStatus} == {s.value for s in S} - {
        "not_onboarded",
        "onboarded",
    }


def test_stored_flags_are_recomputed_not_trusted() -> None:
    stored = model_status(S.FAILURE).model_dump(mode="json") | {"can_reuse": True}
    restored = GuardrailModelStatus.model_validate(stored)
    assert restored.status is S.FAILURE and restored.can_reuse is False
    assert restored == model_status(S.FAILURE).model_copy(
        update={"rule_id": restored.rule_id, "probe_id": restored.probe_id}
    )


# --------------------------------------------------------------------------- derivation (pure)
RULE = RuleModelRef(uuid.uuid4(), "jailbreak", uuid.uuid4(), "prompt-injection", "org/guard")
NOW = datetime(2026, 1, 28, tzinfo=UTC)


def endpoint(status: EndpointStatus, age_minutes: int = 0, name: str = "") -> EndpointFacts:
    return EndpointFacts(
        endpoint_id=uuid.uuid4(),
        name=name or f"ep-{status.value}-{age_minutes}",
        url=f"http://{status.value}.svc.cluster.local",
        status=status,
        cluster_id=uuid.uuid4(),
        cluster_name="cluster-a",
        created_at=NOW - timedelta(minutes=age_minutes),
    )


def test_not_in_registry_is_not_onboarded() -> None:
    result = derive_model_status(RULE, None, [])
    assert result.status is S.NOT_ONBOARDED and result.model_id is None
    assert result.endpoint_id is None and result.requires_onboarding


def test_in_registry_without_endpoint_is_onboarded() -> None:
    result = derive_model_status(RULE, 7, [])
    assert result.status is S.ONBOARDED and result.model_id == 7 and result.endpoint_id is None


@pytest.mark.parametrize("status", list(EndpointStatus), ids=lambda s: s.value)
def test_single_endpoint_gives_its_status_and_details(status: EndpointStatus) -> None:
    only = endpoint(status)
    result = derive_model_status(RULE, 7, [only])
    assert result.status.value == status.value
    assert (result.endpoint_id, result.endpoint_name, result.endpoint_url) == (
        only.endpoint_id,
        only.name,
        only.url,
    )
    assert (result.cluster_id, result.cluster_name) == (only.cluster_id, "cluster-a")
    assert (result.rule_id, result.probe_name, result.model_uri) == (
        RULE.rule_id,
        "prompt-injection",
        "org/guard",
    )


PREFERENCE = [
    EndpointStatus.RUNNING,
    EndpointStatus.DEPLOYING,
    EndpointStatus.PENDING,
    EndpointStatus.UNHEALTHY,
    EndpointStatus.FAILURE,
    EndpointStatus.DELETING,
]
"""Serving now, then on the way up, then unhealthy (reusable, warned), then unusable."""


@pytest.mark.parametrize(("better", "worse"), list(itertools.combinations(PREFERENCE, 2)), ids=str)
def test_the_most_usable_endpoint_speaks_for_the_model(
    better: EndpointStatus, worse: EndpointStatus
) -> None:
    for ordering in ([better, worse], [worse, better]):
        # the worse one is newer: status outranks age
        endpoints = [endpoint(s, age_minutes=0 if s is worse else 30) for s in ordering]
        assert derive_model_status(RULE, 7, endpoints).status.value == better.value


def test_among_equals_the_newest_endpoint_wins() -> None:
    old, new = (
        endpoint(EndpointStatus.RUNNING, 60, "old"),
        endpoint(EndpointStatus.RUNNING, 1, "new"),
    )
    assert derive_model_status(RULE, 7, [old, new]).endpoint_name == "new"
    assert derive_model_status(RULE, 7, [new, old]).endpoint_name == "new"


def test_endpoints_of_a_model_not_in_the_registry_are_a_contradiction() -> None:
    with pytest.raises(ValueError, match="not in the model registry"):
        derive_model_status(RULE, None, [endpoint(EndpointStatus.RUNNING)])


def test_counts_are_of_distinct_models() -> None:
    statuses = [
        model_status(S.NOT_ONBOARDED, "a/guard"),
        model_status(S.NOT_ONBOARDED, "a/guard"),  # two rules, one model
        model_status(S.FAILURE, "b/guard"),
        model_status(S.UNHEALTHY, "c/guard"),
        model_status(S.RUNNING, "d/guard"),
    ]
    counts = count_models(statuses)
    assert (counts.requiring_onboarding, counts.requiring_deployment, counts.reusable) == (1, 2, 2)


# --------------------------------------------------------------------------- rule selection
P1, P2, P3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
R1A, R1B, R1C, R2A = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
CATALOG = RuleCatalog(
    probes={P1: [R1A, R1B, R1C], P2: [R2A], P3: []},
    owners={R1A: P1, R1B: P1, R1C: P1, R2A: P2},
)


def selection(probe: UUID, rules: list[UUID] | None = None, **overrides: object) -> ProbeSelection:
    picked = None if rules is None else [{"id": str(rule)} for rule in rules]
    return ProbeSelection.model_validate({"id": str(probe), "rules": picked, **overrides})


@pytest.mark.parametrize("rules", [None, []], ids=["null", "empty"])
def test_null_or_empty_rules_enable_every_rule_of_the_probe(rules: list[UUID] | None) -> None:
    assert select_rules([selection(P1, rules)], CATALOG) == {P1: [R1A, R1B, R1C]}


def test_a_list_enables_only_those_rules_in_the_probes_order() -> None:
    chosen = select_rules([selection(P1, [R1C, R1A]), selection(P2)], CATALOG)
    assert chosen == {P1: [R1A, R1C], P2: [R2A]}
    assert list(chosen) == [P1, P2]


def test_a_probe_without_rules_enables_nothing() -> None:
    assert select_rules([selection(P3)], CATALOG) == {P3: []}


@pytest.mark.parametrize(
    ("selections", "message"),
    [
        ([], "select at least one probe"),
        ([selection(uuid.uuid4())], "does not exist or is not offered here"),
        ([selection(P1, [uuid.uuid4()])], "does not exist"),
        ([selection(P1, [R2A])], f"rule {R2A} belongs to probe {P2}, not to probe {P1}"),
        ([selection(P1, [R1A, R1A])], f"rule {R1A} is listed more than once in probe {P1}"),
        ([selection(P1), selection(P1, [R1A])], f"probe {P1} is selected more than once"),
    ],
    ids=["none", "unknown-probe", "unknown-rule", "other-probes-rule", "dup-rule", "dup-probe"],
)
def test_bad_selections_are_refused_with_a_clear_message(
    selections: list[ProbeSelection], message: str
) -> None:
    with pytest.raises(RuleSelectionError, match=message):
        select_rules(selections, CATALOG)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(RuleSelectionError) as caught:
        select_rules([selection(P1, [R2A, uuid.uuid4()]), selection(uuid.uuid4())], CATALOG)
    assert len(caught.value.problems) == 3


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "not-a-uuid"},
        {"id": str(P1), "severity_threshold": 1.5},
        {"id": str(P1), "guard_types": []},
        {"id": str(P1), "guard_types": ["sideways"]},
        {"id": str(P1), "rule": [{"id": str(R1A)}]},  # a typo must not mean "all rules"
        {"id": str(P1), "rules": [{"id": str(R1A), "status": "INACTIVE"}]},
        {"id": str(P1), "rules": [{"id": str(R1A), "severity_threshold": -0.1}]},
    ],
)
def test_malformed_selections_fail_validation(payload: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ProbeSelection.model_validate(payload)


def test_seed_shaped_selection_parses() -> None:
    parsed = ProbeSelection.model_validate(
        {
            "id": str(P1),
            "severity_threshold": 0.7,
            "guard_types": ["input"],
            "rules": [{"id": str(R1B), "status": "ACTIVE", "guard_types": ["output"]}],
        }
    )
    assert select_rules([parsed], CATALOG) == {P1: [R1B]}


# --------------------------------------------------------------------------- skip logic
def test_all_reusable_skips_to_step_9() -> None:
    plan = plan_skips([S.RUNNING, S.UNHEALTHY, S.DEPLOYING, S.PENDING])
    assert plan.skip_to_step is WorkflowStep.DEPLOYMENT_TYPE
    assert plan.skipped == {5, 6, 7, 8}
    assert not plan.credential_required
    assert plan.next_step(WorkflowStep.MODEL_STATUS) == 9


def test_one_model_to_onboard_skips_nothing() -> None:
    plan = plan_skips([S.RUNNING, S.NOT_ONBOARDED])
    assert plan.skip_to_step is None and plan.skipped == frozenset()
    assert plan.credential_required
    assert plan.next_step(WorkflowStep.MODEL_STATUS) == 5


@pytest.mark.parametrize("statuses", [[S.ONBOARDED], [S.RUNNING, S.FAILURE], [S.DELETING]])
def test_none_to_onboard_but_some_to_deploy_skips_only_step_5(
    statuses: list[ModelDeploymentStatus],
) -> None:
    plan = plan_skips(statuses)
    assert plan.skipped == {5} and plan.skip_to_step is None
    assert plan.next_step(WorkflowStep.MODEL_STATUS) == 6


@pytest.mark.parametrize(
    ("is_standalone", "skips_10"), [(True, True), (False, False), (None, False)]
)
def test_standalone_skips_step_10(is_standalone: bool | None, skips_10: bool) -> None:
    plan = plan_skips([S.RUNNING], is_standalone)
    assert (WorkflowStep.ENDPOINT_SELECTION in plan.skipped) is skips_10
    assert plan.next_step(WorkflowStep.DEPLOYMENT_TYPE) == (11 if skips_10 else 10)
    assert plan.next_step(WorkflowStep.FINAL_DEPLOYMENT) is None


def test_no_model_based_rules_skip_to_step_9() -> None:
    plan = plan_skips([], is_standalone=True)
    assert plan.skip_to_step == 9 and plan.skipped == {5, 6, 7, 8, 10}


@pytest.mark.parametrize("statuses", list(itertools.product(S, repeat=2)), ids=str)
def test_skip_rules_hold_for_every_pair_of_statuses(
    statuses: tuple[ModelDeploymentStatus, ...],
) -> None:
    plan = plan_skips(statuses)
    assert (plan.skip_to_step == 9) is all(s.can_reuse for s in statuses)
    assert (5 in plan.skipped) is not any(s.requires_onboarding for s in statuses)
    assert ({6, 7, 8} <= plan.skipped) is all(not s.requires_deployment for s in statuses)
    assert not {6, 7, 8} & plan.skipped or {6, 7, 8} <= plan.skipped
    if plan.skip_to_step is not None:  # the hint and the step list never disagree
        assert plan.next_step(WorkflowStep.MODEL_STATUS) == plan.skip_to_step


# --------------------------------------------------------------------------- against PostgreSQL
def _probe(session: Session, tag: str, name: str = "probe") -> GuardrailProbe:
    provider = GuardrailProvider(
        name=f"test-provider-{name}-{tag}", type=ProviderType.HUGGINGFACE, description="test"
    )
    probe = GuardrailProbe(provider=provider, name=f"{name}-{tag}", description="test")
    session.add(probe)
    return probe


def _rule(
    session: Session, probe: GuardrailProbe, name: str, uri: str | None = None
) -> GuardrailRule:
    rule = GuardrailRule(
        probe=probe,
        name=name,
        description="test",
        model_uri=uri,
        model_provider_type=None if uri is None else ProviderType.HUGGINGFACE,
        severity_threshold=0.5,
        guard_types=["input"],
    )
    session.add(rule)
    return rule


def _model(session: Session, uri: str) -> Model:
    # Llama Guard 3 1B's published config.json; the figures only need to be plausible here
    model = Model(
        uri=uri,
        family="llama",
        parameter_count=1_498_482_688,
        num_layers=16,
        hidden_size=2048,
        num_attention_heads=32,
        num_kv_heads=8,
        max_context=131072,
    )
    session.add(model)
    return model


def test_status_derivation_from_real_rows() -> None:
    tag = uuid.uuid4().hex[:8]
    project, other_project = uuid.uuid4(), uuid.uuid4()
    with session_scope() as session:
        probe = _probe(session, tag)
        cluster = Cluster(name=f"test-cluster-{tag}", backend=ClusterBackendName.LOCAL)
        linked_model = _model(session, f"test-guardrail/linked-{tag}")
        catalog_model = _model(session, f"test-guardrail/catalog-{tag}")
        warned_model = _model(session, f"test-guardrail/warned-{tag}")
        session.flush()
        missing = _rule(session, probe, "missing", f"test-guardrail/missing-{tag}")
        unlinked = _rule(session, probe, "unlinked", catalog_model.uri)
        linked = _rule(session, probe, "linked", linked_model.uri)
        linked.model_id = linked_model.id
        warned = _rule(session, probe, "warned", warned_model.uri)
        plain = _rule(session, probe, "plain")
        now = datetime.now(UTC)
        session.add_all(
            [
                Endpoint(
                    project_id=project,
                    name=f"linked-{tag}",
                    model=linked_model,
                    cluster=cluster,
                    url="http://linked.ns.svc.cluster.local",
                    status=EndpointStatus.RUNNING,
                ),
                # another project's endpoint never counts for this one
                Endpoint(
                    project_id=other_project,
                    name=f"catalog-{tag}",
                    model=catalog_model,
                    cluster=cluster,
                    status=EndpointStatus.RUNNING,
                ),
                Endpoint(
                    project_id=project,
                    name=f"warned-failed-{tag}",
                    model=warned_model,
                    cluster=cluster,
                    status=EndpointStatus.FAILURE,
                    created_at=now,
                ),
                Endpoint(
                    project_id=project,
                    name=f"warned-unhealthy-{tag}",
                    model=warned_model,
                    cluster=cluster,
                    status=EndpointStatus.UNHEALTHY,
                    created_at=now - timedelta(hours=1),
                ),
            ]
        )
        session.flush()
        order = [warned.id, plain.id, missing.id, linked.id, unlinked.id]
        missing_id, cluster_id = missing.id, cluster.id
        catalog_model_id, linked_model_id = catalog_model.id, linked_model.id

    with session_scope() as session:
        statuses = query_model_statuses(session, project, order)
        elsewhere = query_model_statuses(session, other_project, order)

    assert [s.rule_name for s in statuses] == ["warned", "missing", "linked", "unlinked"]
    by_rule = {s.rule_name: s for s in statuses}
    assert by_rule["missing"].status is S.NOT_ONBOARDED and by_rule["missing"].model_id is None
    assert by_rule["unlinked"].status is S.ONBOARDED
    assert by_rule["unlinked"].model_id == catalog_model_id
    running = by_rule["linked"]
    assert (running.status, running.model_id, running.cluster_id) == (
        S.RUNNING,
        linked_model_id,
        cluster_id,
    )
    assert running.endpoint_url == "http://linked.ns.svc.cluster.local"
    assert running.cluster_name == f"test-cluster-{tag}" and running.probe_name == f"probe-{tag}"
    assert by_rule["warned"].status is S.UNHEALTHY and by_rule["warned"].show_warning
    assert by_rule["warned"].endpoint_name == f"warned-unhealthy-{tag}"

    assert {s.rule_name: s.status for s in elsewhere} == {
        "warned": S.ONBOARDED,
        "missing": S.NOT_ONBOARDED,
        "linked": S.ONBOARDED,
        "unlinked": S.RUNNING,
    }
    plan = plan_skips(s.status for s in statuses)
    assert plan.credential_required and plan.skip_to_step is None

    unknown = uuid.uuid4()
    with session_scope() as session, pytest.raises(LookupError) as caught:
        query_model_statuses(session, project, [unknown, missing_id])
    assert str(caught.value) == f"unknown guardrail rules: {unknown}"


def test_rule_catalog_from_real_rows() -> None:
    tag = uuid.uuid4().hex[:8]
    with session_scope() as session:
        first, second = _probe(session, tag, "first"), _probe(session, tag, "second")
        b, a = _rule(session, first, "b"), _rule(session, first, "a")
        other = _rule(session, second, "x")
        session.flush()
        first_id, second_id, provider_id = first.id, second.id, first.provider_id
        a_id, b_id, other_id = a.id, b.id, other.id

    def choose(*selections: ProbeSelection, provider: UUID | None = None) -> dict[UUID, list[UUID]]:
        with session_scope() as session:
            return select_rules(selections, load_rule_catalog(session, selections, provider))

    assert choose(selection(first_id)) == {first_id: [a_id, b_id]}
    assert choose(selection(first_id, [b_id]), selection(second_id)) == {
        first_id: [b_id],
        second_id: [other_id],
    }
    with pytest.raises(RuleSelectionError, match=f"belongs to probe {second_id}"):
        choose(selection(first_id, [other_id]))
    # step 1 chose a provider: probes of another provider are not offered
    with pytest.raises(RuleSelectionError, match=f"probe {second_id} does not exist or is not"):
        choose(selection(first_id), selection(second_id), provider=provider_id)
