"""The cluster backend contract: what the platform asks of a Kubernetes cluster.

Two backends implement it (DESIGN.md, "Backends for the outside world"): ``helm`` drives the
helm CLI against a real cluster; ``local`` keeps an inventory in PostgreSQL and renders the
same charts offline. Both receive a :class:`ReleaseSpec` validated here, once, so hostile
input (path traversal in a chart reference, credentials in a URL, a namespace that looks
like a flag) is refused before either backend touches anything.

Endpoints are derived from a release's Services by one rule, :func:`endpoints_from_manifests`,
shared by both backends so they report the same URLs for the same release.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)

from foundryflow.config import REPO_ROOT

CHARTS_DIR = REPO_ROOT / "charts"
"""The only place a local chart reference may point into."""

RELEASE_LABEL = "foundryflow.io/release"
"""Label every chart of the platform puts on its objects; endpoint discovery selects on it."""

RELEASE_NAME_MAX = 53
"""Helm's limit: release names end up in object names with suffixes appended."""
NAMESPACE_MAX = 63

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_CHART_VERSION = re.compile(r"v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")
_OCI_REF = re.compile(r"oci://[A-Za-z0-9.-]+(:\d{1,5})?(/[a-z0-9._-]+)+")
_HTTPS_REPO = re.compile(r"https://[A-Za-z0-9.-]+(:\d{1,5})?(/[A-Za-z0-9._~-]+)*/?")
_CONN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,249}")


class ClusterError(Exception):
    """Anything a cluster backend refuses or fails to do; the message is meant for users."""


class InvalidReleaseError(ClusterError, ValueError):
    """A release name, namespace or setting is unusable (a ValueError so pydantic reports it)."""


class ChartReferenceError(InvalidReleaseError):
    """A chart reference points outside ``charts/``, carries credentials or is malformed."""


class ValuesValidationError(ClusterError):
    """Values violate the chart's ``values.schema.json``; ``problems`` holds (path, message)."""

    def __init__(self, message: str, problems: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.problems = problems


class ManifestValidationError(ClusterError):
    """A rendered manifest is not a valid Kubernetes object."""


class ReleaseNotFoundError(ClusterError):
    """The release does not exist in that namespace."""


class KubeconfigError(ClusterError):
    """The kubeconfig connection is missing or holds no kubeconfig."""


class BackendUnavailableError(ClusterError):
    """A tool the backend needs (the helm binary) is not installed."""


class ClusterCommandError(ClusterError):
    """The cluster or the tool driving it reported a failure; its message is included."""


class ClusterTimeoutError(ClusterCommandError):
    """The operation did not finish in time; the cluster may be mid-change."""


def check_release_name(name: str) -> str:
    """A release name Helm accepts and every derived object name stays valid with."""
    if len(name) > RELEASE_NAME_MAX or not _DNS1123_LABEL.fullmatch(name):
        raise InvalidReleaseError(
            f"release name {name!r} is not a DNS-1123 label of at most {RELEASE_NAME_MAX} "
            "characters (lowercase letters, digits and '-', starting and ending with a letter "
            "or digit)"
        )
    return name


def check_namespace(namespace: str) -> str:
    """A Kubernetes namespace name; also guarantees it can never be read as a CLI flag."""
    if len(namespace) > NAMESPACE_MAX or not _DNS1123_LABEL.fullmatch(namespace):
        raise InvalidReleaseError(
            f"namespace {namespace!r} is not a DNS-1123 label of at most {NAMESPACE_MAX} "
            "characters (lowercase letters, digits and '-', starting and ending with a letter "
            "or digit)"
        )
    return namespace


def check_conn_id(conn_id: str) -> str:
    """An Airflow connection id (the kubeconfig is looked up by it, never passed around)."""
    if not _CONN_ID.fullmatch(conn_id):
        raise InvalidReleaseError(f"kubeconfig_conn_id {conn_id!r} is not an Airflow connection id")
    return conn_id


def check_revision(revision: int) -> int:
    """A release revision to roll back to: Helm numbers them from 1, and its ``0`` (meaning
    "the previous one") is refused so a rollback always names the state it restores."""
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        raise InvalidReleaseError(
            f"revision {revision!r} is not a release revision (a whole number, at least 1)"
        )
    return revision


def local_chart_path(name: str, charts_dir: Path = CHARTS_DIR) -> Path:
    """The directory of a chart shipped in the repository's ``charts/`` folder.

    Only a bare directory name is accepted, and the resolved path (symlinks followed) must
    be a direct child of ``charts/``: a reference can never reach elsewhere on the disk.
    """
    if not _DNS1123_LABEL.fullmatch(name):
        raise ChartReferenceError(
            f"chart reference {name!r} is neither the name of a chart directory under "
            "charts/ (e.g. 'model-endpoint') nor an oci:// reference; for an https chart "
            "repository give the chart name and repo_url"
        )
    root = charts_dir.resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise ChartReferenceError(f"chart {name!r} resolves to {path}, outside {root}")
    if not (path / "Chart.yaml").is_file():
        raise ChartReferenceError(f"no chart named {name!r} under {root} (no {name}/Chart.yaml)")
    return path


def _check_remote_url(url: str, scheme: str, pattern: re.Pattern[str], what: str) -> None:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ChartReferenceError(
            f"{what} must not carry credentials ({parts.scheme}://<credentials>@...): "
            "registry logins belong to the cluster's helm configuration, not to a release"
        )
    if any(segment in {".", ".."} for segment in parts.path.split("/")):
        raise ChartReferenceError(f"{what} {url!r} contains '.' or '..' path segments")
    if not pattern.fullmatch(url):
        raise ChartReferenceError(
            f"{what} {url!r} is malformed (expected {scheme}://host[:port]/path with no "
            "query, fragment, spaces or special characters)"
        )


class ReleaseSpec(BaseModel):
    """One release of a chart into one namespace: the input of every backend's ``install``.

    ``chart`` is either the name of a chart directory under ``charts/`` (rendered from the
    repository, no version: the directory is the version), an ``oci://`` reference, or, with
    ``repo_url`` set, a chart name in that https repository. Remote charts need an exact
    ``chart_version`` so a release is reproducible.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Helm release name (DNS-1123 label, at most 53 characters).")
    namespace: str = Field(description="Target namespace (DNS-1123 label); created if absent.")
    chart: str = Field(description="Chart under charts/, or oci://host/path/chart.")
    chart_version: str | None = Field(default=None, description="Exact version of a remote chart.")
    repo_url: str | None = Field(default=None, description="https chart repository of `chart`.")
    values: dict[str, JsonValue] = Field(
        default_factory=dict, description="Chart values; data only, checked by the chart schema."
    )
    timeout_seconds: int = Field(default=600, ge=1, le=24 * 3600)
    wait: bool = Field(default=True, description="Wait until the release's objects are ready.")
    atomic: bool = Field(default=True, description="Roll back a failed install or upgrade.")
    kubeconfig_conn_id: str | None = Field(
        default=None,
        description="Airflow connection holding the kubeconfig; None: the ambient configuration.",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_release_name(value)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return check_namespace(value)

    @field_validator("chart_version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None and not _CHART_VERSION.fullmatch(value):
            raise ValueError(
                f"chart_version {value!r} is not an exact semantic version (e.g. 1.2.3); "
                "ranges are refused so a release is reproducible"
            )
        return value

    @field_validator("kubeconfig_conn_id")
    @classmethod
    def _conn_id(cls, value: str | None) -> str | None:
        return None if value is None else check_conn_id(value)

    @model_validator(mode="after")
    def _chart_reference(self) -> ReleaseSpec:
        if self.atomic and not self.wait:
            raise ValueError("atomic needs wait: a release can only be rolled back on failure")
        if self.chart.startswith("oci://"):
            _check_remote_url(self.chart, "oci", _OCI_REF, "oci chart reference")
            if self.repo_url is not None:
                raise ValueError("an oci:// chart reference takes no repo_url")
        elif self.repo_url is not None:
            _check_remote_url(self.repo_url, "https", _HTTPS_REPO, "repo_url")
            if not _DNS1123_LABEL.fullmatch(self.chart):
                raise ChartReferenceError(
                    f"chart {self.chart!r} is not a chart name in repository {self.repo_url}"
                )
        else:
            local_chart_path(self.chart)
            if self.chart_version is not None:
                raise ValueError(
                    f"chart_version is for remote charts; charts/{self.chart} is used as it is"
                )
            return self
        if self.chart_version is None:
            raise ValueError(f"remote chart {self.chart!r} needs an exact chart_version")
        return self

    @property
    def is_local_chart(self) -> bool:
        return not self.chart.startswith("oci://") and self.repo_url is None

    @property
    def chart_path(self) -> Path:
        """Directory of a local chart (re-checked: the tree may have changed since)."""
        if not self.is_local_chart:
            raise ChartReferenceError(f"chart {self.chart!r} is remote, not under charts/")
        return local_chart_path(self.chart)


class ReleaseState(StrEnum):
    """Helm's release states (``helm status``), which the local backend reports too."""

    UNKNOWN = "unknown"
    DEPLOYED = "deployed"
    UNINSTALLED = "uninstalled"
    SUPERSEDED = "superseded"
    FAILED = "failed"
    UNINSTALLING = "uninstalling"
    PENDING_INSTALL = "pending-install"
    PENDING_UPGRADE = "pending-upgrade"
    PENDING_ROLLBACK = "pending-rollback"


class ReleaseStatus(BaseModel):
    """Where a release stands after ``install`` or on ``status``."""

    model_config = ConfigDict(frozen=True)

    name: str
    namespace: str
    revision: int = Field(ge=1)
    state: ReleaseState
    chart: str = Field(description="Chart name and version, e.g. model-endpoint-0.1.0.")
    app_version: str | None = None
    description: str = ""
    last_deployed: datetime | None = None
    notes: str = ""

    @property
    def deployed(self) -> bool:
        return self.state is ReleaseState.DEPLOYED


class Instances(BaseModel):
    """Pods of a release's workloads (its Deployments and StatefulSets), summed over them:
    how many it asks for, how many are ready, and how many run its latest pod template."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    desired: int = Field(ge=0, description="Replicas the workloads' specs ask for.")
    ready: int = Field(ge=0, description="Pods that pass their readiness checks.")
    updated: int = Field(ge=0, description="Pods running the current pod template.")


class Endpoint(BaseModel):
    """An in-cluster URL of one port of one Service of a release."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="The Service name.")
    port_name: str | None = None
    port: int = Field(ge=1, le=65535)
    url: str = Field(description="http://<service>.<namespace>.svc.cluster.local:<port>")


def endpoints_from_manifests(
    manifests: Iterable[Mapping[str, Any]], *, release: str, namespace: str
) -> list[Endpoint]:
    """Endpoints of the release's Services: those labelled ``foundryflow.io/release=<release>``.

    A Service's cluster DNS name depends only on its name and namespace, so the URL follows
    from the manifest without asking the cluster. ExternalName Services only alias another
    host and are not endpoints of the release.
    """
    endpoints: list[Endpoint] = []
    for doc in manifests:
        if doc.get("apiVersion") != "v1" or doc.get("kind") != "Service":
            continue
        metadata = doc.get("metadata") or {}
        if (metadata.get("labels") or {}).get(RELEASE_LABEL) != release:
            continue
        spec = doc.get("spec") or {}
        if spec.get("type", "ClusterIP") == "ExternalName":
            continue
        service = metadata.get("name")
        service_namespace = metadata.get("namespace") or namespace
        for port in spec.get("ports") or []:
            try:
                number = port.get("port")
                endpoint = Endpoint.model_validate(
                    {
                        "name": service,
                        "port_name": port.get("name"),
                        "port": number,
                        "url": f"http://{service}.{service_namespace}.svc.cluster.local:{number}",
                    }
                )
            except (AttributeError, ValidationError) as exc:
                raise ClusterError(f"Service {service!r} of release {release!r}: {exc}") from exc
            endpoints.append(endpoint)
    return sorted(endpoints, key=lambda e: (e.name, e.port))


class ClusterBackend(ABC):
    """What the platform asks of a cluster. Implementations: ``helm`` and ``local``.

    Every method validates the names it is given before acting, so bad input changes
    nothing. ``kubeconfig_conn_id`` selects the cluster for the calls that take no
    :class:`ReleaseSpec`; a backend with a single cluster ignores it.
    """

    name: ClassVar[str]

    @abstractmethod
    def install(self, release: ReleaseSpec) -> ReleaseStatus:
        """Install or upgrade (``upgrade --install``): running it again with the same spec
        converges to the same release, so a retried step is safe."""

    @abstractmethod
    def uninstall(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> None:
        """Remove the release and wait for its objects to go. A release that does not exist
        is already uninstalled: rollback may run after a failure that left nothing behind."""

    @abstractmethod
    def status(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> ReleaseStatus:
        """The release's current state; :class:`ReleaseNotFoundError` if there is none."""

    @abstractmethod
    def endpoints(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> list[Endpoint]:
        """In-cluster URLs of the release's Services (see :func:`endpoints_from_manifests`)."""

    @abstractmethod
    def instances(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> Instances:
        """Pods of the release's Deployments and StatefulSets: desired, ready and updated,
        summed. A deployment's health is more than its release state: a release can be
        ``deployed`` with pods crash-looping or an upgrade half rolled out, and a pool of
        runners is scaled by its replicas, so callers need the counts themselves.

        A backend that keeps its releases (``local``) raises :class:`ReleaseNotFoundError`
        for an unknown one; ``helm`` counts the workloads labelled with the release
        (:data:`RELEASE_LABEL`) and reports zeros when there are none, so use
        :meth:`status` to tell a missing release from one with no pods."""

    @abstractmethod
    def rollback(self, release: ReleaseSpec, revision: int) -> ReleaseStatus:
        """Return the release to an earlier state, as a new revision (``helm rollback``
        creates a new revision holding the old manifest; history is never rewritten).

        ``revision`` is the backend's own revision of the release to go back to (Helm's
        revision number, at least 1); ``release`` is the complete spec of that state as the
        platform recorded it. Both are needed because backends differ in what they keep:
        helm restores its stored revision (the spec gives the namespace, cluster, timeout
        and wait), while a backend without history re-installs the spec. The release must
        exist (:class:`ReleaseNotFoundError` otherwise): a rollback never creates one."""
