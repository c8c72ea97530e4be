"""The named guardrail operators in a hand-written DAG, really run with ``dag.test()``.

Real PostgreSQL (catalog, registry, cluster inventory on the ``local`` backend, which renders
the real charts with Helm's engine and validates every manifest) and real Redis: each test
checks the XComs Airflow recorded and the effects in the services, then removes what it
created (releases are uninstalled, freeing their GPUs; the Redis keys are deleted).
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import pytest
from sqlalchemy import func, select

from foundryflow.store.db import session_scope

pytestmark = pytest.mark.airflow

MODEL = "meta-llama/Llama-Guard-3-1B"
HARDWARE = "l4-24gb-x1"
CLUSTER = "demo-l40s"
HF_CONN = "ff_named_ops_hf"
REDIS_CONN = "ff_named_ops_redis"


def pulled(task_id: str, path: str) -> str:
    """A template of a part of ``task_id``'s XCom, e.g. ``pulled("simulate", "['tp']")``."""
    return f"{{{{ ti.xcom_pull(task_ids='{task_id}'){path} }}}}"


@pytest.fixture
def demo(airflow_db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Seeded catalog and demo clusters, offline onboarding, Hub and Redis connections."""
    from foundryflow.guardrail.demo import seed_demo

    with session_scope() as session:
        seed_demo(session)
    monkeypatch.setenv("FOUNDRYFLOW_OFFLINE", "1")
    monkeypatch.delenv("FOUNDRYFLOW_CLUSTER_BACKEND", raising=False)
    token = "hf_" + (string.ascii_letters * 2)[:34]
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{HF_CONN.upper()}",
        json.dumps({"conn_type": "huggingface", "password": token}),
    )
    redis_url = urlsplit(os.environ["FOUNDRYFLOW_REDIS_URL"])
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{REDIS_CONN.upper()}",
        json.dumps(
            {
                "conn_type": "redis",
                "host": redis_url.hostname,
                "port": redis_url.port or 6379,
                "password": redis_url.password,
                "extra": {"db": int(redis_url.path.lstrip("/") or 0)},
            }
        ),
    )
    yield


def run(dag: Any) -> Any:
    """``dag.test()`` of a DAG built in the test. It runs only DAGs serialized in Airflow's
    database, and a DAG of no DAG file is not parsed from any bundle: write it there first."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()
    bag = DagBag(dag_folder=os.devnull, collect_dags=False)
    bag.bag_dag(dag)
    sync_bag_to_db(bag, "dags-folder", None)
    return dag.test()


def states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def xcom(dag_run: Any, task_id: str) -> Any:
    ti = next(ti for ti in dag_run.get_task_instances() if ti.task_id == task_id)
    return ti.xcom_pull(task_ids=task_id)


def release_count(namespace: str) -> int:
    from foundryflow.store.guardrail import ClusterRelease

    with session_scope() as session:
        count = session.scalar(
            select(func.count())
            .select_from(ClusterRelease)
            .where(ClusterRelease.namespace == namespace)
        )
        return count or 0


def cluster_id(name: str) -> str:
    from foundryflow.store.guardrail import Cluster

    with session_scope() as session:
        return str(session.scalars(select(Cluster.id).where(Cluster.name == name)).one())


def guardrail_config(profile_id: str, project_id: str, endpoint_url: str) -> dict[str, Any]:
    return {
        "profile_id": profile_id,
        "profile_name": "named-operators",
        "project_id": project_id,
        "deployment_id": str(uuid4()),
        "probes": [
            {
                "probe_id": str(uuid4()),
                "probe_name": "safety",
                "rules": [
                    {
                        "rule_id": str(uuid4()),
                        "rule_name": "unsafe-content",
                        "severity_threshold": 0.5,
                        "guard_types": ["input", "output"],
                        "model_uri": MODEL,
                    }
                ],
            }
        ],
        "endpoints": {MODEL: {"endpoint_id": str(uuid4()), "url": endpoint_url}},
    }


def test_onboard_simulate_install_sync_chain(demo: None, redis_client: Any) -> None:
    from airflow.sdk import DAG

    from foundryflow.cluster.local import PROJECT_ANNOTATION
    from foundryflow.configsync import GuardrailConfigStore, StoredConfig
    from foundryflow.store.catalog import Model
    from foundryflow.store.guardrail import ClusterRelease
    from foundryflow.usecase.releases import job_id, uninstall_chart
    from operators import (
        HelmInstallOperator,
        OnboardModelsOperator,
        RedisConfigSyncOperator,
        SimulateOperator,
    )

    suffix = uuid4().hex[:8]
    project_id, profile_id = str(uuid4()), str(uuid4())
    namespace, release = f"named-ops-{suffix}", f"llama-guard-{suffix}"
    with DAG(f"named_operators_{suffix}", schedule=None, render_template_as_native_obj=True) as dag:
        onboard = OnboardModelsOperator(
            task_id="onboard", model_uris=[MODEL], credential_conn_id=HF_CONN
        )
        simulate = SimulateOperator(
            task_id="simulate",
            model=MODEL,
            hardware=HARDWARE,
            concurrency=8,
            input_tokens=1024,
            output_tokens=128,
        )
        install = HelmInstallOperator(
            task_id="helm_install",
            cluster=CLUSTER,
            release_name=release,
            namespace=namespace,
            values={
                "model": {
                    "name": pulled("simulate", "['model']"),
                    "tensorParallelSize": pulled("simulate", "['tp']"),
                },
                "nodeSelector": {"foundryflow.io/hardware": pulled("simulate", "['hardware']")},
                "podAnnotations": {PROJECT_ANNOTATION: project_id},
            },
        )
        sync = RedisConfigSyncOperator(
            task_id="sync_config",
            profile_id=profile_id,
            config=guardrail_config(
                profile_id, project_id, pulled("helm_install", "['endpoint_url']")
            ),
            redis_conn_id=REDIS_CONN,
        )
        onboard >> simulate >> install >> sync

    store = GuardrailConfigStore(redis_client)
    try:
        dag_run = run(dag)

        assert str(dag_run.state) == "success"
        assert states(dag_run) == {
            "onboard": "success",
            "simulate": "success",
            "helm_install": "success",
            "sync_config": "success",
        }

        onboarded = xcom(dag_run, "onboard")
        assert [model["uri"] for model in onboarded] == [MODEL]
        assert "hf_" not in json.dumps(onboarded)  # the token is never an output
        with session_scope() as session:
            model_id = session.scalar(select(Model.id).where(Model.uri == MODEL))
        assert onboarded[0]["model_id"] == model_id

        prediction = xcom(dag_run, "simulate")
        assert prediction["model"] == MODEL
        assert prediction["hardware"] == HARDWARE
        assert prediction["catalog"] == "database"
        assert prediction["fits"] is True
        assert prediction["tp"] == 1
        for field in ("ttft_ms", "tpot_ms", "e2e_ms", "output_tokens_per_s", "memory_gb"):
            assert prediction[field] > 0

        installed = xcom(dag_run, "helm_install")
        service = f"{release}-model-endpoint"
        assert installed == {
            "job_id": job_id(UUID(cluster_id(CLUSTER)), namespace, release, 1),
            "cluster_id": cluster_id(CLUSTER),
            "namespace": namespace,
            "release_name": release,
            "revision": 1,
            "chart": installed["chart"],
            "status": "deployed",
            "endpoint_url": installed["endpoint_url"],
            "services": [service],
        }
        assert installed["chart"].startswith("model-endpoint-")
        assert installed["endpoint_url"].startswith(
            f"http://{service}.{namespace}.svc.cluster.local:"
        )
        with session_scope() as session:
            row = session.scalars(
                select(ClusterRelease).where(
                    ClusterRelease.namespace == namespace, ClusterRelease.name == release
                )
            ).one()
            assert row.values["model"] == {"name": MODEL, "tensorParallelSize": 1}
            assert row.values["nodeSelector"] == {"foundryflow.io/hardware": HARDWARE}

        synced = xcom(dag_run, "sync_config")
        assert synced["key"] == store.key(profile_id)
        assert synced["version"] == 1
        stored = StoredConfig.model_validate_json(redis_client.get(synced["key"]))
        assert stored.sha256 == synced["sha256"]
        assert stored.config.endpoints[MODEL].url == installed["endpoint_url"]
    finally:
        uninstall_chart(CLUSTER, release, namespace)
        store.delete(profile_id)
    assert release_count(namespace) == 0
    assert redis_client.get(store.key(profile_id)) is None


def test_bad_input_fails_the_task_and_writes_nothing(
    demo: None, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.sdk import DAG

    from foundryflow.cluster.local import PROJECT_ANNOTATION
    from operators import HelmInstallOperator, SimulateOperator

    suffix = uuid4().hex[:8]
    namespace = f"named-ops-{suffix}"
    values = {"model": {"name": MODEL}, "podAnnotations": {PROJECT_ANNOTATION: str(uuid4())}}
    with DAG(f"named_operators_bad_{suffix}", schedule=None) as dag:
        simulate = SimulateOperator(
            task_id="simulate",
            model=MODEL,
            hardware="no-such-gpu-x9",
            concurrency=8,
            input_tokens=1024,
            output_tokens=128,
        )
        after_simulate = HelmInstallOperator(
            task_id="install_after_simulate",
            cluster=CLUSTER,
            release_name=f"ok-{suffix}",
            namespace=namespace,
            values=values,
        )
        HelmInstallOperator(
            task_id="hostile_release",
            cluster=CLUSTER,
            release_name="../../etc/passwd",
            namespace=namespace,
            values=values,
        )
        simulate >> after_simulate

    dag_run = run(dag)
    output = "".join(capfd.readouterr())  # dag.test() logs task errors to the console

    assert str(dag_run.state) == "failed"
    assert states(dag_run) == {
        "simulate": "failed",
        "install_after_simulate": "upstream_failed",
        "hostile_release": "failed",
    }
    assert "unknown hardware 'no-such-gpu-x9'; known:" in output
    assert (
        "invalid release: release_name: release name '../../etc/passwd' is not a DNS-1123 "
        "label" in output
    )
    assert xcom(dag_run, "simulate") is None
    assert xcom(dag_run, "hostile_release") is None
    assert release_count(namespace) == 0


def test_agent_runtime_chart_on_a_local_cluster(demo: None) -> None:
    """Any chart of the repository, not only model-endpoint: names and values templated."""
    from airflow.sdk import DAG

    from foundryflow.store.guardrail import ClusterRelease
    from foundryflow.usecase.releases import job_id, uninstall_chart
    from operators import HelmInstallOperator

    suffix = uuid4().hex[:8]
    namespace, release = f"named-ops-{suffix}", f"agent-{suffix}"
    llm = f"http://llm-{suffix}.{namespace}.svc.cluster.local:8000"
    with DAG(
        f"named_operators_agent_{suffix}",
        schedule=None,
        params={"release": release, "namespace": namespace, "llm": llm},
    ) as dag:
        HelmInstallOperator(
            task_id="agent",
            cluster=cluster_id(CLUSTER),  # by id this time
            release_name="{{ params.release }}",
            namespace="{{ params.namespace }}",
            chart_ref="charts/agent-runtime",
            values={"llmEndpoint": "{{ params.llm }}", "logLevel": "debug"},
            timeout_seconds=120,
        )

    try:
        dag_run = run(dag)

        assert str(dag_run.state) == "success"
        service = f"{release}-agent-runtime"  # the chart's fullname: <release>-<chart>
        assert xcom(dag_run, "agent") == {
            "job_id": job_id(UUID(cluster_id(CLUSTER)), namespace, release, 1),
            "cluster_id": cluster_id(CLUSTER),
            "namespace": namespace,
            "release_name": release,
            "revision": 1,
            "chart": "agent-runtime-0.1.0",
            "status": "deployed",
            "endpoint_url": f"http://{service}.{namespace}.svc.cluster.local:8080",
            "services": [service],
        }
        with session_scope() as session:
            row = session.scalars(
                select(ClusterRelease).where(
                    ClusterRelease.namespace == namespace, ClusterRelease.name == release
                )
            ).one()
            assert (row.chart, row.chart_version) == ("agent-runtime", None)
            assert row.values == {"llmEndpoint": llm, "logLevel": "debug"}
            assert [endpoint["url"] for endpoint in row.endpoints] == [
                f"http://{service}.{namespace}.svc.cluster.local:8080"
            ]
    finally:
        uninstall_chart(CLUSTER, release, namespace)
    assert release_count(namespace) == 0


def test_hostile_values_and_chart_refs_fail_before_any_backend(
    demo: None, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocked values at any depth, a path out of charts/ and values the chart's schema
    refuses: each task fails with the path and the reason on one line, nothing recorded."""
    from airflow.sdk import DAG

    import foundryflow.usecase.releases as releases
    from operators import HelmInstallOperator

    backends: list[object] = []
    real_backend_for = releases.backend_for

    def spy(cluster: Any, **kwargs: Any) -> Any:
        backends.append(cluster)
        return real_backend_for(cluster, **kwargs)

    monkeypatch.setattr(releases, "backend_for", spy)
    suffix = uuid4().hex[:8]
    namespace = f"named-ops-{suffix}"
    tasks = {
        "privileged_pod": {"values": {"podSecurityContext": {"privileged": True}}},
        "privileged_nested": {"values": {"x": [{"securityContext": {"privileged": True}}]}},
        "chart_traversal": {"chart_ref": "charts/../x"},
        "version_of_local_chart": {"chart_version": "1.2.3"},
        "schema_refused": {"values": {"replicaCount": "two", "unknownKey": 1}},
        "unknown_cluster": {"cluster": "no-such-cluster"},
    }
    with DAG(f"named_operators_hostile_{suffix}", schedule=None) as dag:
        for task_id, arguments in tasks.items():
            HelmInstallOperator(
                **{
                    "task_id": task_id,
                    "cluster": CLUSTER,
                    "release_name": f"{task_id.replace('_', '-')}-{suffix}",
                    "namespace": namespace,
                    "chart_ref": "charts/agent-runtime",
                    **arguments,
                }
            )

    try:
        dag_run = run(dag)
        output = "".join(capfd.readouterr())
        reached = list(backends)  # before the cleanup below asks for backends itself
    finally:
        for task_id in tasks:
            releases.uninstall_chart(CLUSTER, f"{task_id.replace('_', '-')}-{suffix}", namespace)

    assert str(dag_run.state) == "failed"
    assert states(dag_run) == dict.fromkeys(tasks, "failed")
    for task_id in tasks:
        assert xcom(dag_run, task_id) is None
    assert release_count(namespace) == 0
    # Each message is one line: path and reason in one substring.
    assert (
        f"values of release privileged-pod-{suffix} refused: podSecurityContext.privileged "
        "is blocked (a privileged container has full access to the node)" in output
    )
    assert (
        f"values of release privileged-nested-{suffix} refused: "
        "x[0].securityContext.privileged is blocked (a privileged container has full access "
        "to the node)" in output
    )
    assert (
        "chart reference 'charts/../x' contains '.' or '..' path segments: write the path "
        "without them" in output
    )
    assert (
        "charts/agent-runtime is a local chart, used as it is in the repository: give no "
        "version (got '1.2.3')" in output
    )
    assert (
        "values rejected by charts/agent-runtime/values.schema.json: (root): Additional "
        "properties are not allowed ('unknownKey' was unexpected); replicaCount: 'two' is not "
        "of type 'integer'" in output
    )
    assert "no cluster 'no-such-cluster' (neither a cluster id nor a name)" in output
    # Only the schema check reached a backend (the local one renders the chart to check it).
    assert reached == [UUID(cluster_id(CLUSTER))]
