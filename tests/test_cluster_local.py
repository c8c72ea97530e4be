"""The local cluster backend against the real PostgreSQL and the real chart.

Every install here goes through Helm's engine, the chart's schema and strict Kubernetes
validation, then into the inventory tables; the assertions read those tables back. Each
test builds its own clusters (uuid-suffixed names) and removes them, since the session's
database is shared by every test module.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml
from sqlalchemy import delete, select

from foundryflow.benchmark.seed import seed_catalog
from foundryflow.cluster.backends import (
    BACKEND_ENV,
    ClusterHelmBackend,
    backend_for,
    free_capacity,
)
from foundryflow.cluster.base import (
    CHARTS_DIR,
    ClusterCommandError,
    ClusterError,
    Instances,
    InvalidReleaseError,
    ReleaseNotFoundError,
    ReleaseSpec,
    ReleaseState,
    ValuesValidationError,
)
from foundryflow.cluster.local import (
    FAIL_ENV,
    HARDWARE_LABEL,
    NODE_POOL_LABEL,
    PROJECT_ANNOTATION,
    LocalClusterBackend,
    injected_failure,
    release_workloads,
)
from foundryflow.cluster.render import render_release
from foundryflow.store.catalog import HardwareConfig, Model
from foundryflow.store.db import session_scope
from foundryflow.store.guardrail import (
    Cluster,
    ClusterAllocation,
    ClusterBackendName,
    ClusterNode,
    ClusterRelease,
    Endpoint,
    EndpointStatus,
    GuardrailDeployment,
    GuardrailDeploymentTarget,
    GuardrailProfile,
    HardwareMode,
)

GUARD_1B = "meta-llama/Llama-Guard-3-1B"
GUARD_8B = "meta-llama/Llama-Guard-3-8B"
NAMESPACE = "guardrails"
CHART_META = yaml.safe_load((CHARTS_DIR / "model-endpoint" / "Chart.yaml").read_text())

Pools = list[tuple[str, str, int]]
"""(pool name, hardware catalog name, machines)."""


@pytest.fixture(scope="module", autouse=True)
def catalog() -> None:
    with session_scope() as session:
        seed_catalog(session)


@pytest.fixture(autouse=True)
def no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FAIL_ENV, raising=False)
    monkeypatch.delenv(BACKEND_ENV, raising=False)


@pytest.fixture
def make_cluster() -> Iterator[Callable[..., Cluster]]:
    """Creates clusters with node pools; removes them and everything recorded on them."""
    created: list[uuid.UUID] = []

    def make(
        pools: Pools,
        backend: ClusterBackendName = ClusterBackendName.LOCAL,
        kubeconfig_conn_id: str | None = None,
    ) -> Cluster:
        with session_scope() as session:
            hardware = dict(session.execute(select(HardwareConfig.name, HardwareConfig)).all())
            cluster = Cluster(
                name=f"test-local-{uuid.uuid4().hex[:10]}",
                backend=backend,
                kubeconfig_conn_id=kubeconfig_conn_id,
            )
            session.add(cluster)
            for name, hardware_name, count in pools:
                session.add(
                    ClusterNode(
                        cluster=cluster, name=name, hardware=hardware[hardware_name], count=count
                    )
                )
            session.flush()
            created.append(cluster.id)
            return cluster

    yield make
    with session_scope() as session:
        session.execute(delete(Endpoint).where(Endpoint.cluster_id.in_(created)))
        session.execute(delete(ClusterRelease).where(ClusterRelease.cluster_id.in_(created)))
        session.execute(delete(Cluster).where(Cluster.id.in_(created)))


@pytest.fixture
def project() -> uuid.UUID:
    return uuid.uuid4()


def values(
    project: uuid.UUID | None,
    *,
    model: str = GUARD_1B,
    tp: int = 1,
    replicas: int = 1,
    **more: Any,
) -> dict[str, Any]:
    annotations = {} if project is None else {PROJECT_ANNOTATION: str(project)}
    return {
        "replicaCount": replicas,
        "model": {"name": model, "tensorParallelSize": tp},
        "podAnnotations": annotations,
        **more,
    }


def spec(name: str, chart_values: dict[str, Any], namespace: str = NAMESPACE) -> ReleaseSpec:
    return ReleaseSpec(name=name, namespace=namespace, chart="model-endpoint", values=chart_values)


def release_name() -> str:
    return f"guard-{uuid.uuid4().hex[:8]}"


def inventory(cluster: Cluster) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the backend records for a cluster, comparable before and after."""
    with session_scope() as session:
        releases = session.execute(
            select(
                ClusterRelease.id,
                ClusterRelease.name,
                ClusterRelease.revision,
                ClusterRelease.values,
                ClusterRelease.updated_at,
            )
            .where(ClusterRelease.cluster_id == cluster.id)
            .order_by(ClusterRelease.name)
        ).all()
        allocations = session.execute(
            select(
                ClusterRelease.name,
                ClusterNode.name,
                ClusterAllocation.id,
                ClusterAllocation.devices_used,
                ClusterAllocation.memory_gb,
                ClusterAllocation.model_id,
                ClusterAllocation.hardware_mode,
            )
            .join(ClusterRelease, ClusterRelease.id == ClusterAllocation.release_id)
            .join(ClusterNode, ClusterNode.id == ClusterAllocation.node_id)
            .where(ClusterRelease.cluster_id == cluster.id)
            .order_by(ClusterRelease.name, ClusterNode.name)
        ).all()
        endpoints = session.execute(
            select(
                Endpoint.id,
                Endpoint.name,
                Endpoint.url,
                Endpoint.project_id,
                Endpoint.model_id,
                Endpoint.status,
            )
            .where(Endpoint.cluster_id == cluster.id)
            .order_by(Endpoint.name)
        ).all()
    return {
        "releases": [tuple(row) for row in releases],
        "allocations": [tuple(row) for row in allocations],
        "endpoints": [tuple(row) for row in endpoints],
    }


def model_id(uri: str) -> int:
    with session_scope() as session:
        return session.scalars(select(Model.id).where(Model.uri == uri)).one()


def free(cluster: Cluster) -> dict[str, int]:
    return {capacity.node_name: capacity.devices_free for capacity in free_capacity(cluster.id)}


# --------------------------------------------------------------------------- lifecycle
def test_install_renders_and_records_release_allocation_and_endpoint(
    make_cluster: Callable[..., Cluster], project: uuid.UUID
) -> None:
    cluster = make_cluster([("l4", "l4-24gb-x1", 2), ("l40s", "l40s-48gb-x4", 1)])
    backend = LocalClusterBackend(cluster.name)
    name = release_name()
    release = spec(name, values(project))

    status = backend.install(release)

    assert status.name == name and status.namespace == NAMESPACE
    assert status.revision == 1 and status.state is ReleaseState.DEPLOYED
    assert status.chart == f"model-endpoint-{CHART_META['version']}"
    assert status.app_version == CHART_META["appVersion"]
    assert status.description == "Install complete"
    assert backend.status(name, NAMESPACE) == status

    recorded = inventory(cluster)
    ((_, release_row_name, revision, stored_values, _),) = recorded["releases"]
    assert (release_row_name, revision, stored_values) == (name, 1, values(project))
    # best fit: the L4 pool (2 free) rather than the L40S pool (4 free)
    ((_, pool, _, devices, memory, model, mode),) = recorded["allocations"]
    assert (pool, devices, memory, model, mode) == (
        "l4",
        1,
        24.0,
        model_id(GUARD_1B),
        HardwareMode.DEDICATED,
    )
    service = f"{name}-model-endpoint"
    url = f"http://{service}.{NAMESPACE}.svc.cluster.local:8000"
    ((_, endpoint_name, endpoint_url, owner, served, state),) = recorded["endpoints"]
    assert (endpoint_name, endpoint_url, owner, served, state) == (
        f"{service}-http",
        url,
        project,
        model_id(GUARD_1B),
        EndpointStatus.RUNNING,
    )
    # the same endpoints the chart's Services give, as the helm backend reports them
    assert backend.endpoints(name, NAMESPACE) == render_release(release).endpoints
    assert [e.url for e in backend.endpoints(name, NAMESPACE)] == [url]


def test_same_values_are_a_no_op_and_new_values_upgrade_in_place(
    make_cluster: Callable[..., Cluster], project: uuid.UUID
) -> None:
    cluster = make_cluster([("l4", "l4-24gb-x1", 4)])
    backend = LocalClusterBackend(cluster.id)
    name = release_name()
    first = backend.install(spec(name, values(project)))
    before = inventory(cluster)

    assert backend.install(spec(name, values(project))) == first
    assert inventory(cluster) == before  # not even a timestamp moved

    upgraded = backend.install(spec(name, values(project, replicas=3)))

    assert upgraded.revision == 2 and upgraded.description == "Upgrade complete"
    after = inventory(cluster)
    assert [(r[1], r[2]) for r in after["releases"]] == [(name, 2)]
    assert [(a[1], a[3], a[4]) for a in after["allocations"]] == [("l4", 3, 72.0)]
    assert after["allocations"][0][2] != before["allocations"][0][2]  # replaced
    assert after["endpoints"] == before["endpoints"]  # same row, same id: references survive
    assert free(cluster) == {"l4": 1}
    assert backend.install(spec(name, values(project, replicas=3))) == upgraded

    downgraded = backend.install(spec(name, values(project, replicas=1)))
    assert downgraded.revision == 3
    assert free(cluster) == {"l4": 3}


def test_uninstall_removes_everything_and_is_idempotent(
    make_cluster: Callable[..., Cluster], project: uuid.UUID
) -> None:
    cluster = make_cluster([("l4", "l4-24gb-x1", 2)])
    backend = LocalClusterBackend(cluster.name)
    name, other = release_name(), release_name()
    backend.install(spec(name, values(project)))
    backend.install(spec(other, values(project)))

    backend.uninstall(name, NAMESPACE)

    recorded = inventory(cluster)
    assert [r[1] for r in recorded["releases"]] == [other]
    assert [a[0] for a in recorded["allocations"]] == [other]
    assert [e[1] for e in recorded["endpoints"]] == [f"{other}-model-endpoint-http"]
    assert free(cluster) == {"l4": 1}
    with pytest.raises(ReleaseNotFoundError, match=name):
        backend.status(name, NAMESPACE)
    with pytest.raises(ReleaseNotFoundError):
        backend.endpoints(name, NAMESPACE)

    backend.uninstall(name, NAMESPACE)  # already gone: success
    backend.uninstall(name, "elsewhere", kubeconfig_conn_id="ignored_here")
    assert inventory(cluster) == recorded


def test_status_of_unknown_release_and_bad_names(make_cluster: Callable[..., Cluster]) -> None:
    backend = LocalClusterBackend(make_cluster([("l4", "l4-24gb-x1", 1)]).name)

    with pytest.raises(ReleaseNotFoundError, match="does not exist in namespace 'guardrails'"):
        backend.status("never-installed", NAMESPACE)
    with pytest.raises(InvalidReleaseError):
        backend.status("Bad_Name", NAMESPACE)
    with pytest.raises(InvalidReleaseError):
        backend.uninstall("ok", "--all-namespaces")
    with pytest.raises(InvalidReleaseError):
        backend.endpoints("ok", NAMESPACE, kubeconfig_conn_id="postgres://user:pw@host")


def test_same_release_name_in_two_namespaces_are_two_releases(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster([("l4", "l4-24gb-x1", 2)])
    backend = LocalClusterBackend(cluster.name)
    name = release_name()
    backend.install(spec(name, values(uuid.uuid4()), namespace="team-a"))
    backend.install(spec(name, values(uuid.uuid4()), namespace="team-b"))

    assert backend.endpoints(name, "team-a")[0].url.endswith(".team-a.svc.cluster.local:8000")
    assert backend.endpoints(name, "team-b")[0].url.endswith(".team-b.svc.cluster.local:8000")
    assert free(cluster) == {"l4": 0}


# --------------------------------------------------------------------------- instances
def workloads_of(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    with session_scope() as session:
        return session.scalars(
            select(ClusterRelease.workloads).where(
                ClusterRelease.cluster_id == cluster.id, ClusterRelease.name == name
            )
        ).one()


def test_instances_count_the_recorded_workloads_and_rollback_reinstalls(
    make_cluster: Callable[..., Cluster], project: uuid.UUID
) -> None:
    cluster = make_cluster([("l4", "l4-24gb-x1", 4)])
    backend = LocalClusterBackend(cluster.name)
    name = release_name()
    deployment = f"{name}-model-endpoint"
    old_spec = spec(name, values(project, replicas=2))

    assert backend.install(old_spec).revision == 1
    assert backend.instances(name, NAMESPACE) == Instances(desired=2, ready=2, updated=2)
    assert workloads_of(cluster, name) == [
        {"kind": "Deployment", "name": deployment, "replicas": 2}
    ]

    assert backend.install(spec(name, values(project, replicas=3))).revision == 2
    assert backend.instances(name, NAMESPACE) == Instances(desired=3, ready=3, updated=3)
    assert free(cluster) == {"l4": 1}
    upgraded = inventory(cluster)

    rolled_back = backend.rollback(old_spec, 1)

    assert (rolled_back.revision, rolled_back.state) == (3, ReleaseState.DEPLOYED)
    assert rolled_back.description == "Rollback to 1"  # as helm describes it
    assert backend.status(name, NAMESPACE).revision == 3
    after = inventory(cluster)
    ((_, _, revision, stored_values, _),) = after["releases"]
    assert (revision, stored_values) == (3, values(project, replicas=2))
    assert backend.instances(name, NAMESPACE) == Instances(desired=2, ready=2, updated=2)
    assert workloads_of(cluster, name) == [
        {"kind": "Deployment", "name": deployment, "replicas": 2}
    ]
    assert free(cluster) == {"l4": 2}  # the allocations follow the values
    assert after["endpoints"] == upgraded["endpoints"]  # same rows, same ids

    # a rollback always makes a revision, even to the values deployed now (helm does too)
    assert backend.rollback(old_spec, 3).revision == 4
    assert backend.install(old_spec).revision == 4  # while an install of them is a no-op


def test_rollback_needs_the_release_and_a_revision_it_had(
    make_cluster: Callable[..., Cluster], project: uuid.UUID
) -> None:
    cluster = make_cluster([("l4", "l4-24gb-x1", 4)])
    backend = LocalClusterBackend(cluster.name)
    name = release_name()
    backend.install(spec(name, values(project)))
    backend.install(spec(name, values(project, replicas=2)))
    before = inventory(cluster)

    with pytest.raises(ReleaseNotFoundError, match="does not exist in namespace 'guardrails'"):
        backend.rollback(spec(release_name(), values(project)), 1)  # never creates one
    with pytest.raises(ReleaseNotFoundError):
        backend.rollback(spec(name, values(project), namespace="elsewhere"), 1)
    with pytest.raises(ClusterCommandError, match="at revision 2, it has no revision 3"):
        backend.rollback(spec(name, values(project)), 3)
    for revision in (0, -1):
        with pytest.raises(InvalidReleaseError, match="is not a release revision"):
            backend.rollback(spec(name, values(project)), revision)
    assert inventory(cluster) == before


def test_instances_of_unknown_releases_and_other_states(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster([("l4", "l4-24gb-x1", 1)])
    backend = LocalClusterBackend(cluster.name)

    with pytest.raises(ReleaseNotFoundError, match="does not exist in namespace 'guardrails'"):
        backend.instances("never-installed", NAMESPACE)
    with pytest.raises(InvalidReleaseError):
        backend.instances("Bad_Name", NAMESPACE)
    with pytest.raises(InvalidReleaseError):
        backend.instances("ok", NAMESPACE, kubeconfig_conn_id="postgres://user:pw@host")

    # a row this backend did not write, in a state other than deployed: no pods up
    name = release_name()
    with session_scope() as session:
        session.add(
            ClusterRelease(
                cluster_id=cluster.id,
                name=name,
                namespace=NAMESPACE,
                chart="model-endpoint",
                values={},
                workloads=[
                    {"kind": "Deployment", "name": "a", "replicas": 2},
                    {"kind": "StatefulSet", "name": "b", "replicas": 3},
                ],
                status=ReleaseState.FAILED,
            )
        )
    assert backend.instances(name, NAMESPACE) == Instances(desired=5, ready=0, updated=0)


def test_a_release_recorded_before_workloads_were_kept_gets_them_on_reinstall(
    make_cluster: Callable[..., Cluster], project: uuid.UUID
) -> None:
    cluster = make_cluster([("l4", "l4-24gb-x1", 2)])
    backend = LocalClusterBackend(cluster.name)
    name = release_name()
    backend.install(spec(name, values(project, replicas=2)))
    with session_scope() as session:
        row = session.scalars(
            select(ClusterRelease).where(ClusterRelease.cluster_id == cluster.id)
        ).one()
        row.workloads = []  # as migration 0005 left the rows of earlier installs
    assert backend.instances(name, NAMESPACE).desired == 0

    assert backend.install(spec(name, values(project, replicas=2))).revision == 1  # no-op
    assert backend.instances(name, NAMESPACE) == Instances(desired=2, ready=2, updated=2)


def test_release_workloads_from_manifests() -> None:
    manifests = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"}, "spec": {}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
         "spec": {"replicas": 0}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
         "spec": {}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
         "spec": {"replicas": 4}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
         "spec": {"parallelism": 3}},
    ]  # fmt: skip
    assert release_workloads(manifests) == [
        {"kind": "Deployment", "name": "api", "replicas": 4},
        {"kind": "Deployment", "name": "web", "replicas": 1},  # the API server's default
        {"kind": "StatefulSet", "name": "db", "replicas": 0},
    ]


# --------------------------------------------------------------------------- capacity
def test_allocations_are_cumulative_and_a_full_cluster_refuses_writing_nothing(
    make_cluster: Callable[..., Cluster], project: uuid.UUID
) -> None:
    cluster = make_cluster([("l4", "l4-24gb-x1", 3)])
    backend = LocalClusterBackend(cluster.name)
    first, second, third = release_name(), release_name(), release_name()
    backend.install(spec(first, values(project, replicas=2)))
    backend.install(spec(second, values(project, model=GUARD_8B)))
    assert free(cluster) == {"l4": 0}
    full = inventory(cluster)

    with pytest.raises(ClusterError, match="not enough free GPUs") as refused:
        backend.install(spec(third, values(project)))
    assert "pool 'l4' (l4-24gb-x1): 0 of 3 GPUs free" in str(refused.value)
    assert inventory(cluster) == full

    # an upgrade that does not fit leaves the running revision as it was
    with pytest.raises(ClusterError, match="not enough free GPUs"):
        backend.install(spec(second, values(project, model=GUARD_8B, replicas=2)))
    assert inventory(cluster) == full
    assert backend.status(second, NAMESPACE).revision == 1

    backend.uninstall(first, NAMESPACE)
    backend.install(spec(third, values(project)))
    assert free(cluster) == {"l4": 1}


def test_a_pod_must_fit_on_one_machine_of_an_nvidia_pool(
    make_cluster: Callable[..., Cluster], project: uuid.UUID
) -> None:
    cluster = make_cluster(
        [
            ("cpu", "xeon-8480plus-2s", 4),
            ("l4", "l4-24gb-x1", 8),
            ("mi300", "mi300x-192gb-x8", 1),
        ]
    )
    backend = LocalClusterBackend(cluster.name)
    before = inventory(cluster)

    with pytest.raises(ClusterError) as refused:
        backend.install(spec(release_name(), values(project, tp=2)))

    message = str(refused.value)
    assert "needs 2 nvidia.com/gpu on one machine" in message
    assert "pool 'cpu' (xeon-8480plus-2s): no NVIDIA GPUs" in message
    assert "pool 'l4' (l4-24gb-x1): machines have 1 GPUs" in message
    assert "pool 'mi300' (mi300x-192gb-x8): no NVIDIA GPUs" in message
    assert inventory(cluster) == before


def test_node_selector_picks_the_pool_or_hardware(
    make_cluster: Callable[..., Cluster], project: uuid.UUID
) -> None:
    cluster = make_cluster([("h100", "h100-sxm-80gb-x8", 2), ("l4", "l4-24gb-x1", 4)])
    backend = LocalClusterBackend(cluster.name)

    backend.install(spec(release_name(), values(project, nodeSelector={NODE_POOL_LABEL: "h100"})))
    backend.install(
        spec(
            release_name(),
            values(project, tp=4, replicas=2, nodeSelector={HARDWARE_LABEL: "h100-sxm-80gb-x8"}),
        )
    )
    assert free(cluster) == {"h100": 16 - 1 - 8, "l4": 4}

    before = inventory(cluster)
    with pytest.raises(ClusterError, match=r"pool 'h100' .*not selected by the nodeSelector"):
        backend.install(
            spec(release_name(), values(project, nodeSelector={NODE_POOL_LABEL: "a100"}))
        )
    assert inventory(cluster) == before


def test_free_capacity_counts_every_allocation_on_the_pools(
    make_cluster: Callable[..., Cluster], project: uuid.UUID
) -> None:
    cluster = make_cluster(
        [("cpu", "xeon-8480plus-2s", 1), ("h100", "h100-sxm-80gb-x8", 2), ("l4", "l4-24gb-x1", 3)]
    )
    backend = LocalClusterBackend(cluster.id)
    backend.install(spec(release_name(), values(project, model=GUARD_8B, tp=4, replicas=2)))

    capacities = free_capacity(cluster.name)

    with session_scope() as session:
        node_ids = dict(
            session.execute(
                select(ClusterNode.name, ClusterNode.id).where(ClusterNode.cluster_id == cluster.id)
            ).all()
        )
    assert [c.node_id for c in capacities] == [node_ids["cpu"], node_ids["h100"], node_ids["l4"]]
    assert [
        (
            c.node_name,
            c.hardware_name,
            c.device_type,
            c.vendor,
            c.devices_per_node,
            c.devices_total,
            c.devices_free,
            c.memory_gb_per_device,
            c.memory_gb_free,
        )
        for c in capacities
    ] == [
        ("cpu", "xeon-8480plus-2s", "cpu", "Intel", 2, 2, 2, 256.0, 512.0),
        ("h100", "h100-sxm-80gb-x8", "gpu", "NVIDIA", 8, 16, 8, 80.0, 640.0),
        ("l4", "l4-24gb-x1", "gpu", "NVIDIA", 1, 3, 3, 24.0, 72.0),
    ]
    assert free_capacity(cluster.id) == capacities
    assert free_capacity(str(cluster.id)) == capacities
    assert free_capacity(cluster) == capacities

    # allocations written by others (a helm cluster's deploy, shared mode) count too, and a
    # caller's own session sees its uncommitted ones
    with session_scope() as session:
        release = ClusterRelease(
            cluster_id=cluster.id,
            name=release_name(),
            namespace=NAMESPACE,
            chart="model-endpoint",
            values={},
            status=ReleaseState.DEPLOYED,
        )
        session.add(release)
        session.flush()
        session.add(
            ClusterAllocation(
                release_id=release.id,
                node_id=node_ids["l4"],
                model_id=model_id(GUARD_1B),
                hardware_mode=HardwareMode.SHARED,
                devices_used=2,
                memory_gb=10.0,
            )
        )
        session.flush()
        (l4,) = [c for c in free_capacity(cluster.id, session=session) if c.node_name == "l4"]
        assert (l4.devices_free, l4.memory_gb_free) == (1, 62.0)
    on_l4 = {NODE_POOL_LABEL: "l4"}
    with pytest.raises(ClusterError, match="pod 2 of 2 ") as refused:
        backend.install(spec(release_name(), values(project, replicas=2, nodeSelector=on_l4)))
    assert "(after 1 GPUs for its earlier pods); " in str(refused.value)
    assert "pool 'l4' (l4-24gb-x1): 0 of 3 GPUs free" in str(refused.value)
    backend.install(spec(release_name(), values(project, nodeSelector=on_l4)))
    assert free(cluster)["l4"] == 0


def test_concurrent_installs_never_take_more_gpus_than_there_are(
    make_cluster: Callable[..., Cluster], project: uuid.UUID
) -> None:
    cluster = make_cluster([("l4", "l4-24gb-x1", 2)])
    backend = LocalClusterBackend(cluster.name)

    def install(name: str) -> str:
        try:
            backend.install(spec(name, values(project)))
        except ClusterError as exc:
            assert "not enough free GPUs" in str(exc)
            return "refused"
        return "installed"

    with ThreadPoolExecutor(max_workers=5) as pool:
        outcomes = list(pool.map(install, [release_name() for _ in range(5)]))

    assert sorted(outcomes) == ["installed"] * 2 + ["refused"] * 3
    assert free(cluster) == {"l4": 0}
    assert len(inventory(cluster)["releases"]) == 2


# --------------------------------------------------------------------------- refusals
def test_a_release_whose_endpoint_is_in_use_is_not_uninstalled(
    make_cluster: Callable[..., Cluster], project: uuid.UUID
) -> None:
    cluster = make_cluster([("l4", "l4-24gb-x1", 1)])
    backend = LocalClusterBackend(cluster.name)
    name = release_name()
    backend.install(spec(name, values(project)))
    with session_scope() as session:
        endpoint_id = session.scalars(
            select(Endpoint.id).where(Endpoint.cluster_id == cluster.id)
        ).one()
        profile = GuardrailProfile(
            project_id=project, name=name, guard_types=["input"], severity_threshold=0.5
        )
        deployment = GuardrailDeployment(profile=profile, project_id=project)
        session.add(deployment)
        session.flush()
        session.add(GuardrailDeploymentTarget(deployment_id=deployment.id, endpoint_id=endpoint_id))
    before = inventory(cluster)

    try:
        with pytest.raises(ClusterError, match="is still in use and was not uninstalled"):
            backend.uninstall(name, NAMESPACE)
        assert inventory(cluster) == before
    finally:
        with session_scope() as session:
            session.execute(
                delete(GuardrailDeployment).where(GuardrailDeployment.id == deployment.id)
            )
            session.execute(delete(GuardrailProfile).where(GuardrailProfile.id == profile.id))
    backend.uninstall(name, NAMESPACE)
    assert inventory(cluster)["releases"] == []


def test_injected_failure_by_glob_writes_nothing(
    make_cluster: Callable[..., Cluster], project: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = make_cluster([("l4", "l4-24gb-x1", 4)])
    backend = LocalClusterBackend(cluster.name)
    kept = f"keep-{uuid.uuid4().hex[:8]}"
    backend.install(spec(kept, values(project)))
    before = inventory(cluster)
    monkeypatch.setenv(FAIL_ENV, "nothing-*, doomed-*")

    doomed = f"doomed-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ClusterCommandError, match=f"injected by {FAIL_ENV}='doomed-\\*'"):
        backend.install(spec(doomed, values(project)))
    assert inventory(cluster) == before

    monkeypatch.setenv(FAIL_ENV, "keep-*")  # an upgrade fails too; the release stays as it was
    with pytest.raises(ClusterCommandError, match="injected"):
        backend.install(spec(kept, values(project, replicas=2)))
    assert inventory(cluster) == before

    monkeypatch.setenv(FAIL_ENV, "doomed-*")
    backend.install(spec(kept, values(project, replicas=2)))  # not matching: installs
    assert free(cluster) == {"l4": 2}


def test_injected_failure_patterns() -> None:
    assert injected_failure("guard-a", "guard-*") == "guard-*"
    assert injected_failure("guard-a", " x , guard-? ") == "guard-?"
    assert injected_failure("guard-a", "guard") is None
    assert injected_failure("guard-a", " , ") is None
    assert injected_failure("guard-a", "") is None


@pytest.mark.parametrize(
    "hostile",
    [
        {"model": {"name": "--trust-remote-code"}},
        {"model": {"name": "org/model; rm -rf /"}},
        {"resources": {"limits": {"nvidia.com/gpu": 0}}},
        {"model": {"tensorParallelSize": 64}},
        {"replicaCount": -1},
        {"hfToken": "hf_secret"},
        {"podAnnotations": {PROJECT_ANNOTATION: 1}},
    ],
)
def test_hostile_values_are_rejected_by_the_schema_before_anything_is_written(
    make_cluster: Callable[..., Cluster], monkeypatch: pytest.MonkeyPatch, hostile: dict[str, Any]
) -> None:
    cluster = make_cluster([("l4", "l4-24gb-x1", 4)])
    monkeypatch.setenv(FAIL_ENV, "*")  # the schema answers first: the injection is not reached
    before = inventory(cluster)

    with pytest.raises(ValuesValidationError):
        LocalClusterBackend(cluster.name).install(spec(release_name(), hostile))
    assert inventory(cluster) == before


@pytest.mark.parametrize(
    ("chart_values", "message"),
    [
        (values(uuid.uuid4(), model="acme/not-onboarded"), "not in the model registry"),
        (values(None, model="acme/not-onboarded"), "not in the model registry"),
        (
            {**values(None), "podAnnotations": {PROJECT_ANNOTATION: "team-a"}},
            "is not a project id",
        ),
    ],
)
def test_releases_the_inventory_cannot_attribute_are_refused(
    make_cluster: Callable[..., Cluster], chart_values: dict[str, Any], message: str
) -> None:
    cluster = make_cluster([("l4", "l4-24gb-x1", 4)])
    before = inventory(cluster)

    with pytest.raises(ClusterError, match=message):
        LocalClusterBackend(cluster.name).install(spec(release_name(), chart_values))
    assert inventory(cluster) == before


def test_a_release_of_no_project_keeps_its_endpoints_on_the_release_only(
    make_cluster: Callable[..., Cluster],
) -> None:
    """Use-case components (an LLM for an agent) belong to no guardrail project: their URLs
    live on the release row, and the project ``endpoints`` table is left alone."""
    cluster = make_cluster([("l4", "l4-24gb-x1", 4)])
    backend = LocalClusterBackend(cluster.name)
    name = release_name()

    backend.install(spec(name, values(None)))

    (endpoint,) = backend.endpoints(name, NAMESPACE)
    assert endpoint.url == (f"http://{name}-model-endpoint.{NAMESPACE}.svc.cluster.local:8000")
    state = inventory(cluster)
    assert state["endpoints"] == []
    assert [row[3] for row in state["allocations"]] == [1]  # its GPU is still accounted
    backend.uninstall(name, NAMESPACE)
    assert inventory(cluster) == {"releases": [], "allocations": [], "endpoints": []}


def test_an_endpoint_name_taken_in_the_project_is_refused(
    make_cluster: Callable[..., Cluster], project: uuid.UUID
) -> None:
    first, second = (make_cluster([("l4", "l4-24gb-x1", 1)]) for _ in range(2))
    name = release_name()
    LocalClusterBackend(first.name).install(spec(name, values(project)))
    before = inventory(second)

    with pytest.raises(ClusterError, match="already exist in project"):
        LocalClusterBackend(second.name).install(spec(name, values(project)))
    assert inventory(second) == before
    LocalClusterBackend(second.name).install(spec(name, values(uuid.uuid4())))  # other project


def test_remote_charts_do_not_render_locally(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster([("l4", "l4-24gb-x1", 1)])
    remote = ReleaseSpec(
        name="remote",
        namespace=NAMESPACE,
        chart="oci://ghcr.io/acme/charts/x",
        chart_version="1.0.0",
    )
    with pytest.raises(ClusterError, match="remote"):
        LocalClusterBackend(cluster.name).install(remote)
    assert inventory(cluster)["releases"] == []


# --------------------------------------------------------------------------- backend_for
def test_backend_for_follows_the_cluster_row(make_cluster: Callable[..., Cluster]) -> None:
    local = make_cluster([("l4", "l4-24gb-x1", 1)])
    helm = make_cluster([], ClusterBackendName.HELM, kubeconfig_conn_id="test_kube_prod")

    for reference in (local, local.id, str(local.id), local.name):
        backend = backend_for(reference)
        assert isinstance(backend, LocalClusterBackend)
        assert (backend.cluster_id, backend.cluster_name) == (local.id, local.name)
    for reference in (helm, helm.id, helm.name):
        backend = backend_for(reference)
        assert isinstance(backend, ClusterHelmBackend) and backend.name == "helm"
        assert backend.kubeconfig_conn_id == "test_kube_prod"
    with pytest.raises(ClusterError, match="no cluster 'no-such-cluster'"):
        backend_for("no-such-cluster")
    with pytest.raises(ClusterError, match="no cluster"):
        backend_for(uuid.uuid4())


def test_backend_env_forces_one_backend_for_all_clusters(
    make_cluster: Callable[..., Cluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    local = make_cluster([("l4", "l4-24gb-x1", 1)])
    helm = make_cluster([("l4", "l4-24gb-x1", 1)], ClusterBackendName.HELM, "test_kube_prod")

    monkeypatch.setenv(BACKEND_ENV, "local")
    assert isinstance(backend_for(helm.name), LocalClusterBackend)
    assert isinstance(backend_for(local.name), LocalClusterBackend)
    monkeypatch.setenv(BACKEND_ENV, "helm")
    assert isinstance(backend_for(helm.name), ClusterHelmBackend)
    forced = backend_for(local.name)
    assert isinstance(forced, ClusterHelmBackend) and forced.kubeconfig_conn_id is None
    monkeypatch.setenv(BACKEND_ENV, "kubectl")
    with pytest.raises(ClusterError, match=f"{BACKEND_ENV}='kubectl' is not one of helm|local"):
        backend_for(local.name)


def test_helm_backend_of_a_cluster_uses_its_kubeconfig_connection(
    make_cluster: Callable[..., Cluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = make_cluster([], ClusterBackendName.HELM, kubeconfig_conn_id="test_kube_prod")
    monkeypatch.setenv(
        "AIRFLOW_CONN_TEST_KUBE_PROD",
        json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": "apiVersion: v1\n"}}),
    )
    backend = backend_for(cluster.name)
    assert isinstance(backend, ClusterHelmBackend)
    calls: list[list[str]] = []

    def helm_stand_in(argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        """Answers as helm does for a release that is not there."""
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 1, "", "Error: uninstall: release: not found")

    backend.runner = helm_stand_in
    backend.uninstall("guard", NAMESPACE)
    (argv,) = calls
    assert argv[:5] == ["helm", "uninstall", "guard", "--namespace", NAMESPACE]
    assert "--kubeconfig" in argv

    with pytest.raises(ClusterError, match="not the connection of this cluster"):
        backend.status("guard", NAMESPACE, kubeconfig_conn_id="test_kube_other")
    with pytest.raises(ClusterError, match="not the connection of this cluster"):
        backend.install(
            ReleaseSpec(
                name="guard",
                namespace=NAMESPACE,
                chart="model-endpoint",
                kubeconfig_conn_id="test_kube_other",
            )
        )
    assert len(calls) == 1  # refused before helm ran
