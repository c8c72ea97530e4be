"""Step and execution events on Redis Streams, and to in-process listeners.

Every event goes to the global stream (``FOUNDRYFLOW_EVENTS_STREAM``) and to each of the
execution's callback topics, so a UI can follow one run without scanning all of them.
Publishing never fails a step: PostgreSQL is the record, streams are notifications.

Listeners (entry-point group ``foundryflow.event_listeners``: a callable taking the event
type and its fields) run in the process that records the change, so a domain such as use
cases keeps its own records in step on either engine without a consumer service. An event
raised inside a transaction is delivered once that transaction commits (and dropped if it
rolls back), so neither a listener nor a stream reader ever sees a state not yet stored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import entry_points
from typing import Any

import redis
from sqlalchemy import event
from sqlalchemy.orm import Session

from foundryflow.config import get_settings
from foundryflow.store.redis_client import get_redis

log = logging.getLogger(__name__)
MAX_TOPIC_LENGTH = 200
LISTENER_GROUP = "foundryflow.event_listeners"

Listener = Callable[[str, dict[str, Any]], None]


def callback_topics(params: dict[str, Any]) -> list[str]:
    """The ``callback_topics`` run parameter, keeping only sensible stream names."""
    topics = params.get("callback_topics")
    if not isinstance(topics, list):
        return []
    return [t for t in topics if isinstance(t, str) and 0 < len(t) <= MAX_TOPIC_LENGTH]


@cache
def listeners() -> tuple[Listener, ...]:
    """The installed listeners, loaded once; one that does not import is logged and left out."""
    loaded: list[Listener] = []
    for point in sorted(entry_points(group=LISTENER_GROUP), key=lambda p: p.name):
        try:
            loaded.append(point.load())
        except (ImportError, AttributeError) as exc:
            log.error("event listener %s (%s) does not load: %s", point.name, point.value, exc)
    return tuple(loaded)


def publish(
    event_type: str,
    fields: dict[str, Any],
    topics: list[str],
    *,
    session: Session | None = None,
) -> None:
    """Send one event; inside ``session``'s transaction, once it commits."""
    if session is not None:
        _pending(session).append((event_type, fields, topics))
        return
    _to_streams(event_type, fields, topics)
    for listener in listeners():
        try:
            listener(event_type, fields)
        except Exception:  # a listener keeps derived records; the step's outcome stands
            log.exception("event listener %r failed on %s", listener, event_type)


_PENDING = "foundryflow.events.pending"


def _pending(session: Session) -> list[tuple[str, dict[str, Any], list[str]]]:
    """The events waiting for ``session``'s transaction, delivered in order on commit and
    forgotten on rollback (the hooks are set once per session)."""
    pending: list[tuple[str, dict[str, Any], list[str]]] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        event.listen(session, "after_commit", _deliver)
        event.listen(session, "after_rollback", lambda s: s.info[_PENDING].clear())
    return pending


def _deliver(session: Session) -> None:
    waiting, session.info[_PENDING] = session.info[_PENDING], []
    for event_type, fields, topics in waiting:
        publish(event_type, fields, topics)


def _to_streams(event_type: str, fields: dict[str, Any], topics: list[str]) -> None:
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
