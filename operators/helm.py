"""``HelmInstallOperator``: put one Helm chart on a cluster of the inventory from any DAG.

It is a thin adapter over :func:`foundryflow.usecase.releases.install_chart`, the call the
``usecase.helm_deploy`` and ``usecase.deployment_create`` actions make, so a chart installed
by a hand-written DAG goes through exactly the checks and backend a use-case pipeline's does.
foundryflow is imported in ``execute``, not at module level: the catalog's ORM imports and
the local backend's native Helm library would slow DAG parsing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from foundryflow.problems import validation_problems

if TYPE_CHECKING:
    from pydantic import ValidationError

_PARAMETERS = {"name": "release_name", "chart": "chart_ref", "repo_url": "chart_ref"}
"""ReleaseSpec fields named as the operator's parameters, so a message says what to change."""


def _one_line(message: str) -> str:
    """A multi-line message (the chart schema lists one problem per line) on one line."""
    head, *rest = [line.strip() for line in message.strip().splitlines() if line.strip()] or [""]
    return " ".join([head, "; ".join(rest)]) if rest else head


def _problems(exc: ValidationError) -> str:
    """Pydantic's errors as one line: ``parameter: message; ...``."""
    problems = validation_problems(exc, empty="release", rename=_PARAMETERS)
    return "; ".join(f"{where}: {_one_line(message)}" for where, message in problems)


class HelmInstallOperator(BaseOperator):
    """Install or upgrade a Helm chart release on a cluster of the inventory.

    The task calls :func:`foundryflow.usecase.releases.install_chart`, the library call of
    the ``usecase.helm_deploy`` action, so a DAG and a use-case pipeline share one
    implementation and one set of rules. Everything is checked before any backend is
    touched: the chart reference's shape, the platform's blocked values (privileged,
    host namespaces, hostPath, hostPort, added capabilities, at any depth of ``values``),
    the release name and namespace. Such input, an unknown cluster, values the chart's
    schema refuses or manifests Kubernetes would refuse fail the task at once with a
    one-line message naming what to change (no retry: the same input fails the same way).
    Infrastructure errors (helm, the cluster, no free GPUs) propagate, so the task's
    ``retries`` apply; ``upgrade --install`` of a fixed release name makes a retry
    converge on the same release.

    The cluster's row picks the backend (``FOUNDRYFLOW_CLUSTER_BACKEND`` overrides it):
    ``local`` renders the real chart with Helm's engine, checks the values against its
    ``values.schema.json`` and every manifest against the Kubernetes schema, and records
    the release in the PostgreSQL inventory; ``helm`` runs ``helm upgrade --install``
    against the cluster and, if that fails, uninstalls the release and deletes the
    namespace the install created (never one that existed before). With the
    ``model-endpoint`` chart on a local cluster, ``values`` must name a registered model
    (``model.name``) and, as it has a Service, the owning project
    (``podAnnotations: {"foundryflow.io/project": "<uuid>"}``).

    :param cluster: Cluster name or id. (templated)
    :param release_name: Helm release name (DNS-1123 label, at most 53 characters).
        (templated)
    :param chart_ref: ``charts/<name>`` (a chart of this repository), ``oci://host/path/chart``
        or ``https://host/repo/chart``. (templated)
    :param chart_version: Exact version (``1.2.3``) of a remote chart, required for one;
        None for a ``charts/`` chart, which is used as it is. (templated)
    :param namespace: Target namespace (DNS-1123 label); created if absent. (templated)
    :param values: Chart values (JSON data). Render them as native objects (DAG
        ``render_template_as_native_obj=True``) to template numbers. (templated)
    :param timeout_seconds: How long the install may take, 1 to 3600.
    :param wait: Wait until the release's objects are ready; a failed install is then
        rolled back (``--atomic``). False: return once the objects are submitted.
    :return: the installed release: ``job_id`` (the same for a retry that converged),
        ``cluster_id``, ``namespace``, ``release_name``, ``revision``, ``chart``
        (``<name>-<version>``), ``status``, ``endpoint_url`` (the Service port named
        ``http``, else the first; ``""`` when the release has no Service) and ``services``.
    """

    template_fields: Sequence[str] = (
        "cluster",
        "release_name",
        "namespace",
        "chart_ref",
        "chart_version",
        "values",
    )
    template_fields_renderers = {"values": "json"}
    ui_color = "#e0e7ff"

    def __init__(
        self,
        *,
        cluster: str,
        release_name: str,
        namespace: str,
        chart_ref: str = "charts/model-endpoint",
        chart_version: str | None = None,
        values: dict[str, Any] | None = None,
        timeout_seconds: int = 600,
        wait: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster = cluster
        self.release_name = release_name
        self.namespace = namespace
        self.chart_ref = chart_ref
        self.chart_version = chart_version
        self.values = values
        self.timeout_seconds = timeout_seconds
        self.wait = wait

    def execute(self, context: Context) -> dict[str, Any]:
        from pydantic import ValidationError

        from foundryflow.cluster.base import (
            ClusterError,
            InvalidReleaseError,
            ManifestValidationError,
            ValuesValidationError,
        )
        from foundryflow.cluster.local import find_cluster
        from foundryflow.store.db import session_scope
        from foundryflow.usecase.chart_security import UnsafeValuesError
        from foundryflow.usecase.releases import ChartRelease, install_chart

        try:
            request = ChartRelease(
                cluster=self.cluster,
                release_name=self.release_name,
                namespace=self.namespace,
                chart_ref=self.chart_ref,
                chart_version=self.chart_version or None,  # a template of None renders ""
                values=self.values or {},
                timeout_seconds=self.timeout_seconds,
                wait=self.wait,
            )
        except ValidationError as exc:
            raise AirflowFailException(f"invalid release: {_problems(exc)}") from None
        try:
            # install_chart looks the cluster up too; here an unknown one fails without retry
            with session_scope() as session:
                cluster = find_cluster(session, request.cluster).name
        except ClusterError as exc:
            raise AirflowFailException(_one_line(str(exc))) from None
        self.log.info(
            "installing release %s (%s%s) in namespace %s of cluster %s",
            request.release_name,
            request.chart_ref,
            f" {request.chart_version}" if request.chart_version else "",
            request.namespace,
            cluster,
        )
        try:
            installed = install_chart(request)
        except ValidationError as exc:  # ReleaseSpec: name, namespace, version
            raise AirflowFailException(f"invalid release: {_problems(exc)}") from None
        except (
            UnsafeValuesError,  # blocked values, found before any backend is touched
            InvalidReleaseError,  # includes ChartReferenceError
            ValuesValidationError,  # the chart's values.schema.json (local backend)
            ManifestValidationError,  # a rendered object Kubernetes would refuse (local)
        ) as exc:
            raise AirflowFailException(_one_line(str(exc))) from None
        self.log.info(
            "release %s (%s) revision %d in %s: %s; endpoint %s; services: %s; job %s",
            installed.release_name,
            installed.chart,
            installed.revision,
            installed.namespace,
            installed.status,
            installed.endpoint_url or "none",
            ", ".join(installed.services) or "none",
            installed.job_id,
        )
        return installed.model_dump(mode="json")
