"""Offline rendering of a release: Helm's own engine, strict validation, derived endpoints.

The local cluster backend has no Kubernetes behind it, so this is what keeps it honest: a
release it records is what ``helm upgrade --install`` would send, rendered by Helm's Go
engine (embedded in ``helm-python-sdk``), its values checked against the chart's
``values.schema.json`` and every manifest checked against the OpenAPI schema of a pinned
Kubernetes version in strict mode (unknown fields are errors, as with the API server's strict
field validation).

``helm-python-sdk`` is a young package with a native library, so only this module (the local
backend and tests) imports it; the helm backend never does.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml
from pydantic import BaseModel, ConfigDict

from foundryflow.cluster.base import (
    ChartReferenceError,
    ClusterError,
    Endpoint,
    ManifestValidationError,
    ReleaseSpec,
    ValuesValidationError,
    endpoints_from_manifests,
)

KUBERNETES_VERSION = "1.30"
"""The oldest Kubernetes the platform supports; manifests must be valid there."""


class RenderedRelease(BaseModel):
    """What a release would create: its objects, its Services and their in-cluster URLs."""

    model_config = ConfigDict(frozen=True)

    manifests: list[dict[str, Any]]
    services: list[dict[str, Any]]
    endpoints: list[Endpoint]
    notes: str = ""


def _path(parts: Any) -> str:
    """``model.tensorParallelSize`` / ``imagePullSecrets[0].name`` / ``(root)``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "(root)"


def validate_values(schema: dict[str, Any] | None, values: dict[str, Any], chart: str) -> None:
    """Check merged values against a chart's schema, reporting every bad value by path.

    Helm validates too, but stops at the first error with a terse message; users fixing a
    release want all problems at once, each named by where it is.
    """
    if schema is None:
        return
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft7Validator
    )
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ClusterError(f"chart {chart}: values.schema.json is invalid: {exc.message}") from exc
    errors = sorted(
        validator_class(schema).iter_errors(values),
        key=lambda error: [str(part) for part in error.absolute_path],
    )
    if errors:
        problems = [(_path(error.absolute_path), error.message) for error in errors]
        listing = "\n".join(f"  {path}: {message}" for path, message in problems)
        raise ValuesValidationError(
            f"values rejected by charts/{chart}/values.schema.json:\n{listing}", problems
        )


def validate_manifest(
    manifest: dict[str, Any], source: str, kubernetes_version: str = KUBERNETES_VERSION
) -> None:
    """Strictly validate one object against the Kubernetes schema of ``kubernetes_version``."""
    kind = manifest.get("kind")
    name = (manifest.get("metadata") or {}).get("name")
    if not isinstance(kind, str) or not isinstance(manifest.get("apiVersion"), str):
        raise ManifestValidationError(f"{source}: an object without apiVersion or kind")
    try:
        kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise ManifestValidationError(
            f"{source}: {kind}/{name} is not valid for Kubernetes {exc.version}: "
            f"{_path(exc.path)}: {exc.message}"
        ) from exc
    except (
        kubernetes_validate.SchemaNotFoundError,
        kubernetes_validate.VersionNotSupportedError,
    ) as exc:
        raise ManifestValidationError(f"{source}: {kind}/{name}: {exc.message}") from exc


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader refusing duplicate keys, which PyYAML silently resolves to the last one
    (and Kubernetes' strict decoding rejects)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        duplicates = sorted({str(k) for k in keys if keys.count(k) > 1})
        if duplicates:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate keys {duplicates}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


ManifestCheck = Callable[[dict[str, Any], str], None]
"""Checks one rendered object (given the template file it came from); raises
:class:`ManifestValidationError`."""


def render_release(
    spec: ReleaseSpec,
    *,
    kubernetes_version: str = KUBERNETES_VERSION,
    check: ManifestCheck | None = None,
) -> RenderedRelease:
    """Render a local chart as ``helm upgrade --install`` of ``spec`` would, validated.

    Raises :class:`ValuesValidationError` for values the schema refuses,
    :class:`ManifestValidationError` for an invalid object (or duplicate keys), and
    :class:`ChartReferenceError` for a remote chart (only charts under ``charts/`` render
    offline). ``check`` replaces :func:`validate_manifest` for each object: a chart that
    ships custom resources, which kubernetes-validate has no schema for, needs its own.
    """
    if check is None:

        def check(manifest: dict[str, Any], source: str) -> None:
            validate_manifest(manifest, source, kubernetes_version)

    try:
        with helm.Chart.load(spec.chart_path) as chart:
            validate_values(chart.schema, chart.merge_values(spec.values), spec.chart)
            rendered = chart.render(
                spec.values, name=spec.name, namespace=spec.namespace, is_install=True
            )
    except helm.HelmChartLoadError as exc:
        raise ChartReferenceError(f"chart {spec.chart!r} does not load: {exc}") from exc
    except helm.HelmError as exc:
        raise ClusterError(f"chart {spec.chart!r} does not render: {exc}") from exc

    manifests: list[dict[str, Any]] = []
    notes = ""
    for source, text in sorted(rendered.items()):
        if source.endswith("NOTES.txt"):
            notes = text
            continue
        try:
            documents = [
                doc for doc in yaml.load_all(text, Loader=_UniqueKeyLoader) if doc is not None
            ]
        except yaml.YAMLError as exc:
            raise ManifestValidationError(f"{source} is not YAML: {exc}") from exc
        for doc in documents:
            if not isinstance(doc, dict):
                raise ManifestValidationError(f"{source}: a document that is not an object")
            check(doc, source)
            manifests.append(doc)

    return RenderedRelease(
        manifests=manifests,
        services=[m for m in manifests if m["apiVersion"] == "v1" and m["kind"] == "Service"],
        endpoints=endpoints_from_manifests(manifests, release=spec.name, namespace=spec.namespace),
        notes=notes,
    )
