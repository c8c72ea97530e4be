"""The in-process engine: a pipeline run driven from inside this Python process.

Airflow (triggered and scheduled runs, the UI) and Argo (runs on Kubernetes) remain the
engines of record. A *pipeline deployment* is a different shape of work: a Kubernetes
Deployment whose pods each run one pipeline again and again (``benchmark-matrix``
workers draining a shared queue). A DAG run or a Workflow per iteration would put a
scheduler round trip and a pod start in front of every work item, so the runner pods
drive the pipeline themselves, with :func:`work_loop` around :func:`run_inline`.

This module decides only *when* a step runs, never *what* happens: it makes exactly the
runtime calls the compiled Airflow DAG makes, in the same order, so conditions, skips,
rollback, finally steps, outputs, progress and events are those of the other engines::

    start_execution -> regular steps by depends_on -> rollback (on_failure: rollback)
                    -> finally steps by depends_on among them -> finish_execution

Trigger rules are Airflow's (see :mod:`foundryflow.compile.airflow`): with ``on_failure``
``fail`` or ``rollback`` a step whose dependency failed is never started (Airflow's
``upstream_failed``; ``settle`` then records it SKIPPED), with ``continue`` it runs once
its dependencies are done; finally steps always run.

Known differences from the other engines, all about time: ``timeout_seconds`` (of a step
or of the run) is not enforced, because a thread cannot be killed; a step that hangs
holds its runner until the pod's liveness probe restarts it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from sqlalchemy import select

from foundryflow.runtime.executions import (
    FinishedExecution,
    cancel_execution,
    finish_execution,
    start_execution,
)
from foundryflow.runtime.rollback import rollback
from foundryflow.runtime.state import PARENT, load_execution, pipeline_of
from foundryflow.runtime.steps import fanout, run_step
from foundryflow.spec.model import Pipeline, Step
from foundryflow.spec.params import validate_run_params
from foundryflow.spec.validate import topological_order
from foundryflow.store.db import session_scope
from foundryflow.store.models import ExecutionStatus, StepRun, StepStatus

log = logging.getLogger(__name__)

__all__ = ["ENGINE", "HEARTBEAT_SECONDS", "InlineResult", "run_inline", "work_loop"]

ENGINE = "inline"
"""``executions.engine`` of runs made here (engine names are free strings, max 16 chars)."""
HEARTBEAT_SECONDS = 5.0
"""How often :func:`work_loop` touches its heartbeat file while it waits between runs."""
MAX_ENGINE_RUN_ID = 250
"""Length of ``executions.engine_run_id``."""


@dataclass(frozen=True)
class InlineResult:
    """How one inline run ended, as recorded in PostgreSQL (the record is the truth)."""

    execution_id: UUID
    engine_run_id: str
    status: ExecutionStatus
    error: str | None
    outputs: dict[str, Any] | None

    @classmethod
    def of(
        cls, execution_id: UUID, engine_run_id: str, finished: FinishedExecution
    ) -> InlineResult:
        return cls(execution_id, engine_run_id, finished.status, finished.error, finished.outputs)


class _Stopped(Exception):
    """The stop event was set before every step had started."""


def run_inline(
    pipeline: Pipeline,
    params: dict[str, Any],
    *,
    engine_run_id: str,
    max_parallel: int = 4,
    stop: threading.Event | None = None,
) -> InlineResult:
    """Run ``pipeline`` once in this process and return its recorded end.

    Up to ``max_parallel`` steps (or fan-out items) run at once in a thread pool; a step
    starts when all its dependencies have finished. Keep ``max_parallel`` well below the
    process's database pool (10 connections): every running step holds a connection at
    its start and end.

    ``engine_run_id`` names the run (``execution_id_for("inline", engine_run_id)``), so
    calling again with the same id continues that execution (finished steps are never run
    twice) or, when it has finished, just returns its record.

    ``stop`` is how a runner pod shuts down (SIGTERM): once it is set no new step or item
    starts; the ones already running finish (threads cannot be interrupted, so the pod's
    grace period must cover the longest step); then the run is cancelled exactly as
    ``foundryflow executions cancel`` would (:func:`cancel_execution`: compensations,
    closing steps, final record) and the result is CANCELLED. A stop that comes after the
    last regular step started does not cancel anything: the run completes normally.

    Invalid params raise ``ParamsError`` before anything is recorded. An unexpected
    exception from the runtime (not a step failure, which ``run_step`` records itself: a
    lost database connection, a bug) stops new work, lets running steps finish, closes
    the run like a failed engine (rollback if configured, finally steps,
    ``finish_execution(engine_failed=True)``) and *returns* the FAILED result, logged with
    its traceback: a runner pool goes on with its next run, and the record says what
    happened. Only when even the final record cannot be written is the exception raised,
    because then the caller cannot know the run's state. ``KeyboardInterrupt`` and
    ``SystemExit`` are recorded the same way, best effort, and re-raised.
    """
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be at least 1, got {max_parallel}")
    if len(engine_run_id) > MAX_ENGINE_RUN_ID:
        raise ValueError(f"engine_run_id is longer than {MAX_ENGINE_RUN_ID} characters")
    execution_id = start_execution(pipeline, params, engine=ENGINE, engine_run_id=engine_run_id)
    # Scheduled from the spec pinned at start, as every engine task reads it: identical for
    # a new run, and the right one when an existing execution is continued.
    pinned, already = _pinned(execution_id)
    if already is not None:
        return InlineResult.of(execution_id, engine_run_id, already)
    runner = _Runner(execution_id, max_parallel, stop)
    closing = False
    try:
        try:
            runner.run(pinned.regular_steps, run_after_failure=_runs_after_failure(pinned))
        except _Stopped:
            closing = True
            reason = "stopped: the inline runner was asked to stop before every step started"
            log.info("execution %s: %s", execution_id, reason)
            finished = cancel_execution(execution_id, reason)
        else:
            closing = True
            finished = _close(runner, pinned, engine_failed=False, message=None)
    except Exception as exc:
        log.exception("execution %s: the inline engine failed", execution_id)
        finished = _close_after_error(runner, pinned, exc, closing_failed=closing)
    except BaseException as exc:  # Ctrl-C, SystemExit: record what we can, then go
        runner.abandon()
        try:
            finish_execution(execution_id, True, f"the inline runner was interrupted: {exc!r}")
        except Exception:
            log.exception("execution %s: could not record the interruption", execution_id)
        raise
    finally:
        runner.shutdown()
    return InlineResult.of(execution_id, engine_run_id, finished)


def _runs_after_failure(pipeline: Pipeline) -> bool:
    """Airflow's trigger rule for regular steps: ``all_done`` only for ``continue``."""
    return pipeline.settings.on_failure == "continue"


def _close(
    runner: _Runner, pipeline: Pipeline, *, engine_failed: bool, message: str | None
) -> FinishedExecution:
    """The DAG's closing tasks: ``ff_rollback``, the finally steps, ``ff_finish``."""
    if pipeline.settings.on_failure == "rollback":
        rollback(runner.execution_id, engine_failed=engine_failed)
    runner.run(pipeline.finally_steps, run_after_failure=True, stoppable=False)
    return finish_execution(runner.execution_id, engine_failed, message)


def _close_after_error(
    runner: _Runner, pipeline: Pipeline, error: Exception, *, closing_failed: bool
) -> FinishedExecution:
    """Close a run whose engine (this module) failed, so it never stays RUNNING.

    An error of the regular phase gets the full closing of a failed engine run; an error
    of the closing phase itself only the final record (its steps are not tried twice).
    """
    message = f"the inline engine failed: {type(error).__name__}: {error}"
    if not closing_failed:
        try:
            return _close(runner, pipeline, engine_failed=True, message=message)
        except Exception:
            log.exception("execution %s: closing after the failure failed", runner.execution_id)
    try:  # at least the final record
        return finish_execution(runner.execution_id, True, message)
    except Exception as exc:
        raise error from exc


def _pinned(execution_id: UUID) -> tuple[Pipeline, FinishedExecution | None]:
    """The execution's pinned spec, and its end if it has already finished."""
    with session_scope() as session:
        execution = load_execution(session, execution_id)
        finished = (
            None
            if execution.finished_at is None
            else FinishedExecution(execution.status, execution.error, execution.outputs)
        )
        return pipeline_of(execution), finished


def _parent_status(execution_id: UUID, step_id: str) -> StepStatus:
    """A fan-out step's own status, which the runtime derives from its items."""
    with session_scope() as session:
        return session.scalars(
            select(StepRun.status).where(
                StepRun.execution_id == execution_id,
                StepRun.step_id == step_id,
                StepRun.map_index == PARENT,
            )
        ).one()


_Unit = tuple[str, int | None]
"""One unit of work: a step (index None), a fan-out (index PARENT) or an item (index)."""


class _Runner:
    """Schedules the steps of one execution on a thread pool; one instance per run.

    The main thread alone decides what starts (so a stop is honoured exactly: nothing
    waits in a queue); worker threads only call ``run_step`` and ``fanout``.
    """

    def __init__(self, execution_id: UUID, max_parallel: int, stop: threading.Event | None) -> None:
        self.execution_id = execution_id
        self.max_parallel = max_parallel
        self.stop = stop
        self.pool = ThreadPoolExecutor(
            max_workers=max_parallel, thread_name_prefix=f"ff-inline-{str(execution_id)[:8]}"
        )
        self.running: dict[Future[Any], _Unit] = {}
        self.abandoned = False

    def run(self, steps: list[Step], *, run_after_failure: bool, stoppable: bool = True) -> None:
        """Run ``steps`` by their ``depends_on`` (dependencies outside ``steps`` are over).

        Raises ``_Stopped`` when the stop event kept a step or item from starting, and the
        first unexpected exception of a worker; both only once nothing runs any more.
        """
        ids = {step.id for step in steps}
        deps = {step.id: [d for d in step.depends_on if d in ids] for step in steps}
        waiting = topological_order(steps)
        done: set[str] = set()
        failed: set[str] = set()  # failed, or not started because a dependency failed
        items: deque[_Unit] = deque()
        items_left: dict[str, int] = {}
        stopped = False
        error: BaseException | None = None

        def finish(step_id: str, status: StepStatus) -> None:
            done.add(step_id)
            if status == StepStatus.FAILED:
                failed.add(step_id)

        while True:
            # Start what may start, in order: pending items, then steps whose deps are done.
            while error is None and not stopped and len(self.running) < self.max_parallel:
                unit = self._next(items, waiting, deps, done, failed, run_after_failure)
                if unit is None:
                    break
                if stoppable and self.stop is not None and self.stop.is_set():
                    stopped = True
                    break
                self._start(unit, waiting)
            if not self.running:
                break
            finished, _ = wait(self.running, return_when=FIRST_COMPLETED)
            for future in finished:
                step_id, index = self.running.pop(future)
                try:
                    result = future.result()
                    if index is None:
                        finish(step_id, result.status)
                    elif index == PARENT:
                        indices: list[int] = result
                        if indices:
                            items_left[step_id] = len(indices)
                            items.extend((step_id, i) for i in indices)
                        else:  # skipped, failed, or mapped over nothing
                            finish(step_id, _parent_status(self.execution_id, step_id))
                    else:
                        items_left[step_id] -= 1
                        if items_left[step_id] == 0:
                            finish(step_id, _parent_status(self.execution_id, step_id))
                except Exception as exc:
                    if error is None:
                        error = exc
                    else:
                        log.error("execution %s: also failed: %r", self.execution_id, exc)
        if error is not None:
            raise error
        if stopped:
            raise _Stopped()
        if missing := sorted(ids - done):
            raise RuntimeError(f"steps never became ready (dependency cycle?): {missing}")

    def _next(
        self,
        items: deque[_Unit],
        waiting: list[Step],
        deps: dict[str, list[str]],
        done: set[str],
        failed: set[str],
        run_after_failure: bool,
    ) -> _Unit | None:
        """The next unit to start, or None. A step whose dependency failed is settled
        here as not started (and so are, in turn, its dependents)."""
        if items:
            return items.popleft()
        progressed = True
        while progressed:
            progressed = False
            for step in waiting:
                if not all(d in done for d in deps[step.id]):
                    continue
                if not run_after_failure and any(d in failed for d in deps[step.id]):
                    # Never started, like Airflow's upstream_failed: the row stays PENDING
                    # and settle records it SKIPPED when the run closes.
                    waiting.remove(step)
                    done.add(step.id)
                    failed.add(step.id)
                    progressed = True
                    break
                return (step.id, None if step.foreach is None else PARENT)
        return None

    def _start(self, unit: _Unit, waiting: list[Step]) -> None:
        step_id, index = unit
        future: Future[Any]
        if index is None:
            future = self.pool.submit(run_step, self.execution_id, step_id)
        elif index == PARENT:
            future = self.pool.submit(fanout, self.execution_id, step_id)
        else:
            future = self.pool.submit(run_step, self.execution_id, step_id, index)
        if index is None or index == PARENT:
            waiting[:] = [step for step in waiting if step.id != step_id]
        self.running[future] = unit

    def abandon(self) -> None:
        """Interrupted: start nothing more and drop what has not started."""
        self.abandoned = True
        self.pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        """Release the threads (idle by now, unless the run was abandoned)."""
        self.pool.shutdown(wait=not self.abandoned)


# --------------------------------------------------------------------------- the loop
def work_loop(
    pipeline: Pipeline,
    params: dict[str, Any],
    *,
    worker_id: str,
    interval: float,
    max_runs: int | None = None,
    stop: threading.Event,
    on_result: Callable[[InlineResult], None] | None = None,
    heartbeat: Path | None = None,
    max_parallel: int = 4,
) -> int:
    """Run ``pipeline`` again and again: the main loop of a runner pod.

    Each run is one execution with ``engine_run_id`` ``<worker_id>/<loop id>/<n>`` (``n``
    from 1); the loop id (start time and a random suffix) keeps ids unique when the pod
    restarts with the same name, so a restart never continues an old execution.

    Between runs it waits ``interval`` seconds; ``stop`` (set by the pod's SIGTERM
    handler) ends the wait at once and ends the loop; a run in progress when it is set is
    stopped as :func:`run_inline` describes. A failed run does not stop the loop, nor does
    an exception of ``run_inline`` (logged; the next run comes after the interval): a
    runner pool outlives a bad work item or a database blip. Params are validated once,
    up front, so a misconfigured pool fails at start (``ParamsError``) instead of
    failing every run. Errors of ``on_result`` are the caller's and propagate.

    ``heartbeat`` is touched before each run and every ``HEARTBEAT_SECONDS`` while
    waiting, for a liveness probe that checks its age; it is not touched during a run,
    so the probe's threshold must exceed the longest run (a hung run then restarts the
    pod, which is the point).

    Returns the number of runs started, failed and cancelled ones included.
    """
    if max_runs is not None and max_runs < 0:
        raise ValueError(f"max_runs must not be negative, got {max_runs}")
    validate_run_params(pipeline, params)
    loop_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    if heartbeat is not None:
        heartbeat.parent.mkdir(parents=True, exist_ok=True)
    runs = 0
    while not stop.is_set() and (max_runs is None or runs < max_runs):
        if runs and not _wait(interval, stop, heartbeat):
            break
        _touch(heartbeat)
        runs += 1
        engine_run_id = f"{worker_id}/{loop_id}/{runs}"
        try:
            result = run_inline(
                pipeline, params, engine_run_id=engine_run_id, max_parallel=max_parallel, stop=stop
            )
        except Exception:
            log.exception("run %s of %s failed in the engine", engine_run_id, pipeline.name)
            continue
        log.info(
            "run %s of %s: %s%s",
            engine_run_id,
            pipeline.name,
            result.status,
            f" ({result.error})" if result.error else "",
        )
        if on_result is not None:
            on_result(result)
    return runs


def _touch(heartbeat: Path | None) -> None:
    if heartbeat is not None:
        heartbeat.touch()


def _wait(interval: float, stop: threading.Event, heartbeat: Path | None) -> bool:
    """Wait ``interval`` seconds, touching the heartbeat; False if ``stop`` was set."""
    deadline = time.monotonic() + interval
    _touch(heartbeat)
    while (remaining := deadline - time.monotonic()) > 0:
        if stop.wait(min(remaining, HEARTBEAT_SECONDS)):
            return False
        _touch(heartbeat)
    return not stop.is_set()
