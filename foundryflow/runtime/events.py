"""Step and execution events on Redis Streams.

Every event goes to the global stream (``FOUNDRYFLOW_EVENTS_STREAM``) and to each of the
execution's callback topics, so a UI can follow one run without scanning all of them.
Publishing never fails a step: PostgreSQL is the record, streams are notifications.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import redis

from foundryflow.config import get_settings
from foundryflow.store.redis_client import get_redis

log = logging.getLogger(__name__)
MAX_TOPIC_LENGTH = 200


def callback_topics(params: dict[str, Any]) -> list[str]:
    """The ``callback_topics`` run parameter, keeping only sensible stream names."""
    topics = params.get("callback_topics")
    if not isinstance(topics, list):
        return []
    return [t for t in topics if isinstance(t, str) and 0 < len(t) <= MAX_TOPIC_LENGTH]


def publish(event_type: str, fields: dict[str, Any], topics: list[str]) -> None:
    settings = get_settings()
    if not settings.redis_url:
        log.debug("FOUNDRYFLOW_REDIS_URL not set; event %s not published", event_type)
        return
    entry = {
        "type": event_type,
        "ts": datetime.now(UTC).isoformat(),
        **{
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in fields.items()
        },
    }
    try:
        pipe = get_redis(settings.redis_url).pipeline(transaction=False)
        for stream in (settings.events_stream, *topics):
            pipe.xadd(stream, entry, maxlen=settings.events_maxlen, approximate=True)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("could not publish %s event to Redis: %s", event_type, exc)
