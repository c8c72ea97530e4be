"""The guardrail config document that gateways read from Redis (seed 000, steps build_config
and sync_redis).

Two layers, because "the same config" and "this version of it" are different things:

- :class:`GuardrailConfig` is the content ``build_config`` produces: the profile, its probes
  with the enabled rules (effective severity threshold and guard types, overrides already
  applied) and the URL of the endpoint serving each model a rule needs. It has a canonical
  byte form and a SHA-256 over it, so building the same config twice gives the same bytes
  and the same hash, whatever order the database returned the rows in.
- :class:`StoredConfig` is what the store keeps: that content plus the version and time the
  store gave it. They stay out of the hash, or a retried sync would never look identical.

Everything is strict (unknown keys are errors) and validated before a byte reaches Redis.
Strings are data: nothing here renders, trims or escapes them beyond JSON's own quoting.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from foundryflow.store.guardrail import GuardType

Severity = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
"""The 0..1 scale of the guardrail tables."""

Name = Annotated[str, Field(min_length=1)]
SHA256_HEX = r"^[0-9a-f]{64}$"


def canonical_json(data: Any) -> bytes:
    """Sorted keys, no whitespace, non-ASCII characters escaped: one byte string per value,
    the input of the content hash (Python's json module reproduces it from the stored JSON)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _unique(items: list[Any], what: str) -> None:
    duplicates = sorted(str(item) for item, count in Counter(items).items() if count > 1)
    if duplicates:
        raise ValueError(f"duplicate {what}: {', '.join(duplicates)}")


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleConfig(_Document):
    """An enabled rule with the values the gateway enforces."""

    rule_id: UUID
    rule_name: Name
    severity_threshold: Severity
    guard_types: tuple[GuardType, ...] = Field(min_length=1)
    model_uri: Name | None = Field(
        default=None, description="The model that evaluates the rule; None: not model-based."
    )

    @field_validator("guard_types")
    @classmethod
    def _as_set(cls, value: tuple[GuardType, ...]) -> tuple[GuardType, ...]:
        """A set in meaning; one sorted spelling keeps the hash independent of input order."""
        return tuple(sorted(set(value)))


class ProbeConfig(_Document):
    """A selected probe and the rules enabled in it (all of them when the selection named
    none: ``build_config`` has already expanded that)."""

    probe_id: UUID
    probe_name: Name
    rules: tuple[RuleConfig, ...] = Field(min_length=1)

    @field_validator("rules")
    @classmethod
    def _sorted_rules(cls, value: tuple[RuleConfig, ...]) -> tuple[RuleConfig, ...]:
        _unique([rule.rule_id for rule in value], "rule ids")
        return tuple(sorted(value, key=lambda rule: str(rule.rule_id)))


class ModelEndpoint(_Document):
    """Where the gateway sends a model-based rule's check."""

    endpoint_id: UUID
    url: Name

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """Checked, never rewritten: the URL is stored exactly as the cluster reported it."""
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL with a host: {value!r}")
        if any(char.isspace() for char in value):
            raise ValueError(f"URL contains whitespace: {value!r}")
        return value


class GuardrailConfig(_Document):
    """The content of one guardrail profile's config, as ``build_config`` outputs it.

    Probes, rules and target endpoints are sets in meaning and are kept sorted by id, so
    the canonical bytes depend on the content only.
    """

    profile_id: UUID
    profile_name: Name
    project_id: UUID
    deployment_id: UUID
    target_endpoint_ids: tuple[UUID, ...] = Field(
        default=(), description="Endpoints the deployment guards; empty: standalone."
    )
    probes: tuple[ProbeConfig, ...] = Field(min_length=1)
    endpoints: dict[Name, ModelEndpoint] = Field(
        default_factory=dict, description="Model URI -> the endpoint serving that model."
    )

    @field_validator("target_endpoint_ids")
    @classmethod
    def _sorted_targets(cls, value: tuple[UUID, ...]) -> tuple[UUID, ...]:
        _unique(list(value), "target endpoint ids")
        return tuple(sorted(value, key=str))

    @field_validator("probes")
    @classmethod
    def _sorted_probes(cls, value: tuple[ProbeConfig, ...]) -> tuple[ProbeConfig, ...]:
        _unique([probe.probe_id for probe in value], "probe ids")
        _unique([rule.rule_id for probe in value for rule in probe.rules], "rule ids")
        return tuple(sorted(value, key=lambda probe: str(probe.probe_id)))

    @model_validator(mode="after")
    def _endpoints_match_rules(self) -> GuardrailConfig:
        """A model-based rule without an endpoint could not be enforced, and an endpoint no
        rule uses means build_config and the rules disagree: both are build errors."""
        needed = {
            rule.model_uri
            for probe in self.probes
            for rule in probe.rules
            if rule.model_uri is not None
        }
        if missing := sorted(uri for uri in needed if uri not in self.endpoints):
            raise ValueError(f"no endpoint for the models of enabled rules: {missing}")
        if unused := sorted(set(self.endpoints) - needed):
            raise ValueError(f"endpoints for models no enabled rule uses: {unused}")
        return self

    def canonical_json(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json()).hexdigest()


class StoredConfig(_Document):
    """One version of a profile's config as stored in Redis and read by gateways.

    ``sha256`` is over ``config``'s canonical bytes; a document whose hash does not match
    is refused on read, so a hand-edited or damaged entry is never served.
    """

    version: int = Field(ge=1, description="Per profile, +1 for each distinct config.")
    sha256: str = Field(pattern=SHA256_HEX)
    generated_at: AwareDatetime = Field(description="When the store wrote this version.")
    config: GuardrailConfig

    @model_validator(mode="after")
    def _hash_matches(self) -> StoredConfig:
        if self.config.sha256() != self.sha256:
            raise ValueError("config does not match its sha256: the stored entry was altered")
        return self

    def to_json(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))
