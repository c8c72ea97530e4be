"""Which backend drives a cluster, and what is still free on it.

Each ``clusters`` row names its backend: ``helm`` (a real cluster, reached with the kubeconfig
held by the row's Airflow connection ``kubeconfig_conn_id``) or ``local`` (the PostgreSQL
inventory of :mod:`foundryflow.cluster.local`). ``FOUNDRYFLOW_CLUSTER_BACKEND=local|helm``
overrides the rows for every cluster of the process: ``local`` runs a pipeline written for
real clusters on a laptop or in CI; ``helm`` points rows seeded as local at a real cluster.

Capacity (:func:`free_capacity`) is the same for both: the node pools of the row minus every
allocation recorded on them, so cluster-fit checks count what already runs there.
"""

from __future__ import annotations

import os

from sqlalchemy.orm import Session

from foundryflow.cluster.base import (
    ClusterBackend,
    ClusterError,
    Endpoint,
    Instances,
    ReleaseSpec,
    ReleaseStatus,
)
from foundryflow.cluster.helm import (
    HelmBackend,
    NamespaceClient,
    Runner,
    WorkloadClient,
    run_subprocess,
)
from foundryflow.cluster.local import (
    ClusterRef,
    LocalClusterBackend,
    NodeCapacity,
    SessionScope,
    find_cluster,
    node_capacities,
)
from foundryflow.store.db import session_scope
from foundryflow.store.guardrail import ClusterBackendName

__all__ = [
    "BACKEND_ENV",
    "ClusterHelmBackend",
    "NodeCapacity",
    "backend_for",
    "forced_backend",
    "free_capacity",
]

BACKEND_ENV = "FOUNDRYFLOW_CLUSTER_BACKEND"


class ClusterHelmBackend(HelmBackend):
    """The helm backend bound to one cluster's kubeconfig connection.

    A release or call that names no connection gets the cluster's; one that names another
    connection is refused, since it would act on a different cluster than the row says.
    """

    def __init__(
        self,
        kubeconfig_conn_id: str | None,
        *,
        helm_binary: str = "helm",
        runner: Runner = run_subprocess,
        namespaces: NamespaceClient | None = None,
        workloads: WorkloadClient | None = None,
    ) -> None:
        super().__init__(
            helm_binary=helm_binary, runner=runner, namespaces=namespaces, workloads=workloads
        )
        self.kubeconfig_conn_id = kubeconfig_conn_id

    def install(self, release: ReleaseSpec) -> ReleaseStatus:
        return super().install(self._bound(release))

    def rollback(self, release: ReleaseSpec, revision: int) -> ReleaseStatus:
        return super().rollback(self._bound(release), revision)

    def uninstall(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> None:
        super().uninstall(name, namespace, kubeconfig_conn_id=self._conn_id(kubeconfig_conn_id))

    def status(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> ReleaseStatus:
        return super().status(name, namespace, kubeconfig_conn_id=self._conn_id(kubeconfig_conn_id))

    def endpoints(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> list[Endpoint]:
        return super().endpoints(
            name, namespace, kubeconfig_conn_id=self._conn_id(kubeconfig_conn_id)
        )

    def instances(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> Instances:
        return super().instances(
            name, namespace, kubeconfig_conn_id=self._conn_id(kubeconfig_conn_id)
        )

    def _bound(self, release: ReleaseSpec) -> ReleaseSpec:
        """``release`` with this cluster's connection (refused if it names another)."""
        conn_id = self._conn_id(release.kubeconfig_conn_id)
        if conn_id == release.kubeconfig_conn_id:
            return release
        return ReleaseSpec.model_validate({**release.model_dump(), "kubeconfig_conn_id": conn_id})

    def _conn_id(self, given: str | None) -> str | None:
        if given is None or given == self.kubeconfig_conn_id:
            return self.kubeconfig_conn_id
        raise ClusterError(
            f"kubeconfig_conn_id {given!r} is not the connection of this cluster "
            f"({self.kubeconfig_conn_id!r}): one backend acts on one cluster"
        )


def forced_backend() -> ClusterBackendName | None:
    """The backend ``FOUNDRYFLOW_CLUSTER_BACKEND`` imposes on every cluster, if set."""
    value = os.environ.get(BACKEND_ENV, "").strip()
    if not value:
        return None
    try:
        return ClusterBackendName(value)
    except ValueError:
        choices = "|".join(member.value for member in ClusterBackendName)
        raise ClusterError(f"{BACKEND_ENV}={value!r} is not one of {choices}") from None


def backend_for(cluster: ClusterRef, *, scope: SessionScope = session_scope) -> ClusterBackend:
    """The backend that drives ``cluster`` (a row, its id or its name): the row's own, or
    the one ``FOUNDRYFLOW_CLUSTER_BACKEND`` forces."""
    with scope() as session:
        row = find_cluster(session, cluster)
        choice = forced_backend() or row.backend
        if choice is ClusterBackendName.HELM:
            return ClusterHelmBackend(row.kubeconfig_conn_id)
        return LocalClusterBackend(row, scope=scope)


def free_capacity(cluster: ClusterRef, *, session: Session | None = None) -> list[NodeCapacity]:
    """Node pools of ``cluster`` with devices and memory left after every allocation on
    them; in ``session`` when given, so a caller sees its own uncommitted allocations."""
    if session is not None:
        return node_capacities(session, find_cluster(session, cluster).id)
    with session_scope() as own:
        return node_capacities(own, find_cluster(own, cluster).id)
