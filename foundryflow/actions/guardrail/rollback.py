"""``guardrail.rollback``: undo a failed deployment run, except the onboarded models (seed J2).

Runs in the closing phase of the pipeline when the execution failed, and removes, in the
order the foreign keys allow:

1. the profile's config in Redis (config, history, a ``deleted`` change notification);
2. the deployment (its targets and rule deployments cascade), and any other deployment of
   the profile, which can only be this run's since the profile is;
3. the profile (its probe and rule selections cascade);
4. the releases of the endpoints deploy_models created, through the cluster's backend
   (allocations and endpoint rows go with them), plus any release annotated with this
   execution, which catches a deploy step killed mid-batch or whose own cleanup failed;
5. then marks the workflow record FAILED with the reason.

``workflow_id`` is the id of the ``guardrail_workflows`` row that started the run; when it
is not a UUID or no such row exists there is no record to mark, and that part is skipped.
Models, rule links and reused endpoints are never touched.

Every part may find nothing (the run failed before creating it) and every part is tried even
if an earlier one failed, since leaving more behind is worse than reporting one failure; the
step fails afterwards if any part did. Running it again finishes what is left: idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TypeVar
from uuid import UUID

from pydantic import Field
from sqlalchemy import delete, or_, select

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.actions.guardrail._deploy import (
    EXECUTION_ANNOTATION,
    ReleaseRef,
    config_store,
    remove_release,
)
from foundryflow.store.guardrail import (
    ClusterRelease,
    Endpoint,
    GuardrailDeployment,
    GuardrailProfile,
    GuardrailWorkflow,
    WorkflowStatus,
)

T = TypeVar("T")


class RollbackParams(ActionParams):
    workflow_id: str = Field(min_length=1)
    profile_id: UUID | None = None
    deployment_id: UUID | None = None
    deployed_endpoint_ids: list[UUID] = Field(default_factory=list)
    reason: str = ""


class RollbackOutputs(ActionOutputs):
    redis_config_deleted: bool
    deployment_ids: list[UUID]
    profile_deleted: bool
    releases_uninstalled: list[str]
    endpoint_ids: list[UUID]
    workflow_marked_failed: bool


class RollbackIncompleteError(RuntimeError):
    """Some parts could not be removed; the others were."""


class Rollback(Action[RollbackParams, RollbackOutputs]):
    meta = ActionMeta(
        name="guardrail.rollback",
        description="Remove the Redis config, deployment, profile and deployed endpoints of "
        "a failed run (onboarded models are kept) and mark the workflow FAILED.",
        idempotent=True,
    )
    Params = RollbackParams
    Outputs = RollbackOutputs

    def run(self, ctx: ActionContext, params: RollbackParams) -> RollbackOutputs:
        problems: list[str] = []

        def attempt(part: str, default: T, work: Callable[[], T]) -> T:
            try:
                return work()
            except Exception as exc:  # go on with the other parts; reported at the end
                ctx.log.exception("rollback: %s failed", part)
                problems.append(f"{part}: {type(exc).__name__}: {exc}")
                return default

        profile_id = params.profile_id
        redis_deleted = profile_id is not None and attempt(
            "Redis config", False, lambda: config_store().delete(profile_id)
        )
        deployments: list[UUID] = attempt(
            "deployment", [], lambda: self._delete_deployments(ctx, params)
        )
        profile_deleted = attempt("profile", False, lambda: self._delete_profile(ctx, params))
        nothing: tuple[list[ReleaseRef], list[UUID]] = ([], [])
        releases, endpoints = attempt("inventory", nothing, lambda: _inventory(ctx, params))
        uninstalled = [
            str(release)
            for release in releases
            if attempt(f"release {release}", False, partial(_uninstall, ctx, release))
        ]
        attempt("endpoint rows", None, lambda: _delete_endpoints(ctx, endpoints))
        reason = params.reason
        if problems:
            reason += "; rollback incomplete: " + "; ".join(problems)
        marked = attempt("workflow record", False, lambda: self._mark(ctx, params, reason))
        if problems:
            raise RollbackIncompleteError("; ".join(problems))
        outputs = RollbackOutputs(
            redis_config_deleted=redis_deleted,
            deployment_ids=deployments,
            profile_deleted=profile_deleted,
            releases_uninstalled=uninstalled,
            endpoint_ids=endpoints,
            workflow_marked_failed=marked,
        )
        ctx.log.info("rolled back: %s", outputs.model_dump_json())
        return outputs

    def _delete_deployments(self, ctx: ActionContext, params: RollbackParams) -> list[UUID]:
        with ctx.session_factory() as session, session.begin():
            return list(
                session.scalars(
                    delete(GuardrailDeployment)
                    .where(
                        or_(
                            GuardrailDeployment.id == params.deployment_id,
                            GuardrailDeployment.profile_id == params.profile_id,
                        )
                    )
                    .returning(GuardrailDeployment.id)
                )
            )

    def _delete_profile(self, ctx: ActionContext, params: RollbackParams) -> bool:
        with ctx.session_factory() as session, session.begin():
            deleted = session.scalars(
                delete(GuardrailProfile)
                .where(GuardrailProfile.id == params.profile_id)
                .returning(GuardrailProfile.id)
            ).all()
            return bool(deleted)

    def _mark(self, ctx: ActionContext, params: RollbackParams, reason: str) -> bool:
        try:
            workflow_id = UUID(params.workflow_id)
        except ValueError:
            ctx.log.warning("workflow id %r is not a UUID: no record to mark", params.workflow_id)
            return False
        with ctx.session_factory() as session, session.begin():
            workflow = session.get(GuardrailWorkflow, workflow_id, with_for_update=True)
            if workflow is None:
                ctx.log.warning("no guardrail workflow %s: no record to mark", workflow_id)
                return False
            workflow.status = WorkflowStatus.FAILED
            workflow.error = reason
            return True


def _inventory(ctx: ActionContext, params: RollbackParams) -> tuple[list[ReleaseRef], list[UUID]]:
    """Releases to uninstall (those of the deployed endpoints and those annotated with this
    execution) and the endpoint rows that must be gone afterwards."""
    annotated = ClusterRelease.values["podAnnotations"][EXECUTION_ANNOTATION].as_string()
    deployed = Endpoint.id.in_(params.deployed_endpoint_ids)
    with ctx.session_factory() as session:
        rows = session.execute(
            select(
                ClusterRelease.id,
                ClusterRelease.cluster_id,
                ClusterRelease.namespace,
                ClusterRelease.name,
            ).where(
                or_(
                    annotated == str(ctx.execution_id),
                    ClusterRelease.id.in_(select(Endpoint.release_id).where(deployed)),
                )
            )
        ).tuples()
        releases = {
            release_id: ReleaseRef(cluster_id, namespace, name)
            for release_id, cluster_id, namespace, name in rows
        }
        endpoints = session.scalars(
            select(Endpoint.id).where(or_(deployed, Endpoint.release_id.in_(releases)))
        )
        return list(releases.values()), list(endpoints)


def _uninstall(ctx: ActionContext, release: ReleaseRef) -> bool:
    remove_release(ctx.session_factory, release)
    return True


def _delete_endpoints(ctx: ActionContext, endpoint_ids: list[UUID]) -> None:
    """Endpoint rows that outlived their release: a backend without inventory, or none."""
    with ctx.session_factory() as session, session.begin():
        session.execute(delete(Endpoint).where(Endpoint.id.in_(endpoint_ids)))
