"""``guardrail.sync_redis``: publish the built config to gateways (seed 000, step 12).

:meth:`GuardrailConfigStore.write` validates the document, then replaces the profile's config
in one Redis transaction with the next version: readers see the old config or the new one,
never half of either. Writing the config that is already current changes nothing and returns
its version, so the step is idempotent.

An entry the store cannot read (damaged, or edited by hand) is not overwritten: its version is
unknown, so the next one could not be numbered. The step fails and says so.
"""

from __future__ import annotations

from uuid import UUID

from pydantic import Field, ValidationError

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.actions.guardrail._deploy import config_store
from foundryflow.configsync import GuardrailConfig


class SyncRedisParams(ActionParams):
    profile_id: UUID
    config: GuardrailConfig


class SyncRedisOutputs(ActionOutputs):
    key: str
    version: int = Field(ge=1)
    sha256: str


class SyncRedisError(RuntimeError):
    """The profile's current entry in Redis cannot be read, so it is not replaced."""


class SyncRedis(Action[SyncRedisParams, SyncRedisOutputs]):
    meta = ActionMeta(
        name="guardrail.sync_redis",
        description="Write the guardrail config to Redis atomically, with a version.",
        idempotent=True,
    )
    Params = SyncRedisParams
    Outputs = SyncRedisOutputs

    def run(self, ctx: ActionContext, params: SyncRedisParams) -> SyncRedisOutputs:
        store = config_store()
        try:
            written = store.write(params.profile_id, params.config)
        except ValidationError as exc:  # only the stored entry can fail: params were validated
            first = exc.errors()[0]
            raise SyncRedisError(
                f"{store.key(params.profile_id)} holds an entry that is not a valid stored "
                f"config (damaged or edited by hand: {first['msg']}); refusing to overwrite "
                "it without knowing its version: inspect it and delete it"
            ) from exc
        ctx.log.info(
            "%s: version %d (%s)",
            written.key,
            written.version,
            "written" if written.changed else "unchanged",
        )
        return SyncRedisOutputs(key=written.key, version=written.version, sha256=written.sha256)
