"""Use-case deployments as a user drives them: create, look at, stop.

``create_deployment`` validates a request against its template and records it (PENDING)
before any run exists, so a request that cannot work is refused with nothing written and
one that can has an id to follow from the first second. ``stop_deployment`` cancels the
run if it is still going (its rollback uninstalls what it made, newest first) and then
uninstalls, in reverse deployment order, every release the deployment still holds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from foundryflow.actions.usecase.cluster_health import Slot, components_of, namespace_for
from foundryflow.cluster.base import ClusterError
from foundryflow.cluster.local import find_cluster
from foundryflow.runtime import cancel_execution
from foundryflow.store.db import session_scope
from foundryflow.store.models import Execution
from foundryflow.store.usecase import (
    ComponentStatus,
    DeploymentStatus,
    UseCaseComponent,
    UseCaseDeployment,
)
from foundryflow.usecase.builder import DeploymentRequest, validate_request
from foundryflow.usecase.catalog import ComponentCatalog
from foundryflow.usecase.releases import uninstall_chart
from foundryflow.usecase.status import sync_deployment
from foundryflow.usecase.template import UseCaseTemplate

log = logging.getLogger(__name__)


class DeploymentError(ValueError):
    """A deployment that does not exist or cannot do what was asked; nothing was changed."""


def create_deployment(
    template: UseCaseTemplate, catalog: ComponentCatalog, request: DeploymentRequest
) -> UUID:
    """Record a PENDING deployment for ``request``; the run adopts it by id."""
    selected = validate_request(template, catalog, request)
    slots = [
        Slot(
            name=c.name,
            type=c.type,
            selected=selected[c.name],
            chart=c.chart.ref if c.chart is not None else None,
        )
        for c in template.ordered_components
    ]
    try:
        with session_scope() as session:
            cluster = find_cluster(session, request.cluster)
            record = UseCaseDeployment(
                name=request.name,
                template=template.name,
                template_version=template.version,
                pipeline=template.pipeline_name,
                cluster_id=cluster.id,
                namespace=namespace_for(request.name),
                selections=selected,
                parameters={
                    name: request.parameters.get(name, declared.default)
                    for name, declared in template.parameters.items()
                },
                created_by=request.created_by,
                status=DeploymentStatus.PENDING,
                components=components_of(slots),
            )
            session.add(record)
            session.flush()
            return record.id
    except ClusterError as exc:
        raise DeploymentError(str(exc)) from None
    except IntegrityError:
        raise DeploymentError(
            f"a deployment named {request.name!r} is already active on cluster "
            f"{request.cluster!r}: stop it (foundryflow usecase stop) or choose another name"
        ) from None


def load_deployment(deployment_id: UUID, *, sync: bool = True) -> UseCaseDeployment:
    """The deployment with its components, first brought in line with its run."""
    with session_scope() as session:
        record = session.scalars(
            select(UseCaseDeployment)
            .options(selectinload(UseCaseDeployment.components))
            .where(UseCaseDeployment.id == deployment_id)
            .with_for_update(of=UseCaseDeployment)
        ).one_or_none()
        if record is None:
            raise DeploymentError(f"no use-case deployment {deployment_id}")
        if sync:
            sync_deployment(session, record)
        session.flush()
        session.expunge_all()
        return record


@dataclass
class StopReport:
    deployment_id: UUID
    cancelled_run: bool
    uninstalled: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def stop_deployment(deployment_id: UUID) -> StopReport:
    """Cancel the run (if any is going) and uninstall every release, newest first.

    Safe to repeat: a release already gone is skipped, and a stop that failed half-way
    (a cluster that did not answer) is finished by running it again.
    """
    with session_scope() as session:
        record = session.get(UseCaseDeployment, deployment_id, with_for_update=True)
        if record is None:
            raise DeploymentError(f"no use-case deployment {deployment_id}")
        execution_id = record.execution_id
        running = (
            execution_id is not None
            and (execution := session.get(Execution, execution_id)) is not None
            and execution.finished_at is None
        )
        record.status = DeploymentStatus.STOPPING
    report = StopReport(deployment_id, cancelled_run=running)
    if running:
        assert execution_id is not None
        cancel_execution(execution_id, reason=f"use-case deployment {deployment_id} stopped")

    with session_scope() as session:
        record = session.get(UseCaseDeployment, deployment_id, with_for_update=True)
        assert record is not None
        sync_deployment(session, record)  # what the cancelled run's rollback already undid
        cluster = str(record.cluster_id)
        todo = [
            (c.id, c.name, c.release_name, c.namespace)
            for c in sorted(record.components, key=lambda c: c.position, reverse=True)
            if c.release_name and c.namespace and c.status is not ComponentStatus.STOPPED
        ]
    for component_id, name, release, namespace in todo:
        assert release is not None and namespace is not None
        try:
            uninstall_chart(cluster, release, namespace)
        except ClusterError as exc:
            report.errors.append(f"{name} (release {release}): {exc}")
            continue
        report.uninstalled.append(release)
        with session_scope() as session:
            component = session.get(UseCaseComponent, component_id)
            if component is not None:
                component.status = ComponentStatus.STOPPED
                component.endpoint_url = None
    with session_scope() as session:
        record = session.get(UseCaseDeployment, deployment_id, with_for_update=True)
        assert record is not None
        record.status = DeploymentStatus.STOPPING if report.errors else DeploymentStatus.STOPPED
        record.error = "; ".join(report.errors) or None
    return report
