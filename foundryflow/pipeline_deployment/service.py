"""The five operations of seed 001 (deploy, list, get, update, delete) plus rollback and purge.

Every change is split in two, so the REST API can answer at once and do the cluster work
after the response, while actions and the CLI simply call both halves in a row:

- ``begin_*`` validates everything (pipeline, parameters, resources, selector, replicas,
  the revision to return to), refuses a second change while one is in progress, marks the
  deployment (``deploying`` / ``updating`` / ``deleting``) and returns a :class:`Change`;
  bad input raises :class:`InvalidDeployment` and changes nothing;
- :func:`carry_out` makes the cluster match (``helm upgrade --install`` of
  ``charts/pipeline-runner``, ``helm rollback``, ``helm uninstall``) and records the
  revision: who, when, what changed, the whole resulting spec, the Helm revision, the
  outcome and how long it took.

A failed update or rollback leaves the previous revision running (the install is atomic),
so the deployment stays ``active`` with the failure in ``error``; a failed create is
``failed``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from uuid import UUID

import yaml
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from foundryflow.cluster.backends import backend_for
from foundryflow.cluster.base import (
    CHARTS_DIR,
    ClusterError,
    Instances,
    ReleaseNotFoundError,
    ReleaseSpec,
)
from foundryflow.cluster.local import find_cluster
from foundryflow.compile.argo import CONNECTIONS_SECRET
from foundryflow.config import get_settings
from foundryflow.pipeline_deployment.model import (
    CreateRequest,
    DeploymentSpec,
    Resources,
    UpdateRequest,
    changes,
)
from foundryflow.spec.loader import PipelineCatalog
from foundryflow.spec.params import ParamsError, validate_run_params
from foundryflow.spec.validate import SpecError
from foundryflow.store.db import session_scope
from foundryflow.store.pipeline_deployment import (
    DeploymentPhase,
    DeploymentStatus,
    PipelineDeployment,
    PipelineDeploymentRevision,
    RevisionAction,
    RevisionOutcome,
)

log = logging.getLogger(__name__)

RUNNER_CHART = "pipeline-runner"
INSTALL_TIMEOUT_SECONDS = 600
STALE_AFTER = timedelta(seconds=INSTALL_TIMEOUT_SECONDS * 2)
"""A change still marked in progress after this was abandoned (its process died)."""
IN_PROGRESS = (DeploymentStatus.DEPLOYING, DeploymentStatus.UPDATING, DeploymentStatus.DELETING)


class DeploymentError(ValueError):
    """Something the caller must change; nothing was changed."""


class InvalidDeployment(DeploymentError):
    """The request does not pass validation (HTTP 422)."""


class DeploymentNotFound(DeploymentError, LookupError):
    """No (live) deployment with that id (HTTP 404)."""


class DeploymentConflict(DeploymentError):
    """The name is taken, or another change is in progress (HTTP 409)."""


@dataclass(frozen=True)
class Change:
    """A change that passed validation and was marked on the deployment, to be carried out."""

    deployment_id: UUID
    action: RevisionAction
    actor: str
    revision: int
    before: DeploymentSpec | None
    after: DeploymentSpec | None
    """None for delete."""
    helm_revision: int | None = None
    """For a rollback: the release revision to return to."""
    rolled_back_to: int | None = None


@dataclass(frozen=True)
class Outcome:
    deployment_id: UUID
    revision: int
    action: RevisionAction
    ok: bool
    status: DeploymentStatus
    error: str | None


# --------------------------------------------------------------------------- validation
@cache
def chart_resources() -> Resources:
    """The runner chart's default requests and limits (its ``values.yaml``)."""
    values = yaml.safe_load((CHARTS_DIR / RUNNER_CHART / "values.yaml").read_text("utf-8"))
    return Resources.model_validate(values["resources"])


def validated(spec: DeploymentSpec) -> DeploymentSpec:
    """``spec`` with the pipeline's version and complete resources, once the pipeline
    exists and the parameters pass its parameter schema (the same check a run's parameters
    get).

    Resources are completed with the chart's defaults before they are checked: Helm merges
    given values into the defaults, so a request of 2Gi memory alone would meet the
    default 1Gi limit on the cluster; here it is refused, and what is recorded is exactly
    what the pods get."""
    try:
        pipeline = PipelineCatalog(require_actions=False).get(spec.pipeline_name)
    except KeyError as exc:
        raise InvalidDeployment(str(exc.args[0])) from None
    except SpecError as exc:
        raise InvalidDeployment(f"pipeline {spec.pipeline_name!r} is invalid: {exc}") from None
    try:
        validate_run_params(pipeline, spec.parameters)
    except ParamsError as exc:
        raise InvalidDeployment(f"parameters of {pipeline.name}: {exc}") from None
    try:
        resources = chart_resources().merged(spec.resources.model_dump())
    except ValueError as exc:
        raise InvalidDeployment(
            f"resources with the runner chart's defaults ({chart_resources().model_dump()}): {exc}"
        ) from None
    return spec.model_copy(update={"pipeline_version": pipeline.version, "resources": resources})


def spec_of(row: PipelineDeployment) -> DeploymentSpec:
    return DeploymentSpec.model_validate(
        {
            "pipeline_name": row.pipeline_name,
            "pipeline_version": row.pipeline_version,
            "parameters": row.parameters,
            "target_nodes": row.target_nodes,
            "replicas": row.replicas,
            "resources": row.resources,
            "interval_seconds": row.interval_seconds,
        }
    )


def release_spec(name: str, namespace: str, spec: DeploymentSpec) -> ReleaseSpec:
    """The Helm release of a pool: ``charts/pipeline-runner`` with the spec as values."""
    values: dict[str, Any] = {
        "pipeline": spec.pipeline_name,
        "parameters": spec.parameters,
        "replicaCount": spec.replicas,
        "interval": spec.interval_seconds,
        "nodeSelector": spec.target_nodes,
        "resources": spec.resources.model_dump(),
        # Airflow connections for actions that need them, as Argo pods get them (optional)
        "connectionsSecret": {"name": CONNECTIONS_SECRET},
    }
    return ReleaseSpec(
        name=name,
        namespace=namespace,
        chart=RUNNER_CHART,
        values=values,
        timeout_seconds=INSTALL_TIMEOUT_SECONDS,
    )


# --------------------------------------------------------------------------- begin
def _live(session: Session, deployment_id: UUID, *, lock: bool = True) -> PipelineDeployment:
    row = session.get(PipelineDeployment, deployment_id, with_for_update=lock)
    if row is None or row.deleted_at is not None:
        raise DeploymentNotFound(f"no pipeline deployment {deployment_id}")
    return row


def _claim(row: PipelineDeployment, status: DeploymentStatus, actor: str) -> None:
    """Mark a change in progress; refuse if another one is (unless it was abandoned)."""
    fresh = row.updated_at is None or datetime.now(UTC) - row.updated_at < STALE_AFTER
    if row.status in IN_PROGRESS and fresh:
        raise DeploymentConflict(
            f"deployment {row.deployment_name!r} is {row.status.value}: wait for that change "
            "to finish"
        )
    row.status = status
    row.updated_by = actor


def _next_revision(session: Session, deployment_id: UUID) -> int:
    latest = session.scalar(
        select(func.max(PipelineDeploymentRevision.revision)).where(
            PipelineDeploymentRevision.deployment_id == deployment_id
        )
    )
    return (latest or 0) + 1


def begin_create(request: CreateRequest, actor: str) -> Change:
    spec = validated(request.spec())
    try:
        with session_scope() as session:
            try:
                cluster = find_cluster(session, request.cluster)
            except ClusterError as exc:
                raise InvalidDeployment(str(exc)) from None
            row = PipelineDeployment(
                deployment_name=request.deployment_name,
                namespace=request.namespace,
                cluster_id=cluster.id,
                status=DeploymentStatus.DEPLOYING,
                phase=DeploymentPhase.PENDING,
                revision=1,
                created_by=actor,
                updated_by=actor,
                **_fields(spec),
            )
            session.add(row)
            session.flush()
            return Change(row.id, RevisionAction.CREATE, actor, 1, None, spec)
    except IntegrityError:
        raise DeploymentConflict(
            f"a pipeline deployment named {request.deployment_name!r} already exists in "
            f"namespace {request.namespace!r}: update it, or delete it first"
        ) from None


def begin_update(deployment_id: UUID, request: UpdateRequest, actor: str) -> Change:
    if request.empty:
        raise InvalidDeployment(
            "nothing to update: give parameters, resources, "
            "target_nodes, replicas or interval_seconds"
        )
    with session_scope() as session:
        row = _live(session, deployment_id)
        before = spec_of(row)
        try:
            after = validated(request.applied_to(before))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise InvalidDeployment(str(exc)) from None
        if after == before:
            raise InvalidDeployment("the update changes nothing")
        _claim(row, DeploymentStatus.UPDATING, actor)
        revision = _next_revision(session, deployment_id)
        return Change(deployment_id, RevisionAction.UPDATE, actor, revision, before, after)


def begin_rollback(deployment_id: UUID, to_revision: int, actor: str) -> Change:
    with session_scope() as session:
        row = _live(session, deployment_id)
        target = session.scalars(
            select(PipelineDeploymentRevision).where(
                PipelineDeploymentRevision.deployment_id == deployment_id,
                PipelineDeploymentRevision.revision == to_revision,
            )
        ).one_or_none()
        if target is None:
            raise InvalidDeployment(
                f"deployment {row.deployment_name!r} has no revision {to_revision} "
                f"(it is at {row.revision})"
            )
        if target.outcome is not RevisionOutcome.SUCCEEDED or target.helm_revision is None:
            raise InvalidDeployment(
                f"revision {to_revision} of {row.deployment_name!r} was not deployed "
                f"({target.outcome.value}); roll back to one that was"
            )
        if to_revision == row.revision:
            raise InvalidDeployment(f"revision {to_revision} is the current one")
        before = spec_of(row)
        try:
            after = validated(DeploymentSpec.model_validate(target.spec))
        except ValueError as exc:
            raise InvalidDeployment(
                f"revision {to_revision} is no longer valid ({exc}); deploy an update instead"
            ) from None
        _claim(row, DeploymentStatus.UPDATING, actor)
        revision = _next_revision(session, deployment_id)
        return Change(
            deployment_id,
            RevisionAction.ROLLBACK,
            actor,
            revision,
            before,
            after,
            helm_revision=target.helm_revision,
            rolled_back_to=to_revision,
        )


def begin_delete(deployment_id: UUID, actor: str) -> Change:
    with session_scope() as session:
        row = _live(session, deployment_id)
        before = spec_of(row)
        _claim(row, DeploymentStatus.DELETING, actor)
        revision = _next_revision(session, deployment_id)
        return Change(deployment_id, RevisionAction.DELETE, actor, revision, before, None)


# --------------------------------------------------------------------------- carry out
def _fields(spec: DeploymentSpec) -> dict[str, Any]:
    return {
        "pipeline_name": spec.pipeline_name,
        "pipeline_version": spec.pipeline_version,
        "parameters": spec.parameters,
        "target_nodes": spec.target_nodes,
        "replicas": spec.replicas,
        "resources": spec.resources.model_dump(mode="json"),
        "interval_seconds": spec.interval_seconds,
    }


def carry_out(change: Change) -> Outcome:
    """Make the cluster match the change and record its revision; never raises for a
    cluster failure (it is recorded and returned)."""
    with session_scope() as session:
        row = session.get(PipelineDeployment, change.deployment_id)
        assert row is not None
        name, namespace, cluster_id = row.deployment_name, row.namespace, row.cluster_id
    started = time.monotonic()
    helm_revision: int | None = None
    error: str | None = None
    try:
        backend = backend_for(cluster_id)
        if change.action is RevisionAction.DELETE:
            backend.uninstall(name, namespace)
        elif change.action is RevisionAction.ROLLBACK:
            assert change.after is not None and change.helm_revision is not None
            release = release_spec(name, namespace, change.after)
            helm_revision = backend.rollback(release, change.helm_revision).revision
        else:
            assert change.after is not None
            helm_revision = backend.install(release_spec(name, namespace, change.after)).revision
    except ClusterError as exc:
        error = str(exc)
        log.warning("%s of pipeline deployment %s failed: %s", change.action, name, error)
    duration = time.monotonic() - started
    with session_scope() as session:
        row = session.get(PipelineDeployment, change.deployment_id, with_for_update=True)
        assert row is not None
        session.add(
            PipelineDeploymentRevision(
                deployment_id=row.id,
                revision=change.revision,
                action=change.action,
                actor=change.actor,
                changes=changes(change.before, change.after) if change.after else {},
                spec=(change.after or change.before).model_dump(mode="json"),  # type: ignore[union-attr]
                helm_revision=helm_revision,
                rolled_back_to=change.rolled_back_to,
                outcome=RevisionOutcome.FAILED if error else RevisionOutcome.SUCCEEDED,
                error=error,
                duration_seconds=duration,
            )
        )
        _settle(row, change, error)
        return Outcome(row.id, change.revision, change.action, error is None, row.status, error)


def _settle(row: PipelineDeployment, change: Change, error: str | None) -> None:
    label = f"revision {change.revision} ({change.action.value})"
    if error is None:
        row.error = None
        if change.action is RevisionAction.DELETE:
            row.status = DeploymentStatus.DELETED
            row.phase = DeploymentPhase.STOPPED
            row.deleted_at = datetime.now(UTC)
            return
        assert change.after is not None
        for key, value in _fields(change.after).items():
            setattr(row, key, value)
        row.revision = change.revision
        row.status = DeploymentStatus.ACTIVE
        row.phase = DeploymentPhase.STOPPED if change.after.replicas == 0 else None
        return
    row.error = f"{label} failed: {error}"
    # the install is atomic: what ran before still runs (nothing, for a create)
    row.status = (
        DeploymentStatus.FAILED
        if change.action is RevisionAction.CREATE
        else DeploymentStatus.ACTIVE
    )


def run(change: Change) -> Outcome:
    """Carry out a change and raise if the cluster refused it (actions, CLI)."""
    outcome = carry_out(change)
    if not outcome.ok:
        raise ClusterError(outcome.error or "failed")
    return outcome


# --------------------------------------------------------------------------- read
def _phase(row: PipelineDeployment, instances: Instances | None) -> DeploymentPhase | None:
    if row.status is DeploymentStatus.DELETED:
        return DeploymentPhase.STOPPED
    if instances is None:
        return DeploymentPhase.PENDING
    if instances.desired == 0:
        return DeploymentPhase.STOPPED
    if instances.ready == instances.desired == instances.updated:
        return DeploymentPhase.RUNNING
    return DeploymentPhase.PROGRESSING


def summary(row: PipelineDeployment) -> dict[str, Any]:
    """The seed's list item."""
    return {
        "deployment_id": str(row.id),
        "deployment_name": row.deployment_name,
        "pipeline_name": row.pipeline_name,
        "pipeline_version": row.pipeline_version,
        "status": row.status.value,
        "phase": row.phase.value if row.phase else None,
        "namespace": row.namespace,
        "cluster_id": str(row.cluster_id),
        "target_nodes": row.target_nodes,
        "replicas": row.replicas,
        "revision": row.revision,
        "error": row.error,
        "created_by": row.created_by,
        "updated_by": row.updated_by,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "deleted_at": row.deleted_at.isoformat() if row.deleted_at else None,
    }


def get(deployment_id: UUID, *, include_deleted: bool = False) -> dict[str, Any]:
    """The seed's "Get Deployment Status": the record, its instances on the cluster
    (desired / ready / updated) and the phase they imply."""
    with session_scope() as session:
        row = session.get(PipelineDeployment, deployment_id)
        if row is None or (row.deleted_at is not None and not include_deleted):
            raise DeploymentNotFound(f"no pipeline deployment {deployment_id}")
        name, namespace, cluster_id = row.deployment_name, row.namespace, row.cluster_id
        deleted = row.deleted_at is not None
    instances: Instances | None = None
    if not deleted:
        try:
            instances = backend_for(cluster_id).instances(name, namespace)
        except ReleaseNotFoundError:
            instances = None
        except ClusterError as exc:
            log.warning("instances of %s unknown: %s", name, exc)
    with session_scope() as session:
        row = session.get(PipelineDeployment, deployment_id, with_for_update=True)
        assert row is not None
        if row.status not in IN_PROGRESS:
            row.phase = _phase(row, instances)
        view = summary(row)
        view |= {
            "parameters": row.parameters,
            "resources": row.resources,
            "interval_seconds": row.interval_seconds,
            "instances": (instances or Instances(desired=0, ready=0, updated=0)).model_dump(),
        }
        return view


def list_deployments(
    *,
    namespace: str | None = None,
    status: DeploymentStatus | None = None,
    pipeline: str | None = None,
    page: int = 1,
    per_page: int = 20,
) -> dict[str, Any]:
    """The seed's list: newest first, filtered; deleted ones only when asked for."""
    query = select(PipelineDeployment)
    if namespace:
        query = query.where(PipelineDeployment.namespace == namespace)
    if pipeline:
        query = query.where(PipelineDeployment.pipeline_name == pipeline)
    if status is not None:
        query = query.where(PipelineDeployment.status == status)
    else:
        query = query.where(PipelineDeployment.deleted_at.is_(None))
    with session_scope() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = session.scalars(
            query.order_by(PipelineDeployment.created_at.desc(), PipelineDeployment.id)
            .limit(per_page)
            .offset((page - 1) * per_page)
        ).all()
        return {
            "deployments": [summary(row) for row in rows],
            "total": total,
            "page": page,
            "per_page": per_page,
        }


def revisions(deployment_id: UUID) -> list[dict[str, Any]]:
    """The audit trail, oldest first."""
    with session_scope() as session:
        row = session.get(PipelineDeployment, deployment_id)
        if row is None:
            raise DeploymentNotFound(f"no pipeline deployment {deployment_id}")
        return [
            {
                "revision": r.revision,
                "action": r.action.value,
                "actor": r.actor,
                "at": r.created_at.isoformat(),
                "changes": r.changes,
                "spec": r.spec,
                "helm_revision": r.helm_revision,
                "rolled_back_to": r.rolled_back_to,
                "outcome": r.outcome.value,
                "error": r.error,
                "duration_seconds": round(r.duration_seconds, 3),
            }
            for r in row.revisions
        ]


def purge(older_than_days: int | None = None) -> int:
    """Remove, for good, deployments deleted more than ``older_than_days`` ago (seed:
    "Deployments marked for deletion after 30 days"); their revisions go with them."""
    days = older_than_days or get_settings().deployment_retention_days
    cutoff = datetime.now(UTC) - timedelta(days=days)
    with session_scope() as session:
        purged = session.execute(
            delete(PipelineDeployment)
            .where(PipelineDeployment.deleted_at < cutoff)
            .returning(PipelineDeployment.id)
        ).all()
    return len(purged)
