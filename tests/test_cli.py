"""The ``foundryflow`` command line, for people and for Argo pods.

User-facing commands run in-process through typer's CliRunner (fast); the engine-facing
commands run as separate processes, exactly as an Argo pod runs them, so exit codes,
stdout/stderr separation and environment handling are the real thing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from foundryflow.cli import app
from foundryflow.config import REPO_ROOT
from foundryflow.store.db import session_scope
from foundryflow.store.models import Execution, StepRun

RESOURCE_PREFIX = "foundryflow-test:resource:"
WIDE = {"COLUMNS": "1000"}  # rich wraps at 80 columns otherwise


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env=WIDE)


def flat(text: str) -> str:
    return " ".join(text.split())


def pod_env(**extra: str) -> dict[str, str]:
    """The environment of a pod: the test services and pipelines, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOUNDRYFLOW_PARAM_")}
    return {**env, **WIDE, **extra}


def pod(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    """One ``foundryflow`` process, as an Argo pod runs it."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "foundryflow.cli", *args],
            env=env if env is not None else pod_env(),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{args} did not finish within {timeout} s\n"
            f"stdout:\n{_text(exc.stdout)}\nstderr:\n{_text(exc.stderr)}"
        )


def _text(data: bytes | str | None) -> str:
    """What a timed-out process wrote (bytes even with ``text=True``)."""
    return data.decode(errors="replace") if isinstance(data, bytes) else data or ""


def ok(proc: Any, code: int = 0) -> Any:
    assert proc.returncode == code, (
        f"{proc.args[3:]} exited {proc.returncode}, expected {code}\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    return proc


def execution_count(pipeline: str) -> int:
    with session_scope() as session:
        count = session.scalar(
            select(func.count()).select_from(Execution).where(Execution.pipeline == pipeline)
        )
        return count or 0


def show_json(execution_id: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = ok(pod("executions", "show", execution_id, "--json", env=env))
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------- help
GROUPS = {
    "db": ["upgrade", "downgrade", "current"],
    "executions": ["show", "list", "start", "rollback", "finish"],
    "step": ["run", "fanout"],
    "argo": ["render", "lint"],
    "pipelines": ["list"],
    "actions": ["list"],
    "usecase": ["validate", "render", "deploy", "status", "stop"],
    "pipeline": [
        "deploy",
        "list-deployments",
        "get-deployment",
        "update-deployment",
        "rollback-deployment",
        "delete-deployment",
        "deployment-history",
        "work",
    ],
}


def test_help_lists_every_command(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in ("up", "run", "validate", *GROUPS):
        assert f" {command} " in result.stdout, command
    for group, commands in GROUPS.items():
        result = runner.invoke(app, [group, "--help"])
        assert result.exit_code == 0, (group, result.output)
        for command in commands:
            assert f" {command} " in result.stdout, (group, command)


def test_no_arguments_shows_help(runner: CliRunner) -> None:
    result = runner.invoke(app, [])
    assert "validate" in result.output
    assert "executions" in result.output


# --------------------------------------------------------------------------- validate
def test_validate_all_specs(runner: CliRunner) -> None:
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    count = len(list((REPO_ROOT / "pipelines").glob("*.yaml")))
    count += len(list((REPO_ROOT / "tests" / "pipelines").glob("*.yaml")))
    assert f"{count} pipeline spec(s) valid" in result.stdout


def test_validate_reports_unimplemented_actions(runner: CliRunner, tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text(
        "name: broken\nsteps:\n  - {id: a, action: test.broken}\n  - {id: b, action: nope.x}\n"
    )
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 1
    problems = [flat(p) for p in result.stderr.split("✗")[1:]]
    assert any("step 'a'" in p and "not implemented" in p for p in problems), problems
    assert any("step 'b'" in p and "unknown action 'nope.x'" in p for p in problems), problems
    assert "problem(s)" in result.stderr


def test_validate_one_valid_file(runner: CliRunner) -> None:
    result = runner.invoke(app, ["validate", str(REPO_ROOT / "tests/pipelines/t-linear.yaml")])
    assert result.exit_code == 0, result.output
    assert "1 pipeline spec(s) valid" in result.stdout


def test_validate_unknown_action_lists_known_ones(runner: CliRunner, tmp_path: Path) -> None:
    spec = tmp_path / "t-typo.yaml"
    spec.write_text("name: t-typo\nsteps:\n  - {id: only, action: test.ecko, params: {value: 1}}\n")
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 1
    message = flat(result.stderr)
    assert str(spec) in message
    assert "step 'only'" in message
    assert "unknown action 'test.ecko'" in message
    assert "known actions:" in message
    assert "test.echo" in message and "test.add" in message


# --------------------------------------------------------------------------- Argo pod path
def test_argo_pod_path_fanout() -> None:
    execution_id = str(uuid.uuid4())
    run_id = f"wf-{uuid.uuid4().hex[:8]}"
    start = ok(
        pod(
            "executions",
            "start",
            "--pipeline",
            "t-fanout",
            "--engine",
            "argo",
            "--run-id",
            run_id,
            "--execution-id",
            execution_id,
            env=pod_env(FOUNDRYFLOW_PARAM_NUMBERS="[1,2]"),
        )
    )
    assert start.stdout.strip() == execution_id

    fan = ok(pod("step", "fanout", "--execution-id", execution_id, "--step", "square"))
    assert fan.stdout == "[0, 1]\n"  # Argo withParam reads stdout: nothing else may be there
    assert json.loads(fan.stdout) == [0, 1]

    for index in ("0", "1"):
        ok(pod("step", "run", "--execution-id", execution_id, "--step", "square", "--index", index))
    ok(pod("step", "run", "--execution-id", execution_id, "--step", "gather"))
    finish = ok(
        pod("executions", "finish", "--execution-id", execution_id, "--engine-status", "Succeeded")
    )
    assert "COMPLETED" in finish.stdout

    report = show_json(execution_id)
    assert report["id"] == execution_id
    assert report["engine"] == "argo"
    assert report["engine_run_id"] == run_id
    assert report["status"] == "COMPLETED"
    assert report["params"] == {"numbers": [1, 2]}
    assert report["outputs"] == {"squares": [1, 4]}
    square = next(s for s in report["steps"] if s["id"] == "square")
    assert (square["status"], square["items_total"], square["items_done"]) == ("COMPLETED", 2, 2)


def test_argo_pod_path_failure_and_rollback(redis_client: Any) -> None:
    execution_id = str(uuid.uuid4())
    env = pod_env(FOUNDRYFLOW_PARAM_FAIL="true", FOUNDRYFLOW_PARAM_CALLBACK_TOPICS="")
    ok(
        pod(
            "executions",
            "start",
            "--pipeline",
            "t-rollback",
            "--engine",
            "argo",
            "--run-id",
            f"wf-{uuid.uuid4().hex[:8]}",
            "--execution-id",
            execution_id,
            env=env,
        )
    )
    for step in ("make_a", "make_b"):
        ok(pod("step", "run", "--execution-id", execution_id, "--step", step))
    for name in ("a", "b"):
        assert redis_client.exists(f"{RESOURCE_PREFIX}{execution_id}:{name}") == 1

    explode = ok(pod("step", "run", "--execution-id", execution_id, "--step", "explode"), 1)
    assert "exploded on purpose" in explode.stderr

    rollback = ok(
        pod("executions", "rollback", "--execution-id", execution_id, "--engine-status", "Failed")
    )
    assert "make_b, make_a" in rollback.stdout
    ok(pod("step", "run", "--execution-id", execution_id, "--step", "cleanup"))
    finish = ok(
        pod("executions", "finish", "--execution-id", execution_id, "--engine-status", "Failed"), 1
    )
    assert "exploded on purpose" in finish.stderr

    for name in ("a", "b"):
        assert not redis_client.exists(f"{RESOURCE_PREFIX}{execution_id}:{name}")
    assert redis_client.lrange(f"foundryflow-test:resource-log:{execution_id}", 0, -1) == [
        "create a",
        "create b",
        "delete b",
        "delete a",
    ]
    report = show_json(execution_id)
    assert report["status"] == "FAILED"
    assert report["params"] == {"fail": True, "callback_topics": None}
    assert "exploded on purpose" in report["error"]
    assert report["rollback_status"] == "COMPLETED"
    assert {s["id"]: s["status"] for s in report["steps"]} == {
        "make_a": "COMPENSATED",
        "make_b": "COMPENSATED",
        "explode": "FAILED",
        "cleanup": "COMPLETED",
    }


HOSTILE = (
    "''' + \"$(touch {marker})\" + `touch {marker}` "
    "{{{{ ''.__class__ }}}} {{% raw %}} ; rm -rf /nope"
)


def test_hostile_param_travels_as_data(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "t-say.yaml").write_text(
        textwrap.dedent(
            """
            name: t-say
            parameters:
              - {name: message, type: string, required: true}
            steps:
              - id: say
                action: test.echo
                params: {value: "{{ params.message }}"}
            outputs:
              said: "{{ steps.say.outputs.value }}"
            """
        )
    )
    marker = tmp_path / "pwned"
    hostile = HOSTILE.format(marker=marker)
    assert "{{ ''.__class__ }}" in hostile and "$(touch" in hostile
    env = pod_env(
        FOUNDRYFLOW_PIPELINES_PATH=json.dumps([str(specs)]), FOUNDRYFLOW_PARAM_MESSAGE=hostile
    )
    execution_id = str(uuid.uuid4())
    ok(
        pod(
            "executions",
            "start",
            "--pipeline",
            "t-say",
            "--engine",
            "argo",
            "--run-id",
            "wf-hostile",
            "--execution-id",
            execution_id,
            env=env,
        )
    )
    ok(pod("step", "run", "--execution-id", execution_id, "--step", "say", env=env))
    ok(
        pod(
            "executions",
            "finish",
            "--execution-id",
            execution_id,
            "--engine-status",
            "Succeeded",
            env=env,
        )
    )

    report = show_json(execution_id, env)
    assert report["status"] == "COMPLETED"
    assert report["params"] == {"message": hostile}
    assert report["outputs"] == {"said": hostile}
    with session_scope() as session:
        row = session.scalars(
            select(StepRun).where(
                StepRun.execution_id == uuid.UUID(execution_id), StepRun.step_id == "say"
            )
        ).one()
        assert row.params == {"value": hostile}
        assert row.outputs == {"value": hostile}
    assert not marker.exists()
    assert not Path("/tmp/pwned").exists()


# --------------------------------------------------------------------------- bad input
def test_start_with_unparseable_param_writes_nothing(runner: CliRunner) -> None:
    before = execution_count("t-linear")
    result = runner.invoke(
        app,
        [
            "executions",
            "start",
            "--pipeline",
            "t-linear",
            "--engine",
            "argo",
            "--run-id",
            "wf-bad",
            "--execution-id",
            str(uuid.uuid4()),
        ],
        env={**WIDE, "FOUNDRYFLOW_PARAM_A": "abc"},
    )
    assert result.exit_code == 2, result.output
    assert "parameter 'a'" in result.stderr
    assert "'abc'" in result.stderr
    assert execution_count("t-linear") == before


def test_start_with_out_of_range_param_writes_nothing(runner: CliRunner) -> None:
    before = execution_count("t-linear")
    result = runner.invoke(
        app,
        [
            "executions",
            "start",
            "--pipeline",
            "t-linear",
            "--engine",
            "argo",
            "--run-id",
            "wf-big",
            "--params",
            '{"a": 5000, "colour": "red"}',
        ],
    )
    assert result.exit_code == 2, result.output
    message = flat(result.stderr)
    assert "a: Input should be less than or equal to 1000" in message
    assert "colour: unknown parameter" in message
    assert execution_count("t-linear") == before


def test_start_unknown_pipeline(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["executions", "start", "--pipeline", "nope", "--engine", "argo", "--run-id", "wf-x"]
    )
    assert result.exit_code == 2
    assert "no pipeline named 'nope'" in flat(result.stderr)
    assert "t-linear" in result.stderr


def test_step_run_rejects_bad_and_unknown_ids(runner: CliRunner) -> None:
    result = runner.invoke(app, ["step", "run", "--execution-id", "not-a-uuid", "--step", "first"])
    assert result.exit_code == 2
    assert "'not-a-uuid' is not an execution id (a UUID)" in flat(result.stderr)

    unknown = str(uuid.uuid4())
    result = runner.invoke(app, ["step", "run", "--execution-id", unknown, "--step", "first"])
    assert result.exit_code == 2
    assert f"execution {unknown} not found" in flat(result.stderr)

    result = runner.invoke(app, ["step", "fanout", "--execution-id", unknown, "--step", "square"])
    assert result.exit_code == 2
    assert "not found" in result.stderr
    assert result.stdout == ""


def test_show_unknown_execution(runner: CliRunner) -> None:
    unknown = str(uuid.uuid4())
    result = runner.invoke(app, ["executions", "show", unknown])
    assert result.exit_code == 1
    assert f"execution {unknown} not found" in flat(result.stderr)


def test_run_rejects_bad_input_before_starting_anything() -> None:
    # Separate processes: a `run` that wrongly got through would start Airflow in-process.
    bad_json = ok(pod("run", "t-linear", "--conf", "{bad json"), 2)
    assert "--conf is not valid JSON" in bad_json.stderr

    unknown = ok(pod("run", "nope"), 2)
    message = flat(unknown.stderr)
    assert "no pipeline named 'nope'" in message
    for known in ("t-linear", "t-fanout", "t-rollback", "guardrail-deployment"):
        assert known in message

    bad_param = ok(pod("run", "t-linear", "--conf", '{"a": "three"}'), 2)
    assert "a: Input should be a valid integer" in flat(bad_param.stderr)


# --------------------------------------------------------------------------- show
def test_show_human_readable_progress(runner: CliRunner) -> None:
    from foundryflow.runtime import run_step, start_execution
    from foundryflow.spec.loader import PipelineCatalog

    pipeline = PipelineCatalog(require_actions=False).get("t-linear")
    execution_id = start_execution(
        pipeline,
        {"a": 2},
        engine="argo",
        engine_run_id=f"wf-{uuid.uuid4().hex[:8]}",
        execution_id=uuid.uuid4(),
    )
    assert run_step(execution_id, "first").outputs == {"total": 7}

    result = runner.invoke(app, ["executions", "show", str(execution_id)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for name in ("First sum", "second", "only_slow", "last"):
        assert name in out
    assert "t-linear v2" in out
    assert str(execution_id) in out
    assert "RUNNING · 25% (1/4 steps)" in out
    assert "COMPLETED" in out and "PENDING" in out


# --------------------------------------------------------------------------- run (Airflow)
@pytest.mark.airflow
def test_run_through_airflow(redis_client: Any) -> None:
    done = ok(pod("run", "t-linear", "--conf", '{"a": 1}', timeout=90))
    summary = re.search(
        r"execution ([0-9a-f-]{36}): COMPLETED \(Airflow DAG run success\)", flat(done.stdout)
    )
    assert summary, done.stdout
    assert '"total": 7' in done.stdout  # (1 + 5) + 1
    report = show_json(summary.group(1))
    assert (report["status"], report["engine"]) == ("COMPLETED", "airflow")
    assert report["params"]["a"] == 1
    assert report["outputs"]["total"] == 7

    failed = ok(pod("run", "t-rollback", "--conf", "{}", timeout=90), 1)
    text = flat(failed.stdout)
    assert "exploded on purpose" in text + flat(failed.stderr)
    assert "FAILED" in text
    found = re.search(r"execution ([0-9a-f-]{36}): FAILED \(Airflow DAG run failed\)", text)
    assert found, text
    execution_id = found.group(1)
    report = show_json(execution_id)
    assert report["status"] == "FAILED"
    assert report["engine"] == "airflow"
    assert report["rollback_status"] == "COMPLETED"
    for name in ("a", "b"):
        assert not redis_client.exists(f"{RESOURCE_PREFIX}{execution_id}:{name}")
