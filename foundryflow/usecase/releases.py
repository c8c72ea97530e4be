"""Putting one chart on a cluster of the inventory: the work behind ``helm_deploy``.

The ``usecase.helm_deploy`` and ``usecase.deployment_create`` actions and the
``HelmInstallOperator`` all come here, so a chart goes through the same checks whichever
way it is asked for: the chart reference's shape, the platform's blocked values (at any
depth, after templates were rendered), then :class:`~foundryflow.cluster.base.ReleaseSpec`
(names, versions, the chart's own schema on the local backend). Nothing touches the
cluster before all of them pass.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from foundryflow.cluster.backends import backend_for
from foundryflow.cluster.base import Endpoint, ReleaseSpec
from foundryflow.cluster.local import find_cluster
from foundryflow.store.db import session_scope
from foundryflow.usecase.chart_security import check_values, parse_chart_ref


class ChartRelease(BaseModel):
    """What to install (seed 004, B.1's params)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cluster: str = Field(min_length=1, description="Cluster name or id.")
    release_name: str = Field(description="Helm release name (DNS-1123, at most 53).")
    namespace: str = Field(description="Target namespace; created if absent.")
    chart_ref: str = Field(
        description="oci://host/path/chart, https://host/repo/chart or charts/<name>."
    )
    chart_version: str | None = Field(default=None, description="Exact version (remote only).")
    values: dict[str, JsonValue] = Field(default_factory=dict)
    timeout_seconds: int = Field(default=600, ge=1, le=3600)
    wait: bool = True


class InstalledRelease(BaseModel):
    """What was installed (seed 004, B.1's outputs)."""

    model_config = ConfigDict(frozen=True)

    job_id: str = Field(description="Id of this install: cluster, namespace, release, revision.")
    cluster_id: str
    namespace: str
    release_name: str
    revision: int
    chart: str = Field(description="Chart name and version, e.g. agent-runtime-0.1.0.")
    status: str
    endpoint_url: str = Field(description="URL of the release's main Service port, or ''.")
    services: list[str]


def release_spec(request: ChartRelease) -> ReleaseSpec:
    """The validated release; raises with a message naming the bad part."""
    ref = parse_chart_ref(request.chart_ref)
    check_values(request.values, where=f"values of release {request.release_name}")
    return ReleaseSpec(
        name=request.release_name,
        namespace=request.namespace,
        values=request.values,
        timeout_seconds=request.timeout_seconds,
        wait=request.wait,
        atomic=request.wait,
        **ref.release_fields(request.chart_version),
    )


def main_endpoint(endpoints: list[Endpoint]) -> str:
    """The URL clients use: the port named ``http`` if there is one, else the first."""
    for endpoint in endpoints:
        if endpoint.port_name == "http":
            return endpoint.url
    return endpoints[0].url if endpoints else ""


def job_id(cluster_id: UUID, namespace: str, release: str, revision: int) -> str:
    """Deterministic, so a retried install that converged reports the same job."""
    return str(uuid5(NAMESPACE_URL, f"foundryflow:{cluster_id}/{namespace}/{release}/{revision}"))


def install_chart(request: ChartRelease) -> InstalledRelease:
    """Install or upgrade the release (``upgrade --install``: a retry converges)."""
    spec = release_spec(request)
    with session_scope() as session:
        cluster_id = find_cluster(session, request.cluster).id
    backend = backend_for(cluster_id)
    status = backend.install(spec)
    endpoints = backend.endpoints(spec.name, spec.namespace)
    return InstalledRelease(
        job_id=job_id(cluster_id, spec.namespace, spec.name, status.revision),
        cluster_id=str(cluster_id),
        namespace=spec.namespace,
        release_name=spec.name,
        revision=status.revision,
        chart=status.chart,
        status=status.state.value,
        endpoint_url=main_endpoint(endpoints),
        services=sorted({endpoint.name for endpoint in endpoints}),
    )


def uninstall_chart(cluster: str, release_name: str, namespace: str) -> None:
    """Remove the release; one already gone is fine (stop and rollback may both try)."""
    backend_for(cluster).uninstall(release_name, namespace)
