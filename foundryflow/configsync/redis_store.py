"""Guardrail configs in Redis: written atomically with a version, read whole, deleted whole.

Key layout (``prefix`` defaults to ``foundryflow:guardrail``):

- ``<prefix>:<profile_id>``: a string, the current :class:`StoredConfig` as canonical JSON
  (version, sha256, generated_at and the config). What gateways GET.
- ``<prefix>:<profile_id>:history``: a list of the last ``history_size`` versions, newest
  first (the current one included), for inspection and manual rollback.
- ``<prefix>:changes``: a Redis Stream with one entry per committed change.

Why one string per profile: Redis runs one command at a time, so a GET returns the whole
old value or the whole new one; a reader cannot see half a config, whatever its client.
The alternatives need more for the same promise: a pointer to per-version keys takes two
reads, between which trimming may delete the version pointed to; a hash would have to be
read with one HGETALL and reassembled, for no gain over one JSON value.

Why WATCH/MULTI: the version is a read-modify-write (compare the hash, then set version+1)
and must not be lost or go backwards when sync steps race. A bare INCR does not order the
SETs (the writer of version 5 can land after the writer of 6) and spends a number on an
identical config. The transaction also keeps the current key, the history and the change
notification together: all of them commit, or none. Conflicts retry a bounded number of
times with jittered backoff, then raise :class:`ConfigWriteConflict`.

Why a stream for notifications, not pub/sub: a gateway that was restarting when a config
changed catches up with XREAD from the last id it saw; pub/sub would have dropped the
message. Entries carry ``op`` (``written`` or ``deleted``), ``profile_id`` and ``key``;
writes add ``version`` and ``sha256``. A gateway then GETs the key.

All keys of one change are written in one MULTI, so this needs a single Redis primary
(not Redis Cluster, where they would fall into different slots). Delete removes the
version along with the config; that is safe because rollback deletes the profile too and
a new profile gets a new id.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast
from uuid import UUID

import redis
from redis.client import Pipeline
from redis.exceptions import WatchError

from foundryflow.configsync.model import GuardrailConfig, StoredConfig

DEFAULT_PREFIX = "foundryflow:guardrail"
BACKOFF_BASE_SECONDS = 0.001
BACKOFF_CAP_SECONDS = 0.05

T = TypeVar("T")


class ConfigWriteConflict(RuntimeError):
    """Other writers changed the profile's config during every attempt."""


@dataclass(frozen=True)
class WrittenConfig:
    """The outcome of :meth:`GuardrailConfigStore.write`."""

    key: str
    version: int
    sha256: str
    changed: bool
    """False when the identical config was already current: nothing was written."""


def profile_uuid(profile_id: UUID | str) -> UUID:
    """The profile id as a UUID, so a key is always one canonical spelling and no caller
    can smuggle ``:`` or glob characters into the key space."""
    try:
        return profile_id if isinstance(profile_id, UUID) else UUID(profile_id)
    except ValueError:
        raise ValueError(f"profile id is not a UUID: {profile_id!r}") from None


class GuardrailConfigStore:
    """Versioned guardrail configs of profiles; see the module docstring for the layout."""

    def __init__(
        self,
        redis_client: redis.Redis,
        prefix: str = DEFAULT_PREFIX,
        *,
        history_size: int = 5,
        max_attempts: int = 32,
        changes_maxlen: int = 10_000,
    ) -> None:
        if history_size < 1 or max_attempts < 1:
            raise ValueError("history_size and max_attempts must be at least 1")
        self._redis = redis_client
        self.prefix = prefix
        self.history_size = history_size
        self.max_attempts = max_attempts
        self.changes_maxlen = changes_maxlen
        self.changes_stream = f"{prefix}:changes"

    def key(self, profile_id: UUID | str) -> str:
        return f"{self.prefix}:{profile_uuid(profile_id)}"

    def history_key(self, profile_id: UUID | str) -> str:
        return f"{self.key(profile_id)}:history"

    def write(
        self, profile_id: UUID | str, config: GuardrailConfig | Mapping[str, Any]
    ) -> WrittenConfig:
        """Make ``config`` the profile's current config.

        The config is validated before Redis is touched. Writing the config that is already
        current changes nothing and returns its version, so a retried sync step is harmless.
        """
        profile = profile_uuid(profile_id)
        document = GuardrailConfig.model_validate(config)
        if document.profile_id != profile:
            raise ValueError(f"config is of profile {document.profile_id}, not {profile}")
        sha256 = document.sha256()
        key, history_key = self.key(profile), self.history_key(profile)

        def attempt(pipe: Pipeline) -> WrittenConfig:
            current = _parse(cast("bytes | str | None", pipe.get(key)))
            if current is not None and current.sha256 == sha256:
                return WrittenConfig(key, current.version, sha256, changed=False)
            stored = StoredConfig(
                version=1 if current is None else current.version + 1,
                sha256=sha256,
                generated_at=datetime.now(UTC),
                config=document,
            )
            payload = stored.to_json()
            pipe.multi()
            pipe.set(key, payload)
            pipe.lpush(history_key, payload)
            pipe.ltrim(history_key, 0, self.history_size - 1)
            self._notify(pipe, "written", profile, key, version=str(stored.version), sha256=sha256)
            pipe.execute()
            return WrittenConfig(key, stored.version, sha256, changed=True)

        return self._optimistic([key], attempt)

    def read(self, profile_id: UUID | str) -> StoredConfig | None:
        """The current config, or None if the profile has none. One GET: never torn."""
        return _parse(self._redis.get(self.key(profile_id)))

    def history(self, profile_id: UUID | str) -> list[StoredConfig]:
        """The kept versions, newest first."""
        raw_versions = self._redis.lrange(self.history_key(profile_id), 0, -1)
        return [StoredConfig.model_validate_json(raw) for raw in raw_versions]

    def delete(self, profile_id: UUID | str) -> bool:
        """Remove the profile's config and history in one transaction (what rollback calls).

        Nothing is parsed first, so a damaged entry is removed too. Returns whether there was
        anything to remove; only then is a ``deleted`` change published.
        """
        profile = profile_uuid(profile_id)
        key, history_key = self.key(profile), self.history_key(profile)

        def attempt(pipe: Pipeline) -> bool:
            if not cast(int, pipe.exists(key, history_key)):
                return False
            pipe.multi()
            pipe.delete(key, history_key)
            self._notify(pipe, "deleted", profile, key)
            pipe.execute()
            return True

        return self._optimistic([key, history_key], attempt)

    def _notify(self, pipe: Pipeline, op: str, profile: UUID, key: str, **fields: str) -> None:
        entry = {"op": op, "profile_id": str(profile), "key": key, **fields}
        pipe.xadd(self.changes_stream, entry, maxlen=self.changes_maxlen, approximate=True)

    def _optimistic(self, watched: list[str], attempt: Callable[[Pipeline], T]) -> T:
        """Run ``attempt`` with ``watched`` under WATCH until its transaction commits."""
        for attempt_number in range(self.max_attempts):
            with self._redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*watched)  # commands run at once until pipe.multi()
                    return attempt(pipe)
                except WatchError:
                    cap = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt_number)
                    time.sleep(random.uniform(0, cap))
        raise ConfigWriteConflict(
            f"{watched[0]} changed during each of {self.max_attempts} attempts"
        )


def _parse(raw: bytes | str | None) -> StoredConfig | None:
    return None if raw is None else StoredConfig.model_validate_json(raw)
