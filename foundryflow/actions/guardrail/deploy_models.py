"""``guardrail.deploy_models``: serve the models the profile's rules need (seed 000, step 12).

One release of ``charts/model-endpoint`` per distinct model (rules that share a model share its
endpoint), installed through the backend of the cluster chosen for it. Everything that can be
checked is checked before the first install. A batch succeeds whole or not at all (seed:
partial success is failure): when one install fails, the releases this step installed are
uninstalled, with their allocations and endpoint rows, before the step fails.

Idempotent: release names derive from model, project and execution, and an install is an
``upgrade --install``, so running the step again in the same execution converges on the same
releases and endpoints instead of adding new ones. The seed forbids retrying steps that are not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from foundryflow.actions import (
    Action,
    ActionContext,
    ActionMeta,
    ActionOutputs,
    ActionParams,
    ExecutionMode,
)
from foundryflow.actions.guardrail._deploy import (
    CHART,
    EXECUTION_ANNOTATION,
    DeployedModel,
    ReleaseRef,
    project_namespace,
    release_name,
    remove_release,
)
from foundryflow.cluster.backends import backend_for
from foundryflow.cluster.base import Endpoint as ServiceEndpoint
from foundryflow.cluster.base import ReleaseSpec, ReleaseStatus
from foundryflow.cluster.local import HARDWARE_LABEL, NODE_POOL_LABEL, PROJECT_ANNOTATION
from foundryflow.store.catalog import Model
from foundryflow.store.guardrail import (
    Cluster,
    ClusterRelease,
    Endpoint,
    EndpointStatus,
    GuardrailRule,
)

CREATED_BY_ANNOTATION = "foundryflow.io/created-by"


class DeploymentConfig(BaseModel):
    """How one model is served, as cluster recommendation (step 8) chose it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tp: int = Field(default=1, ge=1, le=8, description="Tensor-parallel GPUs per replica.")
    replicas: int = Field(default=1, ge=1)
    node_pool: str | None = Field(default=None, description="Node pool of the cluster to use.")
    hardware: str | None = Field(default=None, description="Hardware catalog name to use.")
    max_model_len: int | None = Field(default=None, ge=1, description="None: chart default.")


class ModelToDeploy(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    rule_id: UUID
    model_id: int
    cluster_id: UUID
    deployment_config: DeploymentConfig


class DeployModelsParams(ActionParams):
    models: list[ModelToDeploy]
    user_id: str = Field(min_length=1, max_length=100)
    project_id: UUID
    callback_topics: list[str] | None = Field(
        default=None,
        description="Accepted as the seed passes it; events go to the execution's topics, "
        "which the pipeline sets from the same parameter.",
    )


class DeployModelsOutputs(ActionOutputs):
    results: list[DeployedModel]
    endpoint_ids: list[UUID]
    endpoint_urls: list[str]


class DeployModelsError(RuntimeError):
    """One model of the batch could not be deployed; the others were taken down again."""


@dataclass
class _Plan:
    """One release to install and the entries (rules) it serves."""

    model_uri: str
    cluster_name: str
    spec: ReleaseSpec
    ref: ReleaseRef
    entries: list[ModelToDeploy] = field(default_factory=list)


class DeployModels(Action[DeployModelsParams, DeployModelsOutputs]):
    meta = ActionMeta(
        name="guardrail.deploy_models",
        description="Install one model-endpoint release per model on its cluster and record "
        "its endpoint; all or nothing.",
        execution_mode=ExecutionMode.EVENT_DRIVEN,
        idempotent=True,
    )
    Params = DeployModelsParams
    Outputs = DeployModelsOutputs

    def run(self, ctx: ActionContext, params: DeployModelsParams) -> DeployModelsOutputs:
        with ctx.session_factory() as session:
            plans = _plan(session, params, ctx.execution_id)
        attempted: list[_Plan] = []
        results: list[DeployedModel] = []
        try:
            for plan in plans:
                attempted.append(plan)  # a failed install may leave parts: uninstall it too
                results += self._deploy(ctx, params, plan)
        except BaseException as exc:
            cleanup = _take_down(ctx, attempted)
            if not isinstance(exc, Exception):
                raise
            failed = attempted[-1]
            raise DeployModelsError(
                f"model {failed.model_uri} (release {failed.ref}, cluster "
                f"{failed.cluster_name!r}) failed: {exc}; {cleanup}"
            ) from exc
        endpoints = list(dict.fromkeys((r.endpoint_id, r.endpoint_url) for r in results))
        return DeployModelsOutputs(
            results=results,
            endpoint_ids=[endpoint_id for endpoint_id, _ in endpoints],
            endpoint_urls=[url for _, url in endpoints],
        )

    def _deploy(
        self, ctx: ActionContext, params: DeployModelsParams, plan: _Plan
    ) -> list[DeployedModel]:
        backend = backend_for(plan.ref.cluster_id)
        status = backend.install(plan.spec)
        found = backend.endpoints(plan.ref.name, plan.ref.namespace)
        with ctx.session_factory() as session, session.begin():
            endpoint = _endpoint_row(session, params, plan, status, found)
            endpoint_id, url = endpoint.id, endpoint.url
        if url is None:
            raise DeployModelsError(f"release {plan.ref} reports no URL for its endpoint")
        ctx.log.info("deployed %s as %s: %s", plan.model_uri, plan.ref, url)
        ctx.publish(
            "endpoint_deployed",
            {"model_uri": plan.model_uri, "endpoint_id": str(endpoint_id), "url": url},
        )
        return [
            DeployedModel(
                rule_id=entry.rule_id,
                model_id=entry.model_id,
                endpoint_id=endpoint_id,
                endpoint_url=url,
                release=plan.ref.name,
                cluster_id=plan.ref.cluster_id,
            )
            for entry in plan.entries
        ]


def _plan(session: Session, params: DeployModelsParams, execution_id: UUID) -> list[_Plan]:
    """Releases to install, one per model, after checking every entry; raises before any
    install if a model, rule or cluster is unknown or a model's entries disagree."""
    model_ids = {entry.model_id for entry in params.models}
    uris = dict(session.execute(select(Model.id, Model.uri).where(Model.id.in_(model_ids))).all())
    rules = dict(
        session.execute(
            select(GuardrailRule.id, GuardrailRule.model_uri).where(
                GuardrailRule.id.in_({entry.rule_id for entry in params.models})
            )
        ).all()
    )
    clusters = {
        cluster.id: cluster
        for cluster in session.scalars(
            select(Cluster).where(Cluster.id.in_({entry.cluster_id for entry in params.models}))
        )
    }
    problems: list[str] = []
    plans: dict[int, _Plan] = {}
    for entry in params.models:
        uri, cluster = uris.get(entry.model_id), clusters.get(entry.cluster_id)
        if uri is None:
            problems.append(f"model {entry.model_id} is not in the registry (onboard it first)")
        elif entry.rule_id not in rules:
            problems.append(f"rule {entry.rule_id} does not exist")
        elif rules[entry.rule_id] != uri:
            problems.append(f"rule {entry.rule_id} does not use model {uri}")
        elif cluster is None:
            problems.append(f"cluster {entry.cluster_id} does not exist")
        elif (plan := plans.get(entry.model_id)) is None:
            plans[entry.model_id] = _new_plan(params, entry, uri, cluster, execution_id)
        elif plan.entries[0].cluster_id != entry.cluster_id:
            problems.append(f"model {uri} is to be deployed to two clusters; choose one")
        elif plan.entries[0].deployment_config != entry.deployment_config:
            problems.append(f"model {uri} is given two different deployment configs")
        else:
            plan.entries.append(entry)
    if problems:
        raise ValueError("cannot deploy the models: " + "; ".join(problems))
    return list(plans.values())


def _new_plan(
    params: DeployModelsParams,
    entry: ModelToDeploy,
    uri: str,
    cluster: Cluster,
    execution_id: UUID,
) -> _Plan:
    config = entry.deployment_config
    model_values: dict[str, JsonValue] = {"name": uri, "tensorParallelSize": config.tp}
    if config.max_model_len is not None:
        model_values["maxModelLen"] = config.max_model_len
    selector: dict[str, JsonValue] = {
        label: value
        for label, value in ((NODE_POOL_LABEL, config.node_pool), (HARDWARE_LABEL, config.hardware))
        if value is not None
    }
    spec = ReleaseSpec(
        name=release_name(uri, params.project_id, execution_id),
        namespace=project_namespace(params.project_id),
        chart=CHART,
        values={
            "replicaCount": config.replicas,
            "model": model_values,
            "nodeSelector": selector,
            "podAnnotations": {
                PROJECT_ANNOTATION: str(params.project_id),
                EXECUTION_ANNOTATION: str(execution_id),
                CREATED_BY_ANNOTATION: params.user_id,
            },
        },
        kubeconfig_conn_id=cluster.kubeconfig_conn_id,
    )
    ref = ReleaseRef(cluster.id, spec.namespace, spec.name)
    return _Plan(uri, cluster.name, spec, ref, [entry])


def _endpoint_row(
    session: Session,
    params: DeployModelsParams,
    plan: _Plan,
    status: ReleaseStatus,
    found: list[ServiceEndpoint],
) -> Endpoint:
    """The release's endpoint row: the local backend records its own; for a backend that
    keeps no inventory (helm) the release and endpoint rows are written here, which is also
    what rollback later finds and uninstalls."""
    release = session.scalars(
        select(ClusterRelease).where(
            ClusterRelease.cluster_id == plan.ref.cluster_id,
            ClusterRelease.namespace == plan.ref.namespace,
            ClusterRelease.name == plan.ref.name,
        )
    ).one_or_none()
    if release is None:
        release = ClusterRelease(
            cluster_id=plan.ref.cluster_id,
            name=plan.ref.name,
            namespace=plan.ref.namespace,
            chart=plan.spec.chart,
            values=dict(plan.spec.values),
            revision=status.revision,
            status=status.state,
        )
        session.add(release)
        session.flush()
    rows = list(session.scalars(select(Endpoint).where(Endpoint.release_id == release.id)))
    if not rows:
        rows = [
            Endpoint(
                project_id=params.project_id,
                name=_endpoint_name(service),
                model_id=plan.entries[0].model_id,
                cluster_id=plan.ref.cluster_id,
                release_id=release.id,
                url=service.url,
                status=EndpointStatus.RUNNING if status.deployed else EndpointStatus.DEPLOYING,
            )
            for service in found
        ]
        session.add_all(rows)
        session.flush()
    if len(rows) != 1:
        raise DeployModelsError(
            f"release {plan.ref} exposes {len(rows)} endpoints; a model endpoint has exactly one"
        )
    return rows[0]


def _endpoint_name(service: ServiceEndpoint) -> str:
    """As the local backend names endpoint rows: the Service, plus its port's name if any."""
    return service.name if service.port_name is None else f"{service.name}-{service.port_name}"


def _take_down(ctx: ActionContext, plans: list[_Plan]) -> str:
    """Uninstall what this step started, newest first (the failed release too: an install may
    fail half-way); says what happened, for the error message."""
    failures = []
    for plan in reversed(plans):
        try:
            remove_release(ctx.session_factory, plan.ref)
        except Exception as exc:  # keep going: every release left behind is one too many
            failures.append(f"{plan.ref}: {exc}")
    if failures:
        return "could not uninstall (rollback retries them): " + "; ".join(failures)
    installed = [plan.ref.name for plan in plans[:-1]]
    if not installed:
        return "nothing had been installed before it"
    return f"uninstalled what had been installed before it: {', '.join(installed)}"
