"""The helm backend, checked by the exact commands it runs and the files it hands helm.

There is no helm binary and no cluster here: an injected runner records each argv (and the
values and kubeconfig files while they exist) and answers with output recorded from helm.
The default runner is exercised too, against a missing binary and a stand-in script.
"""

from __future__ import annotations

import json
import logging
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config.kube_config
import pytest
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException
from pydantic import ValidationError

from foundryflow.cluster.base import (
    CHARTS_DIR,
    BackendUnavailableError,
    ChartReferenceError,
    ClusterCommandError,
    ClusterError,
    ClusterTimeoutError,
    Endpoint,
    Instances,
    InvalidReleaseError,
    KubeconfigError,
    ReleaseNotFoundError,
    ReleaseSpec,
    ReleaseState,
    endpoints_from_manifests,
    local_chart_path,
)
from foundryflow.cluster.helm import (
    HelmBackend,
    KubernetesNamespaceClient,
    KubernetesWorkloadClient,
    parse_manifest,
    run_subprocess,
)

SECRET = "eyJhbGciOiJSUzI1NiJ9.c2VydmljZS1hY2NvdW50LXRva2Vu.s3cr3t-signature"
KUBECONFIG = f"""apiVersion: v1
kind: Config
clusters:
- name: gpu
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t
contexts:
- name: gpu
  context: {{cluster: gpu, user: deployer, namespace: default}}
current-context: gpu
users:
- name: deployer
  user:
    token: {SECRET}
"""
CONN_ID = "kube_gpu"
CHART = str(CHARTS_DIR / "model-endpoint")

# `helm status demo --namespace ml -o json` of a model-endpoint release (Helm 3.16); the
# chart's templates, values and files are shortened, everything else is as helm prints it.
STATUS_JSON = json.dumps(
    {
        "name": "demo",
        "info": {
            "first_deployed": "2025-06-02T10:15:42.123456789Z",
            "last_deployed": "2025-06-03T08:01:07.987654321Z",
            "deleted": "",
            "description": "Upgrade complete",
            "status": "deployed",
            "notes": "vLLM is serving Qwen/Qwen2.5-0.5B-Instruct as ...",
        },
        "chart": {
            "metadata": {
                "name": "model-endpoint",
                "home": "https://github.com/vllm-project/vllm",
                "sources": ["https://github.com/vllm-project/vllm"],
                "version": "0.1.0",
                "description": "An OpenAI-compatible LLM serving endpoint (vLLM) on NVIDIA GPUs",
                "keywords": ["vllm", "llm", "inference", "foundryflow"],
                "apiVersion": "v2",
                "appVersion": "v0.10.2",
                "kubeVersion": ">=1.28.0-0",
                "type": "application",
            },
            "lock": None,
            "templates": [{"name": "templates/service.yaml", "data": "YXBpVmVyc2lvbjogdjEK"}],
            "values": {"replicaCount": 1},
            "schema": "eyIkc2NoZW1hIjogImh0dHA6Ly9qc29uLXNjaGVtYS5vcmcvZHJhZnQtMDcvc2NoZW1hIyJ9",
            "files": [{"name": ".helmignore", "data": "LkRTX1N0b3JlCg=="}],
        },
        "config": {"model": {"tensorParallelSize": 2, "dtype": "bfloat16"}},
        "manifest": "---\n# Source: model-endpoint/templates/service.yaml\n...",
        "version": 3,
        "namespace": "ml",
    }
)

# `helm upgrade --install ... -o json` of a first install prints the same release object.
INSTALL_JSON = json.dumps(
    {
        **json.loads(STATUS_JSON),
        "info": {
            "first_deployed": "2025-06-02T10:15:42.123456789+02:00",
            "last_deployed": "2025-06-02T10:15:42.123456789+02:00",
            "deleted": "",
            "description": "Install complete",
            "status": "deployed",
            "notes": "",
        },
        "version": 1,
    }
)

# `helm get manifest demo --namespace ml`
MANIFEST = """---
# Source: model-endpoint/templates/serviceaccount.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: demo-model-endpoint
  labels:
    helm.sh/chart: model-endpoint-0.1.0
    app.kubernetes.io/name: model-endpoint
    app.kubernetes.io/instance: demo
    app.kubernetes.io/version: "v0.10.2"
    app.kubernetes.io/managed-by: Helm
    app.kubernetes.io/component: inference-server
    app.kubernetes.io/part-of: foundryflow
    foundryflow.io/release: demo
automountServiceAccountToken: false
---
# Source: model-endpoint/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: demo-model-endpoint
  labels:
    helm.sh/chart: model-endpoint-0.1.0
    app.kubernetes.io/name: model-endpoint
    app.kubernetes.io/instance: demo
    app.kubernetes.io/version: "v0.10.2"
    app.kubernetes.io/managed-by: Helm
    app.kubernetes.io/component: inference-server
    app.kubernetes.io/part-of: foundryflow
    foundryflow.io/release: demo
spec:
  type: ClusterIP
  selector:
    app.kubernetes.io/name: model-endpoint
    app.kubernetes.io/instance: demo
  ports:
    - name: http
      port: 8000
      targetPort: http
      protocol: TCP
      appProtocol: http
---
# Source: model-endpoint/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: demo-model-endpoint
  labels:
    foundryflow.io/release: demo
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: model-endpoint
      app.kubernetes.io/instance: demo
  template:
    metadata:
      labels:
        app.kubernetes.io/name: model-endpoint
        app.kubernetes.io/instance: demo
    spec:
      containers:
        - name: vllm
          image: "vllm/vllm-openai:v0.10.2"
          args:
            - "--model=Qwen/Qwen2.5-0.5B-Instruct"
            - "--tensor-parallel-size=2"
          ports:
            - name: http
              containerPort: 8000
              protocol: TCP
"""


@dataclass
class Recorder:
    """Stands in for the helm binary: records argv and files, replays recorded output (or
    raises the exception given as a reply, as the default runner does on a timeout)."""

    replies: list[tuple[int, str, str] | Exception]
    calls: list[list[str]] = field(default_factory=list)
    timeouts: list[float] = field(default_factory=list)
    files: dict[str, tuple[int, str]] = field(default_factory=dict)
    """flag -> (permission bits, content) of the file passed with it, read during the call."""

    def __call__(self, argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        self.timeouts.append(timeout)
        for flag in ("--values", "--kubeconfig"):
            if flag in argv:
                path = Path(argv[argv.index(flag) + 1])
                self.files[flag] = (stat.S_IMODE(path.stat().st_mode), path.read_text())
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        code, stdout, stderr = reply
        return subprocess.CompletedProcess(argv, code, stdout, stderr)


@dataclass
class Namespaces:
    """Stands in for the Kubernetes API of :class:`NamespaceClient`: the namespaces in
    ``existing`` exist. Records each call with the number of helm commands run before it,
    and the kubeconfig file as it was during the call."""

    existing: set[str] = field(default_factory=set)
    helm_calls: list[list[str]] = field(default_factory=list)
    """The Recorder's ``calls``, to place namespace calls among the helm commands."""
    exists_error: Exception | None = None
    delete_error: Exception | None = None
    calls: list[tuple[str, str, int]] = field(default_factory=list)
    kubeconfigs: list[tuple[Path, int, str] | None] = field(default_factory=list)

    def exists(self, namespace: str, kubeconfig_path: Path | None) -> bool:
        self._record("exists", namespace, kubeconfig_path)
        if self.exists_error is not None:
            raise self.exists_error
        return namespace in self.existing

    def delete(self, namespace: str, kubeconfig_path: Path | None) -> None:
        self._record("delete", namespace, kubeconfig_path)
        if self.delete_error is not None:
            raise self.delete_error
        self.existing.discard(namespace)

    def _record(self, call: str, namespace: str, path: Path | None) -> None:
        self.calls.append((call, namespace, len(self.helm_calls)))
        self.kubeconfigs.append(
            None if path is None else (path, stat.S_IMODE(path.stat().st_mode), path.read_text())
        )


@pytest.fixture(autouse=True)
def no_kubernetes_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches a Kubernetes API: a backend built without a fake NamespaceClient or
    WorkloadClient fails the test (pytest.fail is a BaseException, which the backend does
    not swallow)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        pytest.fail("a test used the real Kubernetes API: pass namespaces= / workloads=")

    monkeypatch.setattr(kubernetes.client, "CoreV1Api", refuse)
    monkeypatch.setattr(kubernetes.client, "AppsV1Api", refuse)


@pytest.fixture
def kube_connection(monkeypatch: pytest.MonkeyPatch) -> str:
    """A Kubernetes connection as Airflow reads it from the environment."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": KUBECONFIG}}),
    )
    return CONN_ID


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Temp files of the backend land here, so a test can see that none are left."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield tmp_path
    assert list(tmp_path.iterdir()) == [], "temp files left behind"


def spec(**overrides: Any) -> ReleaseSpec:
    fields: dict[str, Any] = {"name": "demo", "namespace": "ml", "chart": "model-endpoint"}
    return ReleaseSpec(**(fields | overrides))


def test_install_runs_upgrade_install_with_values_and_kubeconfig_files(
    kube_connection: str, private_tmp: Path
) -> None:
    values = {"model": {"tensorParallelSize": 2, "dtype": "bfloat16"}, "replicaCount": 1}
    runner = Recorder([(0, INSTALL_JSON, "")])

    namespaces = Namespaces(helm_calls=runner.calls)
    status = HelmBackend(runner=runner, namespaces=namespaces).install(
        spec(values=values, kubeconfig_conn_id=kube_connection)
    )

    (argv,) = runner.calls
    values_file, kubeconfig_file = argv[argv.index("--values") + 1], argv[-1]
    assert argv == [
        "helm", "upgrade", "--install", "demo", CHART,
        "--namespace", "ml", "--create-namespace",
        "--wait", "--atomic", "--timeout", "600s",
        "--values", values_file,
        "-o", "json",
        "--kubeconfig", kubeconfig_file,
    ]  # fmt: skip
    assert Path(values_file).parent == Path(kubeconfig_file).parent
    assert Path(values_file).parent.parent == private_tmp
    assert runner.files["--values"] == (
        0o600,
        '{\n  "model": {\n    "dtype": "bfloat16",\n    "tensorParallelSize": 2\n  },\n'
        '  "replicaCount": 1\n}\n',
    )
    assert runner.files["--kubeconfig"] == (0o600, KUBECONFIG)
    assert not Path(values_file).exists() and not Path(kubeconfig_file).exists()
    assert runner.timeouts == [660]  # helm's --timeout plus time to report
    assert namespaces.calls == [("exists", "ml", 0)]  # asked before helm ran; no cleanup
    assert namespaces.kubeconfigs == [(Path(kubeconfig_file), 0o600, KUBECONFIG)]

    assert status.name == "demo" and status.namespace == "ml"
    assert status.revision == 1 and status.state is ReleaseState.DEPLOYED and status.deployed
    assert status.chart == "model-endpoint-0.1.0" and status.app_version == "v0.10.2"
    assert status.description == "Install complete"


def test_install_of_remote_charts(private_tmp: Path) -> None:
    runner = Recorder([(0, INSTALL_JSON, ""), (0, INSTALL_JSON, "")])
    backend = HelmBackend(helm_binary="/opt/helm/bin/helm", runner=runner, namespaces=Namespaces())

    backend.install(
        spec(
            chart="oci://ghcr.io/acme/charts/vllm",
            chart_version="1.4.2",
            wait=False,
            atomic=False,
            timeout_seconds=120,
        )
    )
    backend.install(
        spec(chart="vllm", repo_url="https://charts.acme.example/stable", chart_version="v2.0.0")
    )

    first, second = runner.calls
    assert first[:12] == [
        "/opt/helm/bin/helm", "upgrade", "--install", "demo", "oci://ghcr.io/acme/charts/vllm",
        "--namespace", "ml", "--create-namespace", "--version", "1.4.2",
        "--timeout", "120s",
    ]  # fmt: skip
    assert first[12] == "--values" and first[14:] == ["-o", "json"]
    assert second[4:12] == [
        "vllm", "--namespace", "ml", "--create-namespace",
        "--version", "v2.0.0", "--repo", "https://charts.acme.example/stable",
    ]  # fmt: skip
    assert "--kubeconfig" not in first + second  # no connection: helm's ambient config


def test_values_are_data_in_a_file_never_flags(private_tmp: Path) -> None:
    hostile = {
        "a": "--kubeconfig=/etc/passwd",
        "b": "x,--set=image.repository=evil",
        "c": '{{ .Files.Get "/etc/passwd" }}',
        "d": "line\n--post-renderer=/bin/sh",
    }
    runner = Recorder([(0, INSTALL_JSON, ""), (0, INSTALL_JSON, "")])
    HelmBackend(runner=runner, namespaces=Namespaces()).install(spec(values=hostile))
    HelmBackend(runner=runner, namespaces=Namespaces()).install(spec())

    with_values, without = runner.calls
    assert with_values.pop(with_values.index("--values") + 1).endswith("values.json")
    assert without.pop(without.index("--values") + 1).endswith("values.json")
    assert with_values == without
    assert json.loads(runner.files["--values"][1]) == {}  # the last call's (empty) values
    assert not any(v in arg for v in hostile.values() for arg in with_values)


def test_values_file_holds_the_values_verbatim(private_tmp: Path) -> None:
    values = {"podAnnotations": {"note": '{{ .Files.Get "x" }}', "multi": "a\nb: c"}}
    runner = Recorder([(0, INSTALL_JSON, "")])
    HelmBackend(runner=runner, namespaces=Namespaces()).install(spec(values=values))
    assert json.loads(runner.files["--values"][1]) == values


def test_uninstall_command_and_idempotence(kube_connection: str, private_tmp: Path) -> None:
    runner = Recorder(
        [
            (0, 'release "demo" uninstalled\n', ""),
            (1, "", "Error: uninstall: Release not loaded: demo: release: not found\n"),
        ]
    )
    backend = HelmBackend(runner=runner)

    backend.uninstall("demo", "ml", kubeconfig_conn_id=kube_connection)
    backend.uninstall("demo", "ml")  # already gone: not an error (rollback after a failure)

    first, second = runner.calls
    assert first == [
        "helm", "uninstall", "demo", "--namespace", "ml", "--wait", "--kubeconfig", first[-1],
    ]  # fmt: skip
    assert second == ["helm", "uninstall", "demo", "--namespace", "ml", "--wait"]
    assert runner.files["--kubeconfig"] == (0o600, KUBECONFIG)


def test_uninstall_failure_is_reported(private_tmp: Path) -> None:
    stderr = "Error: failed to delete release: demo: context deadline exceeded\n"
    runner = Recorder([(1, "", stderr)])
    with pytest.raises(ClusterCommandError) as caught:
        HelmBackend(runner=runner).uninstall("demo", "ml")
    assert str(caught.value) == (
        "uninstall of release 'demo' in namespace 'ml' failed (helm exit 1): " + stderr.strip()
    )


def test_status_parses_helm_json(private_tmp: Path) -> None:
    runner = Recorder([(0, STATUS_JSON, "")])
    status = HelmBackend(runner=runner).status("demo", "ml")

    assert runner.calls == [["helm", "status", "demo", "--namespace", "ml", "-o", "json"]]
    assert status.model_dump() == {
        "name": "demo",
        "namespace": "ml",
        "revision": 3,
        "state": ReleaseState.DEPLOYED,
        "chart": "model-endpoint-0.1.0",
        "app_version": "v0.10.2",
        "description": "Upgrade complete",
        "last_deployed": datetime(2025, 6, 3, 8, 1, 7, 987654, tzinfo=UTC),
        "notes": "vLLM is serving Qwen/Qwen2.5-0.5B-Instruct as ...",
    }


def test_failed_release_state_is_reported(private_tmp: Path) -> None:
    failed = json.loads(STATUS_JSON)
    failed["info"] |= {"status": "failed", "description": "Upgrade failed: timed out"}
    status = HelmBackend(runner=Recorder([(0, json.dumps(failed), "")])).status("demo", "ml")
    assert status.state is ReleaseState.FAILED and not status.deployed


def test_status_of_a_missing_release(private_tmp: Path) -> None:
    runner = Recorder([(1, "", "Error: release: not found\n")])
    with pytest.raises(ReleaseNotFoundError, match=r"'demo'.*'ml'.*release: not found"):
        HelmBackend(runner=runner).status("demo", "ml")


def test_unreadable_helm_output_is_an_error(private_tmp: Path) -> None:
    runner = Recorder([(0, "Release status: deployed\n", ""), (0, '{"name": "demo"}', "")])
    with pytest.raises(ClusterCommandError, match="no readable release"):
        HelmBackend(runner=runner).status("demo", "ml")
    with pytest.raises(ClusterCommandError, match="no readable release"):
        HelmBackend(runner=runner).status("demo", "ml")


def test_endpoints_from_helm_get_manifest(kube_connection: str, private_tmp: Path) -> None:
    runner = Recorder([(0, MANIFEST, "")])
    endpoints = HelmBackend(runner=runner).endpoints("demo", "ml", kubeconfig_conn_id=CONN_ID)

    (argv,) = runner.calls
    assert argv == [
        "helm",
        "get",
        "manifest",
        "demo",
        "--namespace",
        "ml",
        "--kubeconfig",
        argv[-1],
    ]
    assert endpoints == [
        Endpoint(
            name="demo-model-endpoint",
            port_name="http",
            port=8000,
            url="http://demo-model-endpoint.ml.svc.cluster.local:8000",
        )
    ]


def test_endpoint_discovery_selects_the_release_services() -> None:
    extra = """---
# Source: model-endpoint/charts/metrics/templates/service.yaml
apiVersion: v1
kind: Service
metadata: {name: demo-metrics, labels: {app.kubernetes.io/instance: demo}}
spec: {ports: [{name: metrics, port: 9090}]}
---
apiVersion: v1
kind: Service
metadata: {name: upstream, labels: {foundryflow.io/release: demo}}
spec: {type: ExternalName, externalName: api.example.com}
---
apiVersion: v1
kind: Service
metadata: {name: demo-router, namespace: edge, labels: {foundryflow.io/release: demo}}
spec: {ports: [{name: grpc, port: 9000}, {port: 8080}]}
"""
    endpoints = endpoints_from_manifests(
        parse_manifest(MANIFEST + extra), release="demo", namespace="ml"
    )
    assert [(e.name, e.port_name, e.url) for e in endpoints] == [
        ("demo-model-endpoint", "http", "http://demo-model-endpoint.ml.svc.cluster.local:8000"),
        ("demo-router", None, "http://demo-router.edge.svc.cluster.local:8080"),
        ("demo-router", "grpc", "http://demo-router.edge.svc.cluster.local:9000"),
    ]
    assert endpoints_from_manifests(parse_manifest(MANIFEST), release="other", namespace="ml") == []


def test_helm_failure_carries_helms_message(kube_connection: str, private_tmp: Path) -> None:
    """A failed upgrade of a release that existed: helm rolled it back; nothing is removed."""
    stderr = (
        "Error: UPGRADE FAILED: release demo failed, and has been rolled back due to atomic "
        "being set: context deadline exceeded\n"
    )
    runner = Recorder([(0, STATUS_JSON, ""), (1, "", stderr)])
    namespaces = Namespaces({"ml"}, runner.calls)
    with pytest.raises(ClusterCommandError) as caught:
        HelmBackend(runner=runner, namespaces=namespaces).install(
            spec(kubeconfig_conn_id=kube_connection)
        )
    assert str(caught.value) == (
        "install of release 'demo' in namespace 'ml' failed (helm exit 1): "
        + stderr.strip()
        + "; kept release 'demo' and namespace 'ml', which existed before this install"
    )
    status, upgrade = runner.calls  # no uninstall
    assert status == [
        "helm", "status", "demo", "--namespace", "ml", "-o", "json", "--kubeconfig", status[-1],
    ]  # fmt: skip
    assert upgrade[:3] == ["helm", "upgrade", "--install"] and upgrade[-1] == status[-1]
    assert namespaces.calls == [("exists", "ml", 0)] and namespaces.existing == {"ml"}
    assert not Path(runner.calls[0][-1]).exists()  # the kubeconfig is removed on failure too


INSTALL_FAILED = "Error: INSTALLATION FAILED: context deadline exceeded\n"
UNINSTALLED = (0, 'release "demo" uninstalled\n', "")
NOT_FOUND = (1, "", "Error: uninstall: Release not loaded: demo: release: not found\n")
INSTALL_ERROR = "install of release 'demo' in namespace 'ml' failed (helm exit 1): " + (
    INSTALL_FAILED.strip()
)


def upgrade_argv(kubeconfig: str, values: str) -> list[str]:
    return [
        "helm", "upgrade", "--install", "demo", CHART,
        "--namespace", "ml", "--create-namespace",
        "--wait", "--atomic", "--timeout", "600s",
        "--values", values,
        "-o", "json",
        "--kubeconfig", kubeconfig,
    ]  # fmt: skip


def test_failed_install_removes_the_release_and_the_namespace_it_created(
    kube_connection: str, private_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    runner = Recorder([(1, "", INSTALL_FAILED), UNINSTALLED])
    namespaces = Namespaces(helm_calls=runner.calls)
    with pytest.raises(ClusterCommandError) as caught:
        HelmBackend(runner=runner, namespaces=namespaces).install(
            spec(kubeconfig_conn_id=kube_connection)
        )

    assert str(caught.value) == (
        INSTALL_ERROR
        + "; cleaned up: uninstalled release 'demo', deleted namespace 'ml' it had created"
    )
    upgrade, uninstall = runner.calls
    kubeconfig = upgrade[-1]  # one private file for every command of the install
    assert upgrade == upgrade_argv(kubeconfig, upgrade[upgrade.index("--values") + 1])
    assert uninstall == [
        "helm", "uninstall", "demo", "--namespace", "ml", "--wait", "--kubeconfig", kubeconfig,
    ]  # fmt: skip
    assert runner.timeouts == [660, 360]
    # asked before helm ran; deleted after the uninstall
    assert namespaces.calls == [("exists", "ml", 0), ("delete", "ml", 2)]
    assert namespaces.kubeconfigs == [(Path(kubeconfig), 0o600, KUBECONFIG)] * 2
    assert not Path(kubeconfig).exists()
    assert "cleaned up: uninstalled release 'demo'" in caplog.text


def test_failed_atomic_install_already_removed_the_release(private_tmp: Path) -> None:
    """--atomic uninstalls a failed first install itself: helm uninstall finds nothing."""
    stderr = (
        "Error: release demo failed, and has been uninstalled due to atomic being set: "
        "context deadline exceeded\n"
    )
    runner = Recorder([(1, "", stderr), NOT_FOUND])
    namespaces = Namespaces(helm_calls=runner.calls)
    with pytest.raises(ClusterCommandError) as caught:
        HelmBackend(runner=runner, namespaces=namespaces).install(spec())

    assert str(caught.value).endswith(
        stderr.strip() + "; cleaned up: release 'demo' (already uninstalled), "
        "deleted namespace 'ml' it had created"
    )
    assert [c[:3] for c in runner.calls] == [
        ["helm", "upgrade", "--install"],
        ["helm", "uninstall", "demo"],
    ]
    assert namespaces.calls == [("exists", "ml", 0), ("delete", "ml", 2)]
    assert namespaces.kubeconfigs == [None, None]  # no connection: the ambient configuration


def test_failed_install_keeps_a_namespace_that_existed(private_tmp: Path) -> None:
    runner = Recorder(
        [(1, "", "Error: release: not found\n"), (1, "", INSTALL_FAILED), UNINSTALLED]
    )
    namespaces = Namespaces({"ml", "other"}, runner.calls)
    with pytest.raises(ClusterCommandError) as caught:
        HelmBackend(runner=runner, namespaces=namespaces).install(spec())

    assert str(caught.value) == (
        INSTALL_ERROR + "; cleaned up: uninstalled release 'demo'; "
        "kept namespace 'ml', which existed before this install"
    )
    status, upgrade, uninstall = runner.calls
    assert status == ["helm", "status", "demo", "--namespace", "ml", "-o", "json"]
    assert upgrade == upgrade_argv("", upgrade[upgrade.index("--values") + 1])[:-2]
    assert uninstall == ["helm", "uninstall", "demo", "--namespace", "ml", "--wait"]
    assert namespaces.calls == [("exists", "ml", 0)]  # never deleted
    assert namespaces.existing == {"ml", "other"}


def test_successful_install_cleans_nothing_up(private_tmp: Path) -> None:
    runner = Recorder([(0, INSTALL_JSON, ""), (1, "", "Error: release: not found\n")])
    runner.replies.append((0, INSTALL_JSON, ""))
    fresh, existing = Namespaces(helm_calls=runner.calls), Namespaces({"ml"}, runner.calls)

    assert HelmBackend(runner=runner, namespaces=fresh).install(spec()).deployed
    assert HelmBackend(runner=runner, namespaces=existing).install(spec()).deployed

    assert [c[:2] for c in runner.calls] == [
        ["helm", "upgrade"],
        ["helm", "status"],  # the namespace existed: was the release there?
        ["helm", "upgrade"],
    ]
    assert fresh.calls == [("exists", "ml", 0)]
    assert existing.calls == [("exists", "ml", 1)]


def test_timed_out_install_is_cleaned_up_too(private_tmp: Path) -> None:
    timeout = ClusterTimeoutError(
        "helm upgrade --install did not finish within 660s and was killed; "
        "the release may be left mid-change"
    )
    runner = Recorder([timeout, UNINSTALLED])
    namespaces = Namespaces(helm_calls=runner.calls)
    with pytest.raises(ClusterTimeoutError) as caught:
        HelmBackend(runner=runner, namespaces=namespaces).install(spec())

    assert caught.value is timeout  # the original error, with what was cleaned up appended
    assert str(caught.value) == (
        "helm upgrade --install did not finish within 660s and was killed; the release may "
        "be left mid-change; cleaned up: uninstalled release 'demo', "
        "deleted namespace 'ml' it had created"
    )
    assert [c[1] for c in runner.calls] == ["upgrade", "uninstall"]
    assert namespaces.calls == [("exists", "ml", 0), ("delete", "ml", 2)]


def test_failed_cleanup_never_masks_the_install_error(
    private_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uninstall_stderr = "Error: failed to delete release: demo: context deadline exceeded\n"
    runner = Recorder([(1, "", INSTALL_FAILED), (1, "", uninstall_stderr)])
    namespaces = Namespaces(
        helm_calls=runner.calls,
        delete_error=ClusterCommandError(
            "deleting namespace 'ml' failed: HTTP 403 Forbidden: namespaces \"ml\" is forbidden"
        ),
    )
    with pytest.raises(ClusterCommandError) as caught:
        HelmBackend(runner=runner, namespaces=namespaces).install(spec())

    assert str(caught.value) == (
        INSTALL_ERROR + "; cleanup failed: uninstall of release 'demo' in namespace 'ml' "
        "failed (helm exit 1): " + uninstall_stderr.strip() + "; deleting namespace 'ml' "
        'failed: HTTP 403 Forbidden: namespaces "ml" is forbidden'
    )
    # a failed uninstall does not stop the namespace deletion, which removes the rest
    assert namespaces.calls == [("exists", "ml", 0), ("delete", "ml", 2)]
    assert "cleanup failed" in caplog.text

    # errors of any kind in the cleanup are reported, not raised
    runner = Recorder([(1, "", INSTALL_FAILED), BackendUnavailableError("helm vanished")])
    namespaces = Namespaces(delete_error=ConnectionRefusedError(111, "Connection refused"))
    with pytest.raises(ClusterCommandError) as caught:
        HelmBackend(runner=runner, namespaces=namespaces).install(spec())
    assert str(caught.value) == (
        INSTALL_ERROR + "; cleanup failed: helm vanished; deleting namespace 'ml' it had "
        "created failed: ConnectionRefusedError: [Errno 111] Connection refused"
    )


def test_unknown_namespace_is_never_deleted(
    private_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The API is unreachable: the install still runs, a failed one keeps the namespace."""
    runner = Recorder(
        [(1, "", "Error: release: not found\n"), (1, "", INSTALL_FAILED), UNINSTALLED]
    )
    namespaces = Namespaces(
        helm_calls=runner.calls, exists_error=ConnectionRefusedError(111, "Connection refused")
    )
    with pytest.raises(ClusterCommandError) as caught:
        HelmBackend(runner=runner, namespaces=namespaces).install(spec())

    assert str(caught.value) == (
        INSTALL_ERROR + "; cleaned up: uninstalled release 'demo'; kept namespace 'ml' "
        "(could not tell whether it existed before this install)"
    )
    assert [c[1] for c in runner.calls] == ["status", "upgrade", "uninstall"]
    assert namespaces.calls == [("exists", "ml", 0)]
    assert "could not tell whether namespace ml exists (ConnectionRefusedError" in caplog.text

    # neither the namespace nor the release can be checked: nothing is removed
    runner = Recorder([(1, "", "Error: Kubernetes cluster unreachable\n"), (1, "", INSTALL_FAILED)])
    namespaces = Namespaces(helm_calls=runner.calls, exists_error=OSError("unreachable"))
    with pytest.raises(ClusterCommandError) as caught:
        HelmBackend(runner=runner, namespaces=namespaces).install(spec())
    assert str(caught.value) == (
        INSTALL_ERROR + "; kept release 'demo' and namespace 'ml' "
        "(could not tell whether they existed before this install)"
    )
    assert [c[1] for c in runner.calls] == ["status", "upgrade"]
    assert namespaces.calls == [("exists", "ml", 0)]


def test_cluster_helm_backend_passes_the_namespace_client_through(
    kube_connection: str, private_tmp: Path
) -> None:
    from foundryflow.cluster.backends import ClusterHelmBackend

    runner = Recorder([(1, "", INSTALL_FAILED), UNINSTALLED])
    namespaces = Namespaces(helm_calls=runner.calls)
    backend = ClusterHelmBackend(CONN_ID, runner=runner, namespaces=namespaces)
    assert backend.namespaces is namespaces
    with pytest.raises(ClusterCommandError, match="deleted namespace 'ml' it had created"):
        backend.install(spec())
    assert namespaces.kubeconfigs[0] is not None and namespaces.kubeconfigs[0][2] == KUBECONFIG
    assert runner.calls[1][-1] == str(namespaces.kubeconfigs[1][0])  # type: ignore[index]


@dataclass
class FakeCoreV1Api:
    """Stands in for ``kubernetes.client.CoreV1Api``; keeps the ApiClient it was built on."""

    api_client: Any
    answers: list[Any]
    calls: list[tuple[str, str, Any]]

    def read_namespace(self, name: str, *, _request_timeout: Any) -> Any:
        return self._answer("read_namespace", name, _request_timeout)

    def delete_namespace(self, name: str, *, _request_timeout: Any) -> Any:
        return self._answer("delete_namespace", name, _request_timeout)

    def _answer(self, call: str, name: str, timeout: Any) -> Any:
        self.calls.append((call, name, timeout))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_kubernetes_namespace_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real client's configuration from a kubeconfig file, against a fake CoreV1Api."""
    forbidden = ApiException(status=403, reason="Forbidden")
    forbidden.body = json.dumps({"kind": "Status", "message": 'namespaces "ml" is forbidden'})
    answers: list[Any] = [
        {"metadata": {"name": "ml"}},
        ApiException(status=404, reason="Not Found"),
        forbidden,
        {"status": "Terminating"},
        ApiException(status=404, reason="Not Found"),
        ApiException(status=500, reason="Internal Server Error"),
    ]
    calls: list[tuple[str, str, Any]] = []
    clients: list[Any] = []

    def core_v1(api_client: Any) -> FakeCoreV1Api:
        clients.append(api_client)
        return FakeCoreV1Api(api_client, answers, calls)

    monkeypatch.setattr(kubernetes.client, "CoreV1Api", core_v1)
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    client = KubernetesNamespaceClient(request_timeout=7)

    assert client.exists("ml", kubeconfig) is True
    assert client.exists("ml", kubeconfig) is False
    with pytest.raises(ClusterCommandError) as caught:
        client.exists("ml", kubeconfig)
    assert str(caught.value) == (
        "reading namespace 'ml' failed: HTTP 403 Forbidden: namespaces \"ml\" is forbidden"
    )
    client.delete("ml", kubeconfig)
    client.delete("ml", kubeconfig)  # already gone
    with pytest.raises(
        ClusterCommandError, match=r"^deleting namespace 'ml' failed: HTTP 500 Internal Server"
    ):
        client.delete("ml", kubeconfig)

    assert [c[0] for c in calls] == ["read_namespace"] * 3 + ["delete_namespace"] * 3
    assert {(name, timeout) for _, name, timeout in calls} == {("ml", 7)}
    configuration = clients[0].configuration
    assert configuration.host == "https://10.0.0.1:6443"
    assert configuration.api_key == {"BearerToken": f"Bearer {SECRET}"}
    # the CA certificate decoded from the kubeconfig lands next to it, in the private dir
    assert Path(configuration.ssl_ca_cert).parent == work
    assert len({id(c) for c in clients}) == 6  # a fresh client per call

    # no kubeconfig file: $KUBECONFIG / ~/.kube/config as helm reads it, else in-cluster
    monkeypatch.setattr(
        kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig)
    )
    answers.append(ApiException(status=404, reason="Not Found"))
    assert client.exists("ml", None) is False
    assert clients[-1].configuration.host == "https://10.0.0.1:6443"
    monkeypatch.setattr(
        kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "none")
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigException):
        client.exists("ml", None)


def test_an_unconfigured_cluster_does_not_block_install(
    private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real namespace client without any configuration: the install runs anyway."""
    monkeypatch.setattr(
        kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(private_tmp / "none")
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    runner = Recorder([(1, "", "Error: release: not found\n"), (0, INSTALL_JSON, "")])
    assert HelmBackend(runner=runner).install(spec()).deployed
    assert [c[1] for c in runner.calls] == ["status", "upgrade"]


def test_helm_warnings_do_not_fail_a_successful_command(private_tmp: Path) -> None:
    warning = "Flag --atomic has been deprecated, use --rollback-on-failure instead\n"
    runner = Recorder([(0, INSTALL_JSON, warning)])
    assert HelmBackend(runner=runner, namespaces=Namespaces()).install(spec()).deployed


def test_the_kubeconfig_secret_never_reaches_argv_logs_or_errors(
    kube_connection: str,
    private_tmp: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    runner = Recorder(
        [(0, INSTALL_JSON, ""), (0, STATUS_JSON, ""), (0, MANIFEST, ""), (1, "", "Error: boom")]
    )
    backend = HelmBackend(runner=runner, namespaces=Namespaces())
    backend.install(spec(kubeconfig_conn_id=kube_connection))
    backend.status("demo", "ml", kubeconfig_conn_id=kube_connection)
    backend.endpoints("demo", "ml", kubeconfig_conn_id=kube_connection)
    with pytest.raises(ClusterCommandError) as caught:
        backend.uninstall("demo", "ml", kubeconfig_conn_id=kube_connection)

    assert all(SECRET not in arg and "server:" not in arg for c in runner.calls for arg in c)
    assert all(c[-2] == "--kubeconfig" for c in runner.calls)
    assert "running helm upgrade --install demo" in caplog.text  # commands are logged ...
    assert SECRET not in caplog.text  # ... the kubeconfig never is
    assert SECRET not in str(caught.value)
    out, err = capfd.readouterr()
    assert SECRET not in out + err


def test_kubeconfig_connection_errors_run_nothing(
    monkeypatch: pytest.MonkeyPatch, private_tmp: Path
) -> None:
    runner, namespaces = Recorder([]), Namespaces()
    backend = HelmBackend(runner=runner, namespaces=namespaces)
    with pytest.raises(KubeconfigError, match="'kube_missing' does not exist"):
        backend.install(spec(kubeconfig_conn_id="kube_missing"))

    monkeypatch.setenv("AIRFLOW_CONN_KUBE_EMPTY", json.dumps({"conn_type": "kubernetes"}))
    with pytest.raises(KubeconfigError, match="'kube_empty' holds no kubeconfig"):
        backend.status("demo", "ml", kubeconfig_conn_id="kube_empty")
    assert runner.calls == [] and namespaces.calls == []


HOSTILE_SPECS = [
    ({"chart": "../../etc"}, "neither the name of a chart directory"),
    ({"chart": "model-endpoint/../../etc"}, "neither the name of a chart directory"),
    ({"chart": "/etc"}, "neither the name of a chart directory"),
    ({"chart": "file:///etc/passwd"}, "neither the name of a chart directory"),
    ({"chart": "file://../../etc"}, "neither the name of a chart directory"),
    ({"chart": "https://evil.example/chart.tgz"}, "neither the name of a chart directory"),
    ({"chart": "no-such-chart"}, "no chart named 'no-such-chart'"),
    ({"chart": "model-endpoint", "chart_version": "1.0.0"}, "chart_version is for remote charts"),
    (
        {"chart": "oci://robot:hunter2@ghcr.io/acme/vllm", "chart_version": "1.0.0"},
        "must not carry credentials",
    ),
    ({"chart": "oci://ghcr.io/acme/../vllm", "chart_version": "1.0.0"}, "'..' path segments"),
    ({"chart": "oci://ghcr.io/acme/vllm?x=1", "chart_version": "1.0.0"}, "is malformed"),
    ({"chart": "oci://ghcr.io/acme/vllm"}, "needs an exact chart_version"),
    ({"chart": "oci://ghcr.io/acme/vllm", "chart_version": "^1.2"}, "not an exact semantic"),
    ({"chart": "oci://ghcr.io/acme/vllm", "chart_version": "--devel"}, "not an exact semantic"),
    (
        {"chart": "vllm", "repo_url": "https://u:tok@charts.example", "chart_version": "1.0.0"},
        "must not carry credentials",
    ),
    (
        {"chart": "vllm", "repo_url": "http://charts.example", "chart_version": "1.0.0"},
        "expected https://",
    ),
    (
        {"chart": "--set", "repo_url": "https://charts.example", "chart_version": "1.0.0"},
        "is not a chart name",
    ),
    ({"name": "Demo"}, "not a DNS-1123 label"),
    ({"name": "demo_1"}, "not a DNS-1123 label"),
    ({"name": "--kubeconfig=/tmp/x"}, "not a DNS-1123 label"),
    ({"name": "a" * 54}, "at most 53"),
    ({"namespace": "--kubeconfig"}, "not a DNS-1123 label"),
    ({"namespace": "-n"}, "not a DNS-1123 label"),
    ({"namespace": "ml --all"}, "not a DNS-1123 label"),
    ({"namespace": "a" * 64}, "at most 63"),
    ({"kubeconfig_conn_id": "--kubeconfig"}, "not an Airflow connection id"),
    ({"atomic": True, "wait": False}, "atomic needs wait"),
    ({"timeout_seconds": 0}, "greater than or equal to 1"),
    ({"set": ["image.tag=x"]}, "Extra inputs are not permitted"),
    ({"values": {"model": object()}}, "values.model"),
]


@pytest.mark.parametrize(("overrides", "message"), HOSTILE_SPECS)
def test_hostile_release_specs_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("^", r"\^")):
        spec(**overrides)


@pytest.mark.parametrize(
    ("name", "namespace"),
    [("demo", "--kubeconfig"), ("--all", "ml"), ("../x", "ml"), ("demo", ""), ("Demo", "ml")],
)
def test_hostile_names_run_no_command(name: str, namespace: str) -> None:
    runner, workloads = Recorder([]), Workloads()
    backend = HelmBackend(runner=runner, workloads=workloads)
    for call in (backend.uninstall, backend.status, backend.endpoints, backend.instances):
        with pytest.raises(InvalidReleaseError, match="not a DNS-1123 label"):
            call(name, namespace)
    with pytest.raises(InvalidReleaseError, match="not an Airflow connection id"):
        backend.status("demo", "ml", kubeconfig_conn_id="-x")
    with pytest.raises(InvalidReleaseError, match="not an Airflow connection id"):
        backend.instances("demo", "ml", kubeconfig_conn_id="-x")
    assert runner.calls == [] and workloads.calls == []


def test_chart_symlinks_cannot_leave_the_charts_folder(tmp_path: Path) -> None:
    charts, outside = tmp_path / "charts", tmp_path / "outside"
    (charts / "good").mkdir(parents=True)
    (charts / "good" / "Chart.yaml").write_text("apiVersion: v2\nname: good\nversion: 0.1.0\n")
    outside.mkdir()
    (outside / "Chart.yaml").write_text("apiVersion: v2\nname: evil\nversion: 0.1.0\n")
    (charts / "evil").symlink_to(outside)

    assert local_chart_path("good", charts) == (charts / "good").resolve()
    with pytest.raises(ChartReferenceError, match="outside"):
        local_chart_path("evil", charts)


def test_missing_helm_binary(private_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackendUnavailableError, match=r"helm binary '/nonexistent/helm' was not"):
        HelmBackend(helm_binary="/nonexistent/helm", namespaces=Namespaces()).install(spec())

    monkeypatch.setenv("PATH", str(private_tmp / "empty-bin"))
    with pytest.raises(BackendUnavailableError, match="install Helm"):
        HelmBackend().status("demo", "ml")


@pytest.fixture
def fake_helm(tmp_path: Path) -> Path:
    """A stand-in helm binary for the default runner: records argv, prints $FAKE_HELM_OUT."""
    script = tmp_path / "bin" / "helm"
    script.parent.mkdir()
    script.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$FAKE_HELM_ARGS"\n'
        'printf "%s" "$FAKE_HELM_OUT"\nprintf "%s" "$FAKE_HELM_ERR" >&2\nexit "$FAKE_HELM_RC"\n'
    )
    script.chmod(0o755)
    return script


def test_default_runner_runs_the_binary(
    fake_helm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args_file = tmp_path / "args"
    monkeypatch.setenv("FAKE_HELM_ARGS", str(args_file))
    monkeypatch.setenv("FAKE_HELM_OUT", STATUS_JSON)
    monkeypatch.setenv("FAKE_HELM_ERR", "")
    monkeypatch.setenv("FAKE_HELM_RC", "0")
    assert HelmBackend(helm_binary=str(fake_helm)).status("demo", "ml").revision == 3
    assert args_file.read_text().splitlines() == [
        "status",
        "demo",
        "--namespace",
        "ml",
        "-o",
        "json",
    ]

    monkeypatch.setenv("FAKE_HELM_OUT", "")
    monkeypatch.setenv("FAKE_HELM_ERR", "Error: Kubernetes cluster unreachable")
    monkeypatch.setenv("FAKE_HELM_RC", "1")
    with pytest.raises(ClusterCommandError, match=r"exit 1.*Kubernetes cluster unreachable"):
        HelmBackend(helm_binary=str(fake_helm)).status("demo", "ml")


def test_default_runner_kills_a_hung_helm(tmp_path: Path) -> None:
    script = tmp_path / "helm"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    with pytest.raises(ClusterTimeoutError, match=r"did not finish within 0.5s"):
        run_subprocess([str(script), "upgrade", "--install"], timeout=0.5)


# --------------------------------------------------------------------------- rollback
# `helm status demo --namespace ml -o json` after `helm rollback demo 1`: a new revision
ROLLED_BACK_JSON = json.dumps(
    {
        **json.loads(STATUS_JSON),
        "info": {**json.loads(STATUS_JSON)["info"], "description": "Rollback to 1"},
        "version": 4,
    }
)
ROLLED_BACK = (0, "Rollback was a success! Happy Helming!\n", "")


def test_rollback_runs_helm_rollback_then_status(kube_connection: str, private_tmp: Path) -> None:
    runner = Recorder([ROLLED_BACK, (0, ROLLED_BACK_JSON, "")])

    status = HelmBackend(runner=runner, namespaces=Namespaces()).rollback(
        spec(values={"replicaCount": 2}, kubeconfig_conn_id=kube_connection), 1
    )

    rollback, status_call = runner.calls
    kubeconfig = rollback[-1]  # one private file for both commands
    assert rollback == [
        "helm", "rollback", "demo", "1", "--namespace", "ml",
        "--wait", "--timeout", "600s",
        "--kubeconfig", kubeconfig,
    ]  # fmt: skip
    assert status_call == [
        "helm", "status", "demo", "--namespace", "ml", "-o", "json", "--kubeconfig", kubeconfig,
    ]  # fmt: skip
    assert "--values" not in rollback  # helm restores its own record of revision 1
    assert runner.files["--kubeconfig"] == (0o600, KUBECONFIG)
    assert not Path(kubeconfig).exists()
    assert runner.timeouts == [660, 300]
    assert (status.revision, status.state, status.description) == (
        4,
        ReleaseState.DEPLOYED,
        "Rollback to 1",
    )


def test_rollback_without_connection_follows_the_spec(private_tmp: Path) -> None:
    runner = Recorder([ROLLED_BACK, (0, ROLLED_BACK_JSON, "")] * 2)
    backend = HelmBackend(runner=runner, namespaces=Namespaces())

    backend.rollback(spec(timeout_seconds=120), 3)
    backend.rollback(spec(wait=False, atomic=False), 12)

    first, first_status, second, _ = runner.calls
    assert first == [
        "helm", "rollback", "demo", "3", "--namespace", "ml", "--wait", "--timeout", "120s",
    ]  # fmt: skip
    assert first_status == ["helm", "status", "demo", "--namespace", "ml", "-o", "json"]
    assert second == ["helm", "rollback", "demo", "12", "--namespace", "ml", "--timeout", "600s"]
    assert runner.timeouts == [180, 300, 660, 300]


def test_failed_rollback_carries_helms_message(private_tmp: Path) -> None:
    stderr = "Error: release has no 7 version\n"
    runner = Recorder([(1, "", stderr), (1, "", "Error: release: not found\n")])
    backend = HelmBackend(runner=runner, namespaces=Namespaces())

    with pytest.raises(ClusterCommandError) as caught:
        backend.rollback(spec(), 7)
    assert str(caught.value) == (
        "rollback of release 'demo' in namespace 'ml' to revision 7 failed (helm exit 1): "
        "Error: release has no 7 version"
    )
    with pytest.raises(ReleaseNotFoundError, match=r"to revision 1: the release does not exist"):
        backend.rollback(spec(), 1)
    assert [c[1] for c in runner.calls] == ["rollback", "rollback"]  # no status after failure


@pytest.mark.parametrize("revision", [0, -1, True, 1.0, "1"])
def test_rollback_refuses_a_bad_revision_before_any_command(
    kube_connection: str, private_tmp: Path, revision: Any
) -> None:
    runner = Recorder([])
    with pytest.raises(InvalidReleaseError, match="is not a release revision"):
        HelmBackend(runner=runner, namespaces=Namespaces()).rollback(
            spec(kubeconfig_conn_id=kube_connection), revision
        )
    assert runner.calls == []


def test_cluster_helm_backend_binds_rollback_and_instances_to_its_connection(
    kube_connection: str, private_tmp: Path
) -> None:
    from foundryflow.cluster.backends import ClusterHelmBackend

    runner, workloads = Recorder([ROLLED_BACK, (0, ROLLED_BACK_JSON, "")]), Workloads()
    backend = ClusterHelmBackend(CONN_ID, runner=runner, workloads=workloads)
    assert backend.workloads is workloads

    assert backend.rollback(spec(), 1).revision == 4
    assert backend.instances("demo", "ml") == workloads.answer

    rollback, status_call = runner.calls
    assert rollback[-2:] == ["--kubeconfig", rollback[-1]] and status_call[-1] == rollback[-1]
    assert runner.files["--kubeconfig"] == (0o600, KUBECONFIG)
    ((_, _, kubeconfig),) = workloads.calls
    assert kubeconfig is not None and kubeconfig[1:] == (0o600, KUBECONFIG)

    with pytest.raises(ClusterError, match="not the connection of this cluster"):
        backend.rollback(spec(kubeconfig_conn_id="kube_other"), 1)
    with pytest.raises(ClusterError, match="not the connection of this cluster"):
        backend.instances("demo", "ml", kubeconfig_conn_id="kube_other")
    assert len(runner.calls) == 2 and len(workloads.calls) == 1


# --------------------------------------------------------------------------- instances
@dataclass
class Workloads:
    """Stands in for :class:`WorkloadClient`: answers ``answer``, records each call with the
    kubeconfig file as it was during the call."""

    answer: Instances = field(default_factory=lambda: Instances(desired=3, ready=2, updated=3))
    calls: list[tuple[str, str, tuple[Path, int, str] | None]] = field(default_factory=list)

    def counts(self, name: str, namespace: str, kubeconfig_path: Path | None) -> Instances:
        kubeconfig = (
            None
            if kubeconfig_path is None
            else (
                kubeconfig_path,
                stat.S_IMODE(kubeconfig_path.stat().st_mode),
                kubeconfig_path.read_text(),
            )
        )
        self.calls.append((name, namespace, kubeconfig))
        return self.answer


def test_instances_come_from_the_workload_client(kube_connection: str, private_tmp: Path) -> None:
    runner, workloads = Recorder([]), Workloads()
    backend = HelmBackend(runner=runner, workloads=workloads)

    assert backend.instances("demo", "ml", kubeconfig_conn_id=kube_connection) == Instances(
        desired=3, ready=2, updated=3
    )
    assert backend.instances("demo", "ml") == workloads.answer

    (first, second) = workloads.calls
    assert first[:2] == ("demo", "ml") and first[2] is not None
    path, mode, content = first[2]
    assert (mode, content) == (0o600, KUBECONFIG) and path.parent.parent == private_tmp
    assert second == ("demo", "ml", None)  # no connection: the ambient configuration
    assert runner.calls == []  # helm prints no pod counts: it is not run


def workload(kind: str, replicas: int | None, ready: int | None, updated: int | None) -> Any:
    """A Deployment or StatefulSet as the client deserializes it (status fields that are
    zero are absent, i.e. None)."""
    c = kubernetes.client
    selector, template = c.V1LabelSelector(), c.V1PodTemplateSpec()
    if kind == "Deployment":
        return c.V1Deployment(
            spec=c.V1DeploymentSpec(replicas=replicas, selector=selector, template=template),
            status=c.V1DeploymentStatus(ready_replicas=ready, updated_replicas=updated),
        )
    return c.V1StatefulSet(
        spec=c.V1StatefulSetSpec(replicas=replicas, selector=selector, template=template),
        status=c.V1StatefulSetStatus(
            replicas=replicas or 0, ready_replicas=ready, updated_replicas=updated
        ),
    )


@dataclass
class FakeAppsV1Api:
    """Stands in for ``kubernetes.client.AppsV1Api``; keeps the ApiClient it was built on."""

    api_client: Any
    answers: dict[str, list[Any]]
    calls: list[tuple[str, str, str, Any]]

    def list_namespaced_deployment(
        self, namespace: str, *, label_selector: str, _request_timeout: Any
    ) -> Any:
        return self._answer(
            "list_namespaced_deployment", namespace, label_selector, _request_timeout
        )

    def list_namespaced_stateful_set(
        self, namespace: str, *, label_selector: str, _request_timeout: Any
    ) -> Any:
        return self._answer(
            "list_namespaced_stateful_set", namespace, label_selector, _request_timeout
        )

    def _answer(self, call: str, namespace: str, selector: str, timeout: Any) -> Any:
        self.calls.append((call, namespace, selector, timeout))
        answer = self.answers[call].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def apps_api(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, list[Any]], list[Any], list[Any]]:
    """A fake AppsV1Api in place of the real one: (answers by call, calls, ApiClients).

    The kubernetes client reuses a certificate file it decoded earlier (cached by content)
    for as long as that file exists; pytest keeps earlier tests' directories, so the cache
    starts empty here for the file to be written where this test looks for it."""
    monkeypatch.setattr(kubernetes.config.kube_config, "_temp_files", {})
    answers: dict[str, list[Any]] = {
        "list_namespaced_deployment": [],
        "list_namespaced_stateful_set": [],
    }
    calls: list[Any] = []
    clients: list[Any] = []

    def apps_v1(api_client: Any) -> FakeAppsV1Api:
        clients.append(api_client)
        return FakeAppsV1Api(api_client, answers, calls)

    monkeypatch.setattr(kubernetes.client, "AppsV1Api", apps_v1)
    return answers, calls, clients


def test_kubernetes_workload_client_sums_deployments_and_stateful_sets(
    tmp_path: Path, apps_api: tuple[dict[str, list[Any]], list[Any], list[Any]]
) -> None:
    answers, calls, clients = apps_api
    c = kubernetes.client
    answers["list_namespaced_deployment"].append(
        c.V1DeploymentList(
            items=[
                workload("Deployment", 3, 2, 3),  # one pod not ready yet
                workload("Deployment", 0, None, None),  # scaled to zero
                workload("Deployment", None, None, None),  # no spec.replicas: counts 0
            ]
        )
    )
    answers["list_namespaced_stateful_set"].append(
        c.V1StatefulSetList(items=[workload("StatefulSet", 2, None, 1)])  # mid-rollout
    )
    work = tmp_path / "work"
    work.mkdir(mode=0o700)
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)

    counts = KubernetesWorkloadClient(request_timeout=7).counts("demo", "ml", kubeconfig)

    assert counts == Instances(desired=5, ready=2, updated=4)
    assert calls == [
        ("list_namespaced_deployment", "ml", "foundryflow.io/release=demo", 7),
        ("list_namespaced_stateful_set", "ml", "foundryflow.io/release=demo", 7),
    ]
    (api_client,) = {id(client): client for client in clients}.values()  # one per call
    assert api_client.configuration.host == "https://10.0.0.1:6443"
    assert api_client.configuration.api_key == {"BearerToken": f"Bearer {SECRET}"}
    assert Path(api_client.configuration.ssl_ca_cert).parent == work

    answers["list_namespaced_deployment"].append(c.V1DeploymentList(items=[]))
    answers["list_namespaced_stateful_set"].append(c.V1StatefulSetList(items=[]))
    assert KubernetesWorkloadClient().counts("gone", "ml", kubeconfig) == Instances(
        desired=0, ready=0, updated=0
    )


def test_kubernetes_workload_client_errors_are_one_line(
    tmp_path: Path, apps_api: tuple[dict[str, list[Any]], list[Any], list[Any]]
) -> None:
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    answers, calls, _ = apps_api
    forbidden = ApiException(status=403, reason="Forbidden")
    forbidden.body = json.dumps(
        {
            "kind": "Status",
            "message": 'statefulsets.apps is forbidden: User "deployer" cannot list resource '
            '"statefulsets" in API group "apps" in the namespace "ml"',
        }
    )
    answers["list_namespaced_deployment"] += [
        ApiException(status=404, reason="Not Found"),
        kubernetes.client.V1DeploymentList(items=[workload("Deployment", 1, 1, 1)]),
        MaxRetryError(
            None,  # type: ignore[arg-type]
            "/apis/apps/v1/namespaces/ml/deployments",
            NewConnectionError(None, "Failed to establish a new connection:\n[Errno 111]"),  # type: ignore[arg-type]
        ),
    ]
    answers["list_namespaced_stateful_set"].append(forbidden)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    client = KubernetesWorkloadClient()

    with pytest.raises(ClusterCommandError) as caught:
        client.counts("demo", "ml", kubeconfig)
    assert str(caught.value) == (
        "listing the Deployments of release 'demo' in namespace 'ml' failed: HTTP 404 Not Found"
    )
    with pytest.raises(ClusterCommandError) as caught:
        client.counts("demo", "ml", kubeconfig)
    assert str(caught.value) == (
        "listing the StatefulSets of release 'demo' in namespace 'ml' failed: HTTP 403 "
        'Forbidden: statefulsets.apps is forbidden: User "deployer" cannot list resource '
        '"statefulsets" in API group "apps" in the namespace "ml"'
    )
    with pytest.raises(ClusterCommandError) as caught:
        client.counts("demo", "ml", kubeconfig)
    message = str(caught.value)
    assert message.startswith(
        "listing the Deployments of release 'demo' in namespace 'ml' failed: MaxRetryError: "
    )
    assert "\n" not in message and "[Errno 111]" in message
    assert len(calls) == 4


def test_instances_through_the_kubernetes_client_use_the_private_kubeconfig(
    kube_connection: str,
    private_tmp: Path,
    apps_api: tuple[dict[str, list[Any]], list[Any], list[Any]],
) -> None:
    answers, calls, clients = apps_api
    answers["list_namespaced_deployment"].append(
        kubernetes.client.V1DeploymentList(items=[workload("Deployment", 2, 2, 2)])
    )
    answers["list_namespaced_stateful_set"].append(kubernetes.client.V1StatefulSetList(items=[]))

    counts = HelmBackend(runner=Recorder([])).instances(
        "demo", "ml", kubeconfig_conn_id=kube_connection
    )

    assert counts == Instances(desired=2, ready=2, updated=2)
    assert len(calls) == 2
    configuration = clients[0].configuration
    assert configuration.api_key == {"BearerToken": f"Bearer {SECRET}"}
    # the CA file decoded from the kubeconfig was in the private dir, removed with it
    assert Path(configuration.ssl_ca_cert).parent.parent == private_tmp
    assert not Path(configuration.ssl_ca_cert).exists()
