"""What a use-case template may say about a Helm chart: where it comes from and which values.

A use case bundles several charts written by whoever authored the template, so two things
are checked before any of it reaches a cluster backend:

* the chart reference, one string in the template, is parsed by :func:`parse_chart_ref`
  into the fields of a :class:`~foundryflow.cluster.base.ReleaseSpec`. Only three exact
  shapes are accepted and everything that could make a string mean something else to helm,
  a shell, a URL parser or a human reviewer (spaces, control and look-alike characters,
  percent-encoding, ``..``, credentials, near-miss schemes) is refused with a message
  saying what to write instead. The rules of :mod:`foundryflow.cluster.base` are reused,
  so the template and the release agree on what a valid reference is.
* the chart values are walked by :func:`blocked_values` / :func:`check_values` for the
  settings that give a pod the node itself (host namespaces, privileged containers, added
  Linux capabilities, host paths and ports). A chart's schema describes what the chart
  understands, not what the platform allows, so this check is separate and applies to
  every chart, including remote ones without a schema.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, TypedDict
from urllib.parse import urlsplit

from foundryflow.cluster.base import (
    _CHART_VERSION,
    _DNS1123_LABEL,
    _HTTPS_REPO,
    _OCI_REF,
    CHARTS_DIR,
    ChartReferenceError,
    ClusterError,
    _check_remote_url,
    local_chart_path,
)

__all__ = [
    "BLOCKED_KEYS",
    "MAX_CHART_REF_LENGTH",
    "MAX_VALUES_DEPTH",
    "MAX_VALUES_NODES",
    "ChartRef",
    "ReleaseFields",
    "UnsafeValuesError",
    "blocked_values",
    "check_values",
    "parse_chart_ref",
]

MAX_CHART_REF_LENGTH: Final = 512
"""Longer references are refused outright: no real registry path comes close."""

ChartKind = Literal["local", "oci", "https"]

_LOCAL_PREFIX = "charts/"
_SHAPES = "charts/<name>, oci://host[:port]/path/chart or https://host[:port]/path/chart-name"
_SHELL_METACHARACTERS = frozenset(";|&$`<>(){}!*?'\"\\")
# Anything that reads as "scheme:" or "scheme//" without being exactly oci:// or https://.
_SCHEME_LOOKALIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*(:|//)")


class ReleaseFields(TypedDict):
    """The chart fields of a :class:`ReleaseSpec`, typed so ``ReleaseSpec(**fields)`` checks."""

    chart: str
    repo_url: str | None
    chart_version: str | None


@dataclass(frozen=True, slots=True)
class ChartRef:
    """A chart reference split into what :class:`ReleaseSpec` takes.

    Build it with :func:`parse_chart_ref`, which is where the checks are; ``ReleaseSpec``
    validates the fields again when the release is made, so a hand-built instance cannot
    get past the backends either.
    """

    chart: str
    """Local: the directory name under ``charts/``; oci: the whole reference; https: the
    chart name (the last path segment)."""
    repo_url: str | None
    """The https chart repository (everything before the chart name); None otherwise."""
    kind: ChartKind

    @property
    def ref(self) -> str:
        """The reference as written in a template (round-trips through parse_chart_ref)."""
        if self.kind == "local":
            return _LOCAL_PREFIX + self.chart
        if self.kind == "https":
            return f"{self.repo_url}/{self.chart}"
        return self.chart

    def __str__(self) -> str:
        return self.ref

    def release_fields(self, version: str | None = None) -> ReleaseFields:
        """``chart``, ``repo_url`` and ``chart_version`` for a :class:`ReleaseSpec`.

        A local chart is used as the directory is, so it takes no version; a remote chart
        needs an exact one so that a use case deployed twice deploys the same thing.
        """
        if self.kind == "local":
            if version is not None:
                raise ChartReferenceError(
                    f"{self.ref} is a local chart, used as it is in the repository: "
                    f"give no version (got {version!r})"
                )
        elif version is None:
            raise ChartReferenceError(
                f"remote chart {self.ref} needs an exact version (e.g. 1.2.3)"
            )
        elif not _CHART_VERSION.fullmatch(version):
            raise ChartReferenceError(
                f"version {version!r} of chart {self.ref} is not an exact semantic version "
                "(e.g. 1.2.3); ranges are refused so a deployment is reproducible"
            )
        return {"chart": self.chart, "repo_url": self.repo_url, "chart_version": version}


def _shown(ref: str) -> str:
    """The reference for a message: quoted (escapes control characters) and cut short."""
    return repr(ref if len(ref) <= 80 else ref[:80] + "...")


def _check_characters(ref: str) -> None:
    """Refuse characters that make a reference read differently to a person or a tool.

    Order matters only for the message: the most specific explanation comes first.
    """
    for position, char in enumerate(ref):
        if char.isspace() or unicodedata.category(char).startswith("C"):
            raise ChartReferenceError(
                f"chart reference {_shown(ref)} contains whitespace or an invisible/control "
                f"character (U+{ord(char):04X} at position {position}): remove it"
            )
    for position, char in enumerate(ref):
        if not char.isascii():
            raise ChartReferenceError(
                f"chart reference {_shown(ref)} contains the non-ASCII character {char!r} "
                f"(U+{ord(char):04X} at position {position}), which can imitate an ASCII "
                "letter: write the reference in plain ASCII"
            )
    if "%" in ref:
        raise ChartReferenceError(
            f"chart reference {_shown(ref)} uses percent-encoding (e.g. %2e, %2f): write "
            "the characters themselves; encoded dots and slashes could hide a path"
        )
    if "?" in ref or "#" in ref:
        raise ChartReferenceError(
            f"chart reference {_shown(ref)} has a query string or fragment: remove the "
            "part from '?' or '#' on"
        )
    if "@" in ref:
        raise ChartReferenceError(
            f"chart reference {_shown(ref)} carries credentials or a digest ('@'): remove "
            "them; registry logins belong to the cluster's helm configuration"
        )
    bad = sorted({char for char in ref if char in _SHELL_METACHARACTERS})
    if bad:
        raise ChartReferenceError(
            f"chart reference {_shown(ref)} contains shell metacharacters "
            f"{' '.join(bad)}: a chart reference has only letters, digits, '.', '-', '_', "
            "'/' and ':' before a port"
        )


def _check_segments(ref: str, path: str) -> None:
    """No ``.``/``..`` segments and no empty ones (``//``) in the part after the scheme."""
    segments = path.split("/")
    if any(segment in {".", ".."} for segment in segments):
        raise ChartReferenceError(
            f"chart reference {_shown(ref)} contains '.' or '..' path segments: write the "
            f"path without them ({_SHAPES})"
        )
    if "" in segments:
        raise ChartReferenceError(
            f"chart reference {_shown(ref)} has an empty path segment ('//'): remove the "
            "extra slash"
        )


def _check_host(ref: str, url: str) -> None:
    """Host labels as DNS spells them and a port in 1..65535 (the shared regex is looser)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not all(_DNS1123_LABEL.fullmatch(label) for label in host.split(".")):
        raise ChartReferenceError(
            f"chart reference {_shown(ref)} has an invalid host {host!r}: use a DNS name "
            "or IPv4 address (letters, digits and '-' between dots)"
        )
    if ":" in parts.netloc:
        try:
            port = parts.port
        except ValueError:  # not a number, or above 65535
            port = None
        if not port:
            raise ChartReferenceError(
                f"chart reference {_shown(ref)} has an invalid port: use 1 to 65535 or none"
            )


def _check_chart_name(ref: str, name: str) -> None:
    if not _DNS1123_LABEL.fullmatch(name):
        raise ChartReferenceError(
            f"chart name {name!r} in {_shown(ref)} (the last path segment) is not a Helm "
            "chart name: lowercase letters, digits and '-', starting and ending with a "
            "letter or digit"
        )


def parse_chart_ref(ref: str, *, charts_dir: Path = CHARTS_DIR) -> ChartRef:
    """Parse the chart reference of a use-case template; :class:`ChartReferenceError` if bad.

    Exactly three shapes are accepted:

    * ``charts/<name>``: a chart directory of this repository (it must exist, checked by
      :func:`~foundryflow.cluster.base.local_chart_path`, which also refuses symlinks out);
    * ``oci://host[:port]/path/chart``: the whole reference is the chart;
    * ``https://host[:port]/path/chart-name``: the last segment is the chart name, the
      rest is the chart repository URL.

    Schemes are matched exactly (lowercase): ``http://``, ``OCI://``, ``oci:/`` and other
    near misses are refused rather than repaired, since a template that says something
    else than it means should be corrected, not guessed at.
    """
    if not isinstance(ref, str):
        raise ChartReferenceError(
            f"chart reference must be a string ({_SHAPES}), not {type(ref).__name__}"
        )
    if not ref:
        raise ChartReferenceError(f"chart reference is empty: give {_SHAPES}")
    if len(ref) > MAX_CHART_REF_LENGTH:
        raise ChartReferenceError(
            f"chart reference {_shown(ref)} is {len(ref)} characters long; at most "
            f"{MAX_CHART_REF_LENGTH} are accepted"
        )
    _check_characters(ref)
    if ref.endswith("/"):
        raise ChartReferenceError(
            f"chart reference {_shown(ref)} ends with '/': remove the trailing slash"
        )

    if ref.startswith("oci://"):
        _check_segments(ref, ref.removeprefix("oci://"))
        _check_remote_url(ref, "oci", _OCI_REF, "oci chart reference")
        _check_host(ref, ref)
        _check_chart_name(ref, ref.rpartition("/")[2])
        return ChartRef(chart=ref, repo_url=None, kind="oci")

    if ref.startswith("https://"):
        rest = ref.removeprefix("https://")
        _check_segments(ref, rest)
        if "/" not in rest:
            raise ChartReferenceError(
                f"chart reference {_shown(ref)} names no chart: append it as the last path "
                "segment (https://host[:port]/path/chart-name)"
            )
        repo_url, _, chart = ref.rpartition("/")
        _check_remote_url(repo_url, "https", _HTTPS_REPO, "chart repository URL")
        _check_host(ref, repo_url)
        _check_chart_name(ref, chart)
        return ChartRef(chart=chart, repo_url=repo_url, kind="https")

    if ref.startswith(_LOCAL_PREFIX):
        _check_segments(ref, ref)
        name = ref.removeprefix(_LOCAL_PREFIX)
        if "/" in name:
            raise ChartReferenceError(
                f"chart reference {_shown(ref)} points below a chart directory: a local "
                "chart is charts/<name>, one directory directly under charts/"
            )
        local_chart_path(name, charts_dir)
        return ChartRef(chart=name, repo_url=None, kind="local")

    # Refused; the branches only choose the most helpful message.
    if ref.startswith("http://"):
        raise ChartReferenceError(
            f"chart reference {_shown(ref)} uses http://: chart repositories must be "
            "reached over https://"
        )
    if _SCHEME_LOOKALIKE.match(ref):
        raise ChartReferenceError(
            f"chart reference {_shown(ref)} does not start with exactly 'oci://' or "
            f"'https://' (lowercase): write {_SHAPES}"
        )
    if ref.startswith("/"):
        raise ChartReferenceError(
            f"chart reference {_shown(ref)} is an absolute path: local charts are named "
            "charts/<name>, relative to the repository"
        )
    _check_segments(ref, ref)
    if "/" not in ref:
        raise ChartReferenceError(
            f"chart reference {_shown(ref)} is a bare name: write charts/"
            f"{ref if _DNS1123_LABEL.fullmatch(ref) else '<name>'} for a chart "
            "of this repository, or a full oci:// or https:// reference"
        )
    raise ChartReferenceError(f"chart reference {_shown(ref)} is not one of {_SHAPES}")


# --- values ---------------------------------------------------------------------------

BLOCKED_KEYS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "hostNetwork": "the pod would share the node's network stack",
        "hostPID": "the pod would see and signal every process on the node",
        "hostIPC": "the pod would share the node's IPC namespace and shared memory",
        "privileged": "a privileged container has full access to the node",
        "allowPrivilegeEscalation": "processes could gain privileges through setuid binaries",
        "hostPath": "mounts a directory of the node into the pod; use a PVC or emptyDir",
        "hostPort": "binds a port of the node itself, around Services and network policies",
    }
)
"""Keys refused anywhere in chart values, with the reason shown to the template's author.

A key is a violation when its value is anything but ``false`` or null: a chart echoing
its default ``privileged: false`` is fine, while ``true``, ``"true"``, ``1`` or a mapping
(``hostPath: {path: /}``) is refused, since a template may render any of them as "on".
Keys match case-insensitively (after trimming spaces): Helm values are free-form and a
chart may map ``HostNetwork`` onto ``hostNetwork``, so the spelling must not be a way
around the check. Besides these, ``capabilities.add`` must add no Linux capability at all
(``capabilities.drop`` is welcome).
"""

MAX_VALUES_DEPTH: Final = 64
"""Deeper nesting is refused: no chart needs it, and hostile input must not exhaust us."""
MAX_VALUES_NODES: Final = 100_000
"""More mappings, lists and scalars than this are refused (e.g. YAML alias bombs)."""

_BLOCKED_FOLDED: Final = {key.casefold(): reason for key, reason in BLOCKED_KEYS.items()}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class UnsafeValuesError(ClusterError, ValueError):
    """Chart values ask for access to the node; ``problems`` holds (path, reason) pairs.

    A ValueError too, so a pydantic validator calling :func:`check_values` reports it as a
    validation error of the field.
    """

    def __init__(self, message: str, problems: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.problems = problems


def _fold(key: object) -> str | None:
    return key.strip().casefold() if isinstance(key, str) else None


def _key_path(parent: str, key: object) -> str:
    """``parent.key``, or ``parent["key"]`` when the key would not read as one segment."""
    if isinstance(key, str) and _IDENTIFIER.fullmatch(key):
        return f"{parent}.{key}" if parent else key
    return f"{parent}[{json.dumps(str(key))}]"


def _capability(value: object) -> str:
    """``cap_sys_admin`` -> ``SYS_ADMIN``: the name a reader looks up."""
    if isinstance(value, str):
        name = value.strip().upper()
        return name.removeprefix("CAP_") or repr(value)
    return repr(value)


def _added_capabilities(path: str, added: object) -> list[tuple[str, str]]:
    if added is None or added == []:
        return []
    if not isinstance(added, list | tuple):
        return [(path, f"must list no capability, got {added!r}")]
    return [
        (
            f"{path}[{index}]",
            f"adds the Linux capability {_capability(item)}; capabilities may only be dropped",
        )
        for index, item in enumerate(added)
    ]


def _problems(values: Any, where: str) -> list[tuple[str, str]]:
    """Every violation as (path, reason), in document order; raises on hostile sizes.

    The walk is iterative (an explicit stack), so depth is bounded by MAX_VALUES_DEPTH
    rather than by Python's recursion limit, and self-referencing input ends there too.
    A key's own violations travel with its value on the stack, so they are reported when
    the walk reaches that key, which keeps the list in document order.
    """
    problems: list[tuple[str, str]] = []
    stack: list[tuple[str, Any, int, list[tuple[str, str]]]] = [("", values, 0, [])]
    visited = 0
    while stack:
        path, node, depth, found = stack.pop()
        problems.extend(found)
        visited += 1
        if visited > MAX_VALUES_NODES:
            raise UnsafeValuesError(
                f"{where} refused: more than {MAX_VALUES_NODES} entries; split or simplify them",
                [(path, "too many entries")],
            )
        if depth > MAX_VALUES_DEPTH:
            shown = path if len(path) <= 120 else path[:120] + "..."
            raise UnsafeValuesError(
                f"{where} refused: nested deeper than {MAX_VALUES_DEPTH} levels (at {shown})",
                [(path, "nested too deep")],
            )
        children: list[tuple[str, Any, list[tuple[str, str]]]] = []
        if isinstance(node, Mapping):
            for key, value in node.items():
                child = _key_path(path, key)
                folded = _fold(key)
                own: list[tuple[str, str]] = []
                if folded in _BLOCKED_FOLDED and value is not False and value is not None:
                    own.append((child, _BLOCKED_FOLDED[folded]))
                if folded == "capabilities" and isinstance(value, Mapping):
                    for cap_key, added in value.items():
                        if _fold(cap_key) == "add":
                            own.extend(_added_capabilities(_key_path(child, cap_key), added))
                children.append((child, value, own))
        elif isinstance(node, list | tuple):
            children = [(f"{path}[{index}]", item, []) for index, item in enumerate(node)]
        # Reversed so the stack pops children in document order.
        stack.extend((child, value, depth + 1, own) for child, value, own in reversed(children))
    return problems


def blocked_values(values: Any) -> list[str]:
    """Paths of every blocked setting in ``values``, e.g.
    ``spec.containers[0].securityContext.privileged``; empty when the values are safe.

    Mappings and lists are walked at any depth (see :data:`BLOCKED_KEYS` for the rules).
    Input nested deeper than :data:`MAX_VALUES_DEPTH` or larger than
    :data:`MAX_VALUES_NODES` raises :class:`UnsafeValuesError` instead, since its
    violations cannot be listed.
    """
    return [path for path, _ in _problems(values, "values")]


def check_values(values: Any, where: str = "values") -> None:
    """Raise :class:`UnsafeValuesError` listing every blocked setting, with why.

    ``where`` names the values in the message (e.g. ``component 'llm' values``).
    """
    problems = _problems(values, where)
    if problems:
        details = "; ".join(f"{path} is blocked ({reason})" for path, reason in problems)
        raise UnsafeValuesError(f"{where} refused: {details}", problems)
