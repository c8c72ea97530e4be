"""The ``helm`` cluster backend: drives the helm CLI against a real cluster.

Each operation is one helm command line, built here and run through an injectable runner,
so tests assert the exact argv. Two rules keep that command line safe:

- values go through a private temp file (``--values``), never ``--set``: a value is data in
  a JSON document and can neither become a flag nor be re-parsed by helm's --set grammar;
- the kubeconfig is read from an Airflow connection into a 0600 temp file (``--kubeconfig``)
  that is removed afterwards: it is never on a command line, in the environment or in a log.

Endpoints are found by parsing ``helm get manifest``: the Services a release owns are exactly
those in its manifest, and a Service's in-cluster DNS name is fixed by its name and
namespace, so no Kubernetes client is needed for them.

A failed install cleans up after itself, removing only what it created: ``helm uninstall``
of the release unless it existed before (then the install was an upgrade, which ``--atomic``
rolled back), and deletion of the namespace unless it existed before. Helm cannot tell
whether a namespace exists, so that is asked before the install through a
:class:`NamespaceClient` (by default the official ``kubernetes`` client, reading the same
private kubeconfig file); in a namespace that exists, ``helm status`` tells whether the
release does. What cannot be checked counts as existing: it is never removed.

Instance counts (:meth:`HelmBackend.instances`) are not in helm's output either: they are read
from the release's Deployments and StatefulSets through a :class:`WorkloadClient` (by default
the same ``kubernetes`` client and private kubeconfig file).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar, Protocol

import yaml
from pydantic import ValidationError

from foundryflow.cluster.base import (
    RELEASE_LABEL,
    BackendUnavailableError,
    ClusterBackend,
    ClusterCommandError,
    ClusterError,
    ClusterTimeoutError,
    Endpoint,
    Instances,
    KubeconfigError,
    ReleaseNotFoundError,
    ReleaseSpec,
    ReleaseStatus,
    check_conn_id,
    check_namespace,
    check_release_name,
    check_revision,
    endpoints_from_manifests,
)

log = logging.getLogger(__name__)

GRACE_SECONDS = 60
"""Extra time the process gets beyond helm's own ``--timeout`` to report and exit."""
COMMAND_TIMEOUT_SECONDS = 300
"""Limit for commands without a spec timeout (helm's default ``--timeout`` is 5m)."""
_NOT_FOUND = "release: not found"
"""Helm's ``driver.ErrReleaseNotFound`` text, the same in Helm 3 and 4."""


class Runner(Protocol):
    """Runs one argv and returns its completed process (stdout and stderr as text)."""

    def __call__(self, argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]: ...


class NamespaceClient(Protocol):
    """Asks a cluster about namespaces; ``kubeconfig_path`` None: the ambient configuration."""

    def exists(self, namespace: str, kubeconfig_path: Path | None) -> bool: ...

    def delete(self, namespace: str, kubeconfig_path: Path | None) -> None:
        """Delete the namespace and everything in it; a missing namespace is not an error."""


NAMESPACE_REQUEST_TIMEOUT_SECONDS = 30.0
"""Limit for one Kubernetes API request of :class:`KubernetesNamespaceClient` and
:class:`KubernetesWorkloadClient`."""


class KubernetesNamespaceClient:
    """:class:`NamespaceClient` on the official ``kubernetes`` client (a dependency of the
    cncf-kubernetes provider). It is imported on first use: it takes a while to import, and
    only installs through the helm backend need it.

    With no kubeconfig file it configures itself as helm does: ``$KUBECONFIG`` or
    ``~/.kube/config`` if there is one, else the in-cluster service account. Each call builds
    its own API client and leaves the process-wide default configuration alone.
    """

    def __init__(self, *, request_timeout: float = NAMESPACE_REQUEST_TIMEOUT_SECONDS) -> None:
        self.request_timeout = request_timeout

    def exists(self, namespace: str, kubeconfig_path: Path | None) -> bool:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        with _kubernetes_api_client(kubeconfig_path) as api_client:
            try:
                client.CoreV1Api(api_client).read_namespace(
                    namespace, _request_timeout=self.request_timeout
                )
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise ClusterCommandError(
                    _api_error(f"reading namespace {namespace!r}", exc)
                ) from None
        return True

    def delete(self, namespace: str, kubeconfig_path: Path | None) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        with _kubernetes_api_client(kubeconfig_path) as api_client:
            try:
                client.CoreV1Api(api_client).delete_namespace(
                    namespace, _request_timeout=self.request_timeout
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise ClusterCommandError(
                        _api_error(f"deleting namespace {namespace!r}", exc)
                    ) from None


class WorkloadClient(Protocol):
    """Counts the pods of a release's workloads; ``kubeconfig_path`` None: the ambient
    configuration."""

    def counts(self, name: str, namespace: str, kubeconfig_path: Path | None) -> Instances:
        """Desired, ready and updated replicas summed over the Deployments and StatefulSets
        labelled ``foundryflow.io/release=<name>`` in ``namespace``."""


class KubernetesWorkloadClient:
    """:class:`WorkloadClient` on the official ``kubernetes`` client, imported on first use
    and configured as :class:`KubernetesNamespaceClient` is (:func:`_kubernetes_api_client`).

    ``spec.replicas`` is what the workload asks for (the API server defaults it to 1);
    ``status.readyReplicas`` and ``status.updatedReplicas`` are absent while zero, and the
    status lags a new spec until the controller has seen it, as ``kubectl get`` shows.
    """

    def __init__(self, *, request_timeout: float = NAMESPACE_REQUEST_TIMEOUT_SECONDS) -> None:
        self.request_timeout = request_timeout

    def counts(self, name: str, namespace: str, kubeconfig_path: Path | None) -> Instances:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        selector = f"{RELEASE_LABEL}={name}"
        desired = ready = updated = 0
        with _kubernetes_api_client(kubeconfig_path) as api_client:
            apps = client.AppsV1Api(api_client)
            for kind, list_workloads in (
                ("Deployments", apps.list_namespaced_deployment),
                ("StatefulSets", apps.list_namespaced_stateful_set),
            ):
                doing = f"listing the {kind} of release {name!r} in namespace {namespace!r}"
                try:
                    listing = list_workloads(
                        namespace, label_selector=selector, _request_timeout=self.request_timeout
                    )
                except ApiException as exc:
                    raise ClusterCommandError(_api_error(doing, exc)) from None
                except HTTPError as exc:  # unreachable API server, TLS failure, timeout
                    raise ClusterCommandError(_one_line(_failure(doing, exc))) from None
                for workload in listing.items or []:
                    desired += getattr(workload.spec, "replicas", None) or 0
                    ready += getattr(workload.status, "ready_replicas", None) or 0
                    updated += getattr(workload.status, "updated_replicas", None) or 0
        return Instances(desired=desired, ready=ready, updated=updated)


def _kubernetes_api_client(kubeconfig_path: Path | None) -> Any:
    """A fresh ``ApiClient`` (what ``config.new_client_from_config`` builds), whose
    certificate and key files, decoded from the kubeconfig, go next to that file: into the
    backend's private directory, removed with it, rather than the shared temp dir. Each call
    builds its own and leaves the process-wide default configuration alone."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig_path is not None:
        config.load_kube_config(
            config_file=str(kubeconfig_path),
            client_configuration=configuration,
            persist_config=False,
            temp_file_path=str(kubeconfig_path.parent),
        )
    else:
        try:
            config.load_kube_config(client_configuration=configuration, persist_config=False)
        except config.ConfigException:
            config.load_incluster_config(client_configuration=configuration)
    return client.ApiClient(configuration)


def _api_error(doing: str, exc: Any) -> str:
    """One line for a Kubernetes ``ApiException``: status, reason and the API's message."""
    detail = ""
    with suppress(ValueError, TypeError, AttributeError):
        detail = str(json.loads(exc.body or "{}").get("message") or "")
    text = f"{doing} failed: HTTP {exc.status} {exc.reason or ''}".rstrip()
    return f"{text}: {detail}" if detail else text


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _failure(doing: str, exc: Exception) -> str:
    """A cleanup step's error: a backend error's own message says what failed."""
    return (
        str(exc)
        if isinstance(exc, ClusterError)
        else f"{doing} failed: {type(exc).__name__}: {exc}"
    )


def run_subprocess(argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    """The default runner: no shell, no stdin, output captured."""
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise BackendUnavailableError(
            f"the helm binary {argv[0]!r} was not found: install Helm 3 or 4 "
            "(https://helm.sh/docs/intro/install/) or use the local cluster backend"
        ) from None
    except PermissionError:
        raise BackendUnavailableError(f"the helm binary {argv[0]!r} is not executable") from None
    except subprocess.TimeoutExpired:
        raise ClusterTimeoutError(
            f"{shlex.join(argv[:3])} did not finish within {timeout:g}s and was killed; "
            "the release may be left mid-change"
        ) from None


@contextmanager
def _private_dir() -> Iterator[Path]:
    """A 0700 directory for the values and kubeconfig files, removed with its content."""
    with tempfile.TemporaryDirectory(prefix="foundryflow-helm-") as name:
        yield Path(name)


def _write_private(path: Path, text: str) -> Path:
    """Create ``path`` readable by this user only (0600) before any byte is written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def kubeconfig_from_connection(conn_id: str) -> str:
    """The kubeconfig held by an Airflow connection (the cncf-kubernetes ``kube_config`` extra).

    Airflow is imported here, not at module level: it takes seconds, and only releases that
    name a connection need it.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise KubeconfigError(f"Airflow connection {conn_id!r} does not exist") from None
    extra = connection.extra_dejson
    content = extra.get("kube_config") or extra.get("extra__kubernetes__kube_config")
    if isinstance(content, dict):
        content = json.dumps(content)
    if not isinstance(content, str) or not content.strip():
        raise KubeconfigError(
            f"Airflow connection {conn_id!r} holds no kubeconfig: put the kubeconfig in its "
            "'kube_config' extra (the Kubernetes connection's 'Kube config' field)"
        )
    return content


def parse_release(stdout: str) -> ReleaseStatus:
    """A release as printed by ``helm status -o json`` and ``helm upgrade -o json``."""
    try:
        payload: dict[str, Any] = json.loads(stdout)
        info = payload.get("info") or {}
        metadata = (payload.get("chart") or {}).get("metadata") or {}
        return ReleaseStatus.model_validate(
            {
                "name": payload["name"],
                "namespace": payload["namespace"],
                "revision": payload["version"],
                "state": info.get("status") or "unknown",
                "chart": f"{metadata['name']}-{metadata['version']}",
                "app_version": metadata.get("appVersion"),
                "description": info.get("description") or "",
                "last_deployed": info.get("last_deployed") or None,
                "notes": info.get("notes") or "",
            }
        )
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
        raise ClusterCommandError(f"helm printed no readable release: {exc}") from exc


def parse_manifest(stdout: str) -> list[dict[str, Any]]:
    """The objects of ``helm get manifest`` output (YAML documents, ``# Source:`` comments)."""
    try:
        documents = list(yaml.safe_load_all(stdout))
    except yaml.YAMLError as exc:
        raise ClusterCommandError(f"helm printed an unreadable manifest: {exc}") from exc
    if any(doc is not None and not isinstance(doc, dict) for doc in documents):
        raise ClusterCommandError("helm printed a manifest with a non-object document")
    return [doc for doc in documents if doc]


class HelmBackend(ClusterBackend):
    """Installs, inspects and removes releases with the helm CLI."""

    name: ClassVar[str] = "helm"

    def __init__(
        self,
        *,
        helm_binary: str = "helm",
        runner: Runner = run_subprocess,
        namespaces: NamespaceClient | None = None,
        workloads: WorkloadClient | None = None,
    ) -> None:
        self.helm_binary = helm_binary
        self.runner = runner
        self.namespaces: NamespaceClient = (
            namespaces if namespaces is not None else KubernetesNamespaceClient()
        )
        self.workloads: WorkloadClient = (
            workloads if workloads is not None else KubernetesWorkloadClient()
        )

    def install(self, release: ReleaseSpec) -> ReleaseStatus:
        """``helm upgrade --install``; if it fails, what this install created is removed
        (see :meth:`_clean_up_failed_install`) and the error says what was cleaned up."""
        chart = str(release.chart_path) if release.is_local_chart else release.chart
        with _private_dir() as work:
            kubeconfig = self._kubeconfig_file(work, release.kubeconfig_conn_id)
            values_file = _write_private(
                work / "values.json", json.dumps(release.values, indent=2, sort_keys=True) + "\n"
            )
            argv = [
                self.helm_binary,
                "upgrade",
                "--install",
                release.name,
                chart,
                "--namespace",
                release.namespace,
                "--create-namespace",
            ]
            if release.chart_version is not None:
                argv += ["--version", release.chart_version]
            if release.repo_url is not None:
                argv += ["--repo", release.repo_url]
            if release.wait:
                argv.append("--wait")
            if release.atomic:
                argv.append("--atomic")
            argv += ["--timeout", f"{release.timeout_seconds}s", "--values", str(values_file)]
            argv += ["-o", "json"]
            namespace_existed = self._namespace_existed(release.namespace, kubeconfig)
            release_existed = (
                False
                if namespace_existed is False  # a release lives in its namespace
                else self._release_existed(release, kubeconfig)
            )
            try:
                result = self._run(
                    argv,
                    kubeconfig,
                    timeout=release.timeout_seconds + GRACE_SECONDS,
                    what=f"install of release {release.name!r} in namespace {release.namespace!r}",
                )
            except (ClusterCommandError, ReleaseNotFoundError) as exc:
                report = self._clean_up_failed_install(
                    release,
                    kubeconfig,
                    namespace_existed=namespace_existed,
                    release_existed=release_existed,
                )
                exc.args = (f"{exc}; {report}",)
                raise
        return parse_release(result.stdout)

    def uninstall(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> None:
        argv = self._release_argv(["uninstall"], name, namespace, kubeconfig_conn_id, "--wait")
        with _private_dir() as work:
            self._uninstall(argv, name, namespace, self._kubeconfig_file(work, kubeconfig_conn_id))

    def status(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> ReleaseStatus:
        argv = self._release_argv(["status"], name, namespace, kubeconfig_conn_id, "-o", "json")
        with _private_dir() as work:
            result = self._run(
                argv,
                self._kubeconfig_file(work, kubeconfig_conn_id),
                timeout=COMMAND_TIMEOUT_SECONDS,
                what=f"status of release {name!r} in namespace {namespace!r}",
            )
        return parse_release(result.stdout)

    def endpoints(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> list[Endpoint]:
        argv = self._release_argv(["get", "manifest"], name, namespace, kubeconfig_conn_id)
        with _private_dir() as work:
            result = self._run(
                argv,
                self._kubeconfig_file(work, kubeconfig_conn_id),
                timeout=COMMAND_TIMEOUT_SECONDS,
                what=f"manifest of release {name!r} in namespace {namespace!r}",
            )
        return endpoints_from_manifests(
            parse_manifest(result.stdout), release=name, namespace=namespace
        )

    def instances(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> Instances:
        """Counts of the Deployments and StatefulSets labelled with the release, from the
        Kubernetes API (:class:`WorkloadClient`): helm prints no pod counts. A release with
        no such workloads, or none at all, counts zeros (see the contract)."""
        check_release_name(name)
        check_namespace(namespace)
        if kubeconfig_conn_id is not None:
            check_conn_id(kubeconfig_conn_id)
        with _private_dir() as work:
            return self.workloads.counts(
                name, namespace, self._kubeconfig_file(work, kubeconfig_conn_id)
            )

    def rollback(self, release: ReleaseSpec, revision: int) -> ReleaseStatus:
        """``helm rollback NAME REVISION``, then ``helm status`` for the revision it made.

        Helm restores its own stored manifest of ``revision``; ``release`` supplies the
        namespace, the cluster (its kubeconfig connection), ``--timeout`` and whether to
        ``--wait``. A rollback that fails raises with helm's message; helm leaves the release
        as it was or marks the new revision failed (``status`` says which).
        """
        check_revision(revision)
        name, namespace = release.name, release.namespace
        argv = [self.helm_binary, "rollback", name, str(revision), "--namespace", namespace]
        if release.wait:
            argv.append("--wait")
        argv += ["--timeout", f"{release.timeout_seconds}s"]
        status_argv = self._release_argv(["status"], name, namespace, None, "-o", "json")
        with _private_dir() as work:
            kubeconfig = self._kubeconfig_file(work, release.kubeconfig_conn_id)
            self._run(
                argv,
                kubeconfig,
                timeout=release.timeout_seconds + GRACE_SECONDS,
                what=(
                    f"rollback of release {name!r} in namespace {namespace!r} "
                    f"to revision {revision}"
                ),
            )
            result = self._run(
                status_argv,
                kubeconfig,
                timeout=COMMAND_TIMEOUT_SECONDS,
                what=f"status of release {name!r} in namespace {namespace!r}",
            )
        return parse_release(result.stdout)

    def _namespace_existed(self, namespace: str, kubeconfig: Path | None) -> bool | None:
        """Whether the namespace exists before the install; None if the cluster cannot say.
        Then the install still runs, and the namespace is never deleted."""
        try:
            return self.namespaces.exists(namespace, kubeconfig)
        except Exception as exc:
            log.warning(
                "could not tell whether namespace %s exists (%s: %s): installing anyway; "
                "if the install fails, the namespace will not be deleted",
                namespace,
                type(exc).__name__,
                exc,
            )
            return None

    def _release_existed(self, release: ReleaseSpec, kubeconfig: Path | None) -> bool | None:
        """Whether the release exists before the install (then this is an upgrade, and a
        failed upgrade is no reason to uninstall); None if helm cannot say."""
        argv = self._release_argv(["status"], release.name, release.namespace, None, "-o", "json")
        try:
            self._run(
                argv,
                kubeconfig,
                timeout=COMMAND_TIMEOUT_SECONDS,
                what=f"status of release {release.name!r} in namespace {release.namespace!r}",
            )
        except ReleaseNotFoundError:
            return False
        except ClusterCommandError as exc:
            log.warning(
                "could not tell whether release %s exists (%s): installing anyway; if the "
                "install fails, the release will not be uninstalled",
                release.name,
                exc,
            )
            return None
        return True

    def _clean_up_failed_install(
        self,
        release: ReleaseSpec,
        kubeconfig: Path | None,
        *,
        namespace_existed: bool | None,
        release_existed: bool | None,
    ) -> str:
        """Remove what a failed install created: the release (``helm uninstall``; ``--atomic``
        has usually removed it already) and the namespace, each only if it did not exist
        before (None, unknown, counts as existing). Never raises: returns what was cleaned
        up, kept and what failed, for the install's error message.
        """
        name, namespace = release.name, release.namespace
        done: list[str] = []
        existed: list[str] = []
        unknown: list[str] = []
        failed: list[str] = []
        if release_existed is False:
            argv = self._release_argv(["uninstall"], name, namespace, None, "--wait")
            try:
                if self._uninstall(argv, name, namespace, kubeconfig):
                    done.append(f"uninstalled release {name!r}")
                else:
                    done.append(f"release {name!r} (already uninstalled)")
            except Exception as exc:
                failed.append(_failure(f"uninstall of release {name!r}", exc))
        else:
            (existed if release_existed else unknown).append(f"release {name!r}")
        if namespace_existed is False:
            try:
                self.namespaces.delete(namespace, kubeconfig)
                done.append(f"deleted namespace {namespace!r} it had created")
            except Exception as exc:
                failed.append(_failure(f"deleting namespace {namespace!r} it had created", exc))
        else:
            (existed if namespace_existed else unknown).append(f"namespace {namespace!r}")
        parts = []
        if done:
            parts.append("cleaned up: " + ", ".join(done))
        if existed:
            parts.append(f"kept {' and '.join(existed)}, which existed before this install")
        if unknown:
            parts.append(
                f"kept {' and '.join(unknown)} (could not tell whether "
                f"{'it' if len(unknown) == 1 else 'they'} existed before this install)"
            )
        if failed:
            parts.append("cleanup failed: " + "; ".join(failed))
        report = "; ".join(parts)
        (log.warning if failed else log.info)(
            "install of release %s in namespace %s failed; %s", name, namespace, report
        )
        return report

    def _uninstall(
        self, argv: list[str], name: str, namespace: str, kubeconfig: Path | None
    ) -> bool:
        """Run ``argv`` (``helm uninstall``); False if the release was not there (already
        uninstalled: rollback may run after a failure that left nothing behind)."""
        try:
            self._run(
                argv,
                kubeconfig,
                timeout=COMMAND_TIMEOUT_SECONDS + GRACE_SECONDS,
                what=f"uninstall of release {name!r} in namespace {namespace!r}",
            )
        except ReleaseNotFoundError:
            log.info("release %s in namespace %s is already uninstalled", name, namespace)
            return False
        return True

    def _release_argv(
        self,
        verb: list[str],
        name: str,
        namespace: str,
        kubeconfig_conn_id: str | None,
        *flags: str,
    ) -> list[str]:
        """``helm <verb> NAME --namespace NS <flags>`` after checking every input, so nothing
        runs when one is bad."""
        check_release_name(name)
        check_namespace(namespace)
        if kubeconfig_conn_id is not None:
            check_conn_id(kubeconfig_conn_id)
        return [self.helm_binary, *verb, name, "--namespace", namespace, *flags]

    @staticmethod
    def _kubeconfig_file(work: Path, kubeconfig_conn_id: str | None) -> Path | None:
        """The connection's kubeconfig in a private file of ``work`` (None: no connection,
        the ambient configuration); written once, shared by every command of an operation."""
        if kubeconfig_conn_id is None:
            return None
        return _write_private(work / "kubeconfig", kubeconfig_from_connection(kubeconfig_conn_id))

    def _run(
        self,
        argv: list[str],
        kubeconfig: Path | None,
        *,
        timeout: float,
        what: str,
    ) -> subprocess.CompletedProcess[str]:
        """Run one helm command, with the kubeconfig file (if any) appended."""
        if kubeconfig is not None:
            argv = [*argv, "--kubeconfig", str(kubeconfig)]
        log.info("running %s", shlex.join(argv))
        result = self.runner(argv, timeout=timeout)
        if result.returncode != 0:
            message = (result.stderr or "").strip() or (result.stdout or "").strip()
            if _NOT_FOUND in message:
                raise ReleaseNotFoundError(f"{what}: the release does not exist ({message})")
            raise ClusterCommandError(f"{what} failed (helm exit {result.returncode}): {message}")
        return result
