"""What the deployment actions of seed 000's pipeline 3 share: the result of a deployed model
(deploy_models' output, create_deployment's input), release naming, the effective settings of
a profile's rules, and removing a release with the rows that describe it.

Effective rule settings, used by create_profile (to refuse a selection that enforces nothing),
create_deployment and build_config, so all three agree:

- severity threshold: the most specific level that sets one wins (rule selection, then probe
  selection, then the profile, whose value is required);
- guard types: chosen the same way, then limited to what the rule inspects (its own guard
  types). A prompt-only rule in a profile that guards replies does not apply; it stays
  selected but the gateway config leaves it out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete
from sqlalchemy.orm import Session

from foundryflow.cluster.backends import backend_for
from foundryflow.cluster.base import RELEASE_NAME_MAX
from foundryflow.configsync import GuardrailConfigStore
from foundryflow.store.guardrail import (
    ClusterRelease,
    GuardrailProbe,
    GuardrailProfile,
    GuardrailRule,
    GuardType,
)
from foundryflow.store.redis_client import RedisNotConfiguredError, get_redis

CHART = "model-endpoint"
EXECUTION_ANNOTATION = "foundryflow.io/execution"
"""Pod annotation naming the execution that installed a release: rollback finds by it what a
deploy step installed even when the step recorded no outputs (killed, or its cleanup failed)."""
RELEASE_PREFIX = "gr-"
HASH_CHARS = 10
"""40 bits of SHA-256: collisions among one project's guardrail releases are not a concern."""


class DeployedModel(BaseModel):
    """One entry of ``models_to_deploy`` once deployed; rules sharing a model share its endpoint."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    rule_id: UUID
    model_id: int
    endpoint_id: UUID
    endpoint_url: str
    release: str
    cluster_id: UUID


def config_store() -> GuardrailConfigStore:
    """The guardrail config store on ``FOUNDRYFLOW_REDIS_URL`` (the events' Redis too)."""
    try:
        return GuardrailConfigStore(get_redis())
    except RedisNotConfiguredError as exc:
        raise RuntimeError(f"{exc}: guardrail configs live in Redis") from None


def project_namespace(project_id: UUID) -> str:
    """One namespace per project: its guard models are uninstalled and inspected together."""
    return f"guardrail-{project_id}"


def release_name(model_uri: str, project_id: UUID, execution_id: UUID) -> str:
    """``gr-<model slug>-<hash>``: readable, a DNS-1123 label within Helm's 53 characters,
    and the same for a retry of the step (same execution) but new for a new run."""
    digest = hashlib.sha256(f"{model_uri}\n{project_id}\n{execution_id}".encode()).hexdigest()
    room = RELEASE_NAME_MAX - len(RELEASE_PREFIX) - 1 - HASH_CHARS
    slug = re.sub(r"[^a-z0-9]+", "-", model_uri.rsplit("/", 1)[-1].lower())
    slug = slug[:room].strip("-") or "model"
    return f"{RELEASE_PREFIX}{slug}-{digest[:HASH_CHARS]}"


# --------------------------------------------------------------------------- rule settings
@dataclass(frozen=True)
class Override:
    """Severity threshold and guard types set at one level; None: not set there."""

    severity_threshold: float | None
    guard_types: Sequence[str] | None


def resolve(
    rule_guard_types: Iterable[str],
    profile_severity: float,
    profile_guard_types: Sequence[str],
    overrides: Sequence[Override],
) -> tuple[float, tuple[GuardType, ...]]:
    """A rule's effective severity threshold and guard types (module docstring);
    ``overrides`` from the general to the specific level."""
    severity, wanted = profile_severity, profile_guard_types
    for level in overrides:
        if level.severity_threshold is not None:
            severity = level.severity_threshold
        if level.guard_types is not None:
            wanted = level.guard_types
    inspected = set(rule_guard_types)
    return severity, tuple(GuardType(t) for t in sorted(set(wanted)) if t in inspected)


@dataclass(frozen=True)
class EnabledRule:
    """A rule a profile enables, with its effective settings."""

    probe: GuardrailProbe
    rule: GuardrailRule
    severity_threshold: float
    guard_types: tuple[GuardType, ...]

    @property
    def applies(self) -> bool:
        """False when the rule inspects none of the guard types chosen for it."""
        return bool(self.guard_types)


def enabled_rules(session: Session, profile: GuardrailProfile) -> list[EnabledRule]:
    """Every rule the profile's selections enable (no rule picked: all rules of the probe)."""
    enabled: list[EnabledRule] = []
    for selection in profile.probe_selections:
        probe = session.get_one(GuardrailProbe, selection.probe_id)
        picked = {choice.rule_id: choice for choice in selection.rules}
        probe_level = Override(selection.severity_threshold, selection.guard_types)
        for rule in probe.rules:
            if picked and rule.id not in picked:
                continue
            overrides = [probe_level]
            if choice := picked.get(rule.id):
                overrides.append(Override(choice.severity_threshold, choice.guard_types))
            severity, guard_types = resolve(
                rule.guard_types, profile.severity_threshold, profile.guard_types, overrides
            )
            enabled.append(EnabledRule(probe, rule, severity, guard_types))
    return enabled


# --------------------------------------------------------------------------- releases
@dataclass(frozen=True)
class ReleaseRef:
    cluster_id: UUID
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def remove_release(sessions: Callable[[], Session], release: ReleaseRef) -> None:
    """Uninstall through the cluster's backend, then drop the inventory row if the backend
    keeps none of its own (helm): its allocations and endpoint rows go with it."""
    backend_for(release.cluster_id).uninstall(release.name, release.namespace)
    with sessions() as session, session.begin():
        session.execute(
            delete(ClusterRelease).where(
                ClusterRelease.cluster_id == release.cluster_id,
                ClusterRelease.namespace == release.namespace,
                ClusterRelease.name == release.name,
            )
        )
