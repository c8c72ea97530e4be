"""``usecase.cluster_health``: the first step of every use-case deployment.

It answers "can this cluster take the use case?" before any release is made (the cluster
exists, its backend is usable, it has the template's minimum of free GPUs), and opens the
deployment record the status views read: it adopts the record ``foundryflow usecase
deploy`` made beforehand (``deployment_id``), or creates one for a run triggered from the
Airflow form or ``argo submit``. Either way the record gets this run's execution id, which
is how progress events find it.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.cluster.backends import forced_backend, free_capacity
from foundryflow.cluster.local import GPU_VENDOR, find_cluster
from foundryflow.store.usecase import (
    ComponentStatus,
    DeploymentStatus,
    UseCaseComponent,
    UseCaseDeployment,
)
from foundryflow.usecase.builder import DEPLOYMENT_NAME
from foundryflow.usecase.template import ComponentType


class ClusterHealthError(RuntimeError):
    """The cluster cannot take the use case, or the deployment record cannot be opened."""


class Slot(BaseModel):
    """A component of the template as this run deploys it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: ComponentType
    selected: str | bool | None = Field(
        description="The chosen component; for helm components whether it is deployed."
    )
    chart: str | None = None


class ClusterHealthParams(ActionParams):
    cluster: str = Field(min_length=1)
    deployment_name: Annotated[str, StringConstraints(pattern=DEPLOYMENT_NAME)]
    deployment_id: UUID | None = None
    created_by: str | None = Field(default=None, max_length=250)
    template: str
    template_version: str
    components: list[Slot] = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    minimum_gpus: int = Field(default=0, ge=0)


class ClusterHealthOutputs(ActionOutputs):
    deployment_id: str
    cluster_id: str
    cluster_name: str
    backend: str
    namespace: str
    free_gpus: int


def namespace_for(deployment_name: str) -> str:
    """One namespace per use case, so stopping it can never touch another's objects."""
    return f"uc-{deployment_name}"


class ClusterHealth(Action[ClusterHealthParams, ClusterHealthOutputs]):
    meta = ActionMeta(
        name="usecase.cluster_health",
        description="Check the target cluster can take the use case and record the deployment.",
        idempotent=True,
    )
    Params = ClusterHealthParams
    Outputs = ClusterHealthOutputs

    def run(self, ctx: ActionContext, params: ClusterHealthParams) -> ClusterHealthOutputs:
        with ctx.session_factory() as session:
            cluster = find_cluster(session, params.cluster)
            cluster_id, cluster_name = cluster.id, cluster.name
            backend = (forced_backend() or cluster.backend).value
        free_gpus = sum(
            max(pool.devices_free, 0)
            for pool in free_capacity(cluster_id)
            if pool.device_type == "gpu" and pool.vendor == GPU_VENDOR
        )
        if free_gpus < params.minimum_gpus:
            raise ClusterHealthError(
                f"cluster {cluster_name!r} has {free_gpus} free NVIDIA GPU(s); use case "
                f"{params.template!r} needs at least {params.minimum_gpus}: free capacity or "
                "choose another cluster"
            )
        namespace = namespace_for(params.deployment_name)
        deployment_id = self._open_record(ctx, params, cluster_id, cluster_name, namespace)
        ctx.log.info(
            "cluster %s (%s backend): %d free GPU(s); deployment %s in namespace %s",
            cluster_name,
            backend,
            free_gpus,
            deployment_id,
            namespace,
        )
        return ClusterHealthOutputs(
            deployment_id=str(deployment_id),
            cluster_id=str(cluster_id),
            cluster_name=cluster_name,
            backend=backend,
            namespace=namespace,
            free_gpus=free_gpus,
        )

    def _open_record(
        self,
        ctx: ActionContext,
        params: ClusterHealthParams,
        cluster_id: UUID,
        cluster_name: str,
        namespace: str,
    ) -> UUID:
        try:
            with ctx.session_factory() as session, session.begin():
                mine = session.scalars(
                    select(UseCaseDeployment).where(
                        UseCaseDeployment.execution_id == ctx.execution_id
                    )
                ).one_or_none()
                if mine is not None:  # a retry of this step
                    return mine.id
                if params.deployment_id is not None:
                    record = self._adopt(session, params, cluster_id)
                else:
                    record = self._create(session, params, cluster_id, namespace)
                record.execution_id = ctx.execution_id
                record.status = DeploymentStatus.DEPLOYING
                session.flush()
                return record.id
        except IntegrityError:
            raise ClusterHealthError(
                f"a deployment named {params.deployment_name!r} is already active on cluster "
                f"{cluster_name!r}: stop it (foundryflow usecase stop) or choose another name"
            ) from None

    def _adopt(self, session: Any, params: ClusterHealthParams, cluster_id: UUID) -> Any:
        record = session.get(UseCaseDeployment, params.deployment_id, with_for_update=True)
        if record is None:
            raise ClusterHealthError(f"no use-case deployment {params.deployment_id}")
        if (record.name, record.cluster_id, record.template) != (
            params.deployment_name,
            cluster_id,
            params.template,
        ):
            raise ClusterHealthError(
                f"deployment {record.id} is {record.name!r} of {record.template!r} on another "
                "cluster or template than this run's; start the run with its own parameters"
            )
        if record.status is not DeploymentStatus.PENDING or record.execution_id is not None:
            raise ClusterHealthError(
                f"deployment {record.id} is {record.status.value}, already started by "
                f"execution {record.execution_id}; a deployment is started once"
            )
        return record

    def _create(
        self, session: Any, params: ClusterHealthParams, cluster_id: UUID, namespace: str
    ) -> UseCaseDeployment:
        record = UseCaseDeployment(
            name=params.deployment_name,
            template=params.template,
            template_version=params.template_version,
            pipeline=f"usecase-{params.template}",
            cluster_id=cluster_id,
            namespace=namespace,
            selections={slot.name: slot.selected for slot in params.components},
            parameters=params.parameters,
            created_by=params.created_by,
            components=components_of(params.components),
        )
        session.add(record)
        return record


def components_of(slots: list[Slot]) -> list[UseCaseComponent]:
    """Component rows in deployment order; a component left out is SKIPPED from the start."""
    return [
        UseCaseComponent(
            name=slot.name,
            type=slot.type,
            position=position,
            selected=slot.selected if isinstance(slot.selected, str) else None,
            chart=slot.chart,
            status=ComponentStatus.PENDING
            if slot.selected not in (None, False)
            else ComponentStatus.SKIPPED,
            services=[],
        )
        for position, slot in enumerate(slots)
    ]
