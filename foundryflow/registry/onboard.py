"""Onboarding: read each model's config.json, parse it, record it in the catalog.

Two entry points, one per failure policy:

- :func:`onboard_models`, best effort: each model is written in its own SAVEPOINT, so one
  failure spoils nothing else, and the result lists what succeeded and what failed;
- :func:`onboard_models_all_or_nothing`, the seed's rule ("partial success in a batch is
  failure"): if any model fails, nothing of the call is written and :class:`OnboardingError`
  lists every failed model with its reason.

Both are idempotent. A model already in the catalog (onboarded before, or seeded) with a
version is reported with ``created=False`` and is not fetched again, so a rerun makes no Hub
calls for it and does not change its row. All configs are fetched before the first write,
so no row lock is held across network calls.

The caller owns the transaction (``with session_scope() as session: ...``): these
functions flush, and commit only their savepoints.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from pydantic import BaseModel, SecretStr
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from foundryflow.registry.architecture import Architecture, ArchitectureError, parse_config
from foundryflow.registry.config_sources import (
    ConfigSource,
    ModelConfigError,
    fetch_config,
    resolve_sources,
    split_model_id,
)
from foundryflow.store.catalog import Model, ModelVersion

log = logging.getLogger(__name__)

VERSION: Final = "1"
"""The version label of an onboarded model, as the benchmark seed writes it."""

Sources = str | Sequence[str | ConfigSource] | None
"""A policy (``"local,bundled,hub"``), names and/or source objects, or None for the default."""


class OnboardedModel(BaseModel):
    uri: str
    model_id: int
    """``models.id``: what ``update_rule_model_ids`` writes into the rules."""
    model_version_id: int
    created: bool
    """False when the model was already in the catalog."""
    dtype: str
    source: str | None
    """Where the config came from (``local``, ``bundled``, ``hub``); None if not fetched."""


class FailedModel(NamedTuple):
    uri: str
    error: str


class OnboardResult(BaseModel):
    onboarded: list[OnboardedModel] = []
    failed: list[FailedModel] = []


class OnboardingError(Exception):
    """An all-or-nothing batch failed: nothing was written; ``failed`` says which and why."""

    def __init__(self, failed: Sequence[FailedModel], total: int) -> None:
        self.failed = list(failed)
        lines = "\n".join(
            f"- {item.uri}: {textwrap.indent(item.error, '    ').lstrip()}" for item in failed
        )
        super().__init__(
            f"onboarding failed for {len(failed)} of {total} models; nothing was written:\n{lines}"
        )


@dataclass(frozen=True)
class _ToWrite:
    uri: str
    architecture: Architecture
    source: str


@dataclass
class _Plan:
    """The outcome of the read-only phase, per uri in the caller's order."""

    uris: list[str]
    existing: dict[str, OnboardedModel]
    to_write: dict[str, _ToWrite]
    failed: dict[str, str]


def _unique(model_ids: Iterable[str]) -> list[str]:
    """Each id once, in first-seen order: a batch naming a model twice onboards it once."""
    return list(dict.fromkeys(model_ids))


def _scrub(message: str, token: str | SecretStr | None) -> str:
    """Belt and braces for custom sources: the token never reaches a result or an error."""
    secret = token.get_secret_value() if isinstance(token, SecretStr) else token
    return message.replace(secret, "**********") if secret else message


def _existing(session: Session, uris: Sequence[str]) -> dict[str, OnboardedModel]:
    """Catalog models among ``uris`` that have a version (their first one is reported)."""
    rows = session.execute(
        select(Model.uri, Model.id, ModelVersion.id, ModelVersion.dtype)
        .join(ModelVersion, ModelVersion.model_id == Model.id)
        .where(Model.uri.in_(uris))
        .order_by(ModelVersion.id.desc())
    ).all()
    return {
        uri: OnboardedModel(
            uri=uri,
            model_id=model_id,
            model_version_id=version_id,
            created=False,
            dtype=dtype,
            source=None,
        )
        for uri, model_id, version_id, dtype in rows  # descending: the first version wins
    }


def _plan(
    session: Session,
    model_ids: Iterable[str],
    sources: Sequence[ConfigSource],
    token: str | SecretStr | None,
) -> _Plan:
    plan = _Plan(uris=_unique(model_ids), existing={}, to_write={}, failed={})
    valid: list[str] = []
    for uri in plan.uris:
        try:
            split_model_id(uri)
            valid.append(uri)
        except ModelConfigError as exc:
            plan.failed[uri] = str(exc)
    plan.existing = _existing(session, valid) if valid else {}
    for uri in valid:
        if uri in plan.existing:
            continue
        try:
            fetched = fetch_config(uri, sources)
            plan.to_write[uri] = _ToWrite(uri, parse_config(fetched.config), fetched.source)
        except (ModelConfigError, ArchitectureError) as exc:
            plan.failed[uri] = str(exc)
    for uri, error in plan.failed.items():
        plan.failed[uri] = _scrub(error, token)
        log.warning("cannot onboard %s: %s", uri, plan.failed[uri])
    return plan


def _record(session: Session, item: _ToWrite) -> OnboardedModel:
    """Insert the model and its version unless present (a concurrent onboarder may have won
    the race since the plan was made: ON CONFLICT waits for it, then reports its row)."""
    arch = item.architecture
    model_id = session.scalar(
        insert(Model)
        .values(
            uri=item.uri,
            family=arch.model_type,
            parameter_count=arch.parameter_count,
            num_layers=arch.num_layers,
            hidden_size=arch.hidden_size,
            num_attention_heads=arch.num_attention_heads,
            num_kv_heads=arch.num_kv_heads,
            max_context=arch.max_context,
        )
        .on_conflict_do_nothing(index_elements=[Model.uri])
        .returning(Model.id)
    )
    created = model_id is not None
    if model_id is None:
        model_id = session.scalars(select(Model.id).where(Model.uri == item.uri)).one()
    version = {"model_id": model_id, "version": VERSION, "dtype": arch.dtype}
    version_id = session.scalar(
        insert(ModelVersion).values(version).on_conflict_do_nothing().returning(ModelVersion.id)
    )
    if version_id is None:
        version_id = session.scalars(select(ModelVersion.id).filter_by(**version)).one()
    log.info("onboarded %s as model %d (%s, from %s)", item.uri, model_id, arch.dtype, item.source)
    return OnboardedModel(
        uri=item.uri,
        model_id=model_id,
        model_version_id=version_id,
        created=created,
        dtype=arch.dtype,
        source=item.source,
    )


def _write(session: Session, plan: _Plan, token: str | SecretStr | None) -> OnboardResult:
    result = OnboardResult()
    for uri in plan.uris:
        if uri in plan.failed:
            result.failed.append(FailedModel(uri, plan.failed[uri]))
        elif uri in plan.existing:
            result.onboarded.append(plan.existing[uri])
        else:
            try:
                with session.begin_nested():
                    result.onboarded.append(_record(session, plan.to_write[uri]))
            except SQLAlchemyError as exc:
                reason = getattr(exc, "orig", None) or exc
                error = _scrub(f"database: {type(exc).__name__}: {reason}", token)
                log.warning("cannot onboard %s: %s", uri, error)
                result.failed.append(FailedModel(uri, error))
    return result


def onboard_models(
    session: Session,
    model_ids: Iterable[str],
    token: str | SecretStr | None = None,
    sources: Sources = None,
) -> OnboardResult:
    """Onboard each model on its own: failures are listed, the others are written.

    ``token`` is the Hub token for gated models (sent only to the Hub source built from a
    ``"hub"`` name); ``sources`` is the lookup policy (see :func:`resolve_sources`).
    """
    plan = _plan(session, model_ids, resolve_sources(sources, token=token), token)
    return _write(session, plan, token)


def onboard_models_all_or_nothing(
    session: Session,
    model_ids: Iterable[str],
    token: str | SecretStr | None = None,
    sources: Sources = None,
) -> OnboardResult:
    """Onboard every model or none: raises :class:`OnboardingError` listing every failure.

    The writes run in one SAVEPOINT that is rolled back on any failure, so nothing of this
    call survives even if the caller goes on to commit its transaction.
    """
    plan = _plan(session, model_ids, resolve_sources(sources, token=token), token)
    if plan.failed:
        raise OnboardingError(
            [FailedModel(uri, plan.failed[uri]) for uri in plan.uris if uri in plan.failed],
            len(plan.uris),
        )
    savepoint = session.begin_nested()
    try:
        result = _write(session, plan, token)
    except BaseException:
        savepoint.rollback()
        raise
    if result.failed:
        savepoint.rollback()
        raise OnboardingError(result.failed, len(plan.uris))
    savepoint.commit()
    return result
