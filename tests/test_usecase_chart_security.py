"""Chart references and values of use-case templates: what is accepted, what is refused, why.

Pure functions, no database: hostile references must fail with a message naming what to
change, and hostile values must be reported by path, all of them in one error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from foundryflow.cluster.base import (
    ChartReferenceError,
    ClusterError,
    InvalidReleaseError,
    ReleaseSpec,
)
from foundryflow.usecase.chart_security import (
    BLOCKED_KEYS,
    MAX_CHART_REF_LENGTH,
    MAX_VALUES_DEPTH,
    MAX_VALUES_NODES,
    ChartRef,
    UnsafeValuesError,
    blocked_values,
    check_values,
    parse_chart_ref,
)

# --- chart references -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("charts/model-endpoint", ChartRef("model-endpoint", None, "local")),
        (
            "oci://ghcr.io/acme/charts/qdrant",
            ChartRef("oci://ghcr.io/acme/charts/qdrant", None, "oci"),
        ),
        (
            "oci://registry.local:5000/qdrant",
            ChartRef("oci://registry.local:5000/qdrant", None, "oci"),
        ),
        (
            "oci://10.0.0.7:443/a/b/c/milvus",
            ChartRef("oci://10.0.0.7:443/a/b/c/milvus", None, "oci"),
        ),
        (
            "https://charts.bitnami.com/bitnami/redis",
            ChartRef("redis", "https://charts.bitnami.com/bitnami", "https"),
        ),
        (
            "https://helm.example.org/qdrant",
            ChartRef("qdrant", "https://helm.example.org", "https"),
        ),
        (
            "https://helm.example.org:8443/stable/v1/vector-db2",
            ChartRef("vector-db2", "https://helm.example.org:8443/stable/v1", "https"),
        ),
        (
            "https://Helm.Example.org/A_b~c/redis",
            ChartRef("redis", "https://Helm.Example.org/A_b~c", "https"),
        ),
    ],
)
def test_accepted_shapes(ref: str, expected: ChartRef) -> None:
    parsed = parse_chart_ref(ref)

    assert parsed == expected
    assert parsed.ref == str(parsed) == ref
    assert parse_chart_ref(parsed.ref) == parsed


def test_release_fields_of_a_local_chart_take_no_version() -> None:
    local = parse_chart_ref("charts/model-endpoint")

    fields = local.release_fields()
    assert fields == {"chart": "model-endpoint", "repo_url": None, "chart_version": None}
    spec = ReleaseSpec(name="llm", namespace="team-a", **fields)
    assert spec.is_local_chart
    with pytest.raises(ChartReferenceError, match="give no version"):
        local.release_fields("1.0.0")


@pytest.mark.parametrize(
    "ref", ["oci://ghcr.io/acme/charts/qdrant", "https://helm.example.org:8443/stable/redis"]
)
def test_release_fields_of_a_remote_chart_need_an_exact_version(ref: str) -> None:
    remote = parse_chart_ref(ref)

    spec = ReleaseSpec(name="db", namespace="team-a", **remote.release_fields("1.2.3"))
    assert (spec.chart, spec.repo_url, spec.chart_version) == (
        remote.chart,
        remote.repo_url,
        "1.2.3",
    )
    with pytest.raises(ChartReferenceError, match="needs an exact version"):
        remote.release_fields()
    with pytest.raises(ChartReferenceError, match="not an exact semantic version"):
        remote.release_fields("^1.2")


HOSTILE_REFS: list[tuple[str, str]] = [
    # empty, whitespace, control and invisible characters
    ("", "is empty"),
    (" charts/model-endpoint", "whitespace"),
    ("charts/model-endpoint ", "whitespace"),
    ("charts/model endpoint", "whitespace"),
    ("charts/model-endpoint\n", "whitespace"),
    ("charts/model-\tendpoint", "whitespace"),
    ("charts/model-endpoint\x00", "control"),
    ("oci://ghcr.io/acme/\x1b[31mx", "control"),
    ("charts/model\u200b-endpoint", "invisible"),
    ("charts/\u202eredis", "invisible"),
    ("oci://ghcr.io/acme/x\u00a0", "whitespace"),
    # shell metacharacters
    ("charts/model-endpoint;rm -rf /", "whitespace"),
    ("charts/model-endpoint;id", "shell metacharacters ;"),
    ("oci://ghcr.io/acme/x|sh", r"shell metacharacters \|"),
    ("oci://ghcr.io/acme/$(id)", "shell metacharacters"),
    ("oci://ghcr.io/acme/`id`", "shell metacharacters `"),
    ("charts/x&&y", "shell metacharacters &"),
    ("charts/${HOME}", "shell metacharacters"),
    ("charts/x>y", "shell metacharacters >"),
    ("charts/x<y", "shell metacharacters <"),
    ("charts/x!", "shell metacharacters !"),
    ("charts/*", r"shell metacharacters \*"),
    ("charts/'x'", "shell metacharacters '"),
    ('charts/"x"', 'shell metacharacters "'),
    ("charts\\model-endpoint", r"shell metacharacters \\"),
    # traversal and percent-encoding
    ("charts/../x", r"'\.' or '\.\.' path segments"),
    ("charts/..", r"'\.' or '\.\.' path segments"),
    ("charts/./model-endpoint", r"'\.' or '\.\.' path segments"),
    ("./charts/model-endpoint", r"'\.' or '\.\.' path segments"),
    ("oci://ghcr.io/acme/../x", r"'\.' or '\.\.' path segments"),
    ("https://helm.example.org/a/./redis", r"'\.' or '\.\.' path segments"),
    ("https://helm.example.org/../redis", r"'\.' or '\.\.' path segments"),
    ("charts/%2e%2e/x", "percent-encoding"),
    ("charts/%2E%2E%2Fx", "percent-encoding"),
    ("oci://ghcr.io/acme%2fx", "percent-encoding"),
    ("https://helm.example.org/%2e%2e/redis", "percent-encoding"),
    # query strings and fragments
    ("https://helm.example.org/redis?x=1", "query string or fragment"),
    ("oci://ghcr.io/acme/x#frag", "query string or fragment"),
    ("https://helm.example.org/redis#", "query string or fragment"),
    # credentials
    ("https://user:pass@helm.example.org/redis", "credentials"),
    ("https://ghp_token@helm.example.org/redis", "credentials"),
    ("oci://user:pass@ghcr.io/acme/x", "credentials"),
    ("oci://token@ghcr.io/acme/x", "credentials"),
    ("oci://ghcr.io/acme/x@sha256:abc", "credentials or a digest"),
    # look-alike and foreign schemes
    ("http://helm.example.org/redis", "must be reached over https"),
    ("oci:/ghcr.io/acme/x", "exactly 'oci://' or 'https://'"),
    ("oci:ghcr.io/acme/x", "exactly 'oci://' or 'https://'"),
    ("OCI://ghcr.io/acme/x", "exactly 'oci://' or 'https://'"),
    ("Oci://ghcr.io/acme/x", "exactly 'oci://' or 'https://'"),
    ("HTTPS://helm.example.org/redis", "exactly 'oci://' or 'https://'"),
    ("https:/helm.example.org/redis", "exactly 'oci://' or 'https://'"),
    ("https//helm.example.org/redis", "exactly 'oci://' or 'https://'"),
    ("https:helm.example.org/redis", "exactly 'oci://' or 'https://'"),
    ("ftp://helm.example.org/redis", "exactly 'oci://' or 'https://'"),
    ("file:///etc/passwd", "exactly 'oci://' or 'https://'"),
    ("file://charts/model-endpoint", "exactly 'oci://' or 'https://'"),
    ("hxxps://helm.example.org/redis", "exactly 'oci://' or 'https://'"),
    ("oci+https://ghcr.io/acme/x", "exactly 'oci://' or 'https://'"),
    ("git+https://github.com/acme/charts", "exactly 'oci://' or 'https://'"),
    ("javascript:alert(1)", "shell metacharacters"),
    # unicode look-alikes
    ("charts/model-endpoint\u0435", "non-ASCII"),  # Cyrillic e
    ("\u043eci://ghcr.io/acme/x", "non-ASCII"),  # Cyrillic o
    ("https://helm.ex\u0430mple.org/redis", "non-ASCII"),  # Cyrillic a
    ("charts\u2215model-endpoint", "non-ASCII"),  # division slash
    ("charts/model\u2010endpoint", "non-ASCII"),  # unicode hyphen
    ("\uff43harts/model-endpoint", "non-ASCII"),  # fullwidth c
    # local paths in other shapes
    ("/charts/model-endpoint", "absolute path"),
    ("/etc/passwd", "absolute path"),
    ("//charts/model-endpoint", "absolute path"),
    ("charts/model-endpoint/templates", "points below a chart directory"),
    ("charts/a/b", "points below a chart directory"),
    ("charts//model-endpoint", r"empty path segment \('//'\)"),
    ("charts/model-endpoint/", "trailing slash"),
    ("charts/", "trailing slash"),
    ("oci://ghcr.io/acme/x/", "trailing slash"),
    ("https://helm.example.org/redis/", "trailing slash"),
    ("model-endpoint", "bare name: write charts/model-endpoint"),
    ("..", r"'\.' or '\.\.' path segments"),
    ("Charts/model-endpoint", "is not one of charts/<name>"),
    ("chart/model-endpoint", "is not one of charts/<name>"),
    ("charts/Model-Endpoint", "neither the name of a chart directory"),
    ("charts/no-such-chart", "no chart named 'no-such-chart'"),
    # malformed remote references
    ("oci://ghcr.io", "malformed"),
    ("oci://", "trailing slash"),
    ("oci:///acme/x", r"empty path segment \('//'\)"),
    ("oci://ghcr.io//x", r"empty path segment \('//'\)"),
    ("oci://ghcr.io/Acme/x", "malformed"),
    ("oci://ghcr.io/acme/my_chart", "not a Helm chart name"),
    ("oci://-ghcr.io/acme/x", "invalid host"),
    ("oci://ghcr..io/acme/x", "invalid host"),
    ("oci://ghcr.io:/acme/x", "malformed"),
    ("oci://ghcr.io:0/acme/x", "invalid port"),
    ("oci://ghcr.io:99999/acme/x", "invalid port"),
    ("https://helm.example.org", "names no chart"),
    ("https://helm.example.org/Redis", "not a Helm chart name"),
    ("https://helm.example.org/redis-", "not a Helm chart name"),
    ("https://helm.example.org/re_dis", "not a Helm chart name"),
    ("https://helm.example.org./redis", "invalid host"),
    ("https://[::1]/redis", "malformed"),
    ("https://helm.example.org:65536/redis", "invalid port"),
    ("https://helm.example.org/a//redis", r"empty path segment \('//'\)"),
    # too long
    ("oci://ghcr.io/" + "a/" * 300 + "x", f"at most {MAX_CHART_REF_LENGTH}"),
    ("charts/" + "a" * MAX_CHART_REF_LENGTH, f"at most {MAX_CHART_REF_LENGTH}"),
]


@pytest.mark.parametrize(("ref", "message"), HOSTILE_REFS)
def test_hostile_references_are_refused_with_a_reason(ref: str, message: str) -> None:
    with pytest.raises(ChartReferenceError, match=message) as refused:
        parse_chart_ref(ref)
    # a ValueError (pydantic reports it) and a ClusterError (the CLI shows it) like the rest
    assert isinstance(refused.value, InvalidReleaseError | ValueError)
    assert len(str(refused.value)) < 600, "a hostile reference is not echoed in full"


def test_the_hostile_list_is_long_enough() -> None:
    assert len(HOSTILE_REFS) >= 30


@pytest.mark.parametrize("ref", [None, 42, b"charts/model-endpoint", ["charts/x"]])
def test_non_strings_are_refused(ref: Any) -> None:
    with pytest.raises(ChartReferenceError, match="must be a string"):
        parse_chart_ref(ref)


def test_local_charts_are_looked_up_in_the_given_directory(tmp_path: Path) -> None:
    charts = tmp_path / "charts"
    (charts / "vector-db").mkdir(parents=True)
    (charts / "vector-db" / "Chart.yaml").write_text("name: vector-db\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Chart.yaml").write_text("name: outside\n")
    (charts / "escape").symlink_to(outside)

    assert parse_chart_ref("charts/vector-db", charts_dir=charts).chart == "vector-db"
    with pytest.raises(ChartReferenceError, match="no chart named 'model-endpoint'"):
        parse_chart_ref("charts/model-endpoint", charts_dir=charts)
    with pytest.raises(ChartReferenceError, match="outside"):
        parse_chart_ref("charts/escape", charts_dir=charts)


# --- values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {},
        None,
        [],
        "hostNetwork",
        {"replicaCount": 2, "image": {"repository": "vllm/vllm-openai", "tag": "v0.6"}},
        {"hostNetwork": False, "hostPID": None, "hostIPC": False},
        {"securityContext": {"privileged": False, "allowPrivilegeEscalation": False}},
        {"securityContext": {"capabilities": {"drop": ["ALL"]}}},
        {"securityContext": {"capabilities": {"add": [], "drop": ["ALL"]}}},
        {"securityContext": {"capabilities": {"add": None}}},
        {"volumes": [{"name": "cache", "emptyDir": {}}, {"name": "data", "hostPath": None}]},
        {"note": "hostNetwork: true", "labels": {"privileged-tier": "no"}},
        {"items": ["privileged", "hostPath", {"add": ["SYS_ADMIN"]}]},  # not under capabilities
    ],
)
def test_safe_values_pass(values: Any) -> None:
    assert blocked_values(values) == []
    check_values(values)


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"hostNetwork": True}, "hostNetwork"),
        ({"hostPID": True}, "hostPID"),
        ({"hostIPC": True}, "hostIPC"),
        ({"privileged": True}, "privileged"),
        ({"hostPort": 8080}, "hostPort"),
        ({"hostPath": "/var/run/docker.sock"}, "hostPath"),
        ({"allowPrivilegeEscalation": True}, "allowPrivilegeEscalation"),
        # anything but false/null could be rendered as "on" by a template
        ({"hostNetwork": "true"}, "hostNetwork"),
        ({"privileged": 1}, "privileged"),
        ({"privileged": 0}, "privileged"),
        ({"hostNetwork": ""}, "hostNetwork"),
        ({"hostPID": "{{ .Values.debug }}"}, "hostPID"),
        # case and spacing variants of the keys
        ({"HostNetwork": True}, "HostNetwork"),
        ({"HOSTPID": True}, "HOSTPID"),
        ({"Privileged": True}, "Privileged"),
        ({"hostnetwork": True}, "hostnetwork"),
        ({" hostNetwork ": True}, '[" hostNetwork "]'),
        # nested in mappings
        ({"pod": {"spec": {"hostNetwork": True}}}, "pod.spec.hostNetwork"),
        (
            {"securityContext": {"allowPrivilegeEscalation": True}},
            "securityContext.allowPrivilegeEscalation",
        ),
        # inside lists
        (
            {"spec": {"containers": [{"securityContext": {"privileged": True}}]}},
            "spec.containers[0].securityContext.privileged",
        ),
        (
            {"spec": {"containers": [{"name": "a"}, {"ports": [{"hostPort": 80}]}]}},
            "spec.containers[1].ports[0].hostPort",
        ),
        ([{"privileged": True}], "[0].privileged"),
        ({"matrix": [[{"hostIPC": True}]]}, "matrix[0][0].hostIPC"),
        (
            {
                "volumes": [
                    {"name": "cache", "emptyDir": {}},
                    {"name": "h", "hostPath": {"path": "/"}},
                ]
            },
            "volumes[1].hostPath",
        ),
        # keys that are not identifiers
        ({"weird.key": {"privileged": True}}, '["weird.key"].privileged'),
        ({"my-chart": {"hostNetwork": True}}, "my-chart.hostNetwork"),
        ({1: {"privileged": True}}, '["1"].privileged'),
    ],
)
def test_blocked_settings_are_reported_by_path(values: Any, path: str) -> None:
    assert blocked_values(values) == [path]
    with pytest.raises(UnsafeValuesError, match="refused: ") as refused:
        check_values(values)
    assert f"{path} is blocked (" in str(refused.value)
    assert [problem_path for problem_path, _ in refused.value.problems] == [path]


@pytest.mark.parametrize(
    "capability", ["SYS_ADMIN", "sys_admin", "CAP_SYS_ADMIN", " cap_sys_admin"]
)
def test_added_capabilities_are_refused_with_a_normalized_name(capability: str) -> None:
    values = {
        "spec": {
            "containers": [
                {"securityContext": {"capabilities": {"add": [capability], "drop": ["ALL"]}}}
            ]
        }
    }
    path = "spec.containers[0].securityContext.capabilities.add[0]"

    assert blocked_values(values) == [path]
    with pytest.raises(UnsafeValuesError) as refused:
        check_values(values)
    assert f"{path} is blocked (adds the Linux capability SYS_ADMIN;" in str(refused.value)


@pytest.mark.parametrize(
    ("capabilities", "paths"),
    [
        ({"add": ["NET_BIND_SERVICE"]}, ["c.capabilities.add[0]"]),  # harmless ones too
        ({"add": ["CHOWN", "NET_RAW"]}, ["c.capabilities.add[0]", "c.capabilities.add[1]"]),
        ({"Add": ["ALL"]}, ["c.capabilities.Add[0]"]),
        ({"add": "SYS_ADMIN"}, ["c.capabilities.add"]),
        ({"add": {"x": "SYS_PTRACE"}}, ["c.capabilities.add"]),
    ],
)
def test_any_added_capability_is_refused(capabilities: dict[str, Any], paths: list[str]) -> None:
    assert blocked_values({"c": {"capabilities": capabilities}}) == paths


def test_every_violation_is_reported_in_one_error_in_document_order() -> None:
    values = {
        "spec": {
            "hostNetwork": True,
            "containers": [
                {
                    "securityContext": {
                        "privileged": True,
                        "allowPrivilegeEscalation": True,
                        "capabilities": {"add": ["SYS_ADMIN", "NET_ADMIN"], "drop": ["ALL"]},
                    }
                }
            ],
            "volumes": [
                {"name": "ok", "emptyDir": {}},
                {"name": "root", "hostPath": {"path": "/"}},
            ],
        },
        "hostPID": True,
    }
    expected = [
        "spec.hostNetwork",
        "spec.containers[0].securityContext.privileged",
        "spec.containers[0].securityContext.allowPrivilegeEscalation",
        "spec.containers[0].securityContext.capabilities.add[0]",
        "spec.containers[0].securityContext.capabilities.add[1]",
        "spec.volumes[1].hostPath",
        "hostPID",
    ]

    assert blocked_values(values) == expected
    with pytest.raises(UnsafeValuesError) as refused:
        check_values(values, where="component 'llm' values")
    error = refused.value
    assert isinstance(error, ClusterError)
    assert isinstance(error, ValueError)
    assert str(error).startswith("component 'llm' values refused: spec.hostNetwork is blocked (")
    assert [path for path, _ in error.problems] == expected
    assert all(reason for _, reason in error.problems)
    for path in expected:
        assert f"{path} is blocked (" in str(error)
    assert "privileged container" in str(error)
    assert "capability NET_ADMIN" in str(error)


def test_every_blocked_key_has_a_reason() -> None:
    assert set(BLOCKED_KEYS) == {
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "privileged",
        "allowPrivilegeEscalation",
        "hostPath",
        "hostPort",
    }
    for key, reason in BLOCKED_KEYS.items():
        assert reason
        assert blocked_values({key: True}) == [key]
    with pytest.raises(TypeError):
        BLOCKED_KEYS["hostUsers"] = "x"  # type: ignore[index]


def _nested(levels: int, leaf: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"leaf": leaf}
    for _ in range(levels):
        values = {"a": values}
    return values


@pytest.mark.parametrize("levels", [MAX_VALUES_DEPTH + 1, 1000, 100_000])
def test_deep_nesting_is_refused_cleanly(levels: int) -> None:
    values = _nested(levels, {"privileged": True})

    with pytest.raises(UnsafeValuesError, match=f"nested deeper than {MAX_VALUES_DEPTH} levels"):
        blocked_values(values)
    with pytest.raises(UnsafeValuesError, match=r"^chart values refused: nested deeper") as refused:
        check_values(values, where="chart values")
    assert len(str(refused.value)) < 400


def test_deep_lists_and_self_references_are_refused_cleanly() -> None:
    deep: list[Any] = []
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(UnsafeValuesError, match="nested deeper"):
        blocked_values(deep)

    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(UnsafeValuesError, match="nested deeper"):
        blocked_values(loop)


def test_nesting_up_to_the_limit_is_walked() -> None:
    values = _nested(MAX_VALUES_DEPTH - 2, {"privileged": True})
    assert blocked_values(values) == [
        ".".join(["a"] * (MAX_VALUES_DEPTH - 2) + ["leaf", "privileged"])
    ]


def test_too_many_entries_are_refused_cleanly() -> None:
    shared = list(range(1000))
    bomb = {"k": [shared] * 200}  # an alias bomb: few objects, many entries
    assert MAX_VALUES_NODES < 1000 * 200

    with pytest.raises(UnsafeValuesError, match=f"more than {MAX_VALUES_NODES} entries"):
        blocked_values(bomb)
