"""Guardrail configs in the real Redis of the test session: versioned, idempotent, never
torn under concurrent writers, deleted whole, validated before anything is written, and
hostile strings kept as plain data.

Every test works under its own key prefix and removes what it wrote.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from pydantic import ValidationError

from foundryflow.configsync import GuardrailConfig, GuardrailConfigStore, StoredConfig

LLAMA_GUARD = "meta-llama/Llama-Guard-3-8B"


def _keys(client: redis.Redis, prefix: str) -> set[str]:
    return {key if isinstance(key, str) else key.decode() for key in client.scan_iter(f"{prefix}*")}


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    prefix = f"test:configsync:{uuid.uuid4().hex}"
    yield prefix
    for key in _keys(redis_client, prefix):
        redis_client.delete(key)


@pytest.fixture
def store(redis_client: redis.Redis, prefix: str) -> GuardrailConfigStore:
    return GuardrailConfigStore(redis_client, prefix=prefix)


def make_config(profile_id: uuid.UUID | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid config as build_config would output it: plain JSON types, two probes, one
    model-based rule with its endpoint."""
    config: dict[str, Any] = {
        "profile_id": str(profile_id or uuid.uuid4()),
        "profile_name": "customer-support",
        "project_id": str(uuid.uuid4()),
        "deployment_id": str(uuid.uuid4()),
        "target_endpoint_ids": [str(uuid.uuid4()), str(uuid.uuid4())],
        "probes": [
            {
                "probe_id": str(uuid.uuid4()),
                "probe_name": "harmful-content",
                "rules": [
                    {
                        "rule_id": str(uuid.uuid4()),
                        "rule_name": "violent-crimes",
                        "severity_threshold": 0.7,
                        "guard_types": ["output", "input"],
                        "model_uri": LLAMA_GUARD,
                    },
                    {
                        "rule_id": str(uuid.uuid4()),
                        "rule_name": "hate",
                        "severity_threshold": 0.4,
                        "guard_types": ["input"],
                        "model_uri": LLAMA_GUARD,
                    },
                ],
            },
            {
                "probe_id": str(uuid.uuid4()),
                "probe_name": "pii",
                "rules": [
                    {
                        "rule_id": str(uuid.uuid4()),
                        "rule_name": "email-address",
                        "severity_threshold": 0.5,
                        "guard_types": ["input", "output"],
                    }
                ],
            },
        ],
        "endpoints": {
            LLAMA_GUARD: {
                "endpoint_id": str(uuid.uuid4()),
                "url": "http://llama-guard.guardrails.svc.cluster.local:8000/v1",
            }
        },
    }
    config.update(overrides)
    return config


def _independent_sha256(config: Any) -> str:
    """The content hash recomputed from raw JSON, without the library's models."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _raw(client: redis.Redis, key: str) -> str:
    raw = client.get(key)
    assert isinstance(raw, str), f"{key} holds no string"
    return raw


def _stream(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    return [fields for _, fields in client.xrange(stream)]


# --------------------------------------------------------------------------- round trip
def test_write_then_read_round_trips(
    store: GuardrailConfigStore, redis_client: redis.Redis, prefix: str
) -> None:
    config = make_config()
    written = store.write(config["profile_id"], config)

    assert written.key == f"{prefix}:{config['profile_id']}"
    assert (written.version, written.changed) == (1, True)
    stored = store.read(config["profile_id"])
    assert stored is not None
    assert stored.version == 1
    assert stored.config == GuardrailConfig.model_validate(config)
    assert stored.sha256 == written.sha256 == stored.config.sha256()

    raw = json.loads(_raw(redis_client, written.key))
    assert raw["version"] == 1
    assert raw["sha256"] == _independent_sha256(raw["config"]) == written.sha256
    assert raw["config"]["profile_name"] == "customer-support"
    assert raw["config"]["endpoints"][LLAMA_GUARD]["url"] == config["endpoints"][LLAMA_GUARD]["url"]
    assert _keys(redis_client, prefix) == {
        written.key,
        f"{written.key}:history",
        f"{prefix}:changes",
    }


def test_read_of_unknown_profile_is_none(store: GuardrailConfigStore) -> None:
    assert store.read(uuid.uuid4()) is None
    assert store.history(uuid.uuid4()) == []


def test_works_with_a_bytes_client(prefix: str) -> None:
    """Other foundryflow code talks to Redis without decode_responses."""
    client = redis.Redis.from_url(os.environ["FOUNDRYFLOW_REDIS_URL"])
    try:
        store = GuardrailConfigStore(client, prefix=prefix)
        config = make_config()
        assert store.write(config["profile_id"], config).version == 1
        stored = store.read(config["profile_id"])
        assert stored is not None
        assert stored.config == GuardrailConfig.model_validate(config)
        assert store.delete(config["profile_id"]) is True
    finally:
        client.close()


# --------------------------------------------------------------------------- versions
def test_versions_increment_and_history_keeps_the_latest(
    redis_client: redis.Redis, prefix: str
) -> None:
    store = GuardrailConfigStore(redis_client, prefix=prefix, history_size=2)
    profile_id = uuid.uuid4()
    first = make_config(profile_id)
    second = make_config(profile_id, profile_name="renamed")

    versions = [store.write(profile_id, doc).version for doc in (first, second, first)]

    assert versions == [1, 2, 3]
    stored = store.read(profile_id)
    assert stored is not None
    assert stored.version == 3
    assert stored.config == GuardrailConfig.model_validate(first)
    history = store.history(profile_id)
    assert [entry.version for entry in history] == [3, 2]
    assert history[1].config.profile_name == "renamed"


def test_identical_config_keeps_its_version(
    store: GuardrailConfigStore, redis_client: redis.Redis
) -> None:
    profile_id = uuid.uuid4()
    config = make_config(profile_id)
    first = store.write(profile_id, config)
    before = store.read(profile_id)

    reordered = copy.deepcopy(config)
    reordered["probes"].reverse()
    for probe in reordered["probes"]:
        probe["rules"].reverse()
        for rule in probe["rules"]:
            rule["guard_types"] = list(reversed(rule["guard_types"])) * 2
    reordered["target_endpoint_ids"].reverse()
    again = store.write(str(profile_id).upper(), GuardrailConfig.model_validate(reordered))

    assert (again.version, again.sha256, again.changed) == (1, first.sha256, False)
    assert store.read(profile_id) == before  # same generated_at: nothing was rewritten
    assert len(store.history(profile_id)) == 1
    assert len(_stream(redis_client, store.changes_stream)) == 1


def test_a_changed_threshold_is_a_new_version(store: GuardrailConfigStore) -> None:
    profile_id = uuid.uuid4()
    config = make_config(profile_id)
    first = store.write(profile_id, config)
    config["probes"][0]["rules"][0]["severity_threshold"] = 0.71

    second = store.write(profile_id, config)

    assert second.version == 2
    assert second.sha256 != first.sha256


def test_changes_are_published_on_a_stream(
    store: GuardrailConfigStore, redis_client: redis.Redis, prefix: str
) -> None:
    profile_id = uuid.uuid4()
    written = store.write(profile_id, make_config(profile_id))
    store.delete(profile_id)

    assert store.changes_stream == f"{prefix}:changes"
    assert _stream(redis_client, store.changes_stream) == [
        {
            "op": "written",
            "profile_id": str(profile_id),
            "key": written.key,
            "version": "1",
            "sha256": written.sha256,
        },
        {"op": "deleted", "profile_id": str(profile_id), "key": written.key},
    ]


# --------------------------------------------------------------------------- concurrency
def test_concurrent_writers_never_tear_a_read(
    store: GuardrailConfigStore, redis_client: redis.Redis
) -> None:
    """8 writers x 50 distinct configs while a reader GETs continuously: every read is
    whole (its hash matches its content), versions never go backwards, none is lost."""
    writers, writes_each = 8, 50
    profile_id = uuid.uuid4()
    base = make_config(profile_id)
    key = store.key(profile_id)
    done = threading.Event()

    def write_all(writer: int) -> list[int]:
        return [
            store.write(profile_id, {**base, "profile_name": f"writer {writer} write {i}"}).version
            for i in range(writes_each)
        ]

    def read_until_done() -> list[int]:
        seen: list[int] = []
        while not done.is_set() or not seen:
            raw = redis_client.get(key)
            if raw is None:
                continue
            document = json.loads(raw)
            assert document["sha256"] == _independent_sha256(document["config"])
            assert not seen or document["version"] >= seen[-1]
            stored = store.read(profile_id)
            assert stored is not None and stored.version >= document["version"]
            seen += [document["version"], stored.version]
        return seen

    with ThreadPoolExecutor(max_workers=writers + 1) as pool:
        reader = pool.submit(read_until_done)
        results = [pool.submit(write_all, writer) for writer in range(writers)]
        try:
            versions = sorted(v for result in results for v in result.result(timeout=120))
        finally:
            done.set()
        seen = reader.result(timeout=30)

    total = writers * writes_each
    assert versions == list(range(1, total + 1))
    assert len(set(seen)) > 1, "the reader should have watched the config change"
    final = store.read(profile_id)
    assert final is not None and final.version == total
    assert [entry.version for entry in store.history(profile_id)] == [
        total - n for n in range(store.history_size)
    ]
    assert len(_stream(redis_client, store.changes_stream)) == total


def test_concurrent_identical_writes_make_one_version(
    store: GuardrailConfigStore, redis_client: redis.Redis
) -> None:
    profile_id = uuid.uuid4()
    config = make_config(profile_id)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: store.write(profile_id, config), range(8)))

    assert {result.version for result in results} == {1}
    assert sum(result.changed for result in results) == 1
    assert len(_stream(redis_client, store.changes_stream)) == 1


# --------------------------------------------------------------------------- delete
def test_delete_removes_config_and_history(
    store: GuardrailConfigStore, redis_client: redis.Redis, prefix: str
) -> None:
    profile_id, other_id = uuid.uuid4(), uuid.uuid4()
    store.write(profile_id, make_config(profile_id))
    store.write(profile_id, make_config(profile_id, profile_name="second"))
    store.write(other_id, make_config(other_id))

    assert store.delete(profile_id) is True

    assert store.read(profile_id) is None
    assert store.history(profile_id) == []
    assert _keys(redis_client, f"{prefix}:{profile_id}") == set()
    assert store.read(other_id) is not None, "another profile's config is untouched"
    assert store.delete(profile_id) is False
    assert [e["op"] for e in _stream(redis_client, store.changes_stream)][-1] == "deleted"
    assert len(_stream(redis_client, store.changes_stream)) == 4, "no event for a no-op"


def test_delete_removes_a_damaged_entry(
    store: GuardrailConfigStore, redis_client: redis.Redis
) -> None:
    """Rollback must clean a partial or invalid config (seed 000), so delete parses nothing."""
    profile_id = uuid.uuid4()
    redis_client.set(store.key(profile_id), '{"version": 1, "conf')

    assert store.delete(profile_id) is True
    assert redis_client.exists(store.key(profile_id)) == 0


def test_an_altered_entry_is_refused_on_read(
    store: GuardrailConfigStore, redis_client: redis.Redis
) -> None:
    profile_id = uuid.uuid4()
    written = store.write(profile_id, make_config(profile_id))
    document = json.loads(_raw(redis_client, written.key))
    document["config"]["probes"][0]["rules"][0]["severity_threshold"] = 1.0
    redis_client.set(written.key, json.dumps(document))

    with pytest.raises(ValidationError, match="does not match its sha256"):
        store.read(profile_id)


# --------------------------------------------------------------------------- validation
def _rule(config: dict[str, Any]) -> dict[str, Any]:
    rule: dict[str, Any] = config["probes"][0]["rules"][0]
    return rule


INVALID: dict[str, Any] = {
    "unknown top-level key": lambda c: c.update(extra="x"),
    "unknown rule key": lambda c: _rule(c).update(enabled=True),
    "missing deployment id": lambda c: c.pop("deployment_id"),
    "severity above 1": lambda c: _rule(c).update(severity_threshold=1.5),
    "severity NaN": lambda c: _rule(c).update(severity_threshold=float("nan")),
    "no guard types": lambda c: _rule(c).update(guard_types=[]),
    "unknown guard type": lambda c: _rule(c).update(guard_types=["sideways"]),
    "no probes": lambda c: c.update(probes=[]),
    "probe without rules": lambda c: c["probes"][0].update(rules=[]),
    "empty profile name": lambda c: c.update(profile_name=""),
    "rule id not a UUID": lambda c: _rule(c).update(rule_id="rule-1"),
    "duplicate probe": lambda c: c["probes"].append(copy.deepcopy(c["probes"][0])),
    "duplicate rule": lambda c: c["probes"][1]["rules"].append(copy.deepcopy(_rule(c))),
    "model rule without endpoint": lambda c: c.update(endpoints={}),
    "endpoint no rule uses": lambda c: c["endpoints"].update(
        {"other/model": {"endpoint_id": str(uuid.uuid4()), "url": "http://other:8000"}}
    ),
    "URL not http": lambda c: c["endpoints"][LLAMA_GUARD].update(url="javascript:alert(1)"),
    "URL with newline": lambda c: c["endpoints"][LLAMA_GUARD].update(url="http://a\n.b"),
    "duplicate target endpoint": lambda c: c["target_endpoint_ids"].append(
        c["target_endpoint_ids"][0]
    ),
}


@pytest.mark.parametrize("breakage", INVALID.values(), ids=INVALID.keys())
def test_invalid_config_is_rejected_before_anything_is_written(
    breakage: Any, store: GuardrailConfigStore, redis_client: redis.Redis, prefix: str
) -> None:
    config = make_config()
    breakage(config)

    with pytest.raises(ValidationError):
        store.write(config["profile_id"], config)
    assert _keys(redis_client, prefix) == set()


def test_config_of_another_profile_is_rejected(
    store: GuardrailConfigStore, redis_client: redis.Redis, prefix: str
) -> None:
    with pytest.raises(ValueError, match="config is of profile"):
        store.write(uuid.uuid4(), make_config())
    assert _keys(redis_client, prefix) == set()


@pytest.mark.parametrize(
    "profile_id", ["", "*", "abc:def", "6f1c2a9e-8d2b-4c1e-9a53-2f4b7c0d1e3a:history"]
)
def test_profile_id_must_be_a_uuid(profile_id: str, store: GuardrailConfigStore) -> None:
    with pytest.raises(ValueError, match="not a UUID"):
        store.read(profile_id)
    with pytest.raises(ValueError, match="not a UUID"):
        store.delete(profile_id)


# --------------------------------------------------------------------------- hostile data
HOSTILE = [
    "{{ 7*7 }}",
    "{% for x in range(9) %}{{ x }}{% endfor %}",
    "${HOME} $(rm -rf /) `id`",
    "line one\nline two\r\nline three\ttab",
    "quotes \" ' ` and a backslash \\ and \\u0000",
    "nul \x00 and bell \x07",
    "unicode: 🛡️ Ünïcødé ‮reversed",
    '"}, "version": 999, "x": {"',
    "x" * 1_000_000,
]


def test_hostile_strings_are_stored_verbatim(
    store: GuardrailConfigStore, redis_client: redis.Redis
) -> None:
    profile_id = uuid.uuid4()
    config = make_config(profile_id, profile_name="\n".join(HOSTILE))
    for rule, text in zip(config["probes"][0]["rules"], HOSTILE, strict=False):
        rule["rule_name"] = text
    config["probes"][1]["probe_name"] = HOSTILE[-1] + "{{ 7*7 }}"
    hostile_uri = 'org/{{ 7*7 }}\n"model"'
    for rule in config["probes"][0]["rules"]:
        rule["model_uri"] = hostile_uri
    config["endpoints"] = {hostile_uri: config["endpoints"][LLAMA_GUARD]}

    written = store.write(profile_id, config)
    stored = store.read(profile_id)

    assert stored is not None and stored.version == 1
    assert stored.config.profile_name == "\n".join(HOSTILE)
    model_rules = [rule for probe in stored.config.probes for rule in probe.rules if rule.model_uri]
    assert {rule.rule_name for rule in model_rules} == set(HOSTILE[:2])
    assert {rule.model_uri for rule in model_rules} == {hostile_uri}
    assert HOSTILE[-1] + "{{ 7*7 }}" in {probe.probe_name for probe in stored.config.probes}
    raw = json.loads(_raw(redis_client, written.key))
    assert raw["version"] == 1, "a string cannot break out of its JSON value"
    assert raw["config"]["profile_name"] == "\n".join(HOSTILE)
    assert hostile_uri in raw["config"]["endpoints"]
    assert StoredConfig.model_validate_json(_raw(redis_client, written.key)) == stored
