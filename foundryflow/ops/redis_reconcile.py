"""Redis reconcile (seed 002): rebuild every active guardrail config from PostgreSQL, compare
it with what the config store holds, report the drift and (by default) repair it.

PostgreSQL is the truth and Redis a copy the gateways read; after a ``FLUSHDB``, an eviction
or a hand edit, one run brings every active config back with the same content.

**Active deployments.** A guardrail deployment is active when the pipeline run that created
it finished ``COMPLETED``: an execution whose status is ``COMPLETED`` and whose outputs name
it (``deployment_id``, an output of both ``guardrail-deployment`` and
``guardrail-deployment-workflow``; the latter's run only completes after
``complete_workflow`` marked the workflow record completed). Not active, and left alone:

- deployments of runs still going: their own ``sync_redis`` step writes the config, and
  writing it ahead of them could resurrect a config that their rollback is removing;
- deployments of failed runs their rollback could not remove (it removes the rows);
- rows made outside a pipeline run.

These are reported as ``inactive``. A profile has one config key; should it have several
active deployments, the newest one's config is the one kept.

**Per active config**, the config is built by ``guardrail.build_config`` itself (the action,
run with a context of this job) and the store's current entry is read with one GET:

- ``missing``: no entry;
- ``drifted``: an entry with other content, or one the store cannot read (damaged or edited
  by hand, so its hash no longer matches); the latter are also counted as ``unreadable``;
- otherwise it is in sync.

**Repair** writes every active config through :meth:`GuardrailConfigStore.write`, which
changes nothing (no new version, no notification) when the identical config is current and
writes the next version otherwise, in its WATCH/MULTI transaction: a change made between our
read and our write is compared again there. Before that, a missing or unreadable entry is
restored from the newest readable entry of the profile's history (one transaction that also
publishes a ``written`` change), so the version keeps counting up from what gateways last
saw instead of starting again at 1 (the store numbers from the current entry). With no
readable history (after ``FLUSHDB``) the config is written as version 1. ``repaired``
counts the configs whose entry changed.

**Orphans** are profiles with a config or history under the store's prefix but no guardrail
deployment in PostgreSQL at all (deployments that are merely inactive do not count, see
above). They are reported and deleted only with ``prune`` (through the store, which
publishes a ``deleted`` change). Redis is scanned before PostgreSQL is read, so a config
synced during the run belongs to a deployment the read sees.

Each Redis read and write is timed with :func:`time.perf_counter`; the run is recorded in
``ops_runs`` as job ``redis_reconcile`` with the figures of :meth:`ReconcileReport.details`.
A config that cannot be built or written is reported in ``errors`` and fails the recorded
run; the others are still reconciled.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any, cast
from uuid import UUID

import redis
from pydantic import ValidationError
from redis.exceptions import WatchError
from sqlalchemy import String, exists, select
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from foundryflow.actions import ActionContext
from foundryflow.actions.guardrail.build_config import BuildConfig, BuildConfigParams
from foundryflow.configsync import GuardrailConfig, GuardrailConfigStore, StoredConfig
from foundryflow.configsync.redis_store import DEFAULT_PREFIX
from foundryflow.ops.runs import ops_run
from foundryflow.store.db import session_factory
from foundryflow.store.guardrail import GuardrailDeployment
from foundryflow.store.models import Execution, ExecutionStatus

JOB = "redis_reconcile"
"""The ``ops_runs.job`` of a reconcile; the metrics read its last run."""

log = logging.getLogger(__name__)
_NO_EXECUTION = UUID(int=0)


class ConfigState(StrEnum):
    IN_SYNC = "in_sync"
    MISSING = "missing"
    DRIFTED = "drifted"
    UNREADABLE = "unreadable"
    FAILED = "failed"
    """The config could not be built or written (see ``error``)."""


@dataclass(frozen=True)
class ConfigCheck:
    """What the run found and did for one active config."""

    profile_id: UUID
    deployment_id: UUID
    key: str
    state: ConfigState
    repaired: bool = False
    version: int | None = None
    """The version current after the run (None when nothing readable is there)."""
    sha256: str | None = None
    """Of the config built from PostgreSQL."""
    error: str | None = None


@dataclass(frozen=True)
class ReconcileReport:
    checks: tuple[ConfigCheck, ...]
    orphaned_profile_ids: tuple[UUID, ...]
    pruned: int
    inactive: int
    """Deployments in PostgreSQL that are not active (see the module docstring)."""
    read_latencies: tuple[float, ...] = field(repr=False)
    write_latencies: tuple[float, ...] = field(repr=False)

    def _count(self, *states: ConfigState) -> int:
        return sum(check.state in states for check in self.checks)

    @property
    def configs(self) -> int:
        """Active configs checked."""
        return len(self.checks)

    @property
    def missing(self) -> int:
        return self._count(ConfigState.MISSING)

    @property
    def drifted(self) -> int:
        """Other content or unreadable."""
        return self._count(ConfigState.DRIFTED, ConfigState.UNREADABLE)

    @property
    def unreadable(self) -> int:
        return self._count(ConfigState.UNREADABLE)

    @property
    def failed(self) -> int:
        return self._count(ConfigState.FAILED)

    @property
    def orphaned(self) -> int:
        return len(self.orphaned_profile_ids)

    @property
    def repaired(self) -> int:
        return sum(check.repaired for check in self.checks)

    @property
    def errors(self) -> list[str]:
        return [f"{c.profile_id}: {c.error}" for c in self.checks if c.error is not None]

    @property
    def write_latency_mean_seconds(self) -> float | None:
        return statistics.fmean(self.write_latencies) if self.write_latencies else None

    @property
    def write_latency_max_seconds(self) -> float | None:
        return max(self.write_latencies, default=None)

    @property
    def read_latency_mean_seconds(self) -> float | None:
        return statistics.fmean(self.read_latencies) if self.read_latencies else None

    @property
    def read_latency_max_seconds(self) -> float | None:
        return max(self.read_latencies, default=None)

    def check(self, profile_id: UUID | str) -> ConfigCheck | None:
        wanted = UUID(str(profile_id))
        return next((c for c in self.checks if c.profile_id == wanted), None)

    def details(self) -> dict[str, Any]:
        """The figures of the run, as recorded in ``ops_runs.details`` and output by the
        ``ops.redis_reconcile`` action."""
        return {
            "configs": self.configs,
            "missing": self.missing,
            "drifted": self.drifted,
            "unreadable": self.unreadable,
            "orphaned": self.orphaned,
            "repaired": self.repaired,
            "pruned": self.pruned,
            "inactive": self.inactive,
            "failed": self.failed,
            "write_latency_mean_seconds": self.write_latency_mean_seconds,
            "write_latency_max_seconds": self.write_latency_max_seconds,
            "read_latency_mean_seconds": self.read_latency_mean_seconds,
            "read_latency_max_seconds": self.read_latency_max_seconds,
        }


@dataclass(frozen=True)
class _Deployments:
    active: dict[UUID, UUID]
    """Profile id -> its newest active deployment."""
    known_profiles: set[UUID]
    """Profiles with any deployment, active or not."""
    inactive: int


def active_deployments(session: Session) -> _Deployments:
    """The guardrail deployments by profile, split as the module docstring says; one query."""
    completed = exists().where(
        Execution.status == ExecutionStatus.COMPLETED,
        Execution.outputs["deployment_id"].as_string() == sql_cast(GuardrailDeployment.id, String),
    )
    rows = session.execute(
        select(GuardrailDeployment.id, GuardrailDeployment.profile_id, completed.label("active"))
        # newest last, so it wins below
        .order_by(GuardrailDeployment.created_at, GuardrailDeployment.id)
    ).all()
    active: dict[UUID, UUID] = {}
    known: set[UUID] = set()
    inactive = 0
    for deployment_id, profile_id, is_active in rows:
        known.add(profile_id)
        if is_active:
            active[profile_id] = deployment_id
        else:
            inactive += 1
    return _Deployments(active, known, inactive)


def build_config(
    sessions: Callable[[], Session],
    deployment_id: UUID,
    profile_id: UUID,
    logger: logging.Logger = log,
) -> GuardrailConfig:
    """The config ``guardrail.build_config`` builds for the deployment: the action itself,
    run with a context of this job (it only uses the session factory and the log)."""
    ctx = ActionContext(
        execution_id=_NO_EXECUTION,
        pipeline="ops-redis-reconcile",
        step_id="reconcile",
        attempt=1,
        map_index=None,
        session_factory=sessions,
        log=logger,
        publish=lambda kind, fields: None,
    )
    params = BuildConfigParams(deployment_id=deployment_id, profile_id=profile_id)
    return GuardrailConfig.model_validate(BuildConfig().run(ctx, params).config)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _parse_key(key: str, prefix: str) -> UUID | None:
    """The profile of ``<prefix>:<uuid>`` or ``<prefix>:<uuid>:history``; None for other keys
    (the changes stream, keys of nested prefixes)."""
    rest = key[len(prefix) + 1 :]
    rest = rest.removesuffix(":history")
    try:
        profile = UUID(rest)
    except ValueError:
        return None
    return profile if str(profile) == rest else None


def stored_profiles(client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> set[UUID]:
    """Profiles with a config or a history under ``prefix`` (SCAN, never KEYS)."""
    found: set[UUID] = set()
    for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        profile = _parse_key(_text(key), prefix)
        if profile is not None:
            found.add(profile)
    return found


class _Timer:
    def __init__(self) -> None:
        self.reads: list[float] = []
        self.writes: list[float] = []

    def read(self, work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return work()
        finally:
            self.reads.append(time.perf_counter() - start)

    def write(self, work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return work()
        finally:
            self.writes.append(time.perf_counter() - start)


def _classify(raw: bytes | str | None, built: GuardrailConfig) -> ConfigState:
    if raw is None:
        return ConfigState.MISSING
    try:
        stored = StoredConfig.model_validate_json(raw)
    except ValidationError:
        return ConfigState.UNREADABLE
    return ConfigState.IN_SYNC if stored.sha256 == built.sha256() else ConfigState.DRIFTED


def restore_from_history(
    client: redis.Redis, store: GuardrailConfigStore, profile_id: UUID, seen: bytes | str | None
) -> bool:
    """Make the newest readable history entry the profile's current entry again, when the
    current one is still ``seen`` (missing or unreadable); with no readable history, remove
    the unreadable remains so the store can write version 1. Returns whether anything
    changed. Gives up (False) when someone else changes the entry meanwhile: the store's
    write then deals with whatever is there."""
    key, history_key = store.key(profile_id), store.history_key(profile_id)
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(key, history_key)
            if cast("bytes | str | None", pipe.get(key)) != seen:
                return False
            newest: tuple[bytes | str, StoredConfig] | None = None
            for raw in cast("list[bytes | str]", pipe.lrange(history_key, 0, -1)):
                try:
                    newest = (raw, StoredConfig.model_validate_json(raw))
                    break
                except ValidationError:
                    continue
            if newest is None and seen is None and not pipe.exists(history_key):
                return False  # nothing there at all: the write starts at version 1
            pipe.multi()
            if newest is None:
                pipe.delete(key, history_key)
            else:
                raw, stored = newest
                pipe.set(key, raw)
                pipe.xadd(
                    store.changes_stream,
                    {
                        "op": "written",
                        "profile_id": str(profile_id),
                        "key": key,
                        "version": str(stored.version),
                        "sha256": stored.sha256,
                    },
                    maxlen=store.changes_maxlen,
                    approximate=True,
                )
            pipe.execute()
            return True
        except WatchError:
            return False


def _reconcile_one(
    client: redis.Redis,
    store: GuardrailConfigStore,
    timer: _Timer,
    sessions: Callable[[], Session],
    logger: logging.Logger,
    profile_id: UUID,
    deployment_id: UUID,
    repair: bool,
) -> ConfigCheck:
    key = store.key(profile_id)
    try:
        built = build_config(sessions, deployment_id, profile_id, logger)
    except Exception as exc:  # one deployment's problem must not stop the others
        logger.exception("reconcile: cannot build the config of profile %s", profile_id)
        return ConfigCheck(
            profile_id, deployment_id, key, ConfigState.FAILED, error=f"build: {exc}"
        )
    raw = timer.read(lambda: client.get(key))
    state = _classify(raw, built)
    version = None
    if state in (ConfigState.IN_SYNC, ConfigState.DRIFTED):
        version = StoredConfig.model_validate_json(cast("bytes | str", raw)).version
    if not repair:
        return ConfigCheck(profile_id, deployment_id, key, state, False, version, built.sha256())
    try:
        restored = False
        if state in (ConfigState.MISSING, ConfigState.UNREADABLE):
            restored = timer.write(lambda: restore_from_history(client, store, profile_id, raw))
        written = timer.write(lambda: store.write(profile_id, built))
    except Exception as exc:
        logger.exception("reconcile: cannot write the config of profile %s", profile_id)
        return ConfigCheck(
            profile_id,
            deployment_id,
            key,
            ConfigState.FAILED,
            error=f"write ({state.value}): {type(exc).__name__}: {exc}",
        )
    repaired = restored or written.changed
    if repaired:
        logger.info("reconcile: %s was %s, now version %d", key, state.value, written.version)
    return ConfigCheck(
        profile_id, deployment_id, key, state, repaired, written.version, written.sha256
    )


def reconcile(
    client: redis.Redis,
    *,
    repair: bool = True,
    prune: bool = False,
    prefix: str = DEFAULT_PREFIX,
    sessions: Callable[[], Session] | None = None,
    logger: logging.Logger = log,
) -> ReconcileReport:
    """Reconcile the guardrail configs in ``client`` under ``prefix`` with PostgreSQL (module
    docstring) and record the run in ``ops_runs``; returns what was found and done.

    Raises when Redis or PostgreSQL cannot be reached at all (the run is recorded as failed
    when PostgreSQL can be); per-config problems are in the report and fail the recorded
    run without raising.
    """
    sessions = sessions or session_factory()
    store = GuardrailConfigStore(client, prefix)
    timer = _Timer()
    with ops_run(JOB) as run:
        in_redis = stored_profiles(client, prefix)  # before PostgreSQL: see module docstring
        with sessions() as session:
            deployments = active_deployments(session)
        checks = tuple(
            _reconcile_one(
                client, store, timer, sessions, logger, profile_id, deployment_id, repair
            )
            for profile_id, deployment_id in sorted(
                deployments.active.items(), key=lambda item: str(item[0])
            )
        )
        orphans = tuple(sorted(in_redis - deployments.known_profiles, key=str))
        pruned = _prune(store, timer, orphans) if prune else 0
        report = ReconcileReport(
            checks=checks,
            orphaned_profile_ids=orphans,
            pruned=pruned,
            inactive=deployments.inactive,
            read_latencies=tuple(timer.reads),
            write_latencies=tuple(timer.writes),
        )
        run.details.update(report.details())
        if report.errors:
            run.fail("; ".join(report.errors))
    logger.info("reconcile: %s", report.details())
    return report


def _prune(store: GuardrailConfigStore, timer: _Timer, orphans: Iterable[UUID]) -> int:
    pruned = 0
    for profile in orphans:
        pruned += bool(timer.write(partial(store.delete, profile)))
    return pruned
