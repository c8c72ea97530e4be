"""A worker: drain the matrix queue, one claimed batch at a time, until nothing is pending.

Each Argo worker pod or Airflow mapped task runs :func:`drain`; any number of them may run
against one database. At the end of each batch one statement records its results and
claims the next batch (``queue.complete_and_claim``), so a fast runner costs one round
trip and one commit per batch. When runs are slow, results are recorded as soon as the
oldest unrecorded run started ``flush_every`` ago, so a killed worker loses about that
much finished work at most (its rows stay ``running`` and come back through
``reset_stale``). A background thread heartbeats every row claimed and not yet recorded.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import Engine

from foundryflow.benchmark import queries, queue
from foundryflow.benchmark.queue import ClaimedConfig, Outcome
from foundryflow.benchmark.runners import Runner
from foundryflow.store.db import get_engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrainSummary:
    """What one drain did; ``claimed`` counts a retried config once per claim."""

    claimed: int = 0
    completed: int = 0
    failed: int = 0
    """Runs that raised or returned metrics JSON cannot hold (retried later or failed)."""
    fenced: int = 0
    """Finished runs whose lease had been reset meanwhile; another worker owns them."""
    released: int = 0
    """Claimed but never started because ``stop`` was set; back to pending."""
    seconds: float = 0.0


class _Heartbeat(threading.Thread):
    """Extends the lease of the rows this worker holds, every ``every`` seconds."""

    def __init__(self, worker_id: str, every: timedelta, engine: Engine) -> None:
        super().__init__(name=f"heartbeat-{worker_id}", daemon=True)
        self.worker_id = worker_id
        self.every = every.total_seconds()
        self.engine = engine
        self.held: set[int] = set()
        self.lock = threading.Lock()
        self.done = threading.Event()

    def hold(self, ids: Sequence[int]) -> None:
        with self.lock:
            self.held.update(ids)

    def drop(self, ids: Sequence[int]) -> None:
        with self.lock:
            self.held.difference_update(ids)

    def run(self) -> None:
        while not self.done.wait(self.every):
            with self.lock:
                ids = sorted(self.held)
            try:
                queue.heartbeat(self.worker_id, ids, self.engine)
            except Exception:  # a blip must not kill the worker; fencing covers lost leases
                log.warning("heartbeat of %d configs failed", len(ids), exc_info=True)


class _Drain:
    """One :func:`drain` call: its connection, heartbeat, unrecorded outcomes, counts and the
    catalog names it has seen."""

    def __init__(
        self,
        worker_id: str,
        runner: Runner,
        bind: queue.Bind,
        beat: _Heartbeat,
        stop: threading.Event,
        on_progress: Callable[[DrainSummary], None] | None,
        max_attempts: int,
        flush_every: timedelta,
    ) -> None:
        self.worker_id = worker_id
        self.runner = runner
        self.bind = bind
        self.beat = beat
        self.stop = stop
        self.on_progress = on_progress
        self.max_attempts = max_attempts
        self.flush_every = flush_every
        self.started = time.monotonic()
        self.summary = DrainSummary()
        self.outcomes: list[Outcome] = []
        self.names = queue.CatalogNames()

    def _count(self, **deltas: int) -> None:
        self.summary = replace(
            self.summary,
            **{k: getattr(self.summary, k) + v for k, v in deltas.items()},
            seconds=time.monotonic() - self.started,
        )

    def run(self, batch: int, model_version_id: int | None) -> None:
        """Run batches until none is left; each recording also claims the next batch."""
        if self.stop.is_set():
            return
        configs = queue.claim_batch(self.worker_id, batch, model_version_id, self.bind, self.names)
        while configs:
            self.beat.hold([c.id for c in configs])
            self._count(claimed=len(configs))
            self.run_batch(configs)
            if self.stop.is_set():
                self.record()
                return
            done, configs = queue.complete_and_claim(
                self.worker_id,
                self.runner.name,
                self.outcomes,
                batch,
                model_version_id,
                self.bind,
                self.names,
            )
            self._recorded(done)

    def record(self) -> None:
        if self.outcomes:
            recorded = queue.complete_many(
                self.worker_id, self.runner.name, self.outcomes, self.bind
            )
            self._recorded(recorded)

    def _recorded(self, done: set[int]) -> None:
        self.beat.drop([o.config_id for o in self.outcomes])
        self._count(completed=len(done), fenced=len(self.outcomes) - len(done))
        self.outcomes.clear()
        if self.on_progress:
            self.on_progress(self.summary)

    def run_batch(self, configs: Sequence[ClaimedConfig]) -> None:
        """Run a claimed batch, recording early when runs are slow; the rest stays unrecorded
        for the next claim to record."""
        for index, config in enumerate(configs):
            if self.stop.is_set():
                unstarted = [c.id for c in configs[index:]]
                self._count(released=queue.release(self.worker_id, unstarted, self.bind))
                self.beat.drop(unstarted)
                return
            started_at = datetime.now(UTC)
            try:
                metrics = self.runner.run(config)
                outcome = Outcome(config.id, metrics, started_at, datetime.now(UTC))
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                status = queue.fail(config.id, self.worker_id, error, self.max_attempts, self.bind)
                self.beat.drop([config.id])
                self._count(failed=1, fenced=int(status is None))
                continue
            self.outcomes.append(outcome)
            if outcome.finished_at - self.outcomes[0].started_at >= self.flush_every:
                self.record()


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (a spot node's notice, ``kubectl delete pod``, Airflow killing a task) and
    Ctrl-C set ``stop``: the current run finishes, unstarted configs are released. Outside
    the main thread (where Python cannot take signals) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def drain(
    worker_id: str,
    runner: Runner,
    batch: int = 10,
    model_version_id: int | None = None,
    heartbeat_every: timedelta = timedelta(seconds=30),
    stop: threading.Event | None = None,
    on_progress: Callable[[DrainSummary], None] | None = None,
    max_attempts: int = 3,
    flush_every: timedelta = timedelta(seconds=1),
    engine: Engine | None = None,
) -> DrainSummary:
    """Claim batches and run them until nothing is pending or ``stop`` is set.

    A run that raises is recorded with ``fail`` (retried while attempts remain). When
    ``stop`` is set (SIGTERM on a spot node) the current run finishes, the rest of the batch
    is released, results are recorded and drain returns. ``on_progress`` gets the running
    summary after each recording.
    """
    engine = engine or get_engine()
    stop = stop or threading.Event()
    beat = _Heartbeat(worker_id, heartbeat_every, engine)
    beat.start()
    try:
        with engine.connect() as conn:
            # SQLAlchemy sets autocommit on the psycopg connection and resets it on return
            # to the pool; the loop itself talks to psycopg directly (see queue.Bind).
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            raw = conn.connection.driver_connection
            assert isinstance(raw, psycopg.Connection), "foundryflow runs on psycopg 3"
            state = _Drain(
                worker_id, runner, raw, beat, stop, on_progress, max_attempts, flush_every
            )
            raw.execute(queries.WORKER_SESSION)
            try:
                state.run(batch, model_version_id)
            finally:
                try:
                    raw.execute(queries.DEFAULT_SESSION)
                except psycopg.Error:  # broken: never hand it back to the pool
                    conn.invalidate()
    finally:
        beat.done.set()
        beat.join()
    return replace(state.summary, seconds=time.monotonic() - state.started)
