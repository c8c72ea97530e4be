"""The ``local`` cluster backend: a cluster that is an inventory in PostgreSQL.

It is the embedded default when there is no Kubernetes. Installing a release renders the
chart for real (:func:`foundryflow.cluster.render.render_release`: Helm's engine, the
chart's schema, strict Kubernetes validation) and records in one transaction what a cluster
would then hold: the ``cluster_releases`` row, the GPUs its pods take on the cluster's node
pools (``cluster_allocations``) and its Services' in-cluster URLs (``endpoints``). A failing
install writes nothing, as ``helm --atomic`` leaves nothing behind.

What the inventory needs beyond the chart's objects is read from the rendered manifests, so
the same release means the same thing on a real cluster:

- GPUs: ``nvidia.com/gpu`` of each Deployment's (or StatefulSet's) pod times its replicas;
  each pod must fit on one machine of an NVIDIA GPU pool with enough free devices, counting
  what every other release already holds there. Devices are whole (dedicated), so an
  allocation holds their whole memory;
- placement: a pod's ``nodeSelector`` may name a pool (``foundryflow.io/node-pool``) or a
  hardware shape of the catalog (``foundryflow.io/hardware``); other keys are not modelled;
- the model: vLLM's ``--model=<uri>`` argument, which must be in the model registry
  (allocations and endpoints reference it);
- endpoints: every release keeps its Services' URLs on its own row; a release whose pods
  carry the annotation ``foundryflow.io/project`` (chart value ``podAnnotations``) also gets
  rows in the guardrail ``endpoints`` table, owned by that project and attributed to its
  model, which is how the guardrail workflow finds the endpoints it deployed;
- workloads: each Deployment's and StatefulSet's kind, name and ``spec.replicas`` (1 when
  unset, as the API server defaults it), which is what :meth:`LocalClusterBackend.instances`
  counts.

Installing again with the same chart and values is a no-op; other values make the next
revision, replacing the allocations and updating the endpoint rows in place (same ids).
There is no revision history: a rollback re-installs the spec of the earlier state, which
makes the next revision, just as ``helm rollback`` makes one holding the old manifest.

``FOUNDRYFLOW_LOCAL_CLUSTER_FAIL=<glob>[,<glob>...]`` makes the install of every release
whose name matches fail after rendering and before anything is written (fault tests).
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, replace
from typing import Any, ClassVar
from uuid import UUID, uuid4

import yaml
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from foundryflow.cluster.base import (
    ChartReferenceError,
    ClusterBackend,
    ClusterCommandError,
    ClusterError,
    Endpoint,
    Instances,
    ReleaseNotFoundError,
    ReleaseSpec,
    ReleaseState,
    ReleaseStatus,
    check_conn_id,
    check_namespace,
    check_release_name,
    check_revision,
    local_chart_path,
)
from foundryflow.store.catalog import HardwareConfig, Model
from foundryflow.store.db import session_scope
from foundryflow.store.guardrail import (
    Cluster,
    ClusterAllocation,
    ClusterNode,
    ClusterRelease,
    EndpointStatus,
    HardwareMode,
)
from foundryflow.store.guardrail import Endpoint as EndpointRow

log = logging.getLogger(__name__)

FAIL_ENV = "FOUNDRYFLOW_LOCAL_CLUSTER_FAIL"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_VENDOR = "NVIDIA"
"""``nvidia.com/gpu`` is served by NVIDIA's device plugin: only NVIDIA GPU pools qualify."""
PROJECT_ANNOTATION = "foundryflow.io/project"
NODE_POOL_LABEL = "foundryflow.io/node-pool"
HARDWARE_LABEL = "foundryflow.io/hardware"
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet"})
MODEL_FLAG = "--model="

SessionScope = Callable[[], AbstractContextManager[Session]]
ClusterRef = Cluster | UUID | str
"""A ``clusters`` row, its id, or its name (a string holding a UUID is tried as an id first:
ids travel as strings through XCom and Argo parameters)."""


@dataclass(frozen=True)
class NodeCapacity:
    """One node pool of a cluster and what of it is still free, across all releases.

    ``devices_free`` and ``memory_gb_free`` subtract every allocation on the pool; they go
    negative if rows were written past capacity, rather than hiding that.
    """

    node_id: UUID
    hardware_name: str
    devices_total: int
    devices_free: int
    memory_gb_per_device: float
    node_name: str
    device_type: str
    vendor: str
    devices_per_node: int
    """Devices of one machine: the most a single pod (one tensor-parallel group) can get."""
    memory_gb_free: float


@dataclass(frozen=True)
class PodDemand:
    """The pods of one workload that need GPUs."""

    workload: str
    replicas: int
    gpus_per_pod: int
    node_selector: Mapping[str, str]


@dataclass(frozen=True)
class ReleaseDemand:
    """What a rendered release asks of the inventory besides its own row."""

    pods: list[PodDemand]
    model_uri: str | None
    project_id: UUID | None


def find_cluster(session: Session, cluster: ClusterRef) -> Cluster:
    """The ``clusters`` row ``cluster`` refers to; :class:`ClusterError` if there is none."""
    if isinstance(cluster, Cluster):
        return cluster
    row: Cluster | None = None
    if isinstance(cluster, UUID):
        row = session.get(Cluster, cluster)
    else:
        with suppress(ValueError):
            row = session.get(Cluster, UUID(cluster))
        if row is None:
            row = session.scalars(select(Cluster).where(Cluster.name == cluster)).one_or_none()
    if row is None:
        raise ClusterError(f"no cluster {str(cluster)!r} (neither a cluster id nor a name)")
    return row


def node_capacities(session: Session, cluster_id: UUID) -> list[NodeCapacity]:
    """The cluster's node pools, each with its devices and memory minus all allocations."""
    used = (
        select(
            ClusterAllocation.node_id,
            func.sum(ClusterAllocation.devices_used).label("devices"),
            func.sum(ClusterAllocation.memory_gb).label("memory_gb"),
        )
        .join(ClusterNode, ClusterNode.id == ClusterAllocation.node_id)
        .where(ClusterNode.cluster_id == cluster_id)
        .group_by(ClusterAllocation.node_id)
        .subquery()
    )
    rows = session.execute(
        select(ClusterNode, HardwareConfig, used.c.devices, used.c.memory_gb)
        .join(HardwareConfig, HardwareConfig.id == ClusterNode.hardware_config_id)
        .outerjoin(used, used.c.node_id == ClusterNode.id)
        .where(ClusterNode.cluster_id == cluster_id)
        .order_by(ClusterNode.name)
    ).tuples()
    capacities = []
    for node, hardware, devices_used, memory_used in rows:
        devices_total = node.count * hardware.device_count
        capacities.append(
            NodeCapacity(
                node_id=node.id,
                hardware_name=hardware.name,
                devices_total=devices_total,
                devices_free=devices_total - int(devices_used or 0),
                memory_gb_per_device=hardware.memory_gb_per_device,
                node_name=node.name,
                device_type=hardware.device_type,
                vendor=hardware.vendor,
                devices_per_node=hardware.device_count,
                memory_gb_free=devices_total * hardware.memory_gb_per_device
                - float(memory_used or 0.0),
            )
        )
    return capacities


# --------------------------------------------------------------------------- manifests
def _gpus(container: Mapping[str, Any], workload: str) -> int:
    resources = container.get("resources") or {}
    quantity = (resources.get("limits") or {}).get(GPU_RESOURCE)
    if quantity is None:
        quantity = (resources.get("requests") or {}).get(GPU_RESOURCE)
    if quantity is None:
        return 0
    try:
        return int(str(quantity))
    except ValueError:
        raise ClusterError(
            f"{workload}: {GPU_RESOURCE} {quantity!r} is not a whole number of devices"
        ) from None


def _single(values: Iterable[str], what: str) -> str | None:
    distinct = sorted(set(values))
    if len(distinct) > 1:
        raise ClusterError(f"the release's pods disagree on {what}: {', '.join(distinct)}")
    return distinct[0] if distinct else None


def release_demand(manifests: Iterable[Mapping[str, Any]]) -> ReleaseDemand:
    """GPUs, model and project of a rendered release, read from its workloads' pod specs."""
    pods: list[PodDemand] = []
    models: list[str] = []
    projects: list[str] = []
    for doc in manifests:
        if doc.get("kind") not in WORKLOAD_KINDS:
            continue
        workload = f"{doc['kind']}/{(doc.get('metadata') or {}).get('name')}"
        spec = doc.get("spec") or {}
        template = spec.get("template") or {}
        pod = template.get("spec") or {}
        containers = pod.get("containers") or []
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        if PROJECT_ANNOTATION in annotations:
            projects.append(annotations[PROJECT_ANNOTATION])
        for container in containers:
            args = [*(container.get("command") or []), *(container.get("args") or [])]
            models += [arg.removeprefix(MODEL_FLAG) for arg in args if arg.startswith(MODEL_FLAG)]
        gpus = sum(_gpus(container, workload) for container in containers)
        replicas = spec.get("replicas", 1)
        if gpus and replicas:
            pods.append(PodDemand(workload, replicas, gpus, pod.get("nodeSelector") or {}))
    project = _single(projects, f"the {PROJECT_ANNOTATION} annotation")
    try:
        project_id = None if project is None else UUID(project)
    except ValueError:
        raise ClusterError(
            f"pod annotation {PROJECT_ANNOTATION}={project!r} is not a project id (a UUID)"
        ) from None
    return ReleaseDemand(pods, _single(models, "the served model"), project_id)


def release_workloads(manifests: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``{"kind", "name", "replicas"}`` of each Deployment and StatefulSet of a rendered
    release, sorted; ``spec.replicas`` defaults to 1 as the API server defaults it."""
    workloads = []
    for doc in manifests:
        if doc.get("kind") not in WORKLOAD_KINDS:
            continue
        name = (doc.get("metadata") or {}).get("name")
        replicas = (doc.get("spec") or {}).get("replicas")
        try:
            count = 1 if replicas is None else int(replicas)
        except (TypeError, ValueError):
            raise ClusterError(
                f"{doc['kind']}/{name}: replicas {replicas!r} is not a whole number"
            ) from None
        workloads.append({"kind": doc["kind"], "name": name, "replicas": count})
    return sorted(workloads, key=lambda w: (w["kind"], str(w["name"])))


def _why_not(capacity: NodeCapacity, pod: PodDemand) -> str | None:
    """Why a pod of ``pod`` cannot go on ``capacity``'s pool now; None if it can."""
    pool = f"pool {capacity.node_name!r} ({capacity.hardware_name})"
    if capacity.device_type != "gpu" or capacity.vendor != GPU_VENDOR:
        return f"{pool}: no {GPU_VENDOR} GPUs"
    selector = pod.node_selector
    if (
        selector.get(NODE_POOL_LABEL, capacity.node_name) != capacity.node_name
        or selector.get(HARDWARE_LABEL, capacity.hardware_name) != capacity.hardware_name
    ):
        return f"{pool}: not selected by the nodeSelector"
    if capacity.devices_per_node < pod.gpus_per_pod:
        return f"{pool}: machines have {capacity.devices_per_node} GPUs"
    if capacity.devices_free < pod.gpus_per_pod:
        return f"{pool}: {max(capacity.devices_free, 0)} of {capacity.devices_total} GPUs free"
    return None


def place_pods(
    pods: Iterable[PodDemand], capacities: Iterable[NodeCapacity], *, cluster: str, release: str
) -> dict[UUID, int]:
    """GPUs per node pool for every pod, best fit first (the pool left with the fewest free
    devices), so large pools stay free for large models. Refuses if any pod does not fit.

    Pools are counted as a whole, not machine by machine: a pool's free devices may be
    spread over machines so that no single one holds a pod that the count admits.
    """
    free = {capacity.node_id: capacity for capacity in capacities}
    placed: dict[UUID, int] = {}
    for pod in pods:
        for index in range(pod.replicas):
            fitting = [c for c in free.values() if _why_not(c, pod) is None]
            if not fitting:
                reasons = [_why_not(c, pod) for c in free.values()] or ["it has no node pools"]
                earlier = sum(placed.values())
                raise ClusterError(
                    f"cluster {cluster!r} has not enough free GPUs for release {release!r}: "
                    f"pod {index + 1} of {pod.replicas} of {pod.workload} needs "
                    f"{pod.gpus_per_pod} {GPU_RESOURCE} on one machine"
                    + (f" (after {earlier} GPUs for its earlier pods)" if earlier else "")
                    + "; "
                    + "; ".join(map(str, reasons))
                )
            best = min(fitting, key=lambda c: (c.devices_free, c.node_name))
            free[best.node_id] = replace(
                best,
                devices_free=best.devices_free - pod.gpus_per_pod,
                memory_gb_free=best.memory_gb_free - pod.gpus_per_pod * best.memory_gb_per_device,
            )
            placed[best.node_id] = placed.get(best.node_id, 0) + pod.gpus_per_pod
    return placed


def injected_failure(release: str, patterns: str | None = None) -> str | None:
    """The glob of ``FOUNDRYFLOW_LOCAL_CLUSTER_FAIL`` matching ``release``, if any."""
    text = os.environ.get(FAIL_ENV, "") if patterns is None else patterns
    globs = [glob.strip() for glob in text.split(",") if glob.strip()]
    return next((glob for glob in globs if fnmatch.fnmatchcase(release, glob)), None)


# --------------------------------------------------------------------------- backend
def _row_name(endpoint: Endpoint) -> str:
    """An endpoint row per Service port: the Service's name, plus the port's name if any."""
    return endpoint.name if endpoint.port_name is None else f"{endpoint.name}-{endpoint.port_name}"


def _chart_label(row: ClusterRelease) -> tuple[str, str | None]:
    """``name-version`` and appVersion of the release's chart. A local chart's directory is
    its version, so its Chart.yaml is read; a row this backend did not write may name a
    chart that is not there, and is then reported by its reference."""
    try:
        path = local_chart_path(row.chart) / "Chart.yaml"
        metadata = yaml.safe_load(path.read_text("utf-8"))
        label = f"{metadata['name']}-{metadata['version']}"
    except (ChartReferenceError, OSError, yaml.YAMLError, TypeError, KeyError):
        return "-".join(filter(None, [row.chart, row.chart_version])), None
    app_version = metadata.get("appVersion")
    return label, None if app_version is None else str(app_version)


def _status(row: ClusterRelease) -> ReleaseStatus:
    chart, app_version = _chart_label(row)
    return ReleaseStatus(
        name=row.name,
        namespace=row.namespace,
        revision=row.revision,
        state=row.status,
        chart=chart,
        app_version=app_version,
        description="Install complete" if row.revision == 1 else "Upgrade complete",
        last_deployed=row.updated_at,
    )


class LocalClusterBackend(ClusterBackend):
    """Releases of one ``clusters`` row, kept as rows (see the module docstring).

    ``kubeconfig_conn_id`` is accepted everywhere, checked for shape and otherwise ignored:
    the cluster is the row this backend is bound to.
    """

    name: ClassVar[str] = "local"

    def __init__(self, cluster: ClusterRef, *, scope: SessionScope = session_scope) -> None:
        self.scope = scope
        if not isinstance(cluster, Cluster):
            with scope() as session:
                cluster = find_cluster(session, cluster)
        self.cluster_id: UUID = cluster.id
        self.cluster_name: str = cluster.name

    def install(self, release: ReleaseSpec) -> ReleaseStatus:
        return self._install(release)

    def rollback(self, release: ReleaseSpec, revision: int) -> ReleaseStatus:
        """Re-install ``release``, the spec of the earlier state: this backend keeps no
        history, so the spec is the earlier state. It records a new revision with those
        values, exactly as ``helm rollback`` creates a new revision with the old manifest
        (even when the values are the ones deployed now, as helm does too).

        As with helm, the release must exist (:class:`ReleaseNotFoundError`) and
        ``revision`` must be one it has had (1 to the current revision); checked under the
        cluster's lock, so a rollback never creates a release.
        """
        check_revision(revision)
        status = self._install(release, rollback_to=revision)
        return status.model_copy(update={"description": f"Rollback to {revision}"})

    def _install(self, release: ReleaseSpec, *, rollback_to: int | None = None) -> ReleaseStatus:
        from foundryflow.cluster.render import render_release  # native library: users only

        rendered = render_release(release)
        if glob := injected_failure(release.name):
            raise ClusterCommandError(
                f"install of release {release.name!r} in namespace {release.namespace!r} "
                f"failed: injected by {FAIL_ENV}={glob!r}"
            )
        demand = release_demand(rendered.manifests)
        workloads = release_workloads(rendered.manifests)
        try:
            with self.scope() as session:
                return self._record(
                    session,
                    release,
                    rendered.endpoints,
                    demand,
                    workloads,
                    rollback_to=rollback_to,
                )
        except IntegrityError as exc:
            raise ClusterError(
                f"release {release.name!r} conflicts with the inventory of cluster "
                f"{self.cluster_name!r}: {exc.orig}"
            ) from exc

    def uninstall(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> None:
        self._check(name, namespace, kubeconfig_conn_id)
        try:
            with self.scope() as session:
                self._lock(session)
                deleted = session.execute(
                    delete(ClusterRelease)
                    .where(*self._where(name, namespace))
                    .returning(ClusterRelease.id)
                ).all()
        except IntegrityError as exc:
            raise ClusterError(
                f"release {name!r} in namespace {namespace!r} of cluster {self.cluster_name!r} "
                f"is still in use and was not uninstalled: {exc.orig}"
            ) from exc
        if not deleted:
            log.info("release %s in namespace %s is already uninstalled", name, namespace)

    def status(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> ReleaseStatus:
        self._check(name, namespace, kubeconfig_conn_id)
        with self.scope() as session:
            return _status(self._release(session, name, namespace))

    def endpoints(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> list[Endpoint]:
        self._check(name, namespace, kubeconfig_conn_id)
        with self.scope() as session:
            row = self._release(session, name, namespace)
            endpoints = [Endpoint.model_validate(item) for item in row.endpoints]
            return sorted(endpoints, key=lambda e: (e.name, e.port))

    def instances(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> Instances:
        """``desired`` is the sum of the replicas of the release's recorded workloads.

        There are no pods here: the local cluster models a healthy cluster, where an install
        that succeeded has all its pods up and on its latest template, so a ``deployed``
        release reports ``ready`` and ``updated`` equal to ``desired``. This is a model, not
        an observation: crash loops, slow rollouts and lost nodes do not happen here. A
        release in any other state (rows not written by this backend) reports none ready.
        """
        self._check(name, namespace, kubeconfig_conn_id)
        with self.scope() as session:
            row = self._release(session, name, namespace)
            desired = sum(int(workload["replicas"]) for workload in row.workloads)
            running = desired if row.status is ReleaseState.DEPLOYED else 0
            return Instances(desired=desired, ready=running, updated=running)

    def _record(
        self,
        session: Session,
        release: ReleaseSpec,
        endpoints: list[Endpoint],
        demand: ReleaseDemand,
        workloads: list[dict[str, Any]],
        *,
        rollback_to: int | None = None,
    ) -> ReleaseStatus:
        """Write the release, its allocations, endpoints and workloads; the caller's scope
        commits. ``rollback_to``: a rollback, which needs the release and always makes a
        new revision."""
        self._lock(session)
        row = session.scalars(
            select(ClusterRelease).where(*self._where(release.name, release.namespace))
        ).one_or_none()
        if rollback_to is not None:
            if row is None:
                raise ReleaseNotFoundError(
                    f"rollback of release {release.name!r}: it does not exist in namespace "
                    f"{release.namespace!r} of cluster {self.cluster_name!r}"
                )
            if rollback_to > row.revision:  # helm: "release has no N version"
                raise ClusterCommandError(
                    f"rollback of release {release.name!r} in namespace "
                    f"{release.namespace!r} to revision {rollback_to} failed: the release "
                    f"is at revision {row.revision}, it has no revision {rollback_to}"
                )
        elif (
            row is not None
            and row.status is ReleaseState.DEPLOYED
            and (row.chart, row.chart_version, row.values)
            == (release.chart, release.chart_version, release.values)
        ):
            if not row.workloads and workloads:  # recorded before workloads were kept
                row.workloads = workloads
            return _status(row)
        model_id = self._attributed_model(session, release, demand, bool(endpoints))
        if row is None:
            row = ClusterRelease(
                id=uuid4(),
                cluster_id=self.cluster_id,
                name=release.name,
                namespace=release.namespace,
                revision=0,
            )
            session.add(row)
        else:
            session.execute(delete(ClusterAllocation).where(ClusterAllocation.release_id == row.id))
        row.chart = release.chart
        row.chart_version = release.chart_version
        row.values = dict(release.values)
        row.endpoints = [endpoint.model_dump(mode="json") for endpoint in endpoints]
        row.workloads = workloads
        row.revision += 1
        row.status = ReleaseState.DEPLOYED
        session.flush()
        capacities = node_capacities(session, self.cluster_id)
        placed = place_pods(
            demand.pods, capacities, cluster=self.cluster_name, release=release.name
        )
        memory = {capacity.node_id: capacity.memory_gb_per_device for capacity in capacities}
        for node_id, devices in placed.items():
            assert model_id is not None  # required when pods need GPUs
            session.add(
                ClusterAllocation(
                    release_id=row.id,
                    node_id=node_id,
                    model_id=model_id,
                    hardware_mode=HardwareMode.DEDICATED,
                    devices_used=devices,
                    memory_gb=devices * memory[node_id],
                )
            )
        self._record_endpoints(session, row, endpoints, model_id, demand.project_id)
        session.flush()
        return _status(row)

    def _attributed_model(
        self, session: Session, release: ReleaseSpec, demand: ReleaseDemand, has_endpoints: bool
    ) -> int | None:
        """The registry id of the model the release serves, once it needs GPUs or has
        project endpoints (allocation and project endpoint rows reference a model). Refuses
        a release that cannot be attributed, before anything is written."""
        if not demand.pods and not (has_endpoints and demand.project_id is not None):
            return None
        if demand.model_uri is None:
            raise ClusterError(
                f"release {release.name!r} needs GPUs or has project endpoints but its pods "
                f"name no model ({MODEL_FLAG}<uri>): the local cluster records allocations "
                "and project endpoints per model"
            )
        model_id = session.scalars(select(Model.id).where(Model.uri == demand.model_uri)).first()
        if model_id is None:
            raise ClusterError(
                f"model {demand.model_uri!r} of release {release.name!r} is not in the model "
                "registry: onboard it before deploying it"
            )
        return model_id

    def _record_endpoints(
        self,
        session: Session,
        row: ClusterRelease,
        endpoints: list[Endpoint],
        model_id: int | None,
        project_id: UUID | None,
    ) -> None:
        """Bring the release's project endpoint rows to ``endpoints``, updating rows in place
        so an endpoint keeps its id (guardrail deployments reference it) across upgrades; a
        release of no project has none."""
        wanted = (
            {_row_name(endpoint): endpoint for endpoint in endpoints}
            if project_id is not None
            else {}
        )
        existing = {
            endpoint.name: endpoint
            for endpoint in session.scalars(
                select(EndpointRow).where(EndpointRow.release_id == row.id)
            )
        }
        for name, stale in existing.items():
            if name not in wanted:
                session.delete(stale)
        if not wanted:
            return
        assert model_id is not None and project_id is not None  # checked by _attributed_model
        taken = session.scalars(
            select(EndpointRow.name).where(
                EndpointRow.project_id == project_id,
                EndpointRow.name.in_(wanted),
                EndpointRow.release_id.is_distinct_from(row.id),
            )
        ).all()
        if taken:
            raise ClusterError(
                f"endpoint name(s) {', '.join(sorted(taken))} of release {row.name!r} already "
                f"exist in project {project_id}: choose another release name"
            )
        for name, endpoint in wanted.items():
            record = existing.get(name) or EndpointRow(release_id=row.id, name=name)
            record.project_id = project_id
            record.model_id = model_id
            record.cluster_id = self.cluster_id
            record.url = endpoint.url
            record.status = EndpointStatus.RUNNING
            session.add(record)

    def _check(self, name: str, namespace: str, kubeconfig_conn_id: str | None) -> None:
        check_release_name(name)
        check_namespace(namespace)
        if kubeconfig_conn_id is not None:
            check_conn_id(kubeconfig_conn_id)

    def _where(self, name: str, namespace: str) -> tuple[Any, ...]:
        return (
            ClusterRelease.cluster_id == self.cluster_id,
            ClusterRelease.namespace == namespace,
            ClusterRelease.name == name,
        )

    def _lock(self, session: Session) -> None:
        """Serialize the cluster's installs and uninstalls, so two installs cannot both take
        the last free GPUs. ``NO KEY UPDATE`` leaves foreign-key checks on the row free."""
        if session.get(Cluster, self.cluster_id, with_for_update={"key_share": True}) is None:
            raise ClusterError(f"cluster {self.cluster_name!r} no longer exists")

    def _release(self, session: Session, name: str, namespace: str) -> ClusterRelease:
        row = session.scalars(select(ClusterRelease).where(*self._where(name, namespace))).first()
        if row is None:
            raise ReleaseNotFoundError(
                f"release {name!r} does not exist in namespace {namespace!r} of cluster "
                f"{self.cluster_name!r}"
            )
        return row
