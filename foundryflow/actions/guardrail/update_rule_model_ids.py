"""``guardrail.update_rule_model_ids``: link the rules to the models just onboarded.

Every rule whose ``model_uri`` is one of the onboarded models gets that model's registry id,
whichever probe it belongs to: the model serves them all. Idempotent (a linked rule is left
as it is, and counted only when it changes); kept on rollback, as the seed says, because the
model stays onboarded whatever happens to the deployment.
"""

from __future__ import annotations

from pydantic import field_validator
from sqlalchemy import select, update

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.actions.guardrail._plan import non_empty
from foundryflow.actions.guardrail.batch_onboard_models import OnboardedModelResult
from foundryflow.store.catalog import Model
from foundryflow.store.guardrail import GuardrailRule


class UpdateRuleModelIdsParams(ActionParams):
    onboard_results: list[OnboardedModelResult]

    @field_validator("onboard_results")
    @classmethod
    def _some(cls, results: list[OnboardedModelResult]) -> list[OnboardedModelResult]:
        non_empty(results, "onboard_results")
        return results


class UpdateRuleModelIdsOutputs(ActionOutputs):
    success: bool
    updated: int
    """Rules whose ``model_id`` changed."""


class UpdateRuleModelIds(Action[UpdateRuleModelIdsParams, UpdateRuleModelIdsOutputs]):
    meta = ActionMeta(
        name="guardrail.update_rule_model_ids",
        description="Set model_id on every rule whose model_uri was onboarded.",
        idempotent=True,
    )
    Params = UpdateRuleModelIdsParams
    Outputs = UpdateRuleModelIdsOutputs

    def run(
        self, ctx: ActionContext, params: UpdateRuleModelIdsParams
    ) -> UpdateRuleModelIdsOutputs:
        wanted = {r.model_id: r.model_uri for r in params.onboard_results}
        with ctx.session_factory() as session, session.begin():
            registry = dict(
                session.execute(select(Model.id, Model.uri).where(Model.id.in_(wanted))).all()
            )
            wrong = [
                f"model {model_id} ({uri}) is "
                + (f"{registry[model_id]} in the registry" if model_id in registry else "unknown")
                for model_id, uri in wanted.items()
                if registry.get(model_id) != uri
            ]
            if wrong:
                raise LookupError("onboard_results do not match the registry: " + "; ".join(wrong))
            updated = 0
            for model_id, uri in wanted.items():
                changed = session.execute(
                    update(GuardrailRule)
                    .where(
                        GuardrailRule.model_uri == uri,
                        GuardrailRule.model_id.is_distinct_from(model_id),
                    )
                    .values(model_id=model_id)
                    .returning(GuardrailRule.id)
                )
                updated += len(changed.all())
        ctx.log.info("linked %d rule(s) to %d model(s)", updated, len(wanted))
        return UpdateRuleModelIdsOutputs(success=True, updated=updated)
