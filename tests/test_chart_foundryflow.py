"""The foundryflow chart: the platform's own pieces next to the official Airflow chart and Argo.

Rendered as ``tests/test_charts.py`` renders every chart that ships custom resources
(``render_release`` with ``check_with_custom_resources``): Helm's Go engine from
helm-python-sdk and the chart's values.schema.json, core objects validated strictly by
kubernetes-validate for Kubernetes 1.30, Argo documents by the official Argo Workflows schema
and ``argo_lint``, the PrometheusRule by a closed schema with every expression parsed by
promql-parser. The conventions every chart keeps (labels, restricted pods, a closed schema,
names for long releases) are tested there too.

Also here: the values for the official Airflow chart (``airflow-values.yaml``) and the
repository's ``Dockerfile``, which cannot be built on this machine, so only its text is checked.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from foundryflow.cluster.base import CHARTS_DIR, RELEASE_LABEL
from foundryflow.cluster.render import RenderedRelease
from foundryflow.compile.argo import RUNTIME_SECRET, SECRET_ENV, pinned_settings
from foundryflow.compile.argo_lint import check_documents, load_schema
from foundryflow.config import REPO_ROOT
from foundryflow.metrics import METRIC_NAMES
from tests.test_charts import (
    REQUIRED_VALUES,
    chart_yaml,
    custom_resource_problems,
    only,
    refused,
    render,
)

CHART = "foundryflow"
CHART_DIR = CHARTS_DIR / CHART
ARGO_DIR = REPO_ROOT / "argo"
ARGO_KINDS = frozenset({"WorkflowTemplate", "CronWorkflow"})
PINNED = pinned_settings()

DATABASE_URL = "postgresql://foundryflow:s3cr3t-db-pw@postgres.db:5432/foundryflow"
REDIS_URL = "redis://:s3cr3t-redis-pw@redis.db:6379/0"
URLS = {"runtime": {"databaseUrl": DATABASE_URL, "redisUrl": REDIS_URL}}

EXPECTED_METRICS = frozenset(
    {
        "foundryflow_database_up",
        "foundryflow_redis_up",
        "foundryflow_redis_memory_used_bytes",
        "foundryflow_redis_memory_max_bytes",
        "foundryflow_matrix_configs",
        "foundryflow_matrix_results_total",
        "foundryflow_matrix_stale_configs",
        "foundryflow_deployment_errors_total",
        "foundryflow_usecase_deployments",
        "foundryflow_executions_total",
        "foundryflow_redis_config_drift",
        "foundryflow_ops_last_run_timestamp_seconds",
    }
)
"""The metric names the alerts use; each must be one /foundryflow/metrics serves
(``foundryflow.metrics.METRIC_NAMES``)."""

EXPECTED_ALERTS: dict[str, tuple[str, str, str, str]] = {
    "FoundryflowDatabaseDown": ("foundryflow_database_up == 0", "1m", "critical", "database-down"),
    "FoundryflowRedisDown": ("foundryflow_redis_up == 0", "1m", "critical", "redis-down"),
    "FoundryflowRedisMemoryHigh": (
        "foundryflow_redis_memory_used_bytes / foundryflow_redis_memory_max_bytes > 0.8"
        " and foundryflow_redis_memory_max_bytes > 0",
        "5m",
        "warning",
        "redis-memory-high",
    ),
    "FoundryflowMatrixStalled": (
        'sum by (model_version) (foundryflow_matrix_configs{status="pending"}) > 0'
        " and sum by (model_version) (rate(foundryflow_matrix_results_total[30m])) == 0",
        "30m",
        "warning",
        "matrix-stalled",
    ),
    "FoundryflowStaleRowsPilingUp": (
        "sum by (model_version) (foundryflow_matrix_stale_configs) > 50",
        "15m",
        "warning",
        "stale-rows",
    ),
    "FoundryflowDeploymentFailures": (
        "increase(foundryflow_deployment_errors_total[1h]) > 0",
        "0m",
        "warning",
        "deployment-failures",
    ),
    "FoundryflowUseCaseDeploymentsFailed": (
        'foundryflow_usecase_deployments{status="FAILED"} > 0',
        "10m",
        "warning",
        "usecase-deployments-failed",
    ),
    "FoundryflowExecutionFailures": (
        'sum by (pipeline) (increase(foundryflow_executions_total{status="FAILED"}[1h])) > 0',
        "0m",
        "warning",
        "execution-failures",
    ),
    "FoundryflowRedisConfigDrift": (
        "foundryflow_redis_config_drift > 0",
        "15m",
        "warning",
        "redis-config-drift",
    ),
    "FoundryflowBackupMissing": (
        "time() - foundryflow_ops_last_run_timestamp_seconds"
        '{job="postgres_backup",outcome="succeeded"} > 26 * 3600',
        "0m",
        "critical",
        "backup-missing",
    ),
}
"""alert -> (expr, for, severity, runbook anchor), with the default thresholds."""
EXPECTED_ANCHORS = [
    "database-down",
    "redis-down",
    "redis-memory-high",
    "matrix-stalled",
    "stale-rows",
    "deployment-failures",
    "usecase-deployments-failed",
    "execution-failures",
    "redis-config-drift",
    "backup-missing",
]
OPERATIONS_DOC = REPO_ROOT / "docs" / "operations.md"


# --------------------------------------------------------------------------- helpers
def by_kind(rendered: RenderedRelease, *kinds: str) -> list[dict[str, Any]]:
    return [m for m in rendered.manifests if m["kind"] in kinds]


def argo_documents(rendered: RenderedRelease) -> list[dict[str, Any]]:
    return by_kind(rendered, *ARGO_KINDS)


def argo_files() -> list[Path]:
    """Every generated file of argo/ (README.md is not one)."""
    return sorted(ARGO_DIR.glob("*.yaml"))


def walk_values(node: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in a nested document."""
    found: list[Any] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                found.append(v)
            found += walk_values(v, key)
    elif isinstance(node, list):
        for item in node:
            found += walk_values(item, key)
    return found


def replaced(node: Any, key: str, old: str, new: str) -> Any:
    """A copy of ``node`` with every ``key: old`` made ``key: new``."""
    if isinstance(node, dict):
        return {
            k: new if k == key and v == old else replaced(v, key, old, new) for k, v in node.items()
        }
    if isinstance(node, list):
        return [replaced(item, key, old, new) for item in node]
    return node


def release_labels(release: str, version: str, component: str) -> dict[str, str]:
    meta = chart_yaml(CHART)
    return {
        "helm.sh/chart": f"{CHART}-{meta['version']}",
        "app.kubernetes.io/instance": release,
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/component": component,
        RELEASE_LABEL: release,
    }


def expected_argo_documents(
    release: str, namespace: str, image: str, version: str, secret: str = RUNTIME_SECRET
) -> list[dict[str, Any]]:
    """argo/*.yaml as the chart must install them: in the release namespace, running the
    chart's image, reading the runtime Secret by its name, with the release's labels added."""
    docs: list[dict[str, Any]] = []
    for path in argo_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            doc = replaced(doc, "image", PINNED.argo_image, image)
            doc = replaced(doc, "name", RUNTIME_SECRET, secret)
            doc["metadata"]["namespace"] = namespace
            doc["metadata"]["labels"] = {
                **release_labels(release, version, "workflow-template"),
                **doc["metadata"]["labels"],
            }
            docs.append(doc)
    return docs


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    anchors: set[str] = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def alerts(rendered: RenderedRelease) -> dict[str, dict[str, Any]]:
    (group,) = only(rendered, "PrometheusRule")["spec"]["groups"]
    return {rule["alert"]: rule for rule in group["rules"]}


def normalized(expr: str) -> str:
    return " ".join(expr.split())


# --------------------------------------------------------------------------- defaults
def test_defaults_render_the_platform_pieces() -> None:
    rendered = render(CHART, name="platform", namespace="foundryflow")
    kinds = sorted({m["kind"] for m in rendered.manifests})
    assert kinds == [
        "CronWorkflow",
        "Job",
        "PrometheusRule",
        "Role",
        "RoleBinding",
        "Secret",
        "ServiceAccount",
        "WorkflowTemplate",
    ]
    assert rendered.services == [] and rendered.endpoints == []  # nothing to discover
    assert len(argo_documents(rendered)) == len(expected_argo_documents("r", "n", "i", "v"))
    assert "helm install airflow apache-airflow/airflow" in rendered.notes
    assert "airflow-values.yaml" in rendered.notes


def test_the_chart_values_require_the_urls_or_an_existing_secret() -> None:
    assert REQUIRED_VALUES[CHART] == {
        "runtime": {
            "databaseUrl": "postgresql://foundryflow:secret@postgres.db:5432/foundryflow",
            "redisUrl": "redis://redis.db:6379/0",
        }
    }
    empty = {"runtime": {"databaseUrl": "", "redisUrl": ""}}
    problems = refused(CHART, empty)
    assert {p for p, _ in problems} >= {"runtime.databaseUrl", "runtime.redisUrl"}


@pytest.mark.parametrize(
    ("runtime", "path", "message"),
    [
        ({"databaseUrl": "mysql://u:p@db/f"}, "runtime.databaseUrl", "does not match"),
        ({"databaseUrl": "postgresql://"}, "runtime.databaseUrl", "does not match"),
        ({"redisUrl": "http://redis:6379"}, "runtime.redisUrl", "does not match"),
        ({"redisUrl": "redis://a b"}, "runtime.redisUrl", "does not match"),
        ({"existingSecret": "Runtime"}, "runtime.existingSecret", "does not match"),
        # An existing Secret holds the URLs: values must not carry them as well.
        ({"existingSecret": "platform-urls"}, "runtime.databaseUrl", "was expected"),
        ({"dbUrl": "postgresql://x/y"}, "runtime", "'dbUrl' was unexpected"),
    ],
)
def test_schema_rejects_bad_runtime_values(
    runtime: dict[str, str], path: str, message: str
) -> None:
    values = {"runtime": {**URLS["runtime"], **runtime}}
    problems = refused(CHART, values)
    assert any(p == path and message in m for p, m in problems), problems


@pytest.mark.parametrize(
    ("values", "path", "message"),
    [
        ({"image": {"repository": "ghcr.io/x y"}}, "image.repository", "does not match"),
        ({"image": {"repository": "a\nnamespace: x"}}, "image.repository", "does not match"),
        ({"image": {"tag": "1.0\n"}}, "image.tag", ""),
        (
            {"monitoring": {"serviceMonitor": {"port": "http\n"}}},
            "monitoring.serviceMonitor.port",
            "",
        ),
        ({"migration": {"backoffLimit": -1}}, "migration.backoffLimit", "minimum"),
        ({"migration": {"activeDeadlineSeconds": 5}}, "migration.activeDeadlineSeconds", ""),
        ({"monitoring": {"runbookBaseUrl": "docs/operations.md"}}, "monitoring.runbookBaseUrl", ""),
        ({"monitoring": {"runbookBaseUrl": "https://x/y#a"}}, "monitoring.runbookBaseUrl", ""),
        (
            {"monitoring": {"thresholds": {"redisMemoryRatio": 1.5}}},
            "monitoring.thresholds.redisMemoryRatio",
            "",
        ),
        (
            {"monitoring": {"rules": {"labels": {"app.kubernetes.io/name": "x"}}}},
            "monitoring.rules.labels",
            "",
        ),
        (
            {"monitoring": {"rules": {"alertLabels": {"severity": "page"}}}},
            "monitoring.rules.alertLabels",
            "",
        ),
        (
            {"monitoring": {"serviceMonitor": {"interval": "1 minute"}}},
            "monitoring.serviceMonitor.interval",
            "does not match",
        ),
        ({"argo": {"rbac": {"create": "yes"}}}, "argo.rbac.create", "not of type 'boolean'"),
    ],
)
def test_schema_rejects_bad_values_with_their_path(
    values: dict[str, Any], path: str, message: str
) -> None:
    problems = refused(CHART, values)
    assert any(p == path and message in m for p, m in problems), problems


def test_the_custom_resource_checks_catch_mistakes() -> None:
    """The checks every render applies to this chart's custom resources do bite."""
    rendered = render(CHART)
    rule = copy.deepcopy(only(rendered, "PrometheusRule"))
    first = rule["spec"]["groups"][0]["rules"][0]
    assert custom_resource_problems(rule) == []
    first["expr"] = "foundryflow_database_up =="
    assert any("FoundryflowDatabaseDown" in p for p in custom_resource_problems(rule) or [])
    first["expr"], first["fro"] = "foundryflow_database_up == 0", "1m"
    assert any("'fro' was unexpected" in p for p in custom_resource_problems(rule) or [])
    template = copy.deepcopy(argo_documents(rendered)[0])
    template["spec"]["entrypoint"] = "no-such-template"
    assert custom_resource_problems(template)
    assert custom_resource_problems(only(rendered, "Job")) is None  # kubernetes-validate's


# --------------------------------------------------------------------------- runtime Secret
def test_runtime_secret_is_a_hook_that_runs_before_the_migration() -> None:
    rendered = render(CHART, URLS, name="platform", namespace="foundryflow")
    secret = only(rendered, "Secret")
    assert secret["metadata"]["name"] == RUNTIME_SECRET
    assert secret["type"] == "Opaque"
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"database-url": DATABASE_URL, "redis-url": REDIS_URL}
    assert set(data) == set(SECRET_ENV.values())  # the keys the Argo pods read

    secret_hook = secret["metadata"]["annotations"]
    job_hook = only(rendered, "Job")["metadata"]["annotations"]
    assert secret_hook["helm.sh/hook"] == job_hook["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert secret_hook["helm.sh/hook-delete-policy"] == "before-hook-creation"
    assert job_hook["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    # Hooks of one phase run by ascending weight: the Secret exists before the Job starts.
    assert int(secret_hook["helm.sh/hook-weight"]) < int(job_hook["helm.sh/hook-weight"])


def test_the_urls_are_never_printed() -> None:
    rendered = render(CHART, URLS)
    for secret in ("s3cr3t-db-pw", "s3cr3t-redis-pw", "postgres.db", "redis.db"):
        assert secret not in rendered.notes
    assert f"Runtime Secret: {RUNTIME_SECRET}" in rendered.notes


def test_existing_secret_creates_no_secret_and_is_used_everywhere() -> None:
    values = {"runtime": {"existingSecret": "platform-urls", "databaseUrl": "", "redisUrl": ""}}
    rendered = render(CHART, values, name="platform", namespace="foundryflow")
    assert by_kind(rendered, "Secret") == []
    (container,) = only(rendered, "Job")["spec"]["template"]["spec"]["containers"]
    (job_env,) = [e for e in container["env"] if e["name"] == "FOUNDRYFLOW_DATABASE_URL"]
    assert job_env["valueFrom"]["secretKeyRef"] == {"name": "platform-urls", "key": "database-url"}
    refs = [ref["name"] for ref in walk_values(argo_documents(rendered), "secretKeyRef")]
    assert refs and set(refs) == {"platform-urls"}
    assert RUNTIME_SECRET not in json.dumps(rendered.manifests)
    assert "Runtime Secret: platform-urls" in rendered.notes
    assert "an existing Secret" in rendered.notes
    assert argo_documents(rendered) == expected_argo_documents(
        "platform", "foundryflow", PINNED.argo_image, "0.1.0", secret="platform-urls"
    )


# --------------------------------------------------------------------------- migration
def test_migration_job_runs_foundryflow_db_upgrade_non_root() -> None:
    rendered = render(CHART, name="platform", namespace="foundryflow")
    job = only(rendered, "Job")
    assert job["metadata"]["name"] == "platform-foundryflow-migrate"
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 900
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    (container,) = pod["containers"]
    app_version = chart_yaml(CHART)["appVersion"]
    assert container["image"] == f"ghcr.io/foundryflow/foundryflow:{app_version}"
    assert [*container["command"], *container["args"]] == ["foundryflow", "db", "upgrade"]
    env = {e["name"]: e for e in container["env"]}
    assert env["FOUNDRYFLOW_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": RUNTIME_SECRET,
        "key": "database-url",
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_migration_settings_and_opt_out() -> None:
    rendered = render(CHART, {"migration": {"backoffLimit": 0, "activeDeadlineSeconds": 120}})
    job = only(rendered, "Job")
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (0, 120)
    rendered = render(CHART, {"migration": {"enabled": False}})
    assert by_kind(rendered, "Job") == []
    assert "migrations are DISABLED" in rendered.notes


# --------------------------------------------------------------------------- Argo documents
def test_files_argo_is_the_repositorys_argo_directory() -> None:
    """One copy of the documents: the chart links argo/, and Helm's loader follows the link."""
    link = CHART_DIR / "files" / "argo"
    assert link.is_symlink()
    assert link.resolve() == ARGO_DIR.resolve()
    assert not Path(link.readlink()).is_absolute()  # works in any checkout
    assert argo_files(), "argo/ has no rendered documents"


def test_argo_documents_are_the_checked_in_ones_made_this_releases() -> None:
    rendered = render(CHART, name="platform", namespace="foundryflow")
    assert argo_documents(rendered) == expected_argo_documents(
        "platform", PINNED.argo_namespace, PINNED.argo_image, chart_yaml(CHART)["appVersion"]
    )


def test_argo_documents_follow_the_release_namespace_and_image() -> None:
    image = {"repository": "registry.example.com/ml/foundryflow", "tag": "1.2.3-rc.1"}
    rendered = render(CHART, {"image": image}, name="prod", namespace="ml-platform")
    documents = argo_documents(rendered)
    new_image = "registry.example.com/ml/foundryflow:1.2.3-rc.1"
    assert documents == expected_argo_documents("prod", "ml-platform", new_image, "1.2.3-rc.1")
    assert {d["metadata"]["namespace"] for d in documents} == {"ml-platform"}
    images = walk_values(documents, "image")
    assert images and set(images) == {new_image}
    text = json.dumps(documents)
    assert PINNED.argo_image not in text and "ghcr.io" not in text
    assert walk_values(only(rendered, "Job"), "image") == [new_image]
    # Argo's own expressions went through untouched (no tpl).
    assert "{{workflow.uid}}" in text and "{{item}}" in text


def test_the_chart_replaces_exactly_what_argo_render_writes() -> None:
    """The tokens the template replaces are the pinned settings `argo render` uses: if either
    changes alone, the replacement would silently stop (and the tests above fail too)."""
    helpers = (CHART_DIR / "templates" / "_helpers.tpl").read_text()
    for define, value in [
        ("foundryflow.argo.sourceNamespace", PINNED.argo_namespace),
        ("foundryflow.argo.sourceImage", PINNED.argo_image),
        ("foundryflow.argo.sourceRuntimeSecret", RUNTIME_SECRET),
        ("foundryflow.workflowServiceAccount", PINNED.argo_service_account),
    ]:
        assert f'{{{{- define "{define}" -}}}}\n{value}\n{{{{- end }}}}' in helpers, define
    # The chart's default image is the one the documents were rendered with.
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert f"{values['image']['repository']}:{chart_yaml(CHART)['appVersion']}" == (
        PINNED.argo_image
    )


def test_argo_documents_pass_the_official_schema_and_the_lint() -> None:
    rendered = render(
        CHART, {"image": {"tag": "2.0.0"}}, name="r" + "x" * 52, namespace="a-long-namespace"
    )
    documents = argo_documents(rendered)
    assert {d["kind"] for d in documents} == ARGO_KINDS
    assert check_documents(documents, load_schema()) == []


def test_argo_documents_carry_the_release_labels_and_their_own() -> None:
    rendered = render(CHART, name="platform", namespace="foundryflow")
    for document in argo_documents(rendered):
        labels = document["metadata"]["labels"]
        where = f"{document['kind']}/{document['metadata']['name']}"
        assert labels.items() >= release_labels("platform", "0.1.0", "workflow-template").items()
        assert labels["app.kubernetes.io/name"] == "foundryflow", where
        assert labels["app.kubernetes.io/part-of"] == "foundryflow", where
        assert labels["foundryflow.io/pipeline"], where


def test_argo_disabled_drops_the_documents_and_their_rbac() -> None:
    rendered = render(CHART, {"argo": {"enabled": False}})
    assert argo_documents(rendered) == []
    assert by_kind(rendered, "ServiceAccount", "Role", "RoleBinding") == []
    assert "not installed (argo.enabled=false)" in rendered.notes
    assert by_kind(rendered, "Job", "Secret", "PrometheusRule")  # the rest stays


# --------------------------------------------------------------------------- RBAC
def test_workflow_rbac_is_what_the_emissary_executor_needs() -> None:
    rendered = render(
        CHART, {"imagePullSecrets": [{"name": "regcred"}]}, name="platform", namespace="ml"
    )
    account = only(rendered, "ServiceAccount")
    role = only(rendered, "Role")
    binding = only(rendered, "RoleBinding")
    name = PINNED.argo_service_account
    assert account["metadata"]["name"] == role["metadata"]["name"] == name
    assert account["imagePullSecrets"] == [{"name": "regcred"}]  # Argo's pods pull with it
    assert "automountServiceAccountToken" not in account  # the executor needs the token
    assert role["rules"] == [
        {
            "apiGroups": ["argoproj.io"],
            "resources": ["workflowtaskresults"],
            "verbs": ["create", "patch"],
        }
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": name,
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": "ml"}]
    templates = [d for d in argo_documents(rendered) if d["kind"] == "WorkflowTemplate"]
    assert {t["spec"]["serviceAccountName"] for t in templates} == {name}


def test_legacy_executor_pod_access_is_opt_in() -> None:
    rendered = render(CHART, {"argo": {"rbac": {"legacyExecutorPodAccess": True}}})
    rules = only(rendered, "Role")["rules"]
    assert rules[1:] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "watch"]},
    ]


def test_rbac_can_be_left_to_the_cluster_admin() -> None:
    rendered = render(CHART, {"argo": {"rbac": {"create": False}}})
    assert by_kind(rendered, "ServiceAccount", "Role", "RoleBinding") == []
    assert argo_documents(rendered)
    assert "workflowtaskresults.argoproj.io yourself" in rendered.notes


# --------------------------------------------------------------------------- monitoring
def test_prometheus_rule_has_exactly_the_expected_alerts() -> None:
    rendered = render(CHART, name="platform", namespace="foundryflow")
    rule = only(rendered, "PrometheusRule")
    assert rule["metadata"]["name"] == "platform-foundryflow"
    found = alerts(rendered)
    assert list(found) == list(EXPECTED_ALERTS)
    for name, (expr, duration, severity, _) in EXPECTED_ALERTS.items():
        assert normalized(found[name]["expr"]) == expr, name
        assert found[name]["for"] == duration, name
        assert found[name]["labels"] == {"severity": severity}, name


def test_every_expression_parses_and_uses_only_platform_metrics() -> None:
    used: set[str] = set()
    for name, rule in alerts(render(CHART)).items():
        names = metric_names(rule["expr"])  # raises on a PromQL syntax error
        assert names, name
        assert names <= EXPECTED_METRICS, (name, names - EXPECTED_METRICS)
        assert names <= METRIC_NAMES, (name, "not served by /metrics", names - METRIC_NAMES)
        used |= names
    assert used == EXPECTED_METRICS  # and every metric listed has an alert


def test_every_alert_links_its_runbook() -> None:
    base = "https://runbooks.example.com/foundryflow/operations.md"
    rendered = render(CHART, {"monitoring": {"runbookBaseUrl": base}})
    anchors: list[str] = []
    for name, rule in alerts(rendered).items():
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        url, _, anchor = annotations["runbook_url"].partition("#")
        assert url == base, name
        anchors.append(anchor)
    assert anchors == EXPECTED_ANCHORS
    if not OPERATIONS_DOC.exists():
        pytest.skip("docs/operations.md is not written yet: anchors checked against the list")
    missing = set(anchors) - heading_anchors(OPERATIONS_DOC.read_text())
    assert not missing, f"docs/operations.md has no heading for {sorted(missing)}"


def test_alert_descriptions_keep_prometheus_templates_literal() -> None:
    found = alerts(render(CHART))
    annotations = {name: rule["annotations"] for name, rule in found.items()}
    assert "{{ $labels.model_version }}" in annotations["FoundryflowMatrixStalled"]["description"]
    assert "{{ $labels.pipeline }}" in annotations["FoundryflowExecutionFailures"]["summary"]
    backup = annotations["FoundryflowBackupMissing"]
    assert "{{ $value | humanizeDuration }}" in backup["description"]


def test_thresholds_labels_and_alert_labels_are_configurable() -> None:
    monitoring = {
        "thresholds": {"redisMemoryRatio": 0.9, "staleRows": 200, "backupMaxAgeHours": 50},
        "rules": {
            "labels": {"release": "kube-prometheus-stack"},
            "alertLabels": {"team": "ml-platform"},
        },
    }
    rendered = render(CHART, {"monitoring": monitoring})
    found = alerts(rendered)
    assert "> 0.9 and" in found["FoundryflowRedisMemoryHigh"]["expr"]
    assert "90%" in found["FoundryflowRedisMemoryHigh"]["annotations"]["summary"]
    assert normalized(found["FoundryflowStaleRowsPilingUp"]["expr"]).endswith("> 200")
    assert normalized(found["FoundryflowBackupMissing"]["expr"]).endswith("> 50 * 3600")
    for name, rule in found.items():
        assert rule["labels"] == {"severity": EXPECTED_ALERTS[name][2], "team": "ml-platform"}
        metric_names(rule["expr"])
    labels = only(rendered, "PrometheusRule")["metadata"]["labels"]
    assert labels["release"] == "kube-prometheus-stack"
    assert labels[RELEASE_LABEL] == "demo"


def test_service_monitor_is_opt_in_and_selects_the_airflow_api_server() -> None:
    assert by_kind(render(CHART), "ServiceMonitor") == []
    service_monitor = {
        "enabled": True,
        "airflowRelease": "airflow",
        "labels": {"release": "kube-prometheus-stack"},
    }
    rendered = render(
        CHART, {"monitoring": {"serviceMonitor": service_monitor}}, namespace="foundryflow"
    )
    monitor = only(rendered, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"] == {
        "matchLabels": {"tier": "airflow", "component": "api-server", "release": "airflow"}
    }
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["foundryflow"]}
    assert monitor["spec"]["endpoints"] == [
        {
            "port": "api-server",
            "path": "/foundryflow/metrics",
            "scheme": "http",
            "interval": "60s",
            "scrapeTimeout": "30s",
        }
    ]
    other = render(
        CHART,
        {"monitoring": {"serviceMonitor": {"enabled": True, "airflowNamespace": "airflow"}}},
    )
    assert only(other, "ServiceMonitor")["spec"]["namespaceSelector"] == {"matchNames": ["airflow"]}


def test_monitoring_disabled_drops_the_rule_and_the_service_monitor() -> None:
    rendered = render(
        CHART, {"monitoring": {"enabled": False, "serviceMonitor": {"enabled": True}}}
    )
    assert by_kind(rendered, "PrometheusRule", "ServiceMonitor") == []
    assert argo_documents(rendered)


# --------------------------------------------------------------------------- airflow-values.yaml
def airflow_values() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHART_DIR / "airflow-values.yaml").read_text())
    return data


def test_airflow_values_run_the_baked_in_dags_and_plugin() -> None:
    values = airflow_values()
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/foundryflow/dags"
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/foundryflow/plugins"
    assert env["PYTHONPATH"] == "/opt/foundryflow"
    assert json.loads(env["FOUNDRYFLOW_PIPELINES_PATH"]) == ["/opt/foundryflow/pipelines"]
    assert values["dags"] == {"persistence": {"enabled": False}, "gitSync": {"enabled": False}}
    for folder in ("dags", "plugins", "pipelines"):
        assert (REPO_ROOT / folder).is_dir(), folder  # what the image copies to /opt/foundryflow
    chart_values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    image = values["images"]["airflow"]
    assert image["repository"] == chart_values["image"]["repository"]
    assert image["tag"] == chart_yaml(CHART)["appVersion"]
    assert int(values["airflowVersion"].split(".")[0]) >= 3


def test_airflow_values_read_the_runtime_and_connections_secrets() -> None:
    values = airflow_values()
    assert {(s["envName"], s["secretName"], s["secretKey"]) for s in values["secret"]} == {
        (env, RUNTIME_SECRET, key) for env, key in SECRET_ENV.items()
    }
    # extraEnvFrom is a string the official chart templates into every Airflow container.
    assert yaml.safe_load(values["extraEnvFrom"]) == [
        {"secretRef": {"name": "foundryflow-connections", "optional": True}}
    ]


def test_airflow_values_run_as_the_images_user() -> None:
    values = airflow_values()
    uid = dockerfile_user()
    assert values["uid"] == values["securityContexts"]["pod"]["runAsUser"] == uid
    assert values["securityContexts"]["pod"]["runAsNonRoot"] is True
    chart_values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert chart_values["podSecurityContext"]["runAsUser"] == uid


# --------------------------------------------------------------------------- Dockerfile
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the repository's Dockerfile: comments dropped, continuation
    lines joined, heredoc bodies attached to their instruction."""
    lines = (REPO_ROOT / "Dockerfile").read_text().splitlines()
    instructions: list[tuple[str, str]] = []
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        while line.endswith("\\") and index < len(lines):
            line = line[:-1] + " " + lines[index].strip()
            index += 1
        heredoc = re.search(r"<<-?'?\"?(\w+)'?\"?", line)
        if heredoc:
            body = []
            while index < len(lines) and lines[index].strip() != heredoc.group(1):
                body.append(lines[index])
                index += 1
            index += 1
            line += "\n" + "\n".join(body)
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerfile_user() -> int:
    (user,) = [args for keyword, args in dockerfile_instructions() if keyword == "USER"]
    return int(user.split(":")[0])


def test_dockerfile_is_pinned_non_root_and_runs_foundryflow() -> None:
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]
    (base,) = [args for keyword, args in instructions if keyword == "FROM"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base
    assert dockerfile_user() == 1000 and keywords[-3:] == ["USER", "ENTRYPOINT", "CMD"]
    (workdir,) = [args for keyword, args in instructions if keyword == "WORKDIR"]
    assert workdir == "/opt/foundryflow"
    assert any(k == "COPY" and args == ". /opt/foundryflow" for k, args in instructions)

    env = " ".join(args for keyword, args in instructions if keyword == "ENV")
    settings = dict(item.split("=", 1) for item in shlex.split(env) if "=" in item)
    assert settings["PYTHONPATH"] == "/opt/foundryflow"
    assert json.loads(settings["FOUNDRYFLOW_PIPELINES_PATH"]) == ["/opt/foundryflow/pipelines"]

    runs = "\n".join(args for keyword, args in instructions if keyword == "RUN")
    assert "--extra local-cluster" in runs  # pip install .[local-cluster], in two layers
    assert "uv pip install --system --no-cache --no-deps ." in runs


def test_dockerfile_entrypoint_is_foundryflow_and_keeps_airflow_commands_working() -> None:
    instructions = dockerfile_instructions()
    (entrypoint,) = [json.loads(args) for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert entrypoint == ["/usr/local/bin/foundryflow-entrypoint"]
    (script,) = [
        args for keyword, args in instructions if keyword == "COPY" and entrypoint[0] in args
    ]
    body = script.split("\n", 1)[1]
    assert body.startswith("#!/bin/sh\n")
    # Anything else is a foundryflow command: `docker run IMAGE db upgrade`.
    assert body.rstrip().endswith('exec foundryflow "$@"')
    passthrough = re.search(r"^\s*(.*?)\) exec \"\$@\" ;;", body, re.MULTILINE)
    assert passthrough is not None
    assert {"airflow", "bash", "python"} <= {p.strip() for p in passthrough.group(1).split("|")}
    # The official chart's probes call the apache/airflow image's /entrypoint.
    link = f"ln -s {entrypoint[0]} /entrypoint"
    assert any(k == "RUN" and args == link for k, args in instructions)


def test_dockerfile_installs_a_pinned_helm_with_a_verified_checksum() -> None:
    instructions = dockerfile_instructions()
    arguments = dict(
        args.split("=", 1) for keyword, args in instructions if keyword == "ARG" and "=" in args
    )
    assert re.fullmatch(r"v3\.\d+\.\d+", arguments["HELM_VERSION"])
    for arch in ("AMD64", "ARM64"):
        assert re.fullmatch(r"[0-9a-f]{64}", arguments[f"HELM_SHA256_{arch}"]), arch
    runs = "\n".join(args for keyword, args in instructions if keyword == "RUN")
    assert "get.helm.sh/helm-${HELM_VERSION}-linux-${arch}.tar.gz" in runs
    assert 'echo "${helm_sha256}  /tmp/helm.tar.gz" | sha256sum -c -' in runs
    assert runs.index("sha256sum -c") < runs.index("tar -xzf /tmp/helm.tar.gz")


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    patterns = {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".foundryflow", "**/__pycache__", ".pytest_cache"} <= patterns
    assert {".mypy_cache", ".ruff_cache", "*.egg-info", ".env"} <= patterns
    for needed in ("dags", "plugins", "pipelines", "sql", "argo", "charts", "foundryflow"):
        assert needed not in patterns, needed


# --------------------------------------------------------------------------- documentation
def test_charts_readme_documents_the_install_order() -> None:
    readme = (CHARTS_DIR / "README.md").read_text()
    section = readme.split("\n## foundryflow\n", 1)[1].split("\n## ", 1)[0]
    install_chart = section.index("helm install foundryflow charts/foundryflow -n foundryflow")
    install_airflow = section.index(
        "helm install airflow apache-airflow/airflow -n foundryflow "
        "-f charts/foundryflow/airflow-values.yaml"
    )
    assert install_chart < install_airflow
    assert re.search(r"argo (-n \S+ )?submit --from workflowtemplate/\S+ -p \w+=", section)
