"""The SKIP LOCKED queue, workers and the ``matrix`` CLI against the real PostgreSQL.

Concurrency is real: threads, ``multiprocessing`` processes and a SIGKILLed subprocess
worker drain the same rows; afterwards every config must be completed exactly once with
exactly one result row. Each test works on its own model version.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib.metadata import EntryPoint
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from foundryflow.benchmark import queries, runners
from foundryflow.benchmark.cli import matrix_app
from foundryflow.benchmark.matrix import ModelVersionNotFoundError, populate
from foundryflow.benchmark.queue import (
    ClaimedConfig,
    Outcome,
    claim_batch,
    complete,
    complete_and_claim,
    complete_many,
    fail,
    heartbeat,
    progress,
    reset_stale,
)
from foundryflow.benchmark.worker import drain
from foundryflow.config import get_settings
from foundryflow.store.catalog import ConfigStatus
from foundryflow.store.db import get_engine
from tests.test_matrix import (
    MODEL_PREFIX,
    Catalog,
    drop_test_rows,
    make_catalog,
    make_version,
)

NOW = datetime.now(UTC)


class Noop:
    name = "noop"

    def run(self, config: ClaimedConfig) -> dict[str, Any]:
        return {"config": config.id, "hardware": config.hardware}


class Failing:
    name = "failing"

    def run(self, config: ClaimedConfig) -> dict[str, Any]:
        raise RuntimeError(f"out of memory on {config.hardware}")


class RegisteredNoop(runners.BaseRunner[Any]):
    """The CLI finds runners through the registry; this one is registered by the CLI tests."""

    name = "test-noop"

    class Options(runners.RunnerOptions):
        label: str = "default"

    def run(self, cell: Any) -> dict[str, Any]:
        return {"label": self.options.label}


@pytest.fixture(scope="module")
def catalog() -> Iterator[Catalog]:
    catalog = make_catalog()
    yield catalog
    drop_test_rows(catalog)


def new_matrix(catalog: Catalog, **filters: Any) -> tuple[int, int]:
    """A fresh model version with its matrix populated; (version id, config count)."""
    version = make_version()
    return version, populate(version, catalog.filters(**filters)).inserted


def query(sql: str, **params: Any) -> list[Any]:
    with get_engine().connect() as conn:
        return list(conn.execute(text(sql), params).all())


def status_counts(version: int) -> dict[str, int]:
    rows = query(
        "SELECT status, count(*) FROM benchmark_configs WHERE model_version_id = :v "
        "GROUP BY status",
        v=version,
    )
    return {status: count for status, count in rows}


def assert_exactly_once(version: int, count: int) -> None:
    """Every config completed, each with exactly one result row."""
    assert status_counts(version) == {"completed": count}
    wrong = query(
        "SELECT c.id, count(r.id) FROM benchmark_configs c "
        "LEFT JOIN benchmark_results r ON r.config_id = c.id "
        "WHERE c.model_version_id = :v GROUP BY c.id HAVING count(r.id) <> 1",
        v=version,
    )
    assert wrong == []


# --- claiming -------------------------------------------------------------------------------


def test_claim_orders_by_priority_then_id_and_fills_the_runner_fields(catalog: Catalog) -> None:
    version, count = new_matrix(catalog)
    expected = [
        row[0]
        for row in query(
            "SELECT id FROM benchmark_configs WHERE model_version_id = :v ORDER BY priority, id",
            v=version,
        )
    ]
    first = claim_batch("w-order", 7, version)
    second = claim_batch("w-order", 7, version)
    assert [c.id for c in first + second] == expected[:14]
    assert first[0].priority == 100 and first[0].workload_type == "chatbot"
    assert first[0].batch_size == 1
    config = first[0]
    assert config.claimed_by == "w-order" and config.attempts == 1
    assert config.hardware in (catalog.small_gpu, catalog.big_gpu, catalog.cpu)
    assert config.framework in (catalog.gpu_only, catalog.any_device)
    assert config.model_uri.startswith(MODEL_PREFIX) and config.dtype == "bf16"
    running = query(
        "SELECT claimed_by, claimed_at IS NOT NULL, heartbeat_at IS NOT NULL, attempts "
        "FROM benchmark_configs WHERE id = :id",
        id=config.id,
    )
    assert running == [("w-order", True, True, 1)]
    assert status_counts(version) == {"running": 14, "pending": count - 14}
    with pytest.raises(ValueError, match="n must be at least 1"):
        claim_batch("w-order", 0, version)
    with pytest.raises(ValueError, match="worker_id"):
        claim_batch("", 1, version)


def test_claim_uses_the_partial_indexes(catalog: Catalog) -> None:
    new_matrix(catalog, batch_sizes=list(range(1, 33)), sequence_lengths=list(range(1, 11)))
    with get_engine().connect() as conn:
        conn.exec_driver_sql("ANALYZE benchmark_configs")
        claim_plan = conn.exec_driver_sql(
            "EXPLAIN " + queries.CLAIM_BATCH,
            {"worker_id": "w", "n": 10, "model_version_id": None},
        ).scalars()
        assert "Index Scan using ix_benchmark_configs_claim" in "\n".join(claim_plan)
        reset_plan = conn.exec_driver_sql(
            "EXPLAIN " + queries.RESET_STALE, {"older_than": timedelta(hours=2), "max_attempts": 3}
        ).scalars()
        assert "ix_benchmark_configs_lease" in "\n".join(reset_plan)
        # the plan a worker reuses (queries.WORKER_SESSION) must not depend on n either
        conn.exec_driver_sql(queries.WORKER_SESSION)
        claim = queries.CLAIM_BATCH.replace("%(worker_id)s", "$1").replace("%(n)s", "$2")
        conn.exec_driver_sql(f"PREPARE generic_claim (text, integer) AS {claim}")
        generic = "\n".join(
            conn.exec_driver_sql("EXPLAIN EXECUTE generic_claim('w', 10)").scalars()
        )
        assert "Index Scan using ix_benchmark_configs_claim" in generic
        assert "Seq Scan on benchmark_configs" not in generic
        conn.rollback()


def _claim_and_complete(worker_id: str, version: int, batch: int) -> list[int]:
    """Claim and complete until nothing is pending; the ids this worker completed."""
    done: list[int] = []
    while configs := claim_batch(worker_id, batch, version):
        for config in configs:
            assert complete(config.id, worker_id, "noop", {"by": worker_id}, NOW, NOW)
            done.append(config.id)
    return done


def test_concurrent_threads_never_share_a_row(catalog: Catalog) -> None:
    version, count = new_matrix(catalog, batch_sizes=[1, 2, 4, 8])
    results: dict[str, set[int]] = {}

    def work(worker_id: str) -> None:
        mine: set[int] = set()
        while configs := claim_batch(worker_id, 7, version):
            outcomes = [Outcome(c.id, {"by": worker_id}, NOW, NOW) for c in configs]
            assert complete_many(worker_id, "noop", outcomes) == {c.id for c in configs}
            mine.update(c.id for c in configs)
        results[worker_id] = mine

    threads = [threading.Thread(target=work, args=(f"thread-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [config_id for ids in results.values() for config_id in ids]
    assert len(claimed) == len(set(claimed)) == count
    assert_exactly_once(version, count)


def test_concurrent_processes_complete_every_config_exactly_once(catalog: Catalog) -> None:
    version, count = new_matrix(catalog, batch_sizes=[1, 2, 4, 8, 16, 32], sequence_lengths=[
        128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536
    ])  # fmt: skip
    assert count == 600
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        per_worker = pool.starmap(
            _claim_and_complete, [(f"process-{i}", version, 5) for i in range(4)]
        )
    claimed = [config_id for ids in per_worker for config_id in ids]
    assert len(claimed) == len(set(claimed)) == count
    assert sum(1 for ids in per_worker if ids) >= 2  # they really did share the work
    assert_exactly_once(version, count)


# --- completing, failing, leases --------------------------------------------------------------


def test_complete_is_fenced_after_the_row_is_reset_and_reclaimed(catalog: Catalog) -> None:
    version, _ = new_matrix(catalog, batch_sizes=[1], sequence_lengths=[512])
    [config] = claim_batch("worker-a", 1, version)
    assert reset_stale(timedelta(0)) >= 1  # worker A looks dead
    [again] = claim_batch("worker-b", 1, version)
    assert again.id == config.id and again.attempts == 2
    assert heartbeat("worker-a", [config.id]) == 0
    assert not complete(config.id, "worker-a", "noop", {"late": True}, NOW, NOW)
    assert fail(config.id, "worker-a", "late failure") is None
    assert complete(config.id, "worker-b", "noop", {"on": "time"}, NOW, NOW)
    assert not complete(config.id, "worker-b", "noop", {"twice": True}, NOW, NOW)
    results = query(
        "SELECT worker_id, runner, metrics FROM benchmark_results WHERE config_id = :id",
        id=config.id,
    )
    assert results == [("worker-b", "noop", {"on": "time"})]


def test_complete_many_reports_what_was_fenced_out(catalog: Catalog) -> None:
    version, _ = new_matrix(catalog, batch_sizes=[1], sequence_lengths=[512, 1024])
    configs = claim_batch("worker-m", 3, version)
    other = claim_batch("worker-n", 1, version)
    outcomes = [Outcome(c.id, {"n": i}, NOW, NOW) for i, c in enumerate(configs + other)]
    assert complete_many("worker-m", "noop", outcomes) == {c.id for c in configs}
    assert complete_many("worker-m", "noop", outcomes) == set()
    with pytest.raises(ValueError, match="twice"):
        complete_many("worker-m", "noop", [outcomes[0], outcomes[0]])
    assert complete_many("worker-m", "noop", []) == set()


def test_complete_and_claim_records_one_batch_and_claims_the_next(catalog: Catalog) -> None:
    version, count = new_matrix(catalog, hardware=[catalog.cpu], batch_sizes=[1])
    assert count == 6
    first = claim_batch("worker-a", 4, version)
    assert reset_stale(timedelta(0)) >= 4  # worker-a looks dead...
    taken = claim_batch("worker-b", 2, version)  # ...worker-b takes two of its four
    back = claim_batch("worker-a", 2, version)  # and worker-a gets the other two back
    assert [c.id for c in back] == [c.id for c in first[2:]]
    outcomes = [Outcome(c.id, {"i": i}, NOW, NOW) for i, c in enumerate(first)]
    done, claimed = complete_and_claim("worker-a", "noop", outcomes, 10, version)
    assert done == {c.id for c in first[2:]}  # worker-b's two are fenced out
    assert {c.id for c in taken} == {c.id for c in first[:2]}
    assert len(claimed) == 2 and not {c.id for c in claimed} & {c.id for c in first}
    assert all(c.claimed_by == "worker-a" and c.hardware == catalog.cpu for c in claimed)
    last = [Outcome(c.id, {}, NOW, NOW) for c in claimed]
    assert complete_and_claim("worker-a", "noop", last, 10, version) == (
        {c.id for c in claimed},
        [],
    )
    assert complete_and_claim("worker-a", "noop", [], 10, version) == (set(), [])
    assert status_counts(version) == {"completed": 4, "running": 2}


def test_outcome_refuses_metrics_json_cannot_hold() -> None:
    with pytest.raises(ValueError, match="Out of range float values"):
        Outcome(1, {"ttft_ms": float("inf")}, NOW, NOW)
    with pytest.raises(TypeError, match="not JSON serializable"):
        Outcome(1, {"when": NOW}, NOW, NOW)
    assert json.loads(Outcome(7, {"a": [1, 2]}, NOW, NOW).document)["metrics"] == {"a": [1, 2]}


def test_fail_retries_until_max_attempts_then_fails_for_good(catalog: Catalog) -> None:
    version, _ = new_matrix(catalog, batch_sizes=[1], sequence_lengths=[512])
    first = claim_batch("worker-f", 1, version)[0]
    assert fail(first.id, "worker-f", "error 1", max_attempts=3) == ConfigStatus.PENDING
    retry = claim_batch("worker-f", 1, version)[0]
    assert retry.id == first.id and retry.attempts == 2  # same priority: retried first
    assert fail(retry.id, "worker-f", "error 2", max_attempts=3) == ConfigStatus.PENDING
    last = claim_batch("worker-g", 1, version)[0]
    assert (last.id, last.attempts) == (first.id, 3)
    assert fail(last.id, "worker-g", "error 3", max_attempts=3) == ConfigStatus.FAILED
    row = query(
        "SELECT status, attempts, last_error, claimed_by, completed_at IS NOT NULL "
        "FROM benchmark_configs WHERE id = :id",
        id=first.id,
    )
    assert row == [("failed", 3, "error 3", "worker-g", True)]
    assert claim_batch("worker-f", 100, version)[0].id != first.id
    assert fail(first.id, "worker-g", "again") is None


def test_heartbeat_extends_the_lease(catalog: Catalog) -> None:
    version, _ = new_matrix(catalog, batch_sizes=[1], sequence_lengths=[512])
    kept, lapsed = claim_batch("worker-h", 2, version)
    time.sleep(1.1)
    assert heartbeat("worker-h", [kept.id]) == 1
    assert heartbeat("someone-else", [lapsed.id]) == 0
    assert reset_stale(timedelta(seconds=1)) >= 1
    rows = dict(
        query(
            "SELECT id, status FROM benchmark_configs WHERE id IN (:a, :b)",
            a=kept.id,
            b=lapsed.id,
        )
    )
    assert rows == {kept.id: "running", lapsed.id: "pending"}
    with pytest.raises(ValueError, match="must not be negative"):
        reset_stale(timedelta(seconds=-1))


def test_a_config_that_keeps_killing_its_workers_fails_for_good(catalog: Catalog) -> None:
    """Each lost claim counts as an attempt: reset-stale fails the config at the last one."""
    version, _ = new_matrix(catalog, batch_sizes=[1], sequence_lengths=[512])
    [first] = claim_batch("doomed-1", 1, version)
    for attempt in (2, 3):
        assert reset_stale(timedelta(0), max_attempts=3) >= 1  # the worker died
        [again] = claim_batch(f"doomed-{attempt}", 1, version)
        assert (again.id, again.attempts) == (first.id, attempt)
    assert reset_stale(timedelta(0), max_attempts=3) >= 1
    [(status, error, claimed_by)] = query(
        "SELECT status, last_error, claimed_by FROM benchmark_configs WHERE id = :i", i=first.id
    )
    assert (status, claimed_by) == ("failed", "doomed-3")
    assert error == "worker doomed-3 stopped heartbeating on attempt 3 of 3 (killed or preempted)"
    assert first.id not in [c.id for c in claim_batch("doomed-4", 100, version)]


def test_progress_counts_rate_and_eta(catalog: Catalog) -> None:
    version, count = new_matrix(
        catalog, hardware=[catalog.small_gpu], frameworks=[catalog.gpu_only]
    )
    assert count == 12
    configs = claim_batch("worker-p", 6, version)
    for config in configs[:4]:
        assert complete(config.id, "worker-p", "noop", {}, NOW, NOW)
    assert fail(configs[4].id, "worker-p", "boom", max_attempts=1) == ConfigStatus.FAILED
    # Pin the clock: two were claimed 25 min ago and finished 20 min ago (outside the
    # 10 min window), three were claimed 5 min ago and finished 1 min ago.
    with get_engine().begin() as conn:
        for ids, claimed, finished in (
            ([c.id for c in configs[:2]], "25 min", "20 min"),
            ([c.id for c in configs[2:5]], "5 min", "1 min"),
        ):
            conn.execute(
                text(
                    "UPDATE benchmark_configs SET claimed_at = now() - CAST(:claimed AS interval),"
                    " completed_at = now() - CAST(:finished AS interval) WHERE id = ANY(:ids)"
                ),
                {"ids": ids, "claimed": claimed, "finished": finished},
            )
    report = progress(version)
    assert (report.pending, report.running, report.completed, report.failed) == (6, 1, 4, 1)
    assert report.total == 12
    assert report.percent == pytest.approx(100 * 5 / 12)
    # 3 finished over 5 minutes (approx: the update above ran a moment before)
    assert report.rate_per_minute == pytest.approx(3 / 5, rel=1e-3)
    assert report.eta_seconds == pytest.approx(7 / 0.6 * 60, rel=1e-3)
    # a window reaching back before the first claim measures from that claim: 5 in 25 min
    assert progress(version, timedelta(minutes=30)).rate_per_minute == pytest.approx(
        5 / 25, rel=1e-3
    )
    empty = progress(make_version())
    assert (empty.total, empty.percent, empty.eta_seconds, empty.rate_per_minute) == (
        0, 0.0, 0.0, 0.0
    )  # fmt: skip
    with pytest.raises(ModelVersionNotFoundError):
        progress(2_147_483_000)


# --- the worker -----------------------------------------------------------------------------


def test_drain_runs_everything_and_retries_failures(catalog: Catalog) -> None:
    version, count = new_matrix(catalog)
    seen: dict[int, int] = {}

    class Flaky:
        name = "flaky"

        def run(self, config: ClaimedConfig) -> dict[str, Any]:
            seen[config.id] = seen.get(config.id, 0) + 1
            if config.id % 3 == 0 and seen[config.id] == 1:
                raise TimeoutError("endpoint did not answer")
            return {"attempt": config.attempts}

    updates: list[int] = []
    summary = drain(
        "drainer",
        Flaky(),
        batch=8,
        model_version_id=version,
        on_progress=lambda s: updates.append(s.completed),
    )
    flaky = sum(1 for config_id in seen if config_id % 3 == 0)
    assert summary.completed == count and summary.failed == flaky
    assert summary.claimed == count + flaky and summary.fenced == summary.released == 0
    assert updates and updates[-1] == count and updates == sorted(updates)
    assert_exactly_once(version, count)
    retried = query(
        "SELECT count(*) FROM benchmark_configs c JOIN benchmark_results r ON r.config_id = c.id "
        "WHERE c.model_version_id = :v AND c.attempts = 2 AND r.metrics = '{\"attempt\": 2}' "
        "AND c.last_error = 'TimeoutError: endpoint did not answer' AND r.runner = 'flaky'",
        v=version,
    )
    assert retried == [(flaky,)]


def test_drain_gives_up_after_max_attempts(catalog: Catalog) -> None:
    version, count = new_matrix(catalog, hardware=[catalog.cpu], batch_sizes=[1])
    summary = drain("doomed", Failing(), batch=4, model_version_id=version, max_attempts=2)
    assert (summary.completed, summary.failed) == (0, 2 * count)
    assert status_counts(version) == {"failed": count}
    errors = query(
        "SELECT DISTINCT last_error FROM benchmark_configs WHERE model_version_id = :v", v=version
    )
    assert errors == [(f"RuntimeError: out of memory on {catalog.cpu}",)]


def test_drain_fails_a_run_whose_metrics_cannot_be_stored(catalog: Catalog) -> None:
    version, count = new_matrix(catalog, hardware=[catalog.cpu], batch_sizes=[1])

    class NotANumber:
        name = "nan"

        def run(self, config: ClaimedConfig) -> dict[str, Any]:
            return {"tokens_per_second": float("nan")}

    summary = drain("nan", NotANumber(), model_version_id=version, max_attempts=1)
    assert (summary.completed, summary.failed) == (0, count)
    assert status_counts(version) == {"failed": count}


def test_each_drain_fetches_catalog_names_afresh(catalog: Catalog) -> None:
    """Ids are unique within one life of the database only: a catalog rebuilt under a
    long-lived worker (``db downgrade base`` and upgrade, as tests/test_migrations.py does to
    the test database) gives them to other rows. A drain must not trust the names an earlier
    drain fetched, even on the same pooled connection."""
    version, count = new_matrix(catalog, hardware=[catalog.cpu], batch_sizes=[1])
    one_connection = create_engine(get_engine().url, pool_size=1, max_overflow=0)
    seen: list[str] = []

    class OneRun:
        name = "one-run"

        def __init__(self) -> None:
            self.stop = threading.Event()

        def run(self, config: ClaimedConfig) -> dict[str, Any]:
            seen.append(config.model_uri)
            self.stop.set()
            return {}

    def drain_one() -> None:
        runner = OneRun()
        summary = drain(
            "names", runner, batch=1, model_version_id=version, stop=runner.stop,
            engine=one_connection,
        )  # fmt: skip
        assert summary.completed == 1

    try:
        drain_one()
        renamed = f"{MODEL_PREFIX}{uuid.uuid4().hex}"
        with get_engine().begin() as conn:
            conn.execute(
                text(
                    "UPDATE models SET uri = :uri FROM model_versions v"
                    " WHERE v.model_id = models.id AND v.id = :v"
                ),
                {"uri": renamed, "v": version},
            )
        drain_one()
    finally:
        one_connection.dispose()
    assert seen[1] == renamed != seen[0]
    assert status_counts(version) == {"completed": 2, "pending": count - 2}


def test_drain_stops_on_request_and_releases_the_rest(catalog: Catalog) -> None:
    version, count = new_matrix(catalog)
    stop = threading.Event()

    class StopsAfterFive:
        name = "stops"
        runs = 0

        def run(self, config: ClaimedConfig) -> dict[str, Any]:
            self.runs += 1
            if self.runs == 5:
                stop.set()  # as SIGTERM does in `matrix work`
            return {}

    summary = drain("stopper", StopsAfterFive(), batch=8, model_version_id=version, stop=stop)
    assert (summary.claimed, summary.completed, summary.released) == (8, 5, 3)
    assert status_counts(version) == {"completed": 5, "pending": count - 5}
    assert query(
        "SELECT count(*) FROM benchmark_configs WHERE model_version_id = :v AND attempts <> 0 "
        "AND status = 'pending'",
        v=version,
    ) == [(0,)]


def test_drain_heartbeats_the_rows_it_holds(catalog: Catalog) -> None:
    version, _ = new_matrix(catalog, hardware=[catalog.cpu], batch_sizes=[1], workloads=["chatbot"])
    extended: list[bool] = []

    class Slow:
        name = "slow"

        def run(self, config: ClaimedConfig) -> dict[str, Any]:
            time.sleep(0.35)
            [(later,)] = query(
                "SELECT heartbeat_at > claimed_at FROM benchmark_configs WHERE id = :id",
                id=config.id,
            )
            extended.append(later)
            return {}

    drain(
        "beater", Slow(), batch=3, model_version_id=version,
        heartbeat_every=timedelta(seconds=0.1),
    )  # fmt: skip
    assert extended == [True, True, True]


VICTIM = """
import sys, time
from datetime import timedelta
from foundryflow.benchmark.worker import drain

class Slow:
    name = "slow"
    def run(self, config):
        print(config.id, flush=True)
        time.sleep(0.05)
        return {"by": "victim"}

drain("victim", Slow(), batch=8, model_version_id=int(sys.argv[1]),
      heartbeat_every=timedelta(seconds=0.2), flush_every=timedelta(seconds=0.2))
"""


def test_a_sigkilled_worker_loses_nothing(catalog: Catalog) -> None:
    version, count = new_matrix(catalog)
    assert count == 60
    victim = subprocess.Popen(
        [sys.executable, "-c", VICTIM, str(version)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert victim.stdout is not None
        for _ in range(20):  # the 20th run has started: mid third batch
            assert victim.stdout.readline(), "victim worker exited early"
        os.kill(victim.pid, signal.SIGKILL)
    finally:
        victim.kill()
        victim.wait(timeout=10)
    assert victim.returncode == -signal.SIGKILL
    held = status_counts(version)["running"]
    assert held >= 5  # runs 20-24 at least were never recorded
    assert reset_stale(timedelta(0)) >= held
    assert status_counts(version).get("running") is None
    pending = status_counts(version)["pending"]
    summary = drain("rescuer", Noop(), batch=8, model_version_id=version)
    assert summary.completed == pending
    assert_exactly_once(version, count)
    by_worker = dict(
        query(
            "SELECT r.worker_id, count(*) FROM benchmark_results r "
            "JOIN benchmark_configs c ON c.id = r.config_id WHERE c.model_version_id = :v "
            "GROUP BY r.worker_id",
            v=version,
        )
    )
    assert by_worker["victim"] >= 16 and by_worker["victim"] + by_worker["rescuer"] == count


# --- CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    point = EntryPoint("test-noop", f"{__name__}:RegisteredNoop", runners.GROUP)
    monkeypatch.setattr(runners, "registry", runners.RunnerRegistry(entry_points=[point]))


def test_cli_populate(cli: CliRunner, catalog: Catalog) -> None:
    version = make_version()
    args = ["populate", "--model-version", str(version), "--hardware", catalog.small_gpu]
    args += ["--framework", catalog.gpu_only, "--workload", "chatbot"]
    result = cli.invoke(matrix_app, [*args, "--batch-sizes", "1,8", "--sequence-lengths", "512"])
    assert result.exit_code == 0, result.output
    assert f"model version {version}: 2 inserted, 0 already present, 0 skipped" in result.output
    again = cli.invoke(matrix_app, [*args, "--batch-sizes", "1,8"], env={"TTY_COMPATIBLE": "1"})
    assert again.exit_code == 0, again.output
    assert "8 inserted, 2 already present" in again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hardware", "no-such-gpu"], "unknown hardware: no-such-gpu; known:"),
        (["--batch-sizes", "1,x"], "--batch-sizes: '1,x' is not a comma-separated list"),
        (["--batch-sizes", "0,8"], "--batch-sizes: 0: Input should be greater than 0"),
        (["--sequence-lengths", "512,512"], "--sequence-lengths: duplicate sequence lengths"),
    ],
)
def test_cli_populate_errors_exit_2(
    cli: CliRunner, catalog: Catalog, args: list[str], message: str
) -> None:
    version = make_version()
    result = cli.invoke(matrix_app, ["populate", "--model-version", str(version), *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert status_counts(version) == {}


def test_cli_populate_unknown_model_version(cli: CliRunner) -> None:
    result = cli.invoke(matrix_app, ["populate", "--model-version", "2147483000"])
    assert result.exit_code == 2
    assert "model version 2147483000 does not exist" in result.output


def test_cli_work_drains_with_a_registered_runner(
    cli: CliRunner, catalog: Catalog, registered: None
) -> None:
    version, count = new_matrix(catalog, hardware=[catalog.cpu])
    worker = f"cli-{uuid.uuid4().hex[:6]}"
    result = cli.invoke(
        matrix_app,
        [
            *("work", "--worker-id", worker, "--runner", "test-noop", "--batch", "5"),
            *("--model-version", str(version), "--runner-option", "label=from-cli"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"worker {worker}: claimed {count}, completed {count}, failed 0" in result.output
    assert "nothing pending: done" in result.output
    assert_exactly_once(version, count)
    assert query(
        "SELECT DISTINCT r.metrics FROM benchmark_results r JOIN benchmark_configs c "
        "ON c.id = r.config_id WHERE c.model_version_id = :v",
        v=version,
    ) == [({"label": "from-cli"},)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--runner", "no-such-runner"], "unknown runner 'no-such-runner'"),
        (["--runner", "test-noop", "--runner-option", "label"], "is not key=value"),
        (["--runner", "test-noop", "--runner-option", "colour=red"], "unknown option 'colour'"),
    ],
)
def test_cli_work_errors_exit_2(
    cli: CliRunner, registered: None, args: list[str], message: str
) -> None:
    result = cli.invoke(matrix_app, ["work", "--worker-id", "w", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_cli_reset_stale(cli: CliRunner, catalog: Catalog) -> None:
    version, _ = new_matrix(catalog, hardware=[catalog.cpu], batch_sizes=[1])
    claim_batch("cli-stale", 2, version)
    result = cli.invoke(matrix_app, ["reset-stale", "--older-than", "0s"])
    assert result.exit_code == 0, result.output
    assert "stale config(s) (no heartbeat for 0:00:00)" in result.output
    assert status_counts(version).get("running") is None
    default = cli.invoke(matrix_app, ["reset-stale"])
    assert "(no heartbeat for 2:00:00)" in default.output
    compound = cli.invoke(matrix_app, ["reset-stale", "--older-than", "1h30m"])
    assert "(no heartbeat for 1:30:00)" in compound.output
    bad = cli.invoke(matrix_app, ["reset-stale", "--older-than", "2 hours"])
    assert bad.exit_code == 2
    assert "--older-than: '2 hours' is not a duration" in " ".join(bad.output.split())


def test_cli_progress(cli: CliRunner, catalog: Catalog) -> None:
    version, count = new_matrix(catalog, hardware=[catalog.cpu])
    for config in claim_batch("cli-progress", 3, version):
        complete(config.id, "cli-progress", "noop", {}, NOW, NOW)
    as_json = cli.invoke(matrix_app, ["progress", "--model-version", str(version), "--json"])
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    assert (report["completed"], report["pending"], report["total"]) == (3, count - 3, count)
    plain = cli.invoke(matrix_app, ["progress", "--model-version", str(version)])
    assert plain.exit_code == 0
    assert f"pending {count - 3}\nrunning 0\ncompleted 3\nfailed 0\n" in plain.output
    tty = cli.invoke(
        matrix_app, ["progress", "--model-version", str(version)], env={"TTY_COMPATIBLE": "1"}
    )
    assert tty.exit_code == 0
    assert f"25.0%  3/{count}" in tty.output and "━" in tty.output
    missing = cli.invoke(matrix_app, ["progress", "--model-version", "2147483000"])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_cli_without_a_database_says_what_to_set(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FOUNDRYFLOW_DATABASE_URL")
    get_settings.cache_clear()
    try:
        result = cli.invoke(matrix_app, ["reset-stale"])
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "FOUNDRYFLOW_DATABASE_URL is not set" in result.output
