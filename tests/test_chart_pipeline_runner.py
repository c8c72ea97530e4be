"""The pipeline-runner chart: a pool of runners of one pipeline (a pipeline deployment, seed 001).

Everything renders through ``render_release`` (Helm's Go engine from helm-python-sdk, the
chart's values.schema.json, kubernetes-validate strict for Kubernetes 1.30), the path the
local cluster backend takes. The conventions every chart keeps (labels, restricted pods, a
closed schema, names for long releases) are in ``tests/test_charts.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from foundryflow.cluster.base import (
    CHARTS_DIR,
    RELEASE_LABEL,
    ReleaseSpec,
    ValuesValidationError,
)
from foundryflow.cluster.render import KUBERNETES_VERSION, RenderedRelease, render_release
from foundryflow.compile.argo import (
    COMMAND,
    CONNECTIONS_SECRET,
    RUNTIME_SECRET,
    SECRET_ENV,
    pinned_settings,
)
from foundryflow.spec.model import PIPELINE_NAME_PATTERN

CHART = "pipeline-runner"
CHART_DIR = CHARTS_DIR / CHART
APP_VERSION = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
PIPELINE = "benchmark-matrix"
HEARTBEAT = "/tmp/foundryflow-heartbeat"
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}

# The parameters of a benchmark-matrix pool, plus what must survive the trip as data: quotes,
# newlines, Helm/Jinja template syntax, HTML-escaped characters, unicode, nulls, nesting.
TRICKY_PARAMETERS: dict[str, Any] = {
    "model_version_id": 7,
    "hardware": ["H100-SXM-80GB"],
    "batch_sizes": [1, 8, 32],
    "runner": "http",
    "runner_options": {"base_url": "http://vllm:8000", "model": "llama", "timeout": 2.5},
    "template": "{{ .Release.Name }}",
    "jinja": "{{ params.x }} {% if y %}z{% endif %}",
    "quotes": 'it\'s "quoted" `back` \\ slash',
    "multiline": "line 1\nline 2\n\ttabbed\n",
    "html": "<script>&amp;</script>",
    "unicode": "é ü 東京 \u2028",
    "nothing": None,
    "flag": False,
    "empty": {},
    "nested": {"a": [{"b": {"c": ["{{ .Values }}", 1, -2, 0.5]}}]},
}


def render(
    values: dict[str, Any] | None = None, name: str = "bench", namespace: str = "ml"
) -> RenderedRelease:
    """Render a release; ``pipeline`` is benchmark-matrix unless ``values`` say otherwise."""
    spec = ReleaseSpec(
        name=name, namespace=namespace, chart=CHART, values={"pipeline": PIPELINE, **(values or {})}
    )
    return render_release(spec)


def refused(values: dict[str, Any]) -> list[tuple[str, str]]:
    """The (path, message) problems the schema reports; ``values`` are all there is."""
    with pytest.raises(ValuesValidationError) as caught:
        render_release(ReleaseSpec(name="bench", namespace="ml", chart=CHART, values=values))
    return caught.value.problems


def only(rendered: RenderedRelease, kind: str) -> dict[str, Any]:
    objects = [m for m in rendered.manifests if m["kind"] == kind]
    assert len(objects) == 1, [m["kind"] for m in rendered.manifests]
    return objects[0]


def pod(rendered: RenderedRelease) -> dict[str, Any]:
    template: dict[str, Any] = only(rendered, "Deployment")["spec"]["template"]
    return template


def runner(rendered: RenderedRelease) -> dict[str, Any]:
    (container,) = pod(rendered)["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """name -> value, or -> valueFrom for variables read from the API or a Secret."""
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names)), names  # a duplicate would silently shadow
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def params_json(rendered: RenderedRelease) -> str:
    text: str = only(rendered, "ConfigMap")["data"]["params.json"]
    return text


def checksum(rendered: RenderedRelease) -> str:
    value: str = pod(rendered)["metadata"]["annotations"]["checksum/params"]
    return value


def args_for(pipeline: str, interval: int) -> list[str]:
    return [
        *("pipeline", "work", pipeline),
        *("--params-file", "/etc/foundryflow/params.json"),
        *("--worker-id", "$(POD_NAME)"),
        *("--interval", str(interval)),
    ]


# --------------------------------------------------------------------------- defaults
def test_defaults_render_a_valid_deployment_and_configmap_and_nothing_to_discover() -> None:
    rendered = render()
    assert sorted(m["kind"] for m in rendered.manifests) == ["ConfigMap", "Deployment"]
    for manifest in rendered.manifests:  # independently of render_release's own check
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    assert rendered.services == [] and rendered.endpoints == []  # the pool serves nothing

    deployment = only(rendered, "Deployment")
    assert deployment["metadata"]["name"] == "bench-pipeline-runner"
    assert deployment["spec"]["replicas"] == 1
    template = pod(rendered)
    labels = template["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "pipeline-runner"
    assert labels["foundryflow.io/pipeline"] == PIPELINE
    assert labels[RELEASE_LABEL] == "bench"
    assert labels["app.kubernetes.io/version"] == APP_VERSION
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "pipeline-runner",
        "app.kubernetes.io/instance": "bench",
    }  # the pipeline label is not a selector: selectors cannot change

    spec = template["spec"]
    assert spec["terminationGracePeriodSeconds"] == 300  # the current run finishes first
    assert spec["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == "default"
    assert "nodeSelector" not in spec and "tolerations" not in spec
    assert spec["volumes"] == [
        {"name": "params", "configMap": {"name": "bench-pipeline-runner-params"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]

    container = runner(rendered)
    # The image the Argo pods run: one image for every engine.
    assert container["image"] == f"ghcr.io/foundryflow/foundryflow:{APP_VERSION}"
    assert container["image"] == pinned_settings().argo_image
    assert container["command"] == COMMAND == ["foundryflow"]
    assert container["args"] == args_for(PIPELINE, 60)
    assert "ports" not in container
    assert container["volumeMounts"] == [
        {"name": "params", "mountPath": "/etc/foundryflow", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert container["readinessProbe"] == {
        "exec": {"command": ["test", "-e", HEARTBEAT]},
        "periodSeconds": 10,
    }
    assert "livenessProbe" not in container  # opt-in: a long run does not touch the heartbeat
    assert "envFrom" not in container  # no connections Secret unless one is named

    assert json.loads(params_json(rendered)) == {}
    configmap = only(rendered, "ConfigMap")
    assert configmap["metadata"]["labels"]["foundryflow.io/pipeline"] == PIPELINE
    assert "foundryflow pipeline work benchmark-matrix" in rendered.notes
    assert "no Service" in rendered.notes


def test_env_mirrors_the_argo_pods() -> None:
    """Database and Redis URLs from the Secret the Argo pods read, under the same names."""
    assert env_of(runner(render())) == {
        "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        **{
            name: {"secretKeyRef": {"name": RUNTIME_SECRET, "key": key}}
            for name, key in SECRET_ENV.items()
        },
        "PYTHONUNBUFFERED": "1",
        "HOME": "/tmp",
    }
    assert next(iter(env_of(runner(render())))) == "POD_NAME"  # defined before $(POD_NAME)


def test_runtime_secret_name_is_a_value() -> None:
    container = runner(render({"runtimeSecret": {"name": "ff-runtime.prod"}}))
    for name, key in SECRET_ENV.items():
        assert env_of(container)[name] == {"secretKeyRef": {"name": "ff-runtime.prod", "key": key}}


def test_schema_pipeline_pattern_is_the_spec_pattern() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    assert schema["properties"]["pipeline"]["pattern"] == PIPELINE_NAME_PATTERN
    assert "pipeline" in schema["required"]
    assert "pipeline" not in yaml.safe_load((CHART_DIR / "values.yaml").read_text())


# --------------------------------------------------------------------------- command line
@pytest.mark.parametrize(
    ("pipeline", "interval"),
    [("benchmark-matrix", 1), ("guardrail-model-onboarding", 900), ("a", 86400), ("x" * 52, 60)],
)
def test_the_runner_runs_pipeline_work_with_the_exact_args(pipeline: str, interval: int) -> None:
    rendered = render({"pipeline": pipeline, "interval": interval})
    container = runner(rendered)
    assert container["command"] == ["foundryflow"]
    assert container["args"] == args_for(pipeline, interval)
    assert pod(rendered)["metadata"]["labels"]["foundryflow.io/pipeline"] == pipeline


@pytest.mark.parametrize(
    ("values", "path", "message"),
    [
        ({}, "(root)", "'pipeline' is a required property"),
        ({"pipeline": ""}, "pipeline", "should be non-empty"),
        ({"pipeline": None}, "pipeline", "None is not of type 'string'"),
        ({"pipeline": 7}, "pipeline", "7 is not of type 'string'"),
        ({"pipeline": "Benchmark-Matrix"}, "pipeline", "does not match"),
        ({"pipeline": "benchmark_matrix"}, "pipeline", "does not match"),
        ({"pipeline": "-benchmark"}, "pipeline", "does not match"),  # never read as a flag
        ({"pipeline": "--help"}, "pipeline", "does not match"),
        ({"pipeline": "bench matrix"}, "pipeline", "does not match"),
        ({"pipeline": "x" * 53}, "pipeline", "does not match"),
    ],
)
def test_missing_or_invalid_pipeline_is_refused(
    values: dict[str, Any], path: str, message: str
) -> None:
    problems = refused(values)
    assert any(p == path and message in m for p, m in problems), problems


# --------------------------------------------------------------------------- parameters
def test_params_json_is_the_json_of_parameters_taken_literally() -> None:
    rendered = render({"parameters": TRICKY_PARAMETERS})
    text = params_json(rendered)
    assert json.loads(text) == TRICKY_PARAMETERS
    # Data, never a template: Helm did not evaluate what looks like one.
    assert "{{ .Release.Name }}" in json.loads(text)["template"]
    assert '"{{ .Release.Name }}"' in text
    assert "bench" not in text
    mount = runner(rendered)["volumeMounts"][0]
    assert mount == {"name": "params", "mountPath": "/etc/foundryflow", "readOnly": True}
    configmap_name = only(rendered, "ConfigMap")["metadata"]["name"]
    assert pod(rendered)["spec"]["volumes"][0]["configMap"]["name"] == configmap_name


@pytest.mark.parametrize(
    "value",
    [
        '{{ fail "boom" }}',
        "{{ .Values.parameters }}",
        '{{ include "pipeline-runner.fullname" . }}',
        "}}{{",
        "---\nkind: Secret\n",
        "a: b\n- c",
        "",
        "  leading and trailing  ",
        "\\u0000 is not a NUL",
    ],
)
def test_parameter_strings_survive_as_they_are(value: str) -> None:
    rendered = render({"parameters": {"p": value, "list": [value], "map": {value: value}}})
    assert json.loads(params_json(rendered)) == {"p": value, "list": [value], "map": {value: value}}
    assert [m["kind"] for m in rendered.manifests] == ["ConfigMap", "Deployment"]


def test_checksum_follows_the_parameters_and_nothing_else() -> None:
    base = render({"parameters": {"model_version_id": 7, "batch": 10}})
    assert checksum(base) == hashlib.sha256(params_json(base).encode()).hexdigest()
    same = render({"parameters": {"batch": 10, "model_version_id": 7}}, name="other")
    assert checksum(same) == checksum(base)  # key order and release do not matter
    changed = render({"parameters": {"model_version_id": 7, "batch": 11}})
    assert checksum(changed) != checksum(base)
    nested = render({"parameters": {"model_version_id": 7, "batch": 10, "o": {"k": "v"}}})
    assert checksum(nested) not in {checksum(base), checksum(changed)}
    scaled = render({"parameters": {"model_version_id": 7, "batch": 10}, "replicaCount": 5})
    assert checksum(scaled) == checksum(base)  # scaling does not restart the runners


def test_parameters_must_be_an_object() -> None:
    for bad in (["a"], "x", 1):
        problems = refused({"pipeline": PIPELINE, "parameters": bad})
        assert any(p == "parameters" and "is not of type 'object'" in m for p, m in problems)


# --------------------------------------------------------------------------- pool and nodes
@pytest.mark.parametrize("replicas", [0, 1, 8, 100])
def test_replica_count_including_zero_a_paused_pool(replicas: int) -> None:
    rendered = render({"replicaCount": replicas})
    assert only(rendered, "Deployment")["spec"]["replicas"] == replicas
    assert ("PAUSED" in rendered.notes) == (replicas == 0)


@pytest.mark.parametrize(
    ("values", "path", "message"),
    [
        ({"replicaCount": -1}, "replicaCount", "minimum of 0"),
        ({"replicaCount": 101}, "replicaCount", "maximum of 100"),
        ({"replicaCount": "2"}, "replicaCount", "is not of type 'integer'"),
        ({"interval": 0}, "interval", "minimum of 1"),
        ({"interval": 86401}, "interval", "maximum of 86400"),
        ({"interval": 1.5}, "interval", "is not of type 'integer'"),
        ({"terminationGracePeriodSeconds": 0}, "terminationGracePeriodSeconds", "minimum of 1"),
        ({"nodeSelector": {"pool": 1}}, "nodeSelector.pool", "is not of type 'string'"),
        ({"nodeSelector": {"gpu": "H100 80GB"}}, "nodeSelector.gpu", "does not match"),
        ({"nodeSelector": {"bad key": "x"}}, "nodeSelector", "does not match"),
        ({"tolerations": [{"key": "k", "effect": "Sometimes"}]}, "tolerations[0].effect", ""),
        ({"tolerations": [{"key": "k", "foo": 1}]}, "tolerations[0]", "'foo' was unexpected"),
        (
            {"tolerations": [{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}]},
            "tolerations[0]",
            "should not be valid",
        ),
        ({"runtimeSecret": {"name": ""}}, "runtimeSecret.name", "does not match"),
        ({"connectionsSecret": {"name": "Conn"}}, "connectionsSecret.name", "does not match"),
        ({"probes": {"liveness": {"enabled": "yes"}}}, "probes.liveness.enabled", "boolean"),
        ({"podAnnotations": {"checksum/params": "x"}}, "podAnnotations", "should not be valid"),
        ({"image": {"tag": "-bad"}}, "image.tag", "does not match"),
        ({"workers": 3}, "(root)", "'workers' was unexpected"),
    ],
)
def test_schema_rejects_bad_values_with_their_path(
    values: dict[str, Any], path: str, message: str
) -> None:
    problems = refused({"pipeline": PIPELINE, **values})
    assert any(p == path and message in m for p, m in problems), problems


def test_target_nodes_tolerations_and_pass_through() -> None:
    tolerations = [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute", "tolerationSeconds": 60},
    ]
    rendered = render(
        {
            "nodeSelector": H100,
            "tolerations": tolerations,
            "podAnnotations": {"foundryflow.io/deployment": "{{ .Values.pipeline }}"},
            "imagePullSecrets": [{"name": "regcred"}],
            "serviceAccount": {"create": True, "name": "", "annotations": {"a": "b"}},
            "image": {"tag": "1.2.3", "pullPolicy": "Always"},
            "terminationGracePeriodSeconds": 3600,
        },
        name="h100-bench",
    )
    template = pod(rendered)
    assert template["spec"]["nodeSelector"] == H100
    assert template["spec"]["tolerations"] == tolerations
    assert template["spec"]["terminationGracePeriodSeconds"] == 3600
    assert template["metadata"]["annotations"] == {
        "checksum/params": checksum(render()),
        "foundryflow.io/deployment": "{{ .Values.pipeline }}",  # data, not template
    }
    assert template["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert template["spec"]["serviceAccountName"] == "h100-bench-pipeline-runner"
    account = only(rendered, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    container = runner(rendered)
    assert container["image"] == "ghcr.io/foundryflow/foundryflow:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert "NVIDIA-H100-80GB-HBM3" in rendered.notes


# --------------------------------------------------------------------------- env
def test_connections_secret_adds_an_optional_env_from() -> None:
    container = runner(render({"connectionsSecret": {"name": CONNECTIONS_SECRET}}))
    assert container["envFrom"] == [{"secretRef": {"name": CONNECTIONS_SECRET, "optional": True}}]
    # env wins over envFrom in Kubernetes: the Secret cannot replace the chart's variables.
    assert set(SECRET_ENV) <= set(env_of(container))


def test_extra_env_is_appended() -> None:
    extra = [
        {"name": "FOUNDRYFLOW_LOG_LEVEL", "value": "debug"},
        {"name": "NOTE", "value": "{{ .Release.Name }} 'quoted'"},
    ]
    env = env_of(runner(render({"extraEnv": extra})))
    assert list(env)[-2:] == ["FOUNDRYFLOW_LOG_LEVEL", "NOTE"]
    assert env["NOTE"] == "{{ .Release.Name }} 'quoted'"


@pytest.mark.parametrize(
    "name",
    ["FOUNDRYFLOW_DATABASE_URL", "FOUNDRYFLOW_REDIS_URL", "POD_NAME", "PYTHONUNBUFFERED", "HOME"],
)
def test_extra_env_cannot_redefine_the_charts_variables(name: str) -> None:
    problems = refused({"pipeline": PIPELINE, "extraEnv": [{"name": name, "value": "x"}]})
    assert any(p == "extraEnv[0].name" and "should not be valid" in m for p, m in problems)


@pytest.mark.parametrize(
    ("entry", "path", "message"),
    [
        ({"name": "1X", "value": "x"}, "extraEnv[0].name", "does not match"),
        ({"name": "X", "value": 1}, "extraEnv[0].value", "is not of type 'string'"),
        ({"name": "X", "valueFrom": {}}, "extraEnv[0]", "'valueFrom' was unexpected"),
    ],
)
def test_extra_env_is_plain_name_value_pairs(
    entry: dict[str, Any], path: str, message: str
) -> None:
    problems = refused({"pipeline": PIPELINE, "extraEnv": [entry]})
    assert any(p == path and message in m for p, m in problems), problems


# --------------------------------------------------------------------------- resources, security
def test_resources_are_honoured() -> None:
    resources = {
        "requests": {"cpu": "2", "memory": "8Gi", "ephemeral-storage": "10Gi"},
        "limits": {"cpu": "4", "memory": "16Gi"},
    }
    assert runner(render({"resources": resources}))["resources"] == resources
    # Helm merges maps with the defaults; null removes a default (here: no CPU limit).
    unthrottled = {"requests": {"memory": "2Gi"}, "limits": {"cpu": None, "memory": "2Gi"}}
    assert runner(render({"resources": unthrottled}))["resources"] == {
        "requests": {"cpu": "100m", "memory": "2Gi"},
        "limits": {"memory": "2Gi"},
    }


@pytest.mark.parametrize(
    ("values", "path", "message"),
    [
        ({"resources": {"requests": {"cpu": None}}}, "resources.requests", "'cpu' is a required"),
        ({"resources": {"limits": {"memory": None}}}, "resources.limits", "'memory' is a required"),
        ({"resources": {"requests": {"cpu": "lots"}}}, "resources.requests.cpu", "does not match"),
        (
            {"resources": {"limits": {"nvidia.com/gpu": "1"}}},
            "resources.limits",
            "'nvidia.com/gpu' was unexpected",
        ),
    ],
)
def test_resources_keep_requests_and_a_memory_limit(
    values: dict[str, Any], path: str, message: str
) -> None:
    problems = refused({"pipeline": PIPELINE, **values})
    assert any(p == path and message in m for p, m in problems), problems


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"podSecurityContext": {"runAsNonRoot": False}}, "podSecurityContext.runAsNonRoot"),
        ({"podSecurityContext": {"runAsUser": 0}}, "podSecurityContext.runAsUser"),
        ({"podSecurityContext": {"seccompProfile": None}}, "podSecurityContext"),
        (
            {"podSecurityContext": {"seccompProfile": {"type": "Unconfined"}}},
            "podSecurityContext.seccompProfile.type",
        ),
        (
            {"securityContext": {"allowPrivilegeEscalation": True}},
            "securityContext.allowPrivilegeEscalation",
        ),
        ({"securityContext": {"privileged": True}}, "securityContext.privileged"),
        ({"securityContext": {"runAsNonRoot": False}}, "securityContext.runAsNonRoot"),
        ({"securityContext": {"capabilities": {"drop": []}}}, "securityContext.capabilities.drop"),
        (
            {"securityContext": {"capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}},
            "securityContext.capabilities.add[0]",
        ),
        ({"securityContext": {"procMount": "Unmasked"}}, "securityContext"),
    ],
)
def test_values_cannot_weaken_the_security_context(values: dict[str, Any], path: str) -> None:
    assert path in {p for p, _ in refused({"pipeline": PIPELINE, **values})}


def test_values_may_tighten_the_security_context() -> None:
    rendered = render(
        {
            "podSecurityContext": {"runAsUser": 65532, "runAsGroup": 65532},
            "securityContext": {"runAsNonRoot": True, "privileged": False},
        }
    )
    assert pod(rendered)["spec"]["securityContext"]["runAsUser"] == 65532
    security = runner(rendered)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}


# --------------------------------------------------------------------------- probes
def run_probe(command: list[str], heartbeat: Path) -> int:
    """Run a probe's exec command as the kubelet would, on ``heartbeat`` instead of /tmp's."""
    local = [part.replace(HEARTBEAT, str(heartbeat)) for part in command]
    assert local != command, "the probe does not read the heartbeat"
    return subprocess.run(local, check=False, capture_output=True, timeout=30).returncode


def test_liveness_probe_is_opt_in_and_checks_the_heartbeat_age(tmp_path: Path) -> None:
    rendered = render(
        {
            "interval": 300,
            "probes": {
                "liveness": {
                    "enabled": True,
                    "maxHeartbeatAgeMinutes": 30,
                    "periodSeconds": 120,
                    "failureThreshold": 5,
                }
            },
        }
    )
    probe = runner(rendered)["livenessProbe"]
    command = probe["exec"]["command"]
    assert command == ["sh", "-c", f"find {HEARTBEAT} -mmin -30 | grep -q ."]
    assert (probe["periodSeconds"], probe["failureThreshold"]) == (120, 5)
    assert "older than 30 min is restarted" in rendered.notes

    heartbeat = tmp_path / "foundryflow-heartbeat"
    assert run_probe(command, heartbeat) != 0  # never touched
    heartbeat.touch()
    assert run_probe(command, heartbeat) == 0  # fresh
    stale = time.time() - 31 * 60
    os.utime(heartbeat, (stale, stale))
    assert run_probe(command, heartbeat) != 0  # find alone would still exit 0 here


def test_readiness_probe_waits_for_the_first_heartbeat(tmp_path: Path) -> None:
    command = runner(render())["readinessProbe"]["exec"]["command"]
    heartbeat = tmp_path / "foundryflow-heartbeat"
    assert run_probe(command, heartbeat) != 0
    heartbeat.touch()
    assert run_probe(command, heartbeat) == 0
    stale = time.time() - 24 * 3600
    os.utime(heartbeat, (stale, stale))
    assert run_probe(command, heartbeat) == 0  # a long run keeps the runner ready


def test_liveness_threshold_is_independent_of_the_interval() -> None:
    """The runner touches the heartbeat while it waits: only a run's length matters."""
    liveness = {"enabled": True, "maxHeartbeatAgeMinutes": 1}
    probe = runner(render({"interval": 86400, "probes": {"liveness": liveness}}))["livenessProbe"]
    assert probe["exec"]["command"][-1] == f"find {HEARTBEAT} -mmin -1 | grep -q ."
