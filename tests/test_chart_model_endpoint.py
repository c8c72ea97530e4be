"""The model-endpoint chart, rendered by Helm's real engine and validated strictly.

Everything here goes through ``render_release`` (helm-python-sdk's Go engine, the chart's
values.schema.json, kubernetes-validate strict for Kubernetes 1.30), the path the local
cluster backend takes, so what these tests accept is what a real ``helm install`` sends.
"""

from __future__ import annotations

from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from foundryflow.cluster.base import (
    CHARTS_DIR,
    RELEASE_LABEL,
    ChartReferenceError,
    Endpoint,
    ManifestValidationError,
    ReleaseSpec,
    ValuesValidationError,
)
from foundryflow.cluster.render import KUBERNETES_VERSION, RenderedRelease, render_release

CHART = CHARTS_DIR / "model-endpoint"
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]


def render(
    values: dict[str, Any] | None = None, name: str = "demo", namespace: str = "ml"
) -> RenderedRelease:
    spec = ReleaseSpec(name=name, namespace=namespace, chart="model-endpoint", values=values or {})
    return render_release(spec)


def only(rendered: RenderedRelease, kind: str) -> dict[str, Any]:
    objects = [m for m in rendered.manifests if m["kind"] == kind]
    assert len(objects) == 1, [m["kind"] for m in rendered.manifests]
    return objects[0]


def container(rendered: RenderedRelease) -> dict[str, Any]:
    (vllm,) = only(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    return vllm


def test_defaults_render_a_valid_vllm_deployment_and_service() -> None:
    rendered = render()

    assert sorted(m["kind"] for m in rendered.manifests) == ["Deployment", "Service"]
    for manifest in rendered.manifests:  # independently of render_release's own check
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)

    vllm = container(rendered)
    assert vllm["image"] == f"vllm/vllm-openai:{APP_VERSION}"
    assert vllm["args"] == [
        "--model=Qwen/Qwen2.5-0.5B-Instruct",
        "--served-model-name=Qwen/Qwen2.5-0.5B-Instruct",
        "--tensor-parallel-size=1",
        "--max-model-len=4096",
        "--dtype=auto",
        "--gpu-memory-utilization=0.9",
        "--host=0.0.0.0",
        "--port=8000",
    ]
    assert vllm["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert vllm[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert vllm["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert vllm["securityContext"]["allowPrivilegeEscalation"] is False
    assert [e["name"] for e in vllm["env"]] == ["HOME", "HF_HOME"]  # no token by default

    pod = only(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "default"

    service = only(rendered, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {
            "name": "http",
            "port": 8000,
            "targetPort": "http",
            "protocol": "TCP",
            "appProtocol": "http",
        }
    ]
    assert rendered.services == [service]
    assert rendered.endpoints == [
        Endpoint(
            name="demo-model-endpoint",
            port_name="http",
            port=8000,
            url="http://demo-model-endpoint.ml.svc.cluster.local:8000",
        )
    ]
    assert "http://demo-model-endpoint.ml.svc.cluster.local:8000/v1" in rendered.notes


def test_tensor_parallel_dtype_and_limits_reach_vllm() -> None:
    rendered = render(
        {
            "model": {
                "name": "meta-llama/Llama-3.1-70B-Instruct",
                "servedModelName": "llama-70b",
                "tensorParallelSize": 4,
                "maxModelLen": 32768,
                "dtype": "bfloat16",
                "gpuMemoryUtilization": 0.85,
            },
            "replicaCount": 2,
        }
    )
    vllm = container(rendered)
    assert vllm["args"][:6] == [
        "--model=meta-llama/Llama-3.1-70B-Instruct",
        "--served-model-name=llama-70b",
        "--tensor-parallel-size=4",
        "--max-model-len=32768",
        "--dtype=bfloat16",
        "--gpu-memory-utilization=0.85",
    ]
    assert only(rendered, "Deployment")["spec"]["replicas"] == 2


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_gpu_request_and_limit_equal_tensor_parallel_degree(tp: int) -> None:
    resources = container(render({"model": {"tensorParallelSize": tp}}))["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == tp
    assert resources["limits"]["nvidia.com/gpu"] == tp
    assert resources["requests"]["memory"] == "32Gi"  # CPU/memory values kept beside the GPUs


def test_hf_token_comes_only_from_an_existing_secret() -> None:
    rendered = render({"huggingface": {"tokenSecret": {"name": "hf-gated", "key": "hf_token"}}})
    (token,) = [e for e in container(rendered)["env"] if e["name"] == "HF_TOKEN"]
    assert token == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf-gated", "key": "hf_token"}},
    }
    assert not any(m["kind"] == "Secret" for m in rendered.manifests)

    with pytest.raises(ValuesValidationError, match=r"'token' was unexpected"):
        render({"huggingface": {"token": "hf_literal_secret"}})
    with pytest.raises(ValuesValidationError, match=r"'value' was unexpected"):
        render({"huggingface": {"tokenSecret": {"name": "x", "key": "k", "value": "hf_abc"}}})


@pytest.mark.parametrize(
    ("values", "path", "message"),
    [
        ({"model": {"tensorParallelSize": 0}}, "model.tensorParallelSize", "minimum of 1"),
        ({"model": {"tensorParallelSize": 16}}, "model.tensorParallelSize", "maximum of 8"),
        ({"model": {"dtype": "fp8"}}, "model.dtype", "'fp8' is not one of"),
        ({"model": {"gpuMemoryUtilization": 1.5}}, "model.gpuMemoryUtilization", "maximum of 1"),
        (
            {"model": {"gpuMemoryUtilization": 0}},
            "model.gpuMemoryUtilization",
            "less than or equal",
        ),
        ({"model": {"maxModelLen": "4096"}}, "model.maxModelLen", "is not of type 'integer'"),
        ({"model": {"name": "--trust-remote-code"}}, "model.name", "does not match"),
        ({"model": {"servedModelName": "-x"}}, "model.servedModelName", "does not match"),
        ({"model": {"quantization": "awq"}}, "model", "'quantization' was unexpected"),
        ({"model": None}, "(root)", "'model' is a required property"),
        ({"replicaCount": 0}, "replicaCount", "minimum of 1"),
        ({"service": {"port": 70000}}, "service.port", "maximum of 65535"),
        ({"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy", "is not one of"),
        (
            {"imagePullSecrets": [{"name": "Bad_Name"}]},
            "imagePullSecrets[0].name",
            "does not match",
        ),
        ({"resources": {"limits": {"nvidia.com/gpu": 2}}}, "resources.limits", "was unexpected"),
        ({"resources": {"requests": {"memory": "lots"}}}, "resources.requests.memory", "match"),
        ({"cache": {"existingClaim": "../x"}}, "cache.existingClaim", "does not match"),
        ({"modle": {}}, "(root)", "'modle' was unexpected"),
    ],
)
def test_schema_rejects_bad_values_with_their_path(
    values: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(ValuesValidationError) as caught:
        render(values)
    assert any(p == path and message in m for p, m in caught.value.problems), caught.value.problems
    assert f"{path}: " in str(caught.value)
    assert "values.schema.json" in str(caught.value)


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(ValuesValidationError) as caught:
        render({"model": {"tensorParallelSize": 0, "dtype": "int4"}, "replicaCount": -1})
    assert {p for p, _ in caught.value.problems} == {
        "model.tensorParallelSize",
        "model.dtype",
        "replicaCount",
    }


def test_helm_itself_enforces_the_same_schema() -> None:
    """A real ``helm install`` (no Python in between) refuses what our check refuses."""
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema({"model": {"tensorParallelSize": 4, "dtype": "bfloat16"}})
        with pytest.raises(helm.HelmValuesError, match="tensorParallelSize"):
            chart.validate_schema({"model": {"tensorParallelSize": 0}})


def test_helm_lint_is_clean_for_kubernetes_1_30() -> None:
    report = helm.lint(CHART, strict=True, kube_version=f"v{KUBERNETES_VERSION}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_template_injection_in_values_stays_literal_data() -> None:
    files_get = '{{ .Files.Get "values.schema.json" }}'
    yaml_break = "x\nkind: Secret\nstringData: {token: leaked}"
    rendered = render(
        {
            "podAnnotations": {"note": files_get, "multi": yaml_break},
            "model": {"servedModelName": "{{.Release.Namespace}}"},
            "serviceAccount": {"create": True, "name": "", "annotations": {"a": "{{ .Values }}"}},
        }
    )
    pod = only(rendered, "Deployment")["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"note": files_get, "multi": yaml_break}
    assert "--served-model-name={{.Release.Namespace}}" in container(rendered)["args"]
    assert only(rendered, "ServiceAccount")["metadata"]["annotations"] == {"a": "{{ .Values }}"}
    assert sorted(m["kind"] for m in rendered.manifests) == [
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    assert '"$schema"' not in yaml.safe_dump(rendered.manifests)  # the file was never read


def test_strict_manifest_validation_catches_bad_kubernetes_fields() -> None:
    with pytest.raises(ManifestValidationError, match=r"Deployment/demo-model-endpoint.*operatr"):
        render({"tolerations": [{"key": "nvidia.com/gpu", "operatr": "Exists"}]})


def test_gpu_node_scheduling_settings_pass_through() -> None:
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    rendered = render(
        {
            "tolerations": [toleration],
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "cache": {"existingClaim": "hf-cache", "sizeLimit": "1Gi"},
        }
    )
    pod = only(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["tolerations"] == [toleration]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["volumes"][0] == {
        "name": "cache",
        "persistentVolumeClaim": {"claimName": "hf-cache"},
    }


def test_optional_service_account() -> None:
    rendered = render({"serviceAccount": {"create": True, "name": ""}})
    account = only(rendered, "ServiceAccount")
    assert account["metadata"]["name"] == "demo-model-endpoint"
    assert account["automountServiceAccountToken"] is False
    pod = only(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "demo-model-endpoint"

    named = render({"serviceAccount": {"create": False, "name": "inference"}})
    assert not any(m["kind"] == "ServiceAccount" for m in named.manifests)
    assert (
        only(named, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "inference"
    )


def test_labels_let_the_endpoint_be_found_from_the_release_services() -> None:
    rendered = render(name="guard-llama", namespace="guardrails")
    service = only(rendered, "Service")
    deployment = only(rendered, "Deployment")
    for obj in (service, deployment):
        labels = obj["metadata"]["labels"]
        assert labels[RELEASE_LABEL] == "guard-llama"
        assert labels["app.kubernetes.io/instance"] == "guard-llama"
        assert labels["app.kubernetes.io/name"] == "model-endpoint"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == APP_VERSION
        assert labels["helm.sh/chart"] == "model-endpoint-0.1.0"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert [e.url for e in rendered.endpoints] == [
        "http://guard-llama-model-endpoint.guardrails.svc.cluster.local:8000"
    ]


def test_names_follow_helm_create_conventions() -> None:
    assert [e.name for e in render(name="model-endpoint").endpoints] == ["model-endpoint"]
    overridden = render({"fullnameOverride": "llama", "service": {"port": 9000}})
    assert [e.url for e in overridden.endpoints] == ["http://llama.ml.svc.cluster.local:9000"]


def test_remote_charts_are_not_rendered_offline() -> None:
    spec = ReleaseSpec(
        name="demo", namespace="ml", chart="oci://ghcr.io/acme/charts/vllm", chart_version="1.0.0"
    )
    with pytest.raises(ChartReferenceError, match="remote"):
        render_release(spec)
