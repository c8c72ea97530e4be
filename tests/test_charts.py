"""Conventions every chart in ``charts/`` keeps; the agent-runtime and stateful-service charts.

The convention tests are parametrized over every directory in ``charts/``, so a new chart is
held to them the moment it is added: Helm ``create`` layout and labels, a strict
``values.schema.json``, the ``foundryflow.io/release`` label endpoint discovery selects on,
Pod Security Standard "restricted" pods with explicit resources and probes, and at least one
discoverable endpoint for a chart with a Service. Everything renders through ``render_release``
(Helm's Go engine, the chart's schema, kubernetes-validate strict for Kubernetes 1.30), the
path the local cluster backend takes, so what passes here is what ``helm install`` would send.
A chart that ships custom resources (``CUSTOM_RESOURCE_CHARTS``), which kubernetes-validate has
no schema for, renders the same way with those resources checked by their own schemas instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import helm_python as helm
import jsonschema
import promql_parser
import pytest
import yaml

from foundryflow.cluster.base import (
    CHARTS_DIR,
    RELEASE_LABEL,
    Endpoint,
    ManifestValidationError,
    ReleaseSpec,
    ValuesValidationError,
)
from foundryflow.cluster.render import (
    KUBERNETES_VERSION,
    RenderedRelease,
    render_release,
    validate_manifest,
)
from foundryflow.compile.argo_lint import check_documents, load_schema

CHARTS = sorted(path.name for path in CHARTS_DIR.iterdir() if path.is_dir())
"""Every chart directory: a directory that is not a valid chart fails, it is not skipped."""

REQUIRED_VALUES: dict[str, dict[str, Any]] = {
    "pipeline-runner": {"pipeline": "benchmark-matrix"},
    "foundryflow": {
        "runtime": {
            "databaseUrl": "postgresql://foundryflow:secret@postgres.db:5432/foundryflow",
            "redisUrl": "redis://redis.db:6379/0",
        }
    },
}
"""Values a chart has no default for (every release must give them), given to each render here."""
CUSTOM_RESOURCE_CHARTS = frozenset({"foundryflow"})
"""Charts that ship custom resources: Argo WorkflowTemplates/CronWorkflows, the Prometheus
operator's PrometheusRule/ServiceMonitor. kubernetes-validate has no schema for those, so
``render_release`` refuses them; these charts render through it with
``check_with_custom_resources``, which validates their core objects as it does and each custom
resource against its own schema (``custom_resource_problems``)."""
RUN_TO_COMPLETION_KINDS = frozenset({"Job", "CronJob"})
"""Workloads whose pods run to completion (the foundryflow chart's migration hook): readiness
and liveness do not apply to them."""
LIVENESS_OPT_IN = frozenset({"pipeline-runner"})
"""Charts whose liveness probe is off by default: a runner busy with a long execution cannot be
told from a hung one (charts/README.md); tests/test_chart_pipeline_runner.py enables it."""

STANDARD_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    RELEASE_LABEL,
)
MUTABLE_LABELS = ("helm.sh/chart", "app.kubernetes.io/version")
"""Labels that change with a chart or image upgrade: never on immutable claim templates."""

POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})

_SEMVER = re.compile(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?")
_SUFFIX: dict[str, Fraction] = {
    "m": Fraction(1, 1000),
    **{s: Fraction(1000**i) for i, s in enumerate(("k", "M", "G", "T", "P", "E"), 1)},
    **{s: Fraction(1024**i) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"), 1)},
}


# --------------------------------------------------------------------------- helpers
def render(
    chart: str,
    values: dict[str, Any] | None = None,
    name: str = "demo",
    namespace: str = "ml",
) -> RenderedRelease:
    """Render a release of a chart under ``charts/`` exactly as the local backend does."""
    values = {**REQUIRED_VALUES.get(chart, {}), **(values or {})}
    spec = ReleaseSpec(name=name, namespace=namespace, chart=chart, values=values)
    check = check_with_custom_resources if chart in CUSTOM_RESOURCE_CHARTS else None
    return render_release(spec, check=check)


def check_with_custom_resources(manifest: dict[str, Any], source: str) -> None:
    """The check of a chart in ``CUSTOM_RESOURCE_CHARTS``: core objects as ``render_release``
    checks them, each custom resource against its own schema (``custom_resource_problems``)."""
    problems = custom_resource_problems(manifest)
    if problems is None:
        validate_manifest(manifest, source)
    elif problems:
        raise ManifestValidationError(f"{source}: " + "; ".join(problems))


PROMETHEUS_OPERATOR_SCHEMAS: dict[str, dict[str, Any]] = yaml.safe_load(
    """
shared:  # YAML anchors only
  duration: &duration {type: string, pattern: "^(0|([0-9]+(ms|[ywdhms]))+)$"}
  strings: &strings {type: object, additionalProperties: {type: string}}
  metadata: &metadata
    type: object
    additionalProperties: false
    required: [name]
    properties:
      name: {type: string, maxLength: 253, pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
      namespace: {type: string}
      labels: *strings
      annotations: *strings
PrometheusRule:
  type: object
  additionalProperties: false
  required: [apiVersion, kind, metadata, spec]
  properties:
    apiVersion: {const: monitoring.coreos.com/v1}
    kind: {const: PrometheusRule}
    metadata: *metadata
    spec:
      type: object
      additionalProperties: false
      required: [groups]
      properties:
        groups:
          type: array
          minItems: 1
          items:
            type: object
            additionalProperties: false
            required: [name, rules]
            properties:
              name: {type: string, minLength: 1}
              interval: *duration
              rules:
                type: array
                minItems: 1
                items:
                  type: object
                  additionalProperties: false
                  required: [expr]
                  oneOf: [{required: [alert]}, {required: [record]}]
                  properties:
                    alert: {type: string, minLength: 1}
                    record: {type: string, pattern: "^[a-zA-Z_:][a-zA-Z0-9_:]*$"}
                    expr: {type: string, minLength: 1}
                    for: *duration
                    labels: *strings
                    annotations: *strings
ServiceMonitor:
  type: object
  additionalProperties: false
  required: [apiVersion, kind, metadata, spec]
  properties:
    apiVersion: {const: monitoring.coreos.com/v1}
    kind: {const: ServiceMonitor}
    metadata: *metadata
    spec:
      type: object
      additionalProperties: false
      required: [selector, endpoints]
      properties:
        namespaceSelector:
          type: object
          additionalProperties: false
          properties:
            any: {type: boolean}
            matchNames: {type: array, items: {type: string}}
        selector:
          type: object
          additionalProperties: false
          minProperties: 1
          properties: {matchLabels: *strings}
        endpoints:
          type: array
          minItems: 1
          items:
            type: object
            additionalProperties: false
            properties:
              port: {type: string, minLength: 1}
              path: {type: string, pattern: "^/"}
              scheme: {enum: [http, https]}
              interval: *duration
              scrapeTimeout: *duration
"""
)
del PROMETHEUS_OPERATOR_SCHEMAS["shared"]
"""Closed schemas of the Prometheus operator objects, restricted to the fields the charts use
(a field outside them is a typo or needs adding here, after checking the operator's CRD)."""


def custom_resource_problems(manifest: dict[str, Any]) -> list[str] | None:
    """What is wrong with a custom resource (empty: nothing), None for a core object.

    Argo documents: the official Argo Workflows schema and ``argo_lint`` (``check_documents``,
    as ``foundryflow argo lint`` runs them). Prometheus operator objects: their closed schema,
    and every rule's PromQL parsed by promql-parser.
    """
    api_version = str(manifest.get("apiVersion") or "")
    kind = str(manifest.get("kind") or "")
    if api_version.startswith("argoproj.io/"):
        return check_documents([manifest], load_schema())
    if api_version == "monitoring.coreos.com/v1" and kind in PROMETHEUS_OPERATOR_SCHEMAS:
        validator = jsonschema.Draft7Validator(PROMETHEUS_OPERATOR_SCHEMAS[kind])
        problems = [
            f"{kind}: {'.'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
            for error in validator.iter_errors(manifest)
        ]
        if kind == "PrometheusRule" and not problems:
            for group in manifest["spec"]["groups"]:
                for rule in group["rules"]:
                    try:
                        promql_parser.parse(rule["expr"])
                    except ValueError as exc:
                        name = rule.get("alert") or rule.get("record")
                        problems.append(f"PrometheusRule: rule {name}: {exc}")
        return problems
    return None


def chart_yaml(chart: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHARTS_DIR / chart / "Chart.yaml").read_text())
    return data


def only(rendered: RenderedRelease, kind: str) -> dict[str, Any]:
    objects = [m for m in rendered.manifests if m["kind"] == kind]
    assert len(objects) == 1, [m["kind"] for m in rendered.manifests]
    return objects[0]


def pod_templates(manifest: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The pod template(s) of a workload, ``{"metadata": ..., "spec": ...}``; a Pod is its own."""
    kind = manifest["kind"]
    if kind == "Pod":
        yield manifest
    elif kind in POD_TEMPLATE_KINDS:
        yield manifest["spec"]["template"]
    elif kind == "CronJob":
        yield manifest["spec"]["jobTemplate"]["spec"]["template"]


def all_pods(rendered: RenderedRelease) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{m['kind']}/{m['metadata']['name']}", pod)
        for m in rendered.manifests
        for pod in pod_templates(m)
    ]


def is_headless(service: dict[str, Any]) -> bool:
    return bool(service["spec"].get("clusterIP") == "None")


def quantity(value: object) -> Fraction:
    """A Kubernetes quantity (``500m``, ``2``, ``32Gi``) as an exact number, to compare."""
    match = _QUANTITY.fullmatch(str(value))
    assert match, f"{value!r} is not a quantity"
    return Fraction(match.group(1)) * _SUFFIX.get(match.group(2) or "", Fraction(1))


def walk(node: object, path: str = "") -> Iterator[tuple[str, object]]:
    """Every (path, value) pair of a nested JSON-like document, the root included."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def refused(chart: str, values: dict[str, Any]) -> list[tuple[str, str]]:
    """The (path, message) problems the chart's schema reports for ``values``."""
    with pytest.raises(ValuesValidationError) as caught:
        render(chart, values)
    return caught.value.problems


# --------------------------------------------------------------------------- conventions
def test_every_chart_directory_is_covered() -> None:
    """The parametrization found the charts (an empty list would pass everything silently)."""
    assert {"model-endpoint", "agent-runtime", "stateful-service"} <= set(CHARTS)


@pytest.mark.parametrize("chart", CHARTS)
def test_chart_metadata_and_layout(chart: str) -> None:
    meta = chart_yaml(chart)
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == chart  # chart references are directory names
    assert _SEMVER.fullmatch(str(meta["version"])), meta["version"]
    assert isinstance(meta.get("appVersion"), str) and meta["appVersion"]
    assert isinstance(meta.get("description"), str) and meta["description"].strip()
    for required in ("values.yaml", "values.schema.json", "templates/_helpers.tpl"):
        assert (CHARTS_DIR / chart / required).is_file(), required
    assert (CHARTS_DIR / chart / "templates" / "NOTES.txt").read_text().strip()


@pytest.mark.parametrize("chart", CHARTS)
def test_schema_closes_every_object_it_defines(chart: str) -> None:
    """Any schema node listing ``properties`` refuses others: a typo is an error.

    Nodes without ``properties`` are maps (``additionalProperties`` gives the value type) or
    Kubernetes objects passed through as they are, which kubernetes-validate checks strictly.
    """
    schema = yaml.safe_load((CHARTS_DIR / chart / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    open_objects = [
        path
        for path, node in walk(schema)
        if isinstance(node, dict)
        and isinstance(node.get("properties"), dict)
        and node.get("additionalProperties") is not False
        and not path.endswith(("properties", "definitions"))  # a key named "properties"
        and not path.endswith((".if", ".not"))  # conditions test values, define nothing
    ]
    assert open_objects == []


@pytest.mark.parametrize("chart", CHARTS)
def test_unknown_top_level_key_is_refused_by_us_and_by_helm(chart: str) -> None:
    problems = refused(chart, {"noSuchKey": True})
    assert ("(root)", "Additional properties are not allowed ('noSuchKey' was unexpected)") in (
        problems
    )
    with helm.Chart.load(CHARTS_DIR / chart) as loaded:
        loaded.validate_schema(REQUIRED_VALUES.get(chart, {}))
        with pytest.raises(helm.HelmValuesError, match="noSuchKey"):
            loaded.validate_schema({**REQUIRED_VALUES.get(chart, {}), "noSuchKey": True})


@pytest.mark.parametrize("chart", CHARTS)
def test_helm_lint_is_clean_for_kubernetes_1_30(chart: str) -> None:
    report = helm.lint(
        CHARTS_DIR / chart,
        REQUIRED_VALUES.get(chart),
        strict=True,
        kube_version=f"v{KUBERNETES_VERSION}.0",
    )
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("chart", CHARTS)
def test_defaults_render_notes_and_at_least_one_endpoint(chart: str) -> None:
    rendered = render(chart, name="conv", namespace="conventions")
    assert rendered.notes.strip()
    if rendered.services:  # a chart without a Service (a runner pool) serves nothing
        assert rendered.endpoints, "no Service labelled foundryflow.io/release: nothing to discover"
    by_name = {s["metadata"]["name"]: s for s in rendered.services}
    for endpoint in rendered.endpoints:
        assert not is_headless(by_name[endpoint.name]), "a headless Service is not an endpoint"
        assert endpoint.url == (
            f"http://{endpoint.name}.conventions.svc.cluster.local:{endpoint.port}"
        )


@pytest.mark.parametrize("chart", CHARTS)
def test_every_object_carries_the_standard_labels(chart: str) -> None:
    """helm create labels plus foundryflow.io/release, on objects and their pod templates.

    The one exception is a headless Service: it carries every label but the release label,
    since endpoint discovery reports every Service carrying it and a headless Service
    resolves to individual pods, not to an endpoint of the release.
    """
    rendered = render(chart, name="labelled", namespace="ns")
    meta = chart_yaml(chart)
    expected = {
        "helm.sh/chart": f"{chart}-{meta['version']}",
        "app.kubernetes.io/instance": "labelled",
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/part-of": "foundryflow",
        RELEASE_LABEL: "labelled",
    }
    labelled: list[tuple[str, dict[str, str], bool]] = []
    for manifest in rendered.manifests:
        where = f"{manifest['kind']}/{manifest['metadata']['name']}"
        headless = manifest["kind"] == "Service" and is_headless(manifest)
        labelled.append((where, manifest["metadata"].get("labels") or {}, headless))
        labelled += [
            (f"{where} pod", pod["metadata"].get("labels") or {}, False)
            for pod in pod_templates(manifest)
        ]
    for where, labels, headless in labelled:
        wanted = [k for k in STANDARD_LABELS if not (headless and k == RELEASE_LABEL)]
        assert [k for k in wanted if not labels.get(k)] == [], where
        assert {k: labels[k] for k in expected if k in wanted} == {
            k: v for k, v in expected.items() if k in wanted
        }, where
        if headless:
            assert RELEASE_LABEL not in labels, where

    for manifest in rendered.manifests:
        for claim in (manifest.get("spec") or {}).get("volumeClaimTemplates") or []:
            labels = claim["metadata"].get("labels") or {}
            stable = [k for k in STANDARD_LABELS if k not in MUTABLE_LABELS]
            assert [k for k in stable if not labels.get(k)] == [], claim["metadata"]["name"]
            assert not set(MUTABLE_LABELS) & set(labels), "claim templates are immutable"


@pytest.mark.parametrize("chart", CHARTS)
def test_selectors_match_the_pods(chart: str) -> None:
    rendered = render(chart)
    pods = [pod["metadata"]["labels"] for _, pod in all_pods(rendered)]
    for manifest in rendered.manifests:
        if manifest["kind"] in POD_TEMPLATE_KINDS - {"Job"}:
            selector = manifest["spec"]["selector"]["matchLabels"]
            assert selector.items() <= manifest["spec"]["template"]["metadata"]["labels"].items()
            assert not set(MUTABLE_LABELS) & set(selector), "selectors are immutable"
    for service in rendered.services:
        selector = service["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pods), service


@pytest.mark.parametrize("chart", CHARTS)
def test_pods_are_restricted_with_resources_and_probes(chart: str) -> None:
    rendered = render(chart)
    pods = all_pods(rendered)
    assert pods, "a chart without a workload"
    for where, pod in pods:
        spec = pod["spec"]
        pod_security = spec.get("securityContext") or {}
        assert pod_security.get("runAsNonRoot") is True, where
        assert pod_security.get("runAsUser", 1) != 0, where
        assert spec.get("automountServiceAccountToken") is False, where
        init = spec.get("initContainers") or []
        for container in [*spec["containers"], *init]:
            at = f"{where} container {container['name']}"
            security = container.get("securityContext") or {}
            assert security.get("allowPrivilegeEscalation") is False, at
            assert "ALL" in ((security.get("capabilities") or {}).get("drop") or []), at
            assert set((security.get("capabilities") or {}).get("add") or []) <= {
                "NET_BIND_SERVICE"
            }, at
            seccomp = security.get("seccompProfile") or pod_security.get("seccompProfile") or {}
            assert seccomp.get("type") in {"RuntimeDefault", "Localhost"}, at

            resources = container.get("resources") or {}
            requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
            assert {"cpu", "memory"} <= set(requests), at
            assert "memory" in limits, at  # CPU limits are optional: they only throttle
            for resource, limit in limits.items():
                if resource in requests:
                    assert quantity(limit) >= quantity(requests[resource]), (at, resource)
        if where.split("/", 1)[0] in RUN_TO_COMPLETION_KINDS:
            continue
        for container in spec["containers"]:
            assert "readinessProbe" in container, where
            assert "livenessProbe" in container or chart in LIVENESS_OPT_IN, where


@pytest.mark.parametrize("chart", CHARTS)
def test_nothing_reaches_the_host_or_runs_privileged(chart: str) -> None:
    rendered = render(chart)
    for manifest in rendered.manifests:
        for path, value in walk(manifest):
            key = path.rsplit(".", 1)[-1]
            if key in {"hostNetwork", "hostPID", "hostIPC", "privileged"}:
                assert value is False, path
            assert key not in {"hostPath", "hostPort"}, path


@pytest.mark.parametrize("chart", CHARTS)
@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"podSecurityContext": {"runAsNonRoot": False}}, "podSecurityContext.runAsNonRoot"),
        ({"podSecurityContext": {"runAsUser": 0}}, "podSecurityContext.runAsUser"),
        (
            {"podSecurityContext": {"seccompProfile": {"type": "Unconfined"}}},
            "podSecurityContext.seccompProfile.type",
        ),
        (
            {"securityContext": {"allowPrivilegeEscalation": True}},
            "securityContext.allowPrivilegeEscalation",
        ),
        ({"securityContext": {"privileged": True}}, "securityContext.privileged"),
        ({"securityContext": {"capabilities": {"drop": []}}}, "securityContext.capabilities.drop"),
        (
            {"securityContext": {"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}},
            "securityContext.capabilities.add[0]",
        ),
        ({"securityContext": {"procMount": "Unmasked"}}, "securityContext"),
    ],
)
def test_values_cannot_weaken_the_security_context(
    chart: str, values: dict[str, Any], path: str
) -> None:
    """A hardening a value can switch off is no convention: the schema refuses it."""
    assert path in {p for p, _ in refused(chart, values)}


@pytest.mark.parametrize("chart", CHARTS)
def test_object_names_stay_valid_for_the_longest_release_name(chart: str) -> None:
    """Helm allows 53-character release names; every derived name must still be valid.

    Service names are DNS-1035 labels; a StatefulSet name longer than 52 characters makes its
    pods' controller-revision-hash label exceed 63 characters, so no pod could be created.
    """
    name = "r" + "x" * 52
    rendered = render(chart, name=name)
    for manifest in rendered.manifests:
        object_name = manifest["metadata"]["name"]
        assert _DNS1035_LABEL.fullmatch(object_name), object_name
        if manifest["kind"] == "StatefulSet":
            assert len(object_name) <= 52, object_name
    collapsed = render(chart, name=chart)
    if collapsed.services:
        assert next(e.name for e in collapsed.endpoints) == chart
    else:  # nothing to discover: the workload carries the name
        assert chart in {m["metadata"]["name"] for m in collapsed.manifests}


# --------------------------------------------------------------------------- agent-runtime
AGENT = "agent-runtime"


def agent_container(rendered: RenderedRelease) -> dict[str, Any]:
    (agent,) = only(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    return agent


def env_of(container: dict[str, Any]) -> dict[str, str]:
    names = [e["name"] for e in container.get("env") or []]
    assert len(names) == len(set(names)), names  # a duplicate would silently shadow
    return {e["name"]: e["value"] for e in container.get("env") or []}


def test_agent_defaults() -> None:
    rendered = render(AGENT)
    assert sorted(m["kind"] for m in rendered.manifests) == ["Deployment", "Service"]
    agent = agent_container(rendered)
    assert agent["image"] == f"ghcr.io/foundryflow/agent-runtime:{chart_yaml(AGENT)['appVersion']}"
    # Unset endpoints are absent variables, not empty strings.
    assert env_of(agent) == {
        "PORT": "8080",
        "LOG_LEVEL": "info",
        "AGENT_CONCURRENCY": "4",
        "CHUNK_SIZE": "512",
        "HOME": "/tmp",
    }
    assert agent["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert agent[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert agent["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in agent["volumeMounts"]
    assert agent["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    service = only(rendered, "Service")
    assert service["spec"]["ports"] == [
        {
            "name": "http",
            "port": 8080,
            "targetPort": "http",
            "protocol": "TCP",
            "appProtocol": "http",
        }
    ]
    assert rendered.endpoints == [
        Endpoint(
            name="demo-agent-runtime",
            port_name="http",
            port=8080,
            url="http://demo-agent-runtime.ml.svc.cluster.local:8080",
        )
    ]
    assert "No llmEndpoint is set" in rendered.notes


def test_agent_endpoints_and_settings_reach_the_container_as_env() -> None:
    llm = "http://guard-llama-model-endpoint.guardrails.svc.cluster.local:8000/v1"
    qdrant = "http://kb-stateful-service.rag.svc.cluster.local:6333"
    rendered = render(
        AGENT,
        {
            "llmEndpoint": llm,
            "vectordbEndpoint": qdrant,
            "embedderEndpoint": "http://embedder.rag.svc.cluster.local:8000",
            "rerankerEndpoint": "http://reranker.rag.svc.cluster.local:8000",
            "memoryEndpoint": "redis://memory-valkey.rag.svc.cluster.local:6379/0",
            "logLevel": "debug",
            "concurrency": 16,
            "chunkSize": 1024,
            "port": 9000,
            "extraEnv": [{"name": "OTEL_SERVICE_NAME", "value": "support-agent"}],
        },
        name="support",
        namespace="rag",
    )
    agent = agent_container(rendered)
    assert env_of(agent) == {
        "PORT": "9000",
        "LLM_ENDPOINT": llm,
        "VECTORDB_ENDPOINT": qdrant,
        "EMBEDDER_ENDPOINT": "http://embedder.rag.svc.cluster.local:8000",
        "RERANKER_ENDPOINT": "http://reranker.rag.svc.cluster.local:8000",
        "MEMORY_ENDPOINT": "redis://memory-valkey.rag.svc.cluster.local:6379/0",
        "LOG_LEVEL": "debug",
        "AGENT_CONCURRENCY": "16",
        "CHUNK_SIZE": "1024",
        "HOME": "/tmp",
        "OTEL_SERVICE_NAME": "support-agent",
    }
    assert agent["ports"][0]["containerPort"] == 9000
    assert [e.url for e in rendered.endpoints] == [
        "http://support-agent-runtime.rag.svc.cluster.local:9000"
    ]
    assert f"LLM_ENDPOINT       {llm}" in rendered.notes
    assert not any(m.startswith("--model=") for m in agent.get("args") or [])  # not a model


@pytest.mark.parametrize("replicas", [1, 3, 20])
def test_agent_replica_count_is_honoured(replicas: int) -> None:
    deployment = only(render(AGENT, {"replicaCount": replicas}), "Deployment")
    assert deployment["spec"]["replicas"] == replicas


def test_agent_pass_through_settings() -> None:
    rendered = render(
        AGENT,
        {
            "nodeSelector": {"foundryflow.io/node-pool": "cpu"},
            "podAnnotations": {"foundryflow.io/project": "00000000-0000-0000-0000-000000000001"},
            "imagePullSecrets": [{"name": "regcred"}],
            "serviceAccount": {"create": True, "name": "", "annotations": {"a": "{{ .Values }}"}},
            "image": {"tag": "1.2.3"},
        },
    )
    deployment = only(rendered, "Deployment")
    pod = deployment["spec"]["template"]
    assert pod["spec"]["nodeSelector"] == {"foundryflow.io/node-pool": "cpu"}
    assert pod["metadata"]["annotations"]["foundryflow.io/project"].endswith("1")
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["serviceAccountName"] == "demo-agent-runtime"
    account = only(rendered, "ServiceAccount")
    assert account["metadata"]["annotations"] == {"a": "{{ .Values }}"}  # data, not template
    assert account["automountServiceAccountToken"] is False
    assert agent_container(rendered)["image"] == "ghcr.io/foundryflow/agent-runtime:1.2.3"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == "1.2.3"


@pytest.mark.parametrize(
    ("values", "path", "message"),
    [
        ({"logLevel": "verbose"}, "logLevel", "'verbose' is not one of"),
        ({"logLevel": "INFO"}, "logLevel", "is not one of"),
        ({"replicaCount": 0}, "replicaCount", "minimum of 1"),
        ({"replicaCount": 21}, "replicaCount", "maximum of 20"),
        ({"concurrency": 0}, "concurrency", "minimum of 1"),
        ({"concurrency": 257}, "concurrency", "maximum of 256"),
        ({"chunkSize": 32}, "chunkSize", "minimum of 64"),
        ({"chunkSize": 8193}, "chunkSize", "maximum of 8192"),
        ({"chunkSize": "512"}, "chunkSize", "is not of type 'integer'"),
        ({"port": 80}, "port", "minimum of 1024"),
        ({"llmEndpoint": "model-endpoint:8000"}, "llmEndpoint", "does not match"),
        ({"llmEndpoint": "http://user:pw@llm:8000"}, "llmEndpoint", "does not match"),
        ({"memoryEndpoint": "redis://a b"}, "memoryEndpoint", "does not match"),
        ({"extraEnv": [{"name": "LLM_ENDPOINT", "value": "x"}]}, "extraEnv[0].name", "not"),
        ({"extraEnv": [{"name": "1X", "value": "x"}]}, "extraEnv[0].name", "does not match"),
        ({"extraEnv": [{"name": "X", "value": 1}]}, "extraEnv[0].value", "not of type 'string'"),
        (
            {"extraEnv": [{"name": "X", "valueFrom": {}}]},
            "extraEnv[0]",
            "'valueFrom' was unexpected",
        ),
        ({"resources": {"requests": {"cpu": None}}}, "resources.requests", "'cpu' is a required"),
        ({"resources": {"limits": {"memory": None}}}, "resources.limits", "'memory' is a required"),
        ({"nodeSelector": {"pool": 1}}, "nodeSelector.pool", "is not of type 'string'"),
        ({"image": {"tag": "-bad"}}, "image.tag", "does not match"),
        ({"nameOverride": "Agent"}, "nameOverride", "does not match"),
        ({"probes": {"path": "healthz"}}, "probes.path", "does not match"),
        ({"llmEndpont": "http://x:1"}, "(root)", "'llmEndpont' was unexpected"),
    ],
)
def test_agent_schema_rejects_bad_values_with_their_path(
    values: dict[str, Any], path: str, message: str
) -> None:
    problems = refused(AGENT, values)
    assert any(p == path and message in m for p, m in problems), problems


# --------------------------------------------------------------------------- stateful-service
STATEFUL = "stateful-service"
VALKEY: dict[str, Any] = {
    "nameOverride": "valkey",
    "image": {"repository": "valkey/valkey", "tag": "8.0"},
    "port": 6379,
    "portName": "redis",
    "appProtocol": "redis",
    "dataPath": "/data",
    "env": [],
}


def server_container(rendered: RenderedRelease) -> dict[str, Any]:
    (server,) = only(rendered, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    return server


def services(rendered: RenderedRelease) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the ClusterIP Service, the headless Service)."""
    (cluster_ip,) = [s for s in rendered.services if not is_headless(s)]
    (headless,) = [s for s in rendered.services if is_headless(s)]
    return cluster_ip, headless


def test_qdrant_default_is_a_statefulset_with_a_claim_per_pod() -> None:
    rendered = render(STATEFUL)
    assert sorted(m["kind"] for m in rendered.manifests) == ["Service", "Service", "StatefulSet"]
    statefulset = only(rendered, "StatefulSet")
    cluster_ip, headless = services(rendered)
    assert statefulset["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["metadata"]["name"] == "demo-stateful-service-headless"
    assert headless["spec"]["publishNotReadyAddresses"] is True

    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "10Gi"}},
    }  # no storageClassName: the cluster's default class
    pod = statefulset["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]  # data comes from the claim

    server = server_container(rendered)
    app_version = chart_yaml(STATEFUL)["appVersion"]
    assert server["image"] == f"qdrant/qdrant:{app_version}"
    assert server["volumeMounts"] == [
        {"name": "data", "mountPath": "/qdrant/storage"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    # Qdrant writes these beside its binary by default; the root filesystem is read-only.
    assert env_of(server) == {
        "QDRANT_INIT_FILE_PATH": "/tmp/.qdrant-initialized",
        "QDRANT__STORAGE__SNAPSHOTS_PATH": "/qdrant/storage/snapshots",
    }
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["fsGroup"] == 1000  # makes the volume writable
    assert "args" not in server  # the image's own command
    assert server["ports"] == [{"name": "http", "containerPort": 6333, "protocol": "TCP"}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert server[probe]["tcpSocket"] == {"port": "http"}
    port = {"name": "http", "port": 6333, "targetPort": "http", "protocol": "TCP"}
    assert cluster_ip["spec"]["ports"] == headless["spec"]["ports"] == [port]
    assert rendered.endpoints == [
        Endpoint(
            name="demo-stateful-service",
            port_name="http",
            port=6333,
            url="http://demo-stateful-service.ml.svc.cluster.local:6333",
        )
    ]
    assert "PersistentVolumeClaim per pod" in rendered.notes


def test_persistence_disabled_uses_an_emptydir_and_no_claims() -> None:
    rendered = render(STATEFUL, {"persistence": {"enabled": False, "size": "2Gi"}})
    statefulset = only(rendered, "StatefulSet")
    assert "volumeClaimTemplates" not in statefulset["spec"]
    volumes = statefulset["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "emptyDir": {"sizeLimit": "2Gi"}} in volumes
    assert {"name": "data", "mountPath": "/qdrant/storage"} in server_container(rendered)[
        "volumeMounts"
    ]
    assert "LOST" in rendered.notes


def test_valkey_configuration_has_one_endpoint_on_6379() -> None:
    rendered = render(STATEFUL, VALKEY, name="memory", namespace="agents")
    server = server_container(rendered)
    assert server["image"] == "valkey/valkey:8.0"
    assert "env" not in server  # the Qdrant defaults were replaced, not extended
    assert server["ports"] == [{"name": "redis", "containerPort": 6379, "protocol": "TCP"}]
    assert server["readinessProbe"]["tcpSocket"] == {"port": "redis"}
    assert {"name": "data", "mountPath": "/data"} in server["volumeMounts"]

    cluster_ip, headless = services(rendered)
    port = {
        "name": "redis",
        "port": 6379,
        "targetPort": "redis",
        "protocol": "TCP",
        "appProtocol": "redis",
    }
    assert cluster_ip["spec"]["ports"] == headless["spec"]["ports"] == [port]
    assert headless["metadata"]["name"] == "memory-valkey-headless"
    # The headless Service is not reported: one server, one endpoint.
    assert rendered.endpoints == [
        Endpoint(
            name="memory-valkey",
            port_name="redis",
            port=6379,
            url="http://memory-valkey.agents.svc.cluster.local:6379",
        )
    ]
    labels = only(rendered, "StatefulSet")["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "valkey"
    assert labels["app.kubernetes.io/version"] == "8.0"  # what runs, not Qdrant's appVersion


@pytest.mark.parametrize(
    ("storage_class", "expected"),
    [("", None), ("fast-ssd", "fast-ssd"), ("-", "")],
)
def test_storage_class(storage_class: str, expected: str | None) -> None:
    rendered = render(STATEFUL, {"persistence": {"storageClass": storage_class}})
    (claim,) = only(rendered, "StatefulSet")["spec"]["volumeClaimTemplates"]
    assert claim["spec"].get("storageClassName") == expected


def test_stateful_args_replicas_and_pass_through() -> None:
    rendered = render(
        STATEFUL,
        {
            "replicaCount": 3,
            "args": ["./qdrant", "--uri", "http://$(POD_NAME):6335"],
            "persistence": {"size": "100Gi", "accessModes": ["ReadWriteOncePod"]},
            "nodeSelector": {"foundryflow.io/node-pool": "storage"},
            "podAnnotations": {"note": '{{ .Files.Get "values.schema.json" }}'},
        },
    )
    statefulset = only(rendered, "StatefulSet")
    assert statefulset["spec"]["replicas"] == 3
    assert server_container(rendered)["args"] == ["./qdrant", "--uri", "http://$(POD_NAME):6335"]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOncePod"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "100Gi"
    template = statefulset["spec"]["template"]
    assert template["spec"]["nodeSelector"] == {"foundryflow.io/node-pool": "storage"}
    assert template["metadata"]["annotations"] == {"note": '{{ .Files.Get "values.schema.json" }}'}
    assert "independent servers" in rendered.notes
    assert len(rendered.endpoints) == 1


@pytest.mark.parametrize(
    ("values", "path", "message"),
    [
        ({"replicaCount": 6}, "replicaCount", "maximum of 5"),
        ({"replicaCount": 0}, "replicaCount", "minimum of 1"),
        ({"port": 443}, "port", "minimum of 1024"),
        ({"port": 70000}, "port", "maximum of 65535"),
        ({"portName": "HTTP"}, "portName", "does not match"),
        ({"portName": "a--b"}, "portName", "does not match"),
        ({"portName": "-http"}, "portName", "does not match"),
        ({"portName": "6379"}, "portName", "does not match"),
        ({"portName": "a-very-long-port"}, "portName", "is too long"),
        ({"appProtocol": "not valid"}, "appProtocol", "does not match"),
        ({"dataPath": "data"}, "dataPath", "does not match"),
        ({"dataPath": "/"}, "dataPath", "does not match"),
        ({"dataPath": "/tmp"}, "dataPath", "should not be valid"),
        ({"dataPath": "/qdrant/../etc"}, "dataPath", "does not match"),
        ({"args": ["--x", 1]}, "args[1]", "is not of type 'string'"),
        ({"env": [{"name": "A-B", "value": "x"}]}, "env[0].name", "does not match"),
        ({"persistence": {"size": "10GB"}}, "persistence.size", "does not match"),
        ({"persistence": {"size": "0"}}, "persistence.size", "does not match"),
        ({"persistence": {"enabled": "yes"}}, "persistence.enabled", "not of type 'boolean'"),
        ({"persistence": {"storageClass": "Fast_SSD"}}, "persistence.storageClass", "match"),
        ({"persistence": {"accessModes": []}}, "persistence.accessModes", "should be non-empty"),
        (
            {"persistence": {"accessModes": ["ReadWriteSometimes"]}},
            "persistence.accessModes[0]",
            "",
        ),
        ({"persistence": {"sizeGb": 10}}, "persistence", "'sizeGb' was unexpected"),
        ({"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy", "is not one of"),
        ({"probes": {"periodSeconds": 0}}, "probes.periodSeconds", "minimum of 1"),
    ],
)
def test_stateful_schema_rejects_bad_values_with_their_path(
    values: dict[str, Any], path: str, message: str
) -> None:
    problems = refused(STATEFUL, values)
    assert any(p == path and message in m for p, m in problems), problems
