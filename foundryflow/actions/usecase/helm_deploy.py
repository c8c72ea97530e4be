"""``usecase.helm_deploy``: put any allowed Helm chart on a cluster (seed 004, phase B).

The seed waits for a cluster job's completion event; here the cluster backend's install
returns when the release is ready (``--wait``) or failed, so the step's own outcome is the
event and the outputs are known when it completes. Rollback uninstalls the release.
"""

from __future__ import annotations

from typing import Self

from foundryflow.actions import Action, ActionContext, ActionMeta, ActionOutputs, ActionParams
from foundryflow.usecase.releases import (
    ChartRelease,
    InstalledRelease,
    install_chart,
    uninstall_chart,
)


class HelmDeployParams(ActionParams, ChartRelease):
    pass


class HelmDeployOutputs(ActionOutputs):
    job_id: str
    namespace: str
    release_name: str
    endpoint_url: str
    services: list[str]
    status: str

    @classmethod
    def of(cls, installed: InstalledRelease, **more: str) -> Self:
        """The outputs of an install that went through (the seed's ``status: running``)."""
        return cls(
            job_id=installed.job_id,
            namespace=installed.namespace,
            release_name=installed.release_name,
            endpoint_url=installed.endpoint_url,
            services=installed.services,
            status="running",
            **more,
        )


class HelmDeploy(Action[HelmDeployParams, HelmDeployOutputs]):
    meta = ActionMeta(
        name="usecase.helm_deploy",
        description="Deploy a Helm chart (OCI, HTTPS repository or charts/<name>) and report "
        "its endpoint.",
        timeout_seconds=3600,
        # upgrade --install of a fixed release name: a retry converges on the same release
        idempotent=True,
    )
    Params = HelmDeployParams
    Outputs = HelmDeployOutputs

    def run(self, ctx: ActionContext, params: HelmDeployParams) -> HelmDeployOutputs:
        installed = install_chart(params)
        ctx.log.info(
            "release %s (%s) revision %d in %s: %s",
            installed.release_name,
            installed.chart,
            installed.revision,
            installed.namespace,
            installed.endpoint_url or "no endpoint",
        )
        return HelmDeployOutputs.of(installed)

    def compensate(
        self, ctx: ActionContext, params: HelmDeployParams, outputs: HelmDeployOutputs
    ) -> None:
        uninstall_chart(params.cluster, outputs.release_name, outputs.namespace)
        ctx.log.info("uninstalled release %s from %s", outputs.release_name, outputs.namespace)
