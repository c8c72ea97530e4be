"""The ``helm`` cluster backend: drives the helm CLI against a real cluster.

Each operation is one helm command line, built here and run through an injectable runner,
so tests assert the exact argv. Two rules keep that command line safe:

- values go through a private temp file (``--values``), never ``--set``: a value is data in
  a JSON document and can neither become a flag nor be re-parsed by helm's --set grammar;
- the kubeconfig is read from an Airflow connection into a 0600 temp file (``--kubeconfig``)
  that is removed afterwards: it is never on a command line, in the environment or in a log.

Endpoints are found by parsing ``helm get manifest``: the Services a release owns are exactly
those in its manifest, and a Service's in-cluster DNS name is fixed by its name and
namespace, so no Kubernetes client (and no second credential path) is needed.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Protocol

import yaml
from pydantic import ValidationError

from foundryflow.cluster.base import (
    BackendUnavailableError,
    ClusterBackend,
    ClusterCommandError,
    ClusterTimeoutError,
    Endpoint,
    KubeconfigError,
    ReleaseNotFoundError,
    ReleaseSpec,
    ReleaseStatus,
    check_conn_id,
    check_namespace,
    check_release_name,
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

    def __init__(self, *, helm_binary: str = "helm", runner: Runner = run_subprocess) -> None:
        self.helm_binary = helm_binary
        self.runner = runner

    def install(self, release: ReleaseSpec) -> ReleaseStatus:
        chart = str(release.chart_path) if release.is_local_chart else release.chart
        with _private_dir() as work:
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
            result = self._run(
                argv,
                work,
                release.kubeconfig_conn_id,
                timeout=release.timeout_seconds + GRACE_SECONDS,
                what=f"install of release {release.name!r} in namespace {release.namespace!r}",
            )
        return parse_release(result.stdout)

    def uninstall(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> None:
        argv = self._release_argv(["uninstall"], name, namespace, kubeconfig_conn_id, "--wait")
        try:
            with _private_dir() as work:
                self._run(
                    argv,
                    work,
                    kubeconfig_conn_id,
                    timeout=COMMAND_TIMEOUT_SECONDS + GRACE_SECONDS,
                    what=f"uninstall of release {name!r} in namespace {namespace!r}",
                )
        except ReleaseNotFoundError:
            log.info("release %s in namespace %s is already uninstalled", name, namespace)

    def status(
        self, name: str, namespace: str, *, kubeconfig_conn_id: str | None = None
    ) -> ReleaseStatus:
        argv = self._release_argv(["status"], name, namespace, kubeconfig_conn_id, "-o", "json")
        with _private_dir() as work:
            result = self._run(
                argv,
                work,
                kubeconfig_conn_id,
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
                work,
                kubeconfig_conn_id,
                timeout=COMMAND_TIMEOUT_SECONDS,
                what=f"manifest of release {name!r} in namespace {namespace!r}",
            )
        return endpoints_from_manifests(
            parse_manifest(result.stdout), release=name, namespace=namespace
        )

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

    def _run(
        self,
        argv: list[str],
        work: Path,
        kubeconfig_conn_id: str | None,
        *,
        timeout: float,
        what: str,
    ) -> subprocess.CompletedProcess[str]:
        """Run one helm command, with the connection's kubeconfig in a private file."""
        if kubeconfig_conn_id is not None:
            kubeconfig = kubeconfig_from_connection(kubeconfig_conn_id)
            argv = [*argv, "--kubeconfig", str(_write_private(work / "kubeconfig", kubeconfig))]
        log.info("running %s", shlex.join(argv))
        result = self.runner(argv, timeout=timeout)
        if result.returncode != 0:
            message = (result.stderr or "").strip() or (result.stdout or "").strip()
            if _NOT_FOUND in message:
                raise ReleaseNotFoundError(f"{what}: the release does not exist ({message})")
            raise ClusterCommandError(f"{what} failed (helm exit {result.returncode}): {message}")
        return result
