"""What a pipeline deployment is and what makes one valid (seed 001, "Validation").

Everything here is checked before anything happens: the pipeline exists and the parameters
match its parameter schema (the same check a run's parameters get), resources are
Kubernetes quantities within the configured limits with requests at most the limits, the
target node selector is made of valid label keys and values, replicas are bounded.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from foundryflow.config import get_settings

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = re.compile(r"(\d+(\.\d+)?|\.\d+)([eE]\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?")
"""A non-negative Kubernetes quantity written canonically (no sign, no spaces)."""
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MAX_SELECTOR_LABELS = 20

ResourceName = Literal["cpu", "memory"]


def parse_quantity(text: str, what: str) -> Decimal:
    """The value of a quantity (``100m`` -> 0.1, ``1Gi`` -> 1073741824), by the Kubernetes
    client's own parser once the text has the canonical shape."""
    from kubernetes.utils import parse_quantity as kubernetes_quantity

    if not isinstance(text, str) or not QUANTITY.fullmatch(text):
        raise ValueError(
            f"{what} {text!r} is not a Kubernetes quantity (e.g. 500m or 2 for cpu, 512Mi or "
            "4Gi for memory)"
        )
    return Decimal(kubernetes_quantity(text))


def check_label_key(key: str) -> str:
    """``[prefix/]name`` as Kubernetes label keys are: prefix a DNS subdomain (<= 253),
    name <= 63 alphanumerics with ``-_.`` inside."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        raise ValueError(f"node label key {key!r}: prefix {prefix!r} is not a DNS subdomain")
    if not _LABEL_NAME.fullmatch(name):
        raise ValueError(
            f"node label key {key!r}: name {name!r} must be 1-63 letters, digits, '-', '_' or "
            "'.', starting and ending with a letter or digit"
        )
    return key


def check_label_value(key: str, value: str) -> str:
    if value and not _LABEL_NAME.fullmatch(value):
        raise ValueError(
            f"node label {key}={value!r}: a value is at most 63 letters, digits, '-', '_' or "
            "'.', starting and ending with a letter or digit"
        )
    return value


class Resources(BaseModel):
    """Requests and limits of each runner pod (cpu, memory)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: dict[ResourceName, str] = Field(default_factory=dict)
    limits: dict[ResourceName, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Resources:
        settings = get_settings()
        ceiling = {
            "cpu": parse_quantity(settings.deployment_max_cpu, "configured maximum cpu"),
            "memory": parse_quantity(settings.deployment_max_memory, "configured maximum memory"),
        }
        requests = {k: parse_quantity(v, f"requests.{k}") for k, v in self.requests.items()}
        limits = {k: parse_quantity(v, f"limits.{k}") for k, v in self.limits.items()}
        for name, value in {**requests, **limits}.items():
            if value <= 0:
                raise ValueError(f"{name} must be more than zero")
        for name, limit in limits.items():
            if name in requests and requests[name] > limit:
                raise ValueError(
                    f"requests.{name} {self.requests[name]} is more than limits.{name} "
                    f"{self.limits[name]}"
                )
        for name, value in (requests | limits).items():
            if value > ceiling[name]:
                raise ValueError(
                    f"{name} {self.limits.get(name) or self.requests[name]} is more than this "
                    f"platform allows per runner ({ceiling[name]} "
                    f"= FOUNDRYFLOW_DEPLOYMENT_MAX_{name.upper()})"
                )
        return self

    def merged(self, patch: dict[str, Any]) -> Resources:
        """This with ``patch`` applied key by key (the seed's PATCH of ``limits.memory``)."""
        return Resources.model_validate(
            {
                "requests": {**self.requests, **(patch.get("requests") or {})},
                "limits": {**self.limits, **(patch.get("limits") or {})},
            }
        )


def _selector(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_SELECTOR_LABELS:
        raise ValueError(f"target_nodes has {len(value)} labels; at most {MAX_SELECTOR_LABELS}")
    return {check_label_key(k): check_label_value(k, v) for k, v in value.items()}


def _replicas(value: int) -> int:
    maximum = get_settings().deployment_max_replicas
    if value > maximum:
        raise ValueError(
            f"replicas {value} is more than {maximum} (FOUNDRYFLOW_DEPLOYMENT_MAX_REPLICAS)"
        )
    return value


class _Pool(BaseModel):
    """What a pool of runners is made of, whichever request carries it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pipeline_name: Annotated[str, StringConstraints(min_length=1, max_length=63)]
    parameters: dict[str, Any] = Field(default_factory=dict)
    target_nodes: dict[str, str] = Field(default_factory=dict)
    replicas: int = Field(default=1, ge=0)
    resources: Resources = Field(default_factory=Resources)
    interval_seconds: int = Field(default=60, ge=1, le=86400)

    @field_validator("target_nodes")
    @classmethod
    def _target_nodes(cls, value: dict[str, str]) -> dict[str, str]:
        return _selector(value)

    @field_validator("replicas")
    @classmethod
    def _replicas_bounded(cls, value: int) -> int:
        return _replicas(value)


class DeploymentSpec(_Pool):
    """The desired state of a deployment: what every revision records."""

    pipeline_version: str = ""


class CreateRequest(_Pool):
    """``POST /api/v1/pipelines/deployments`` (seed 001, "Deploy Pipeline")."""

    deployment_name: Annotated[str, StringConstraints(max_length=53, pattern=DNS_LABEL)] = Field(
        description="Also the Helm release name: a DNS label of at most 53 characters."
    )
    namespace: Annotated[str, StringConstraints(max_length=63, pattern=DNS_LABEL)]
    cluster: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="Cluster name or id."
    )

    def spec(self) -> DeploymentSpec:
        return DeploymentSpec.model_validate(
            self.model_dump(exclude={"deployment_name", "namespace", "cluster"})
        )


class UpdateRequest(BaseModel):
    """``PATCH`` (seed 001, "Update Deployment"): only what is given changes; parameters and
    resources are merged key by key, target_nodes is replaced as a whole."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    parameters: dict[str, Any] | None = None
    resources: dict[str, dict[ResourceName, str]] | None = None
    target_nodes: dict[str, str] | None = None
    replicas: int | None = Field(default=None, ge=0)
    interval_seconds: int | None = Field(default=None, ge=1, le=86400)

    @field_validator("resources")
    @classmethod
    def _resource_sections(
        cls, value: dict[str, dict[str, str]] | None
    ) -> dict[str, dict[str, str]] | None:
        if value is not None and not set(value) <= {"requests", "limits"}:
            raise ValueError("resources take 'requests' and 'limits' only")
        return value

    def applied_to(self, current: DeploymentSpec) -> DeploymentSpec:
        resources = (
            current.resources
            if self.resources is None
            else current.resources.merged(self.resources)
        )
        return DeploymentSpec(
            pipeline_name=current.pipeline_name,
            pipeline_version=current.pipeline_version,
            parameters={**current.parameters, **(self.parameters or {})},
            target_nodes=current.target_nodes if self.target_nodes is None else self.target_nodes,
            replicas=current.replicas if self.replicas is None else self.replicas,
            resources=resources,
            interval_seconds=(
                current.interval_seconds if self.interval_seconds is None else self.interval_seconds
            ),
        )

    @property
    def empty(self) -> bool:
        return not self.model_fields_set


def changes(before: DeploymentSpec | None, after: DeploymentSpec) -> dict[str, Any]:
    """``field -> {"from": old, "to": new}`` for the audit trail (all fields on create)."""
    old = before.model_dump(mode="json") if before is not None else {}
    new = after.model_dump(mode="json")
    return {
        name: {"from": old.get(name), "to": value}
        for name, value in new.items()
        if old.get(name) != value
    }
