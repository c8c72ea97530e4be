"""``usecase.deployment_create``: deploy the component a user selected for a slot.

The seed hands models and vector databases to cluster jobs of their own kind; here every
selectable component is a catalog entry, a chart with values, so a model, a vector database
and a memory store are deployed the same way as a ``helm`` component. The step carries the
entries it may choose from (pinned in the spec when the run began), so a run never depends
on the catalog file changing under it.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionParams
from foundryflow.actions.usecase.helm_deploy import HelmDeployOutputs
from foundryflow.usecase.catalog import CatalogEntry
from foundryflow.usecase.releases import ChartRelease, install_chart, uninstall_chart
from foundryflow.usecase.template import ComponentType


class DeploymentCreateParams(ActionParams):
    cluster: str = Field(min_length=1)
    release_name: str
    namespace: str
    component_type: ComponentType
    selected: str
    choices: dict[str, CatalogEntry] = Field(min_length=1)
    timeout_seconds: int = Field(default=600, ge=1, le=3600)

    @model_validator(mode="after")
    def _known_choice(self) -> DeploymentCreateParams:
        if self.selected not in self.choices:
            raise ValueError(
                f"{self.selected!r} is not one of the compatible components {sorted(self.choices)}"
            )
        if self.component_type not in self.choices[self.selected].types:
            raise ValueError(f"{self.selected!r} is not a {self.component_type}")
        return self

    def release(self) -> ChartRelease:
        entry = self.choices[self.selected]
        return ChartRelease(
            cluster=self.cluster,
            release_name=self.release_name,
            namespace=self.namespace,
            chart_ref=entry.chart,
            chart_version=entry.version,
            values=entry.values,
            timeout_seconds=self.timeout_seconds,
        )


class DeploymentCreateOutputs(HelmDeployOutputs):
    selected: str


class DeploymentCreate(Action[DeploymentCreateParams, DeploymentCreateOutputs]):
    meta = ActionMeta(
        name="usecase.deployment_create",
        description="Deploy the selected model, vector database or memory store of a use case.",
        timeout_seconds=3600,
        idempotent=True,
    )
    Params = DeploymentCreateParams
    Outputs = DeploymentCreateOutputs

    def run(self, ctx: ActionContext, params: DeploymentCreateParams) -> DeploymentCreateOutputs:
        installed = install_chart(params.release())
        ctx.log.info(
            "%s %s: release %s in %s, %s",
            params.component_type,
            params.selected,
            installed.release_name,
            installed.namespace,
            installed.endpoint_url or "no endpoint",
        )
        return DeploymentCreateOutputs.of(installed, selected=params.selected)

    def compensate(
        self, ctx: ActionContext, params: DeploymentCreateParams, outputs: DeploymentCreateOutputs
    ) -> None:
        uninstall_chart(params.cluster, outputs.release_name, outputs.namespace)
