"""A local runner for the Argo WorkflowTemplates we render — test-only.

There is no Kubernetes or Argo here, so this walks a rendered template the way Argo's
DAG controller does for the subset of features foundryflow emits (DAG tasks with
``dependencies``, ``withParam`` over a task's stdout result, task ``arguments`` into
``inputs.parameters``, ``continueOn``, fail-fast, an ``onExit`` DAG seeing
``{{workflow.status}}``) and runs every container's command as a real subprocess, the
way a pod would, with the Secret-backed env resolved to the test services.

It exists to prove that the YAML and the CLI agree: the same documents that pass the
official schema are executed end to end against PostgreSQL.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

VARIABLE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


@dataclass
class PodRun:
    task: str
    args: list[str]
    returncode: int
    stdout: str
    stderr: str


@dataclass
class WorkflowRun:
    name: str
    uid: str
    status: str = "Running"
    pods: list[PodRun] = field(default_factory=list)

    def pod(self, task: str) -> PodRun:
        return next(p for p in self.pods if p.task == task)


class LocalArgoRunner:
    def __init__(self, secrets: dict[str, dict[str, str]], env: dict[str, str]) -> None:
        self.secrets = secrets
        self.env = env

    def submit(
        self, template: dict[str, Any], parameters: dict[str, str] | None = None
    ) -> WorkflowRun:
        """``argo submit --from workflowtemplate/<name> -p k=v`` (or ``argo submit`` of a
        Workflow), run to completion."""
        spec = template["spec"]
        args = {p["name"]: p.get("value") for p in spec.get("arguments", {}).get("parameters", [])}
        for key, value in (parameters or {}).items():
            if key not in args:
                raise ValueError(f"unknown parameter {key}")
            args[key] = value
        missing = [k for k, v in args.items() if v is None]
        if missing:
            raise ValueError(f"parameters not supplied: {missing}")
        metadata = template["metadata"]  # a WorkflowTemplate's name, a Workflow's generateName
        base = metadata.get("name") or metadata["generateName"].rstrip("-")
        run = WorkflowRun(name=f"{base}-{uuid.uuid4().hex[:5]}", uid=str(uuid.uuid4()))
        templates = {t["name"]: t for t in spec["templates"]}
        scope = {"workflow.name": run.name, "workflow.uid": run.uid}
        scope.update({f"workflow.parameters.{k}": v for k, v in args.items()})
        ok = self._dag(run, templates, templates[spec["entrypoint"]], scope)
        run.status = "Succeeded" if ok else "Failed"
        if spec.get("onExit"):
            exit_ok = self._dag(
                run, templates, templates[spec["onExit"]], {**scope, "workflow.status": run.status}
            )
            if not exit_ok:
                run.status = "Failed"
        return run

    def _dag(
        self,
        run: WorkflowRun,
        templates: dict[str, Any],
        dag: dict[str, Any],
        scope: dict[str, str],
    ) -> bool:
        tasks = {t["name"]: t for t in dag["dag"]["tasks"]}
        state: dict[str, str] = {}
        results: dict[str, str] = {}
        failed = False
        while len(state) < len(tasks):
            ready = [
                t
                for name, t in tasks.items()
                if name not in state and all(d in state for d in t.get("dependencies", []))
            ]
            for task in ready:
                name = task["name"]
                deps_ok = all(
                    state[d] in ("Succeeded", "Skipped", "Continued")
                    for d in task.get("dependencies", [])
                )
                # Argo DAGs fail fast: after a failure no new task starts unless it continues on.
                if not deps_ok or (failed and "continueOn" not in task):
                    state[name] = "Omitted"
                    continue
                local = {**scope, **{f"tasks.{k}.outputs.result": v for k, v in results.items()}}
                items: list[Any] = [None]
                if "withParam" in task:
                    items = json.loads(self._substitute(task["withParam"], local))
                    if not items:
                        state[name] = "Skipped"
                        continue
                pod_scopes = []
                for item in items:
                    item_text = item if isinstance(item, str) else json.dumps(item)
                    inputs = {
                        f"inputs.parameters.{p['name']}": self._substitute(
                            p["value"], {**local, "item": item_text}
                        )
                        for p in task.get("arguments", {}).get("parameters", [])
                    }
                    pod_scopes.append({**local, **inputs})
                # Argo starts the pods of a fan-out at once; so do we, so workers really race.
                with ThreadPoolExecutor(max_workers=len(pod_scopes)) as pool:
                    template = templates[task["template"]]
                    futures = [pool.submit(self._pod, run, name, template, p) for p in pod_scopes]
                    outcomes = [future.result() for future in futures]
                if all(p.returncode == 0 for p in outcomes):
                    state[name] = "Succeeded"
                    results[name] = outcomes[-1].stdout.strip()
                elif task.get("continueOn", {}).get("failed"):
                    state[name] = "Continued"
                else:
                    state[name] = "Failed"
                    failed = True
        return not failed

    def _pod(
        self, run: WorkflowRun, task: str, template: dict[str, Any], scope: dict[str, str]
    ) -> PodRun:
        container = template["container"]
        assert container["command"] == ["foundryflow"]
        args = [self._substitute(a, scope) for a in container["args"]]
        env = dict(self.env)
        for source in container.get("envFrom", []):
            secret = source["secretRef"]
            if secret["name"] in self.secrets:
                env.update(self.secrets[secret["name"]])
            elif not secret.get("optional"):
                raise KeyError(f"secret {secret['name']} does not exist")
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = self._substitute(var["value"], scope)
            else:
                ref = var["valueFrom"]["secretKeyRef"]
                env[var["name"]] = self.secrets[ref["name"]][ref["key"]]
        proc = subprocess.run(
            [sys.executable, "-m", "foundryflow.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        pod = PodRun(task, args, proc.returncode, proc.stdout, proc.stderr)
        run.pods.append(pod)
        return pod

    @staticmethod
    def _substitute(text: str, scope: dict[str, str]) -> str:
        def replace(match: re.Match[str]) -> str:
            key = match.group(1)
            if key not in scope:
                raise KeyError(f"unresolved Argo variable {{{{{key}}}}}")
            return scope[key]

        return VARIABLE.sub(replace, text)
