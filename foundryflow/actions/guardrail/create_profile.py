"""``guardrail.create_profile``: the profile of step 11 with the probe selections of step 3.

The selection is checked with the rule-selection rules of seed 000
(:func:`foundryflow.guardrail.status.select_rules`) before anything is written: unknown probes
or rules, a rule of another probe or a probe whose selected rules inspect none of the chosen
guard types fail the step with every problem listed. Not idempotent: a second run would find
the profile name taken in the project.
"""

from __future__ import annotations

from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.actions.guardrail._deploy import Override, resolve
from foundryflow.guardrail.status import (
    ProbeSelection,
    RuleSelectionError,
    load_rule_catalog,
    select_rules,
)
from foundryflow.store.guardrail import (
    GuardrailProfile,
    GuardrailProfileProbe,
    GuardrailProfileRule,
    GuardrailRule,
    GuardType,
)


class ProfileConfig(BaseModel):
    """Profile settings of step 11: the defaults every selected rule starts from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    description: str | None = None
    guard_types: list[GuardType] = Field(min_length=1)
    severity_threshold: float = Field(ge=0, le=1)


class CreateProfileParams(ActionParams):
    config: ProfileConfig
    project_id: UUID
    probe_selections: list[ProbeSelection]
    user_id: str = Field(min_length=1, max_length=100)


class CreateProfileOutputs(ActionOutputs):
    profile_id: UUID


class CreateProfile(Action[CreateProfileParams, CreateProfileOutputs]):
    meta = ActionMeta(
        name="guardrail.create_profile",
        description="Create the guardrail profile with its probe and rule selections.",
    )
    Params = CreateProfileParams
    Outputs = CreateProfileOutputs

    def run(self, ctx: ActionContext, params: CreateProfileParams) -> CreateProfileOutputs:
        with ctx.session_factory() as session, session.begin():
            _check(session, params)
            profile = GuardrailProfile(
                project_id=params.project_id,
                name=params.config.name,
                description=params.config.description,
                guard_types=[str(t) for t in params.config.guard_types],
                severity_threshold=params.config.severity_threshold,
                created_by=params.user_id,
                probe_selections=[_selection_row(s) for s in params.probe_selections],
            )
            session.add(profile)
            session.flush()
            ctx.log.info("created guardrail profile %s (%s)", profile.id, profile.name)
            return CreateProfileOutputs(profile_id=profile.id)


def _check(session: Session, params: CreateProfileParams) -> None:
    """Every reason to refuse the profile, at once, before a row is written."""
    selections = params.probe_selections
    enabled = select_rules(selections, load_rule_catalog(session, selections))
    rule_ids = [rule_id for ids in enabled.values() for rule_id in ids]
    inspects = dict(
        session.execute(
            select(GuardrailRule.id, GuardrailRule.guard_types).where(
                GuardrailRule.id.in_(rule_ids)
            )
        ).all()
    )
    problems = []
    for selection in selections:
        if not any(
            resolve(
                inspects[rule_id],
                params.config.severity_threshold,
                params.config.guard_types,
                _overrides(selection, rule_id),
            )[1]
            for rule_id in enabled[selection.id]
        ):
            chosen = selection.guard_types or params.config.guard_types
            problems.append(
                f"probe {selection.id}: none of its selected rules inspects "
                f"{' or '.join(map(str, chosen))}"
            )
    if problems:
        raise RuleSelectionError(problems)
    taken = session.scalar(
        select(GuardrailProfile.id).where(
            GuardrailProfile.project_id == params.project_id,
            GuardrailProfile.name == params.config.name,
        )
    )
    if taken is not None:
        raise ValueError(
            f"project {params.project_id} already has a guardrail profile named "
            f"{params.config.name!r} ({taken}); choose another name"
        )


def _overrides(selection: ProbeSelection, rule_id: UUID) -> list[Override]:
    """The probe's and, if the rule was picked with its own values, the rule's overrides."""
    levels = [Override(selection.severity_threshold, selection.guard_types)]
    picked = next((rule for rule in selection.rules or () if rule.id == rule_id), None)
    if picked is not None:
        levels.append(Override(picked.severity_threshold, picked.guard_types))
    return levels


def _selection_row(selection: ProbeSelection) -> GuardrailProfileProbe:
    """One probe selection; no rule rows means all rules of the probe (one spelling of it)."""
    return GuardrailProfileProbe(
        probe_id=selection.id,
        severity_threshold=selection.severity_threshold,
        guard_types=None
        if selection.guard_types is None
        else list(map(str, selection.guard_types)),
        rules=[
            GuardrailProfileRule(
                probe_id=selection.id,
                rule_id=rule.id,
                severity_threshold=rule.severity_threshold,
                guard_types=None if rule.guard_types is None else list(map(str, rule.guard_types)),
            )
            for rule in selection.rules or ()
        ],
    )
