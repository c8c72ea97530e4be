"""``guardrail.build_config``: the config document gateways enforce (seed 000, step 12).

Reads the profile, its probes and enabled rules with their effective severity thresholds and
guard types (overrides applied, see :mod:`._deploy`), the deployment's targets and the URL of
the endpoint that serves each model-based rule, and returns the canonical
:class:`~foundryflow.configsync.GuardrailConfig`. Rules that inspect none of the guard types
chosen for them are left out, and so are probes left without rules.

It fails when the config could not be enforced: a model-based rule without a rule deployment,
one model served by two endpoints, or an endpoint with no URL yet (a reused endpoint that is
still pending). Read-only, hence idempotent.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import select

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.actions.guardrail._deploy import EnabledRule, enabled_rules
from foundryflow.configsync import GuardrailConfig, ModelEndpoint, ProbeConfig, RuleConfig
from foundryflow.store.guardrail import Endpoint, GuardrailDeployment, GuardrailProfile


class BuildConfigParams(ActionParams):
    deployment_id: UUID
    profile_id: UUID


class BuildConfigOutputs(ActionOutputs):
    config: dict[str, Any]


class BuildConfigError(ValueError):
    """The deployment's rules cannot be turned into an enforceable config."""


class BuildConfig(Action[BuildConfigParams, BuildConfigOutputs]):
    meta = ActionMeta(
        name="guardrail.build_config",
        description="Build the guardrail config (profile, probes, enabled rules, endpoint "
        "URLs) of a deployment.",
        idempotent=True,
    )
    Params = BuildConfigParams
    Outputs = BuildConfigOutputs

    def run(self, ctx: ActionContext, params: BuildConfigParams) -> BuildConfigOutputs:
        with ctx.session_factory() as session:
            profile = session.get(GuardrailProfile, params.profile_id)
            deployment = session.get(GuardrailDeployment, params.deployment_id)
            if profile is None:
                raise LookupError(f"guardrail profile {params.profile_id} does not exist")
            if deployment is None or deployment.profile_id != profile.id:
                raise LookupError(
                    f"guardrail deployment {params.deployment_id} of profile {profile.id} "
                    "does not exist"
                )
            applied = [rule for rule in enabled_rules(session, profile) if rule.applies]
            serving = {rd.rule_id: rd.endpoint_id for rd in deployment.rule_deployments}
            endpoints = {
                endpoint.id: endpoint
                for endpoint in session.scalars(
                    select(Endpoint).where(Endpoint.id.in_(set(serving.values()) - {None}))
                )
            }
            config = GuardrailConfig(
                profile_id=profile.id,
                profile_name=profile.name,
                project_id=profile.project_id,
                deployment_id=deployment.id,
                target_endpoint_ids=tuple(target.endpoint_id for target in deployment.targets),
                probes=_probes(applied),
                endpoints=_model_endpoints(applied, serving, endpoints),
            )
        ctx.log.info("built config %s of profile %s", config.sha256()[:12], profile.id)
        return BuildConfigOutputs(config=config.model_dump(mode="json"))


def _probes(applied: list[EnabledRule]) -> tuple[ProbeConfig, ...]:
    if not applied:
        raise BuildConfigError("no enabled rule inspects the guard types chosen for it")
    rules: dict[UUID, list[RuleConfig]] = {}
    names: dict[UUID, str] = {}
    for enabled in applied:
        names[enabled.probe.id] = enabled.probe.name
        rules.setdefault(enabled.probe.id, []).append(
            RuleConfig(
                rule_id=enabled.rule.id,
                rule_name=enabled.rule.name,
                severity_threshold=enabled.severity_threshold,
                guard_types=enabled.guard_types,
                model_uri=enabled.rule.model_uri,
            )
        )
    return tuple(
        ProbeConfig(probe_id=probe_id, probe_name=names[probe_id], rules=tuple(probe_rules))
        for probe_id, probe_rules in rules.items()
    )


def _model_endpoints(
    applied: list[EnabledRule],
    serving: dict[UUID, UUID | None],
    endpoints: dict[UUID, Endpoint],
) -> dict[str, ModelEndpoint]:
    """Model URI -> the one endpoint serving it, for the models of the applied rules."""
    found: dict[str, ModelEndpoint] = {}
    for enabled in applied:
        uri = enabled.rule.model_uri
        if uri is None:
            continue
        endpoint_id = serving.get(enabled.rule.id)
        endpoint = None if endpoint_id is None else endpoints.get(endpoint_id)
        if endpoint is None:
            raise BuildConfigError(
                f"rule {enabled.rule.name} ({enabled.rule.id}) needs {uri} but the deployment "
                "has no endpoint for it"
            )
        if endpoint.url is None:
            raise BuildConfigError(
                f"endpoint {endpoint.name} ({endpoint.id}) serving {uri} has no URL yet "
                f"(it is {endpoint.status.value}); deploy again once it serves"
            )
        current = found.setdefault(uri, ModelEndpoint(endpoint_id=endpoint.id, url=endpoint.url))
        if current.endpoint_id != endpoint.id:
            raise BuildConfigError(
                f"{uri} is served by two endpoints in this deployment "
                f"({current.endpoint_id} and {endpoint.id}); a config names one per model"
            )
    return found
