"""``usecase.notification``: tell the user the use case is up (seed 004's last step).

The message goes to the run's callback topics (Redis Streams a UI or a chat bridge reads)
and onto the deployment record, where ``foundryflow usecase status`` shows it.
"""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import Field

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.store.usecase import UseCaseDeployment


class NotificationParams(ActionParams):
    deployment_id: UUID
    level: Literal["info", "success", "warning", "error"] = "info"
    message: str = Field(min_length=1, max_length=2000)
    endpoints: dict[str, str | None] = Field(default_factory=dict)


class NotificationOutputs(ActionOutputs):
    level: str
    message: str


class Notification(Action[NotificationParams, NotificationOutputs]):
    meta = ActionMeta(
        name="usecase.notification",
        description="Send the deployment's outcome to its callback topics and record it.",
        idempotent=True,
    )
    Params = NotificationParams
    Outputs = NotificationOutputs

    def run(self, ctx: ActionContext, params: NotificationParams) -> NotificationOutputs:
        with ctx.session_factory() as session, session.begin():
            record = session.get(UseCaseDeployment, params.deployment_id, with_for_update=True)
            if record is None:
                raise LookupError(f"no use-case deployment {params.deployment_id}")
            record.message = params.message
        ctx.publish(
            "usecase.notification",
            {
                "deployment_id": str(params.deployment_id),
                "level": params.level,
                "message": params.message,
                "endpoints": {k: v for k, v in params.endpoints.items() if v},
            },
        )
        ctx.log.info("%s: %s", params.level, params.message)
        return NotificationOutputs(level=params.level, message=params.message)
