"""The process's Redis client on ``FOUNDRYFLOW_REDIS_URL``, as ``store.db`` holds its engine.

One pooled client per URL, shared by events and guardrail configs: a step that publishes
events and syncs a config opens one pool, not one per call.
"""

from __future__ import annotations

from functools import lru_cache

import redis

from foundryflow.config import get_settings

TIMEOUT_SECONDS = 5


class RedisNotConfiguredError(RuntimeError):
    """``FOUNDRYFLOW_REDIS_URL`` is not set."""


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS
    )


def get_redis(url: str | None = None) -> redis.Redis:
    """The shared client for ``url`` (default: ``FOUNDRYFLOW_REDIS_URL``); never close it."""
    url = url or get_settings().redis_url
    if not url:
        raise RedisNotConfiguredError("FOUNDRYFLOW_REDIS_URL is not set")
    return _client(url)
