"""The rules of seed 000, exactly: a model's deployment status and its derived flags,
which rules a probe selection enables, and which workflow steps are skipped.

Each rule is a pure function over plain data so it can be tested row by row; the two
query functions at the end only gather the facts from PostgreSQL and hand them over.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, computed_field
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from foundryflow.store.catalog import Model
from foundryflow.store.guardrail import (
    Cluster,
    Endpoint,
    EndpointStatus,
    GuardrailProbe,
    GuardrailRule,
    GuardType,
)


# --------------------------------------------------------------------------- model status
class ModelDeploymentStatus(StrEnum):
    """Where a rule's model stands for a project; the deployed values are the endpoint's."""

    NOT_ONBOARDED = "not_onboarded"
    ONBOARDED = "onboarded"
    """Onboarded but not deployed for this project."""
    RUNNING = "running"
    UNHEALTHY = "unhealthy"
    DEPLOYING = "deploying"
    PENDING = "pending"
    FAILURE = "failure"
    DELETING = "deleting"

    @property
    def requires_onboarding(self) -> bool:
        return self is ModelDeploymentStatus.NOT_ONBOARDED

    @property
    def requires_deployment(self) -> bool:
        return self in _REQUIRES_DEPLOYMENT

    @property
    def can_reuse(self) -> bool:
        """Seed decisions H1 (auto-reuse) and I1 (unhealthy is reusable, with a warning)."""
        return self in _CAN_REUSE

    @property
    def show_warning(self) -> bool:
        return self is ModelDeploymentStatus.UNHEALTHY


_REQUIRES_DEPLOYMENT = frozenset(
    {
        ModelDeploymentStatus.NOT_ONBOARDED,
        ModelDeploymentStatus.ONBOARDED,
        ModelDeploymentStatus.FAILURE,
        ModelDeploymentStatus.DELETING,
    }
)
_CAN_REUSE = frozenset(
    {
        ModelDeploymentStatus.RUNNING,
        ModelDeploymentStatus.UNHEALTHY,
        ModelDeploymentStatus.DEPLOYING,
        ModelDeploymentStatus.PENDING,
    }
)


class GuardrailModelStatus(BaseModel):
    """Status of a model required by a guardrail rule (seed 000's schema).

    ``model_id`` is the catalog's integer id (the registry is the ``models`` table). The
    flags are computed from ``status``, so a stored or sent status can never disagree with
    them; they are serialised for the UI and ignored when a dump is read back.
    """

    model_config = ConfigDict(from_attributes=True, frozen=True, protected_namespaces=())

    rule_id: UUID
    rule_name: str
    probe_id: UUID
    probe_name: str

    model_uri: str
    model_id: int | None

    status: ModelDeploymentStatus

    endpoint_id: UUID | None = None
    endpoint_name: str | None = None
    endpoint_url: str | None = None
    cluster_id: UUID | None = None
    cluster_name: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def requires_onboarding(self) -> bool:
        return self.status.requires_onboarding

    @computed_field  # type: ignore[prop-decorator]
    @property
    def requires_deployment(self) -> bool:
        return self.status.requires_deployment

    @computed_field  # type: ignore[prop-decorator]
    @property
    def can_reuse(self) -> bool:
        return self.status.can_reuse

    @computed_field  # type: ignore[prop-decorator]
    @property
    def show_warning(self) -> bool:
        return self.status.show_warning


@dataclass(frozen=True)
class RuleModelRef:
    """A model-based rule, as status derivation needs it."""

    rule_id: UUID
    rule_name: str
    probe_id: UUID
    probe_name: str
    model_uri: str


@dataclass(frozen=True)
class EndpointFacts:
    """An endpoint of the rule's model in the project."""

    endpoint_id: UUID
    name: str
    url: str | None
    status: EndpointStatus
    cluster_id: UUID
    cluster_name: str
    created_at: datetime


_ENDPOINT_PREFERENCE = (
    EndpointStatus.RUNNING,
    EndpointStatus.DEPLOYING,
    EndpointStatus.PENDING,
    EndpointStatus.UNHEALTHY,
    EndpointStatus.FAILURE,
    EndpointStatus.DELETING,
)
"""Which endpoint speaks for a model when a project has several: the one that serves now,
then the ones on their way up, then the unhealthy one (reusable, with a warning); a failed
or dying endpoint only when there is nothing else."""


def _preferred(endpoints: Sequence[EndpointFacts]) -> EndpointFacts:
    """By status preference, then the newest, then by id so the choice is deterministic."""
    return min(
        endpoints,
        key=lambda e: (
            _ENDPOINT_PREFERENCE.index(e.status),
            -e.created_at.timestamp(),
            e.endpoint_id.hex,
        ),
    )


def derive_model_status(
    rule: RuleModelRef, model_id: int | None, endpoints: Sequence[EndpointFacts]
) -> GuardrailModelStatus:
    """Not in the registry -> not_onboarded; in it without an endpoint in the project ->
    onboarded; otherwise the status of the endpoint that speaks for the model."""
    if model_id is None and endpoints:
        raise ValueError(f"{rule.model_uri} has endpoints but is not in the model registry")
    endpoint = _preferred(endpoints) if endpoints else None
    if model_id is None:
        status = ModelDeploymentStatus.NOT_ONBOARDED
    elif endpoint is None:
        status = ModelDeploymentStatus.ONBOARDED
    else:
        status = ModelDeploymentStatus(endpoint.status.value)
    return GuardrailModelStatus(
        rule_id=rule.rule_id,
        rule_name=rule.rule_name,
        probe_id=rule.probe_id,
        probe_name=rule.probe_name,
        model_uri=rule.model_uri,
        model_id=model_id,
        status=status,
        endpoint_id=None if endpoint is None else endpoint.endpoint_id,
        endpoint_name=None if endpoint is None else endpoint.name,
        endpoint_url=None if endpoint is None else endpoint.url,
        cluster_id=None if endpoint is None else endpoint.cluster_id,
        cluster_name=None if endpoint is None else endpoint.cluster_name,
    )


@dataclass(frozen=True)
class ModelCounts:
    """The seed's ``models_requiring_onboarding`` / ``_deployment`` / ``models_reusable``:
    distinct models, since several rules may need the same one."""

    requiring_onboarding: int
    requiring_deployment: int
    reusable: int


def count_models(statuses: Iterable[GuardrailModelStatus]) -> ModelCounts:
    onboarding: set[str] = set()
    deployment: set[str] = set()
    reusable: set[str] = set()
    for status in statuses:
        for wanted, uris in (
            (status.requires_onboarding, onboarding),
            (status.requires_deployment, deployment),
            (status.can_reuse, reusable),
        ):
            if wanted:
                uris.add(status.model_uri)
    return ModelCounts(len(onboarding), len(deployment), len(reusable))


# --------------------------------------------------------------------------- rule selection
class RuleSelection(BaseModel):
    """A rule picked in a probe selection, with optional overrides (seed step 3)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: UUID
    status: Literal["ACTIVE"] = "ACTIVE"
    severity_threshold: float | None = Field(default=None, ge=0, le=1)
    guard_types: list[GuardType] | None = Field(default=None, min_length=1)


class ProbeSelection(BaseModel):
    """A probe picked in step 3. ``rules`` null or empty enables every rule of the probe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: UUID
    severity_threshold: float | None = Field(default=None, ge=0, le=1)
    guard_types: list[GuardType] | None = Field(default=None, min_length=1)
    rules: list[RuleSelection] | None = None


@dataclass(frozen=True)
class RuleCatalog:
    """What a selection is checked against."""

    probes: Mapping[UUID, Sequence[UUID]]
    """The probes that may be selected, each with its rule ids in display order."""
    owners: Mapping[UUID, UUID]
    """Every rule the selection names that exists, with its probe (for the error message)."""


class RuleSelectionError(ValueError):
    """Every problem of a selection at once, so a user can fix them in one go."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid probe selection: " + "; ".join(self.problems))


def select_rules(
    selections: Sequence[ProbeSelection], catalog: RuleCatalog
) -> dict[UUID, list[UUID]]:
    """Probe id -> enabled rule ids (in the probe's order), in selection order.

    ``rules`` null or ``[]`` enables all rules of the probe; a list enables only those.
    Unknown probes, unknown rules, rules of another probe and duplicates are errors.
    """
    problems: list[str] = []
    if not selections:
        problems.append("select at least one probe")
    enabled: dict[UUID, list[UUID]] = {}
    for selection in selections:
        if selection.id in enabled:
            problems.append(f"probe {selection.id} is selected more than once")
            continue
        probe_rules = catalog.probes.get(selection.id)
        if probe_rules is None:
            problems.append(f"probe {selection.id} does not exist or is not offered here")
            continue
        if not selection.rules:
            enabled[selection.id] = list(probe_rules)
            continue
        wanted: set[UUID] = set()
        for rule in selection.rules:
            owner = catalog.owners.get(rule.id)
            if rule.id in wanted:
                problems.append(f"rule {rule.id} is listed more than once in probe {selection.id}")
            elif owner is None:
                problems.append(f"rule {rule.id} does not exist")
            elif owner != selection.id:
                problems.append(
                    f"rule {rule.id} belongs to probe {owner}, not to probe {selection.id}"
                )
            wanted.add(rule.id)
        enabled[selection.id] = [rule_id for rule_id in probe_rules if rule_id in wanted]
    if problems:
        raise RuleSelectionError(problems)
    return enabled


# --------------------------------------------------------------------------- skip logic
class WorkflowStep(IntEnum):
    """The 12 steps of the revised ordering in seed 000."""

    PROVIDER = 1
    PROJECT = 2
    PROBES = 3
    MODEL_STATUS = 4
    CREDENTIALS_ONBOARDING = 5
    HARDWARE_MODE = 6
    DEPLOYMENT_SPECS = 7
    CLUSTER_RECOMMENDATION = 8
    DEPLOYMENT_TYPE = 9
    ENDPOINT_SELECTION = 10
    PROFILE_SETTINGS = 11
    FINAL_DEPLOYMENT = 12


_DEPLOYMENT_STEPS = frozenset(
    {
        WorkflowStep.HARDWARE_MODE,
        WorkflowStep.DEPLOYMENT_SPECS,
        WorkflowStep.CLUSTER_RECOMMENDATION,
    }
)


@dataclass(frozen=True)
class SkipPlan:
    skipped: frozenset[WorkflowStep]
    skip_to_step: WorkflowStep | None
    """Recorded at step 4: step 9 when every model can be reused, else None (seed)."""

    @property
    def credential_required(self) -> bool:
        return WorkflowStep.CREDENTIALS_ONBOARDING not in self.skipped

    def next_step(self, current: WorkflowStep) -> WorkflowStep | None:
        """The step after ``current`` that is not skipped; None after the last."""
        return next((s for s in WorkflowStep if s > current and s not in self.skipped), None)


def plan_skips(
    statuses: Iterable[ModelDeploymentStatus], is_standalone: bool | None = None
) -> SkipPlan:
    """Seed 000's skip logic over the statuses of the enabled rules' models.

    All reusable -> skip to step 9; none to onboard -> skip 5; all deployed -> skip 6-8;
    standalone -> skip 10 (``None``: not chosen yet, step 9 comes later). No model-based
    rule at all means nothing to onboard or deploy, so that skips to step 9 too.
    """
    statuses = list(statuses)
    skipped: set[WorkflowStep] = set()
    if not any(status.requires_onboarding for status in statuses):
        skipped.add(WorkflowStep.CREDENTIALS_ONBOARDING)
    if not any(status.requires_deployment for status in statuses):
        skipped |= _DEPLOYMENT_STEPS
    if is_standalone:
        skipped.add(WorkflowStep.ENDPOINT_SELECTION)
    all_reusable = all(status.can_reuse for status in statuses)
    return SkipPlan(
        skipped=frozenset(skipped),
        skip_to_step=WorkflowStep.DEPLOYMENT_TYPE if all_reusable else None,
    )


# --------------------------------------------------------------------------- queries
def load_rule_catalog(
    session: Session, selections: Sequence[ProbeSelection], provider_id: UUID | None = None
) -> RuleCatalog:
    """The facts :func:`select_rules` checks a selection against; with ``provider_id``,
    only that provider's probes may be selected (step 1 filters the probes)."""
    probe_ids = [selection.id for selection in selections]
    named = [rule.id for selection in selections for rule in selection.rules or ()]
    probes_query = select(GuardrailProbe.id).where(GuardrailProbe.id.in_(probe_ids))
    if provider_id is not None:
        probes_query = probes_query.where(GuardrailProbe.provider_id == provider_id)
    probes: dict[UUID, list[UUID]] = {probe_id: [] for probe_id in session.scalars(probes_query)}
    owners: dict[UUID, UUID] = {}
    rows = session.execute(
        select(GuardrailRule.id, GuardrailRule.probe_id)
        .where(or_(GuardrailRule.probe_id.in_(probes), GuardrailRule.id.in_(named)))
        .order_by(GuardrailRule.name, GuardrailRule.id)
    )
    for rule_id, probe_id in rows:
        if probe_id in probes:
            probes[probe_id].append(rule_id)
        owners[rule_id] = probe_id
    return RuleCatalog(probes=probes, owners=owners)


def query_model_statuses(
    session: Session, project_id: UUID, rule_ids: Iterable[UUID]
) -> list[GuardrailModelStatus]:
    """Status of each model-based rule among ``rule_ids`` (in their order) for a project.

    A model is in the registry when the rule links it (``model_id``) or a ``models`` row
    has its uri, e.g. from the catalog seed before any rule was linked.
    """
    wanted = list(dict.fromkeys(rule_ids))
    found = {
        rule.id: (rule, probe_name)
        for rule, probe_name in session.execute(
            select(GuardrailRule, GuardrailProbe.name)
            .join(GuardrailRule.probe)
            .where(GuardrailRule.id.in_(wanted))
        ).tuples()
    }
    if missing := [str(rule_id) for rule_id in wanted if rule_id not in found]:
        raise LookupError(f"unknown guardrail rules: {', '.join(missing)}")
    refs: list[tuple[RuleModelRef, int | None]] = [
        (RuleModelRef(rule.id, rule.name, rule.probe_id, probe_name, rule.model_uri), rule.model_id)
        for rule, probe_name in (found[rule_id] for rule_id in wanted)
        if rule.model_uri is not None
    ]
    unlinked = {ref.model_uri for ref, linked in refs if linked is None}
    registry = dict(
        session.execute(select(Model.uri, Model.id).where(Model.uri.in_(unlinked))).all()
    )
    model_ids = [
        (ref, linked if linked is not None else registry.get(ref.model_uri)) for ref, linked in refs
    ]
    endpoints: dict[int, list[EndpointFacts]] = {}
    rows = session.execute(
        select(Endpoint, Cluster.name)
        .join(Endpoint.cluster)
        .where(
            Endpoint.project_id == project_id,
            Endpoint.model_id.in_({model_id for _, model_id in model_ids if model_id is not None}),
        )
    ).tuples()
    for endpoint, cluster_name in rows:
        endpoints.setdefault(endpoint.model_id, []).append(
            EndpointFacts(
                endpoint_id=endpoint.id,
                name=endpoint.name,
                url=endpoint.url,
                status=endpoint.status,
                cluster_id=endpoint.cluster_id,
                cluster_name=cluster_name,
                created_at=endpoint.created_at,
            )
        )
    return [
        derive_model_status(ref, model_id, [] if model_id is None else endpoints.get(model_id, []))
        for ref, model_id in model_ids
    ]
