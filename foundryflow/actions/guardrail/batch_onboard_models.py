"""``guardrail.batch_onboard_models``: put the models the rules need into the registry.

Each model's ``config.json`` comes from a local directory, the configs bundled with the
package or the Hugging Face Hub (:mod:`foundryflow.registry.config_sources`); the Hub token
is the secret of the credential's Airflow connection, and is sent to the Hub only when the
connection is a Hugging Face one. Seed rule: partial success in a batch is failure, so
either every model is recorded or the step fails naming each failed model and nothing is
written. Idempotent: a model already in the registry is reported, not fetched again.
"""

from __future__ import annotations

from typing import Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from foundryflow.actions import (
    Action,
    ActionContext,
    ActionMeta,
    ActionOutputs,
    ActionParams,
    ExecutionMode,
)
from foundryflow.actions.guardrail._plan import non_empty
from foundryflow.actions.guardrail.validate_credential import read_credential
from foundryflow.registry.config_sources import split_model_id
from foundryflow.registry.onboard import onboard_models_all_or_nothing
from foundryflow.store.catalog import Model
from foundryflow.store.guardrail import CONN_ID_PATTERN, ProviderType

ONBOARDABLE = frozenset({ProviderType.HUGGINGFACE, ProviderType.LOCAL})
"""Providers whose models we serve ourselves; the others' models are their APIs."""


class ModelToOnboard(BaseModel):
    """Seed: ``{rule_id, model_uri, model_provider_type}``; ``model_id`` (the registry's) may
    stand for the uri of a model that is already in the registry."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    rule_id: UUID | None = None
    model_uri: str | None = None
    model_id: int | None = Field(default=None, gt=0)
    model_provider_type: ProviderType = ProviderType.HUGGINGFACE

    @model_validator(mode="after")
    def _named(self) -> Self:
        if self.model_uri is None and self.model_id is None:
            raise ValueError("give model_uri (org/name on the Hugging Face Hub) or model_id")
        if self.model_uri is not None:
            split_model_id(self.model_uri)
        if self.model_provider_type not in ONBOARDABLE:
            raise ValueError(
                f"{self.model_uri or self.model_id}: {self.model_provider_type.value} models are "
                "served by the provider, there is nothing to onboard"
            )
        return self


class OnboardedModelResult(BaseModel):
    """One model of the batch as the registry now holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model_uri: str
    model_id: int
    model_version_id: int
    created: bool
    """False when the model was in the registry already."""
    dtype: str
    source: str | None
    """Where its config.json came from (local, bundled, hub); None when not fetched."""
    rule_ids: list[UUID]
    """The rules of the request that named it."""


class BatchOnboardModelsParams(ActionParams):
    models: list[ModelToOnboard]
    credential_id: str = Field(pattern=CONN_ID_PATTERN, description="Airflow connection id.")
    user_id: str = Field(min_length=1, max_length=100)
    callback_topics: list[str] | None = Field(
        default=None,
        description="Accepted as the seed passes it; progress events go to the run's topics, "
        "which the pipeline sets from the same parameter.",
    )

    @field_validator("models")
    @classmethod
    def _some(cls, models: list[ModelToOnboard]) -> list[ModelToOnboard]:
        non_empty(models, "models")
        return models


class BatchOnboardModelsOutputs(ActionOutputs):
    results: list[OnboardedModelResult]


class BatchOnboardModels(Action[BatchOnboardModelsParams, BatchOnboardModelsOutputs]):
    meta = ActionMeta(
        name="guardrail.batch_onboard_models",
        description="Record every model's architecture in the registry (config.json from a "
        "local directory, the bundled catalog or the Hub), all of them or none.",
        execution_mode=ExecutionMode.EVENT_DRIVEN,
        idempotent=True,
    )
    Params = BatchOnboardModelsParams
    Outputs = BatchOnboardModelsOutputs

    def run(
        self, ctx: ActionContext, params: BatchOnboardModelsParams
    ) -> BatchOnboardModelsOutputs:
        credential = read_credential(params.credential_id)
        token = credential.secret if credential.is_huggingface else None
        with ctx.session_factory() as session, session.begin():
            uris = _uris(session, params.models)
            result = onboard_models_all_or_nothing(session, uris.values(), token=token)
        rules: dict[str, list[UUID]] = {uri: [] for uri in uris.values()}
        for index, uri in uris.items():
            rule_id = params.models[index].rule_id
            if rule_id is not None and rule_id not in rules[uri]:
                rules[uri].append(rule_id)
        results = [
            OnboardedModelResult(
                model_uri=model.uri,
                model_id=model.model_id,
                model_version_id=model.model_version_id,
                created=model.created,
                dtype=model.dtype,
                source=model.source,
                rule_ids=rules[model.uri],
            )
            for model in result.onboarded
        ]
        for item in results:
            ctx.publish("model_onboarded", {"model_uri": item.model_uri, "model_id": item.model_id})
        ctx.log.info(
            "onboarded for %s: %s",
            params.user_id,
            ", ".join(f"{r.model_uri} ({'new' if r.created else 'known'})" for r in results),
        )
        return BatchOnboardModelsOutputs(results=results)


def _uris(session: Session, models: list[ModelToOnboard]) -> dict[int, str]:
    """Request index -> Hub uri; a ``model_id`` must be in the registry (and match its uri)."""
    ids = {m.model_id for m in models if m.model_id is not None}
    known = dict(session.execute(select(Model.id, Model.uri).where(Model.id.in_(ids))).all())
    problems: list[str] = []
    uris: dict[int, str] = {}
    for index, model in enumerate(models):
        uri = model.model_uri
        if model.model_id is not None:
            found = known.get(model.model_id)
            if found is None:
                problems.append(f"model_id {model.model_id} is not in the registry")
            elif uri is not None and uri != found:
                problems.append(f"model_id {model.model_id} is {found}, not {uri}")
            uri = found
        if uri is not None:
            uris[index] = uri
    if problems:
        raise LookupError("; ".join(problems))
    return uris
