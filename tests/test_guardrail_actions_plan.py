"""The onboarding and cluster-recommendation actions of seed 000, run as the engines run them.

Through the shared runtime (``start_execution`` / ``fanout`` / ``run_step`` /
``finish_execution``, what an Argo pod calls) and end to end on Airflow with ``dag.test()``,
against the real PostgreSQL of the test session. The actions see every cluster of that
database, so each test creates clusters of its own (unique names, removed afterwards) and
asserts on those by id. Onboarding runs offline: configs come from the bundled catalog or
a local directory, never the network.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from sqlalchemy import delete, func, select, update

from foundryflow.actions.guardrail.deploy_models import ModelToDeploy
from foundryflow.cluster.base import ReleaseState
from foundryflow.compile.argo import render_documents
from foundryflow.config import REPO_ROOT
from foundryflow.guardrail.demo import GRANITE_GUARDIAN, LLAMA_GUARD, PROMPT_GUARD, seed_demo
from foundryflow.registry.config_sources import BundledSource
from foundryflow.registry.onboard import onboard_models_all_or_nothing
from foundryflow.runtime import (
    ExecutionProgress,
    StepOutcome,
    fanout,
    finish_execution,
    progress,
    run_step,
    start_execution,
)
from foundryflow.spec.loader import PipelineCatalog
from foundryflow.spec.params import ParamsError
from foundryflow.store.catalog import HardwareConfig, Model, ModelVersion
from foundryflow.store.db import session_scope
from foundryflow.store.guardrail import (
    Cluster,
    ClusterAllocation,
    ClusterBackendName,
    ClusterNode,
    ClusterRelease,
    GuardrailProbe,
    GuardrailProvider,
    GuardrailRule,
    HardwareMode,
    ProviderType,
)
from foundryflow.store.models import Execution, StepRun
from tests.argo_local import LocalArgoRunner
from tests.test_airflow_dags import execution_of, mapped_states, run, states
from tests.test_argo_local_run import runner  # noqa: F401  (fixture)

ONBOARDING = "guardrail-model-onboarding"
RECOMMENDATION = "guardrail-cluster-recommendation"
TOKEN = "hf_" + "Ab3" * 11 + "Z"
"""A well-formed (fake) Hugging Face token: 'hf_' and 34 letters and digits."""
L40S, L4, H100 = "l40s-48gb-x4", "l4-24gb-x1", "h100-sxm-80gb-x8"
H100_PCIE = "h100-pcie-80gb-x1"
CHART_DIR = REPO_ROOT / "charts" / "model-endpoint"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", autouse=True)
def demo() -> None:
    with session_scope() as session:
        seed_demo(session)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOUNDRYFLOW_OFFLINE", "1")


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def hf_conn(monkeypatch: pytest.MonkeyPatch, tag: str) -> str:
    """A Hugging Face connection as Airflow reads it from the environment (JSON form)."""
    conn_id = f"hf_plan_{tag}"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps({"conn_type": "huggingface", "password": TOKEN}),
    )
    return conn_id


@pytest.fixture(scope="module")
def guard_models() -> dict[str, int]:
    """The demo's guard models in the registry (Prompt Guard and Granite Guardian onboarded
    from the bundled configs; Llama Guard is in the seeded catalog): uri -> model id."""
    with session_scope() as session:
        result = onboard_models_all_or_nothing(
            session, [LLAMA_GUARD, PROMPT_GUARD, GRANITE_GUARDIAN], sources="bundled"
        )
    return {model.uri: model.model_id for model in result.onboarded}


@dataclass
class Clusters:
    """Clusters of one test: ``add(name, [(pool, hardware, machines)])`` -> pool ids."""

    tag: str
    created: list[uuid.UUID]

    def add(
        self, name: str, pools: list[tuple[str, str, int]]
    ) -> tuple[uuid.UUID, list[uuid.UUID]]:
        with session_scope() as session:
            cluster = Cluster(name=f"t-plan-{self.tag}-{name}", backend=ClusterBackendName.LOCAL)
            hardware = dict(session.execute(select(HardwareConfig.name, HardwareConfig.id)).all())
            nodes = [
                ClusterNode(cluster=cluster, name=pool, hardware_config_id=hardware[hw], count=n)
                for pool, hw, n in pools
            ]
            session.add_all(nodes)
            session.flush()
            self.created.append(cluster.id)
            return cluster.id, [node.id for node in nodes]

    def allocate(
        self, cluster_id: uuid.UUID, node_id: uuid.UUID, model_id: int, devices: int
    ) -> None:
        """What already runs on the cluster: a release holding ``devices`` of a pool."""
        with session_scope() as session:
            release = ClusterRelease(
                cluster_id=cluster_id,
                name=f"busy-{uuid.uuid4().hex[:8]}",
                namespace="guardrails",
                chart="model-endpoint",
                values={},
                status=ReleaseState.DEPLOYED,
            )
            session.add(release)
            session.flush()
            session.add(
                ClusterAllocation(
                    release_id=release.id,
                    node_id=node_id,
                    model_id=model_id,
                    hardware_mode=HardwareMode.SHARED,
                    devices_used=devices,
                    memory_gb=10.0 * devices,
                )
            )


@pytest.fixture
def clusters(tag: str) -> Iterator[Clusters]:
    made = Clusters(tag, [])
    yield made
    with session_scope() as session:
        session.execute(delete(ClusterRelease).where(ClusterRelease.cluster_id.in_(made.created)))
        session.execute(delete(Cluster).where(Cluster.id.in_(made.created)))


@pytest.fixture
def probe(tag: str) -> Iterator[Callable[[str], uuid.UUID]]:
    """A probe of a test provider; calling it adds a rule needing the given model uri."""
    with session_scope() as session:
        provider = GuardrailProvider(
            name=f"t-plan-{tag}", type=ProviderType.HUGGINGFACE, description="test"
        )
        row = GuardrailProbe(provider=provider, name="probe", description="test")
        session.add(row)
        session.flush()
        probe_id, provider_id = row.id, provider.id

    def add_rule(model_uri: str) -> uuid.UUID:
        with session_scope() as session:
            rule = GuardrailRule(
                probe_id=probe_id,
                name=f"rule-{uuid.uuid4().hex[:6]}",
                description="test",
                model_uri=model_uri,
                model_provider_type=ProviderType.HUGGINGFACE,
                severity_threshold=0.5,
                guard_types=["input"],
            )
            session.add(rule)
            session.flush()
            return rule.id

    yield add_rule
    with session_scope() as session:
        session.execute(delete(GuardrailProbe).where(GuardrailProbe.id == probe_id))
        session.execute(delete(GuardrailProvider).where(GuardrailProvider.id == provider_id))


@pytest.fixture
def local_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tag: str) -> Callable[[str], str]:
    """Publish a bundled config under a new, unique id in FOUNDRYFLOW_MODEL_CONFIG_DIR, so
    onboarding it really creates a registry row in every run of the suite."""
    monkeypatch.setenv("FOUNDRYFLOW_MODEL_CONFIG_DIR", str(tmp_path))

    def publish(like: str) -> str:
        uri = f"t-plan-{tag}/{like.split('/')[1]}"
        path = tmp_path / uri / "config.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(BundledSource().fetch(like).config))
        return uri

    return publish


# --------------------------------------------------------------------------- helpers
@dataclass
class Run:
    execution_id: uuid.UUID
    outcomes: dict[str, StepOutcome]
    items: dict[str, list[StepOutcome]]

    @property
    def report(self) -> ExecutionProgress:
        return progress(self.execution_id)

    def status(self, step: str) -> str:
        return self.outcomes[step].status.value

    def outputs(self, step: str) -> dict[str, Any]:
        outputs = self.outcomes[step].outputs
        assert outputs is not None, self.outcomes[step]
        return outputs

    def error(self, step: str) -> str:
        return self.outcomes[step].error or ""


def run_runtime(pipeline: str, params: dict[str, Any]) -> Run:
    """Every step in spec order, as the Argo templates call them (a blocked step skips)."""
    spec = PipelineCatalog().get(pipeline)
    execution_id = start_execution(spec, params, engine="argo", engine_run_id=uuid.uuid4().hex)
    outcomes: dict[str, StepOutcome] = {}
    items: dict[str, list[StepOutcome]] = {}
    for step in spec.steps:
        if step.foreach is None:
            outcomes[step.id] = run_step(execution_id, step.id)
            continue
        items[step.id] = [run_step(execution_id, step.id, i) for i in fanout(execution_id, step.id)]
        with session_scope() as session:
            parent = session.scalars(
                select(StepRun).where(
                    StepRun.execution_id == execution_id,
                    StepRun.step_id == step.id,
                    StepRun.map_index == -1,
                )
            ).one()
            outcomes[step.id] = StepOutcome.of(parent)
    finish_execution(execution_id)
    return Run(execution_id, outcomes, items)


def onboarding_params(conn_id: str, models: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "workflow_id": str(uuid.uuid4()),
        "models_to_onboard": models,
        "credential_id": conn_id,
        "user_id": "tester",
    }


def recommendation_params(models: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    return {"workflow_id": str(uuid.uuid4()), "models": models, "hardware_mode": mode}


def registry_ids(uris: list[str]) -> dict[str, int]:
    with session_scope() as session:
        rows = session.execute(select(Model.uri, Model.id).where(Model.uri.in_(uris))).all()
        return dict(rows)


def rule_models(uris: list[str]) -> dict[uuid.UUID, int | None]:
    with session_scope() as session:
        rows = session.execute(
            select(GuardrailRule.id, GuardrailRule.model_id).where(
                GuardrailRule.model_uri.in_(uris)
            )
        ).all()
        return dict(rows)


def by_cluster(entries: list[dict[str, Any]], cluster_id: uuid.UUID) -> dict[str, Any] | None:
    return next((e for e in entries if e["cluster_id"] == str(cluster_id)), None)


def placements(valid: dict[str, Any]) -> dict[str, tuple[str, int, int]]:
    """model uri -> (hardware, devices used, devices reserved)."""
    return {
        p["model_uri"]: (p["hardware"], p["devices"], p["reserved_devices"])
        for p in valid["placements"]
    }


def secret_free(*texts: Any) -> None:
    for text in texts:
        assert TOKEN not in json.dumps(text, default=str)


# --------------------------------------------------------------------------- credential
def test_valid_credential_outputs_the_provider_never_the_secret(
    hf_conn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    spec = PipelineCatalog().get(ONBOARDING)
    execution = start_execution(
        spec,
        onboarding_params(hf_conn, [{"model_uri": LLAMA_GUARD}]),
        engine="argo",
        engine_run_id=uuid.uuid4().hex,
    )
    outcome = run_step(execution, "validate_credential")

    assert outcome.status.value == "COMPLETED", outcome.error
    assert outcome.outputs == {"valid": True, "provider_type": "huggingface"}
    with session_scope() as session:
        recorded = session.scalars(select(StepRun).where(StepRun.execution_id == execution)).all()
        secret_free([(r.params, r.outputs, r.error) for r in recorded])
    secret_free(caplog.text)
    finish_execution(execution)


@pytest.mark.parametrize(
    ("connection", "expected"),
    [
        (None, "does not exist: create it"),
        ({"conn_type": "huggingface"}, "holds no secret"),
        ({"conn_type": "huggingface", "password": "   "}, "holds no secret"),
        ({"conn_type": "huggingface", "password": TOKEN[:-1]}, "not a well-formed Hugging Face"),
        (
            {"conn_type": "http", "extra": {"provider_type": "hf", "token": TOKEN + "x"}},
            "well-formed",
        ),
        (f"huggingface://:{TOKEN}%20@", "not a well-formed Hugging Face token"),
    ],
    ids=["missing", "empty", "blank", "short-token", "extra-token-too-long", "uri-with-space"],
)
def test_unusable_credential_fails_before_anything_is_onboarded(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    local_models: Callable[[str], str],
    tag: str,
    connection: dict[str, Any] | str | None,
    expected: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    conn_id = f"hf_bad_{tag}"
    if connection is not None:
        value = connection if isinstance(connection, str) else json.dumps(connection)
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)
    uri = local_models(PROMPT_GUARD)

    result = run_runtime(ONBOARDING, onboarding_params(conn_id, [{"model_uri": uri}]))

    assert result.status("validate_credential") == "FAILED"
    assert expected in result.error("validate_credential")
    assert conn_id in result.error("validate_credential")
    assert result.status("onboard_models") == result.status("update_rules") == "SKIPPED"
    assert result.report.status == "FAILED"
    assert registry_ids([uri]) == {}
    secret_free(result.error("validate_credential"), result.report.error, caplog.text)


def test_a_credential_of_another_provider_is_not_checked_as_a_hub_token(
    monkeypatch: pytest.MonkeyPatch, tag: str
) -> None:
    conn_id = f"openai_{tag}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", "openai://:sk-not-a-hub-token@")
    spec = PipelineCatalog().get(ONBOARDING)
    execution = start_execution(
        spec,
        onboarding_params(conn_id, [{"model_uri": LLAMA_GUARD}]),
        engine="argo",
        engine_run_id=uuid.uuid4().hex,
    )
    outcome = run_step(execution, "validate_credential")
    assert outcome.outputs == {"valid": True, "provider_type": "openai"}
    finish_execution(execution)


# --------------------------------------------------------------------------- onboarding
def test_onboarding_bundled_guard_models_links_every_rule_that_needs_them(
    hf_conn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    uris = [PROMPT_GUARD, GRANITE_GUARDIAN]
    new = {uri for uri in uris if uri not in registry_ids(uris)}
    with session_scope() as session:  # unlink, so the run has the links to make
        session.execute(
            update(GuardrailRule).where(GuardrailRule.model_uri.in_(uris)).values(model_id=None)
        )
    rules = rule_models(uris)
    assert len(rules) >= 5  # demo: 2 Prompt Guard and 3 Granite Guardian rules
    rule_id = next(iter(rules))
    models = [
        {"rule_id": str(rule_id), "model_uri": PROMPT_GUARD, "model_provider_type": "huggingface"},
        {"model_uri": GRANITE_GUARDIAN},
        {"model_uri": PROMPT_GUARD},  # two rules, one model: onboarded once
    ]

    result = run_runtime(ONBOARDING, onboarding_params(hf_conn, models))

    assert result.report.status == "COMPLETED", result.report.error
    onboarded = result.outputs("onboard_models")["results"]
    assert [m["model_uri"] for m in onboarded] == uris
    for model in onboarded:
        assert model["created"] == (model["model_uri"] in new)
        if model["created"]:
            assert model["source"] == "bundled"
    assert onboarded[0]["rule_ids"] == [str(rule_id)] and onboarded[1]["rule_ids"] == []
    ids = registry_ids(uris)
    assert {m["model_uri"]: m["model_id"] for m in onboarded} == ids
    with session_scope() as session:
        prompt_guard = session.get_one(Model, ids[PROMPT_GUARD])
        assert (prompt_guard.family, prompt_guard.max_context, prompt_guard.num_layers) == (
            "deberta-v2",
            512,
            12,
        )
        dtypes = session.scalars(
            select(ModelVersion.dtype).where(ModelVersion.model_id == prompt_guard.id)
        ).all()
        assert dtypes == ["fp32"]
    assert result.outputs("update_rules") == {"success": True, "updated": len(rules)}
    with session_scope() as session:
        links = session.execute(
            select(GuardrailRule.model_uri, GuardrailRule.model_id).where(
                GuardrailRule.model_uri.in_(uris)
            )
        ).all()
    assert len(links) == len(rules)
    assert all(model_id == ids[str(uri)] for uri, model_id in links)
    assert result.report.outputs == {"onboarded_models": onboarded, "all_succeeded": True}
    secret_free(result.report.outputs, caplog.text)


def test_partial_failure_writes_nothing_and_a_rerun_is_idempotent(
    hf_conn: str, local_models: Callable[[str], str], probe: Callable[[str], uuid.UUID], tag: str
) -> None:
    good = local_models(GRANITE_GUARDIAN)
    missing = f"t-plan-{tag}/not-published"
    rule = probe(good)

    failed = run_runtime(
        ONBOARDING,
        onboarding_params(hf_conn, [{"model_uri": good}, {"model_uri": missing}]),
    )

    assert failed.status("validate_credential") == "COMPLETED"
    assert failed.status("onboard_models") == "FAILED"
    error = failed.error("onboard_models")
    assert "onboarding failed for 1 of 2 models; nothing was written" in error
    assert f"- {missing}: no config.json found" in error
    assert failed.status("update_rules") == "SKIPPED"
    assert failed.report.status == "FAILED"
    assert registry_ids([good, missing]) == {}
    assert rule_models([good]) == {rule: None}

    first = run_runtime(ONBOARDING, onboarding_params(hf_conn, [{"model_uri": good}]))
    (model,) = first.outputs("onboard_models")["results"]
    assert (model["model_uri"], model["created"], model["source"]) == (good, True, "local")
    assert first.outputs("update_rules") == {"success": True, "updated": 1}
    assert rule_models([good]) == {rule: model["model_id"]}

    again = run_runtime(ONBOARDING, onboarding_params(hf_conn, [{"model_id": model["model_id"]}]))
    (same,) = again.outputs("onboard_models")["results"]
    assert (same["model_id"], same["created"], same["source"]) == (model["model_id"], False, None)
    assert again.outputs("update_rules") == {"success": True, "updated": 0}


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        ([], "models: Value error, models is empty"),
        ([{"model_uri": "not a hub id"}], "invalid model id 'not a hub id'"),
        ([{"model_uri": LLAMA_GUARD, "model_provider_type": "openai"}], "served by the provider"),
        ([{"rule_id": str(uuid.uuid4())}], "give model_uri"),
        ([{"model_uri": LLAMA_GUARD, "revision": "main"}], "Extra inputs are not permitted"),
        ([{"model_id": 2**31 - 1}], "model_id 2147483647 is not in the registry"),
    ],
    ids=["empty", "bad-uri", "api-provider", "no-model", "unknown-key", "unknown-id"],
)
def test_bad_onboarding_requests_fail_before_anything_is_written(
    hf_conn: str, models: list[dict[str, Any]], expected: str
) -> None:
    result = run_runtime(ONBOARDING, onboarding_params(hf_conn, models))
    assert result.status("onboard_models") == "FAILED"
    assert expected in result.error("onboard_models")
    assert result.status("update_rules") == "SKIPPED"
    assert result.report.status == "FAILED"


# --------------------------------------------------------------------------- recommendation
def test_simulation_fans_out_per_model_and_gathers_the_results(
    guard_models: dict[str, int], clusters: Clusters
) -> None:
    cluster_id, _ = clusters.add("l40s", [("l40s", L40S, 2)])
    models: list[dict[str, Any]] = [
        {"model_uri": PROMPT_GUARD, "deployment_config": {"concurrency": 4, "target_ttft": 100}},
        {"model_id": guard_models[GRANITE_GUARDIAN]},
    ]

    result = run_runtime(RECOMMENDATION, recommendation_params(models, "shared"))

    assert [item.status.value for item in result.items["parallel_simulate"]] == ["COMPLETED"] * 2
    gathered = result.outputs("parallel_simulate")["result"]
    assert [r["model_uri"] for r in gathered] == [PROMPT_GUARD, GRANITE_GUARDIAN]
    prompt_guard, granite = gathered
    assert prompt_guard["dtype"] == "fp32" and granite["dtype"] == "bf16"
    # Prompt Guard reads 512 tokens in all: the default input leaves room for the output
    assert prompt_guard["workload"] | {"concurrency": 4} == {
        "concurrency": 4,
        "input_tokens": 496,
        "output_tokens": 16,
        "target_ttft_ms": 100.0,
        "target_e2e_ms": 500.0,
        "target_rps": None,
        "spike_buffer": False,
    }
    options = {o["hardware"]: o for o in prompt_guard["options"]}
    assert L40S in options
    assert options[L40S]["feasible"] and options[L40S]["tp"] == 1
    assert options[L40S]["reserved_devices"] == options[L40S]["devices"] == 1
    cpu = [o for o in prompt_guard["options"] if o["device_type"] == "cpu"]
    assert cpu and all(not o["feasible"] and "NVIDIA GPUs" in o["reason"] for o in cpu)
    feasible = [o["feasible"] for o in prompt_guard["options"]]
    assert feasible == sorted(feasible, reverse=True)  # feasible options first

    candidates = result.outputs("aggregate_requirements")["candidate_clusters"]
    mine = by_cluster(candidates, cluster_id)
    assert mine is not None
    assert [(m["model_uri"], m["chosen"]["hardware"], m["fallbacks"]) for m in mine["models"]] == [
        (PROMPT_GUARD, L40S, []),
        (GRANITE_GUARDIAN, L40S, []),
    ]
    totals = result.outputs("aggregate_requirements")["total_requirements"]
    assert sum(total["devices"] for total in totals.values()) == 2
    assert result.report.status == "COMPLETED"


def test_shared_and_dedicated_modes_place_differently(
    guard_models: dict[str, int], clusters: Clusters
) -> None:
    one_machine, _ = clusters.add("one", [("l40s", L40S, 1)])
    two_machines, _ = clusters.add("two", [("l40s", L40S, 2)])
    # one device costs 48 GB of L40S when shared, but a whole 4 x 48 GB machine when
    # dedicated, where the one-GPU H100 machine (80 GB) is cheaper
    mixed, _ = clusters.add("mixed", [("h100", H100_PCIE, 1), ("l40s", L40S, 1)])
    models = [{"model_uri": PROMPT_GUARD}, {"model_uri": GRANITE_GUARDIAN}]

    shared = run_runtime(RECOMMENDATION, recommendation_params(models, "shared"))
    dedicated = run_runtime(RECOMMENDATION, recommendation_params(models, "dedicated"))

    assert shared.report.status == dedicated.report.status == "COMPLETED"
    fit_shared = shared.outputs("validate_cluster_fit")
    fit_dedicated = dedicated.outputs("validate_cluster_fit")
    both_on_one = by_cluster(fit_shared["valid_clusters"], one_machine)
    assert both_on_one is not None
    assert placements(both_on_one) == {PROMPT_GUARD: (L40S, 1, 1), GRANITE_GUARDIAN: (L40S, 1, 1)}
    assert both_on_one["free_devices_after"] == {L40S: 2}

    assert by_cluster(fit_dedicated["valid_clusters"], one_machine) is None
    rejected = by_cluster(fit_dedicated["rejected_clusters"], one_machine)
    assert rejected is not None
    assert "does not fit" in rejected["reason"]
    assert "on 1 whole machine(s) of 4 devices" in rejected["reason"]
    assert "0 whole machine(s)" in rejected["reason"]

    apart = by_cluster(fit_dedicated["valid_clusters"], two_machines)
    assert apart is not None
    assert placements(apart) == {PROMPT_GUARD: (L40S, 1, 4), GRANITE_GUARDIAN: (L40S, 1, 4)}
    assert all(share["machines"] == 1 for p in apart["placements"] for share in p["allocations"])
    assert apart["free_devices_after"] == {L40S: 0}
    together = by_cluster(fit_shared["valid_clusters"], two_machines)
    assert together is not None and together["free_devices_after"] == {L40S: 6}

    cheap_shared = by_cluster(fit_shared["valid_clusters"], mixed)
    cheap_dedicated = by_cluster(fit_dedicated["valid_clusters"], mixed)
    assert cheap_shared is not None and cheap_dedicated is not None
    assert placements(cheap_shared) == {
        PROMPT_GUARD: (L40S, 1, 1),
        GRANITE_GUARDIAN: (L40S, 1, 1),
    }
    assert placements(cheap_dedicated) == {
        PROMPT_GUARD: (H100_PCIE, 1, 1),
        GRANITE_GUARDIAN: (L40S, 1, 4),  # the H100 machine is Prompt Guard's alone
    }
    assert [p["fallback"] for p in cheap_dedicated["placements"]] == [False, True]

    for fit in (fit_shared, fit_dedicated):
        ranked = fit["valid_clusters"]
        assert [c["rank"] for c in ranked] == list(range(1, len(ranked) + 1))
        memory = [c["reserved_memory_gb"] for c in ranked]
        assert memory == sorted(memory)
        best = ranked[0]
        configs = fit["per_model_configs"]
        assert [c["model_uri"] for c in configs] == [PROMPT_GUARD, GRANITE_GUARDIAN]
        assert {c["cluster_id"] for c in configs} == {best["cluster_id"]}


def test_usage_already_on_the_cluster_and_of_earlier_models_is_counted(
    guard_models: dict[str, int], clusters: Clusters
) -> None:
    busy, (pool,) = clusters.add("busy", [("l40s", L40S, 1)])
    clusters.allocate(busy, pool, guard_models[LLAMA_GUARD], devices=3)
    models = [{"model_uri": PROMPT_GUARD}, {"model_uri": GRANITE_GUARDIAN}]

    result = run_runtime(RECOMMENDATION, recommendation_params(models, "shared"))

    fit = result.outputs("validate_cluster_fit")
    assert by_cluster(fit["valid_clusters"], busy) is None
    rejected = by_cluster(fit["rejected_clusters"], busy)
    assert rejected is not None
    reason = rejected["reason"]
    # equal needs keep the request's order: Prompt Guard takes the last free device first
    assert reason.startswith(f"{GRANITE_GUARDIAN} does not fit: {L40S}: needs 1 replica(s) x tp 1")
    assert reason.endswith(
        f"0 of 4 devices free, 3 in use before this run and 1 taken by {PROMPT_GUARD}"
    )

    alone = run_runtime(RECOMMENDATION, recommendation_params(models[:1], "shared"))
    placed = by_cluster(alone.outputs("validate_cluster_fit")["valid_clusters"], busy)
    assert placed is not None and placed["free_devices_after"] == {L40S: 0}


def test_a_model_short_of_its_preferred_hardware_is_placed_on_another(
    guard_models: dict[str, int], clusters: Clusters
) -> None:
    mixed, (l4_pool, _) = clusters.add("mixed", [("l4", L4, 1), ("l40s", L40S, 1)])
    models = [{"model_uri": GRANITE_GUARDIAN}]

    idle = run_runtime(RECOMMENDATION, recommendation_params(models, "shared"))
    clusters.allocate(mixed, l4_pool, guard_models[LLAMA_GUARD], devices=1)
    busy = run_runtime(RECOMMENDATION, recommendation_params(models, "shared"))

    before = by_cluster(idle.outputs("validate_cluster_fit")["valid_clusters"], mixed)
    after = by_cluster(busy.outputs("validate_cluster_fit")["valid_clusters"], mixed)
    assert before is not None and after is not None
    (first,), (second,) = before["placements"], after["placements"]
    assert (first["hardware"], first["fallback"]) == (L4, False)  # the cheapest that meets targets
    assert (second["hardware"], second["fallback"]) == (L40S, True)
    assert second["allocations"][0]["node_name"] == "l40s"


def test_no_cluster_fits_fails_saying_what_was_short_where(guard_models: dict[str, int]) -> None:
    models = [{"model_uri": LLAMA_GUARD, "deployment_config": {"target_rps": 5000}}]

    result = run_runtime(RECOMMENDATION, recommendation_params(models, "shared"))

    assert result.status("aggregate_requirements") == "COMPLETED"
    assert result.status("validate_cluster_fit") == "FAILED"
    error = result.error("validate_cluster_fit")
    assert "no cluster can hold all 1 model(s) in shared mode" in error
    assert "at their preferred options they need" in error
    assert f"\n- demo-h100: {LLAMA_GUARD} does not fit: {H100}: needs " in error
    assert "devices free" in error
    assert result.report.status == "FAILED"
    assert result.report.outputs == {"recommended_clusters": None, "per_model_configs": None}


def test_a_model_no_hardware_serves_fails_at_aggregation(guard_models: dict[str, int]) -> None:
    models = [{"model_uri": LLAMA_GUARD, "deployment_config": {"target_ttft_ms": 0.01}}]
    result = run_runtime(RECOMMENDATION, recommendation_params(models, "dedicated"))
    assert result.status("parallel_simulate") == "COMPLETED"
    assert result.status("aggregate_requirements") == "FAILED"
    error = result.error("aggregate_requirements")
    assert f"no hardware of any cluster meets the targets of {LLAMA_GUARD}" in error
    assert "TTFT" in error and "> target 0.01 ms" in error
    assert result.status("validate_cluster_fit") == "SKIPPED"


@pytest.mark.parametrize(
    ("models", "step", "expected"),
    [
        (
            [{"model_uri": LLAMA_GUARD, "deployment_config": {"concurrency": -1}}],
            "parallel_simulate",
            "model.deployment_config.concurrency: Input should be greater than or equal to 1",
        ),
        (
            [{"model_uri": LLAMA_GUARD, "deployment_config": {"target_latency": 100}}],
            "parallel_simulate",
            "target_e2e_ms 100 is below target_ttft_ms 150",
        ),
        (
            [{"model_uri": LLAMA_GUARD, "deployment_config": {"concurency": 4}}],
            "parallel_simulate",
            "deployment_config.concurency: Extra inputs are not permitted",
        ),
        ([{"model_uri": "nobody/not-onboarded"}], "parallel_simulate", "not in the model registry"),
        ([{"model_uri": "../etc"}], "parallel_simulate", "invalid model id '../etc'"),
        ([], "aggregate_requirements", "simulation_results (one per model of the run) is empty"),
        (
            [{"model_uri": LLAMA_GUARD}, {"model_uri": LLAMA_GUARD}],
            "aggregate_requirements",
            f"{LLAMA_GUARD} is listed more than once",
        ),
        (
            [{"model_uri": LLAMA_GUARD, "deployment_config": {"input_tokens": 200_000}}],
            "parallel_simulate",
            "exceed meta-llama/Llama-Guard-3-8B's context of 131072 tokens",
        ),
    ],
    ids=[
        "negative-concurrency",
        "e2e-below-ttft",
        "typo",
        "not-onboarded",
        "bad-uri",
        "empty",
        "duplicate",
        "too-long",
    ],
)
def test_bad_recommendation_inputs_fail_with_a_clear_message(
    models: list[dict[str, Any]], step: str, expected: str
) -> None:
    result = run_runtime(RECOMMENDATION, recommendation_params(models, "shared"))
    assert result.status(step) == "FAILED"
    assert expected in result.error(step)
    assert result.report.status == "FAILED"


def test_unknown_hardware_mode_is_refused_before_the_run_is_recorded() -> None:
    spec = PipelineCatalog().get(RECOMMENDATION)
    run_id = uuid.uuid4().hex
    with pytest.raises(ParamsError, match="hardware_mode"):
        start_execution(
            spec,
            recommendation_params([{"model_uri": LLAMA_GUARD}], "exclusive"),
            engine="argo",
            engine_run_id=run_id,
        )
    with session_scope() as session:
        count = session.scalar(
            select(func.count()).select_from(Execution).where(Execution.engine_run_id == run_id)
        )
    assert count == 0


# --------------------------------------------------------------------------- Argo pods
def test_argo_pods_simulate_in_parallel_and_recommend(
    runner: LocalArgoRunner,  # noqa: F811
    guard_models: dict[str, int],
    clusters: Clusters,
) -> None:
    roomy, _ = clusters.add("roomy", [("l40s", L40S, 2)])
    template = next(
        d
        for d in render_documents(PipelineCatalog().get(RECOMMENDATION))
        if d["kind"] == "WorkflowTemplate"
    )
    models = [{"model_uri": PROMPT_GUARD}, {"model_uri": GRANITE_GUARDIAN}]
    params = {
        key: json.dumps(value) if not isinstance(value, str) else value
        for key, value in recommendation_params(models, "dedicated").items()
    }

    workflow = runner.submit(template, params)

    assert workflow.status == "Succeeded", [(p.task, p.stderr[-400:]) for p in workflow.pods]
    assert workflow.pod("ff-fanout-parallel-simulate").stdout.strip() == "[0, 1]"
    assert len([p for p in workflow.pods if p.task == "parallel-simulate"]) == 2
    report = progress(uuid.UUID(workflow.uid))
    assert report.engine == "argo" and report.status == "COMPLETED"
    assert report.outputs is not None
    valid = by_cluster(report.outputs["recommended_clusters"], roomy)
    assert valid is not None
    assert placements(valid) == {PROMPT_GUARD: (L40S, 1, 4), GRANITE_GUARDIAN: (L40S, 1, 4)}


# --------------------------------------------------------------------------- Airflow
def chart_defaults() -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of values: maps deep, everything else replaced."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


@pytest.mark.airflow
def test_airflow_runs_onboarding_end_to_end(
    dags: dict[str, Any],
    hf_conn: str,
    local_models: Callable[[str], str],
    probe: Callable[[str], uuid.UUID],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    uri = local_models(PROMPT_GUARD)
    rule = probe(uri)
    dag = dags[ONBOARDING]

    dag_run = run(dag, onboarding_params(hf_conn, [{"rule_id": str(rule), "model_uri": uri}]))

    assert str(dag_run.state) == "success", states(dag_run)
    report = execution_of(dag, dag_run)
    assert report.status == "COMPLETED"
    assert report.outputs is not None and report.outputs["all_succeeded"] is True
    (model,) = report.outputs["onboarded_models"]
    assert (model["model_uri"], model["created"], model["rule_ids"]) == (uri, True, [str(rule)])
    assert rule_models([uri]) == {rule: model["model_id"]}
    captured = capfd.readouterr()
    secret_free(report.outputs, caplog.text, captured.out, captured.err)


@pytest.mark.airflow
def test_airflow_onboarding_with_a_missing_credential_fails_at_the_first_step(
    dags: dict[str, Any], local_models: Callable[[str], str], tag: str
) -> None:
    uri = local_models(GRANITE_GUARDIAN)
    dag = dags[ONBOARDING]
    dag_run = run(dag, onboarding_params(f"missing_{tag}", [{"model_uri": uri}]))

    assert str(dag_run.state) == "failed"
    ti = states(dag_run)
    assert ti["validate_credential"] == "failed"
    assert ti["onboard_models"] != "success" and ti["update_rules"] != "success"
    report = execution_of(dag, dag_run)
    assert report.status == "FAILED"
    assert f"Airflow connection 'missing_{tag}' does not exist" in (report.error or "")
    assert registry_ids([uri]) == {}


@pytest.mark.airflow
@pytest.mark.parametrize("mode", ["shared", "dedicated"])
def test_airflow_recommends_clusters_with_mapped_simulations(
    dags: dict[str, Any], guard_models: dict[str, int], clusters: Clusters, mode: str
) -> None:
    clusters.add("roomy", [("l40s", L40S, 3)])
    models: list[dict[str, Any]] = [
        {"model_uri": LLAMA_GUARD, "deployment_config": {"concurrency": 2}},
        {"model_uri": PROMPT_GUARD},
        {"model_id": guard_models[GRANITE_GUARDIAN]},
    ]
    dag = dags[RECOMMENDATION]

    dag_run = run(dag, recommendation_params(models, mode))

    assert str(dag_run.state) == "success", states(dag_run)
    assert mapped_states(dag_run, "parallel_simulate") == {i: "success" for i in range(3)}
    report = execution_of(dag, dag_run)
    assert report.status == "COMPLETED", report.error
    assert report.outputs is not None
    recommended = report.outputs["recommended_clusters"]
    assert recommended and recommended[0]["rank"] == 1
    configs = report.outputs["per_model_configs"]
    assert [c["model_uri"] for c in configs] == [LLAMA_GUARD, PROMPT_GUARD, GRANITE_GUARDIAN]

    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    for config in configs:
        assert config["hardware_mode"] == mode
        assert config["cluster_id"] == recommended[0]["cluster_id"]
        values = merged(chart_defaults(), config["chart_values"])
        jsonschema.validate(values, schema)  # what the chart would be rendered with
        assert values["model"]["name"] == config["model_uri"]
        assert values["model"]["tensorParallelSize"] == config["tp"]
        deploy = ModelToDeploy.model_validate(
            {
                "rule_id": str(uuid.uuid4()),
                "model_id": config["model_id"],
                "cluster_id": config["cluster_id"],
                "deployment_config": config["deployment_config"],
            }
        )
        assert (deploy.deployment_config.tp, deploy.deployment_config.replicas) == (
            config["tp"],
            config["replicas"],
        )
        assert deploy.deployment_config.hardware == config["hardware"]
        reserved = sum(share["devices"] for share in config["allocations"])
        assert reserved == config["reserved_devices"] >= config["devices"]
    llama = configs[0]["chart_values"]["model"]
    assert (llama["dtype"], llama["maxModelLen"]) == ("bfloat16", 512 + 16)
    assert configs[1]["chart_values"]["model"]["dtype"] == "float32"  # Prompt Guard's weights
