"""Every SQL statement of the benchmark matrix, named, in one place.

Plain SQL in psycopg's ``%(name)s`` style, run by psycopg (directly, or through
SQLAlchemy's ``exec_driver_sql``): nothing is compiled per call, psycopg prepares what
repeats, and the statements can be read, EXPLAINed and reviewed as written. Each queue
operation is one statement, so on an autocommit connection it costs one round trip and is
atomic on its own. Statements that share a step (claiming, recording) are composed from
the same CTE text, so the step is written once.

Indexes they rely on (see :mod:`foundryflow.store.catalog`):

* ``ix_benchmark_configs_claim (priority, id) WHERE status = 'pending'`` — the claim's
  inner SELECT is an ordered scan of this partial index, stopping after ``n`` unlocked
  rows; completed rows never enter it, however large the matrix grows;
* ``ix_benchmark_configs_lease (heartbeat_at) WHERE status = 'running'`` — ``RESET_STALE``
  reads only running rows whose lease expired;
* ``uq_benchmark_configs_cell`` — makes population idempotent (``ON CONFLICT DO NOTHING``);
* ``uq_benchmark_results_config`` — at most one result per config, whatever happens.
"""

from __future__ import annotations

# --- population ---------------------------------------------------------------------------

CREATE_LOAD_TABLE = """
CREATE TEMPORARY TABLE matrix_load (
    hardware_config_id integer NOT NULL,
    framework_id integer NOT NULL,
    use_case_id integer NOT NULL,
    batch_size integer NOT NULL,
    sequence_length integer NOT NULL,
    priority integer NOT NULL
) ON COMMIT DROP
"""
"""Integers only: COPY text needs no escaping and the workload name is joined in below."""

COPY_LOAD = """
COPY matrix_load (
    hardware_config_id, framework_id, use_case_id, batch_size, sequence_length, priority
) FROM STDIN
"""

INSERT_FROM_LOAD = """
INSERT INTO benchmark_configs (
    model_version_id, hardware_config_id, framework_id, workload_type,
    batch_size, sequence_length, priority
)
SELECT %(model_version_id)s, l.hardware_config_id, l.framework_id, u.name,
       l.batch_size, l.sequence_length, l.priority
FROM matrix_load l
JOIN use_case_taxonomy u ON u.id = l.use_case_id
ON CONFLICT (
    model_version_id, hardware_config_id, framework_id, workload_type,
    batch_size, sequence_length
) DO NOTHING
"""

# --- the queue ----------------------------------------------------------------------------

_CLAIMED = """
claimed AS (
    UPDATE benchmark_configs c
    SET status = 'running',
        claimed_by = %(worker_id)s,
        claimed_at = now(),
        heartbeat_at = now(),
        attempts = c.attempts + 1,
        updated_at = now()
    WHERE c.id = ANY(ARRAY(
        SELECT id FROM benchmark_configs
        WHERE status = 'pending'{version_filter}
        ORDER BY priority, id
        LIMIT %(n)s
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING c.id, c.model_version_id, c.hardware_config_id, c.framework_id,
              c.workload_type, c.batch_size, c.sequence_length, c.priority,
              c.attempts, c.claimed_by, c.claimed_at
)"""
"""The claim, as a CTE: lock up to ``n`` pending rows nobody else has locked, mark them
running under ``worker_id`` with a fresh lease, count the attempt.

The inner SELECT is an ordered scan of ``ix_benchmark_configs_claim`` under LockRows that
stops after ``n`` rows it could lock; concurrent claimers skip each other's rows instead
of waiting. ``id = ANY(ARRAY(...))`` rather than ``id IN (...)`` selects the same rows, but
its best plan does not depend on ``n``, so a worker can reuse one generic plan (see
WORKER_SESSION); a generic plan of the ``IN`` form, not knowing ``n``, hash-joins a
sequential scan of the whole table (measured: 167 ms per claim at 1M rows, against 0.7).

Rows come out in :class:`~foundryflow.benchmark.queue.ClaimedConfig` field order, without
the catalog names: ``CATALOG_NAMES`` fetches the few a drain has not seen yet, which
measured faster than joining them onto every claim (``bench/bench_matrix.py`` prints
both).
"""

_ALL_VERSIONS = _CLAIMED.format(version_filter="")
_ONE_VERSION = _CLAIMED.format(
    version_filter="\n          AND model_version_id = %(model_version_id)s"
)

_RECORDED = """
outcome AS (
    SELECT * FROM jsonb_to_recordset(%(outcomes)s::jsonb)
        AS o (config_id bigint, metrics jsonb, started_at timestamptz, finished_at timestamptz)
), done AS (
    UPDATE benchmark_configs c
    SET status = 'completed', completed_at = now(), updated_at = now()
    FROM outcome o
    WHERE c.id = o.config_id AND c.status = 'running' AND c.claimed_by = %(worker_id)s
    RETURNING c.id
), recorded AS (
    INSERT INTO benchmark_results (
        config_id, runner, worker_id, metrics, started_at, finished_at
    )
    SELECT o.config_id, %(runner)s, %(worker_id)s, o.metrics, o.started_at, o.finished_at
    FROM outcome o
    JOIN done d ON d.id = o.config_id
    RETURNING config_id
)"""
"""Completion of a batch, as CTEs: the fenced UPDATE, and one result row for each config it
matched. Outcomes travel as one JSON document: one parameter to encode, measured cheaper
than parallel arrays. The UPDATE joins the outcomes (a hash join) instead of testing
``id = ANY(array)``: the planner likes to reach the rows through the lease index (running
rows are few), and an ANY filter would then compare every running row, of every worker,
with every id of the batch."""

CLAIM_BATCH = f"WITH {_ALL_VERSIONS}\nSELECT * FROM claimed ORDER BY priority, id"
CLAIM_BATCH_FOR_VERSION = f"WITH {_ONE_VERSION}\nSELECT * FROM claimed ORDER BY priority, id"

CATALOG_NAMES = """
SELECT 'hardware', id, name, NULL FROM hardware_configs WHERE id = ANY(%(hardware)s::int[])
UNION ALL
SELECT 'framework', id, name, NULL FROM inference_frameworks WHERE id = ANY(%(frameworks)s::int[])
UNION ALL
SELECT 'version', v.id, m.uri, v.dtype
FROM model_versions v JOIN models m ON m.id = v.model_id
WHERE v.id = ANY(%(versions)s::int[])
"""
"""Names of hardware configs, frameworks and model versions by id, for claimed configs."""

COMPLETE = """
WITH done AS (
    UPDATE benchmark_configs
    SET status = 'completed', completed_at = now(), updated_at = now()
    WHERE id = %(config_id)s AND status = 'running' AND claimed_by = %(worker_id)s
    RETURNING id
)
INSERT INTO benchmark_results (config_id, runner, worker_id, metrics, started_at, finished_at)
SELECT id, %(runner)s, %(worker_id)s, %(metrics)s::jsonb, %(started_at)s, %(finished_at)s
FROM done
RETURNING config_id
"""
"""The result row is inserted only if the fenced update matched, in the same statement."""

COMPLETE_MANY = f"WITH {_RECORDED}\nSELECT config_id FROM recorded"

_COMPLETE_AND_CLAIM = """WITH {recorded}, {claimed}
SELECT (
    SELECT array_agg(config_id)
    FROM (SELECT config_id FROM outcome EXCEPT SELECT config_id FROM recorded) AS fenced
), claimed.*
FROM (SELECT) AS one
LEFT JOIN claimed ON true
ORDER BY claimed.priority, claimed.id
"""
COMPLETE_AND_CLAIM = _COMPLETE_AND_CLAIM.format(recorded=_RECORDED, claimed=_ALL_VERSIONS)
COMPLETE_AND_CLAIM_FOR_VERSION = _COMPLETE_AND_CLAIM.format(
    recorded=_RECORDED, claimed=_ONE_VERSION
)
"""A worker's steady state: record the batch it finished and claim the next, one statement.

The claim cannot pick a row the completion touches (those are running, not pending, in
the statement's snapshot). The first column, repeated on every row, lists the outcomes
*not* recorded (fenced out; normally NULL, so it costs nothing to repeat); the one-row
LEFT JOIN keeps it when nothing is left to claim (the claimed columns are then NULL).
"""

WORKER_SESSION = "SET plan_cache_mode = force_generic_plan"
"""Set on a worker's connection for the length of its drain (and reset after).

A worker runs the same few statements with new parameters, and their best plan does not
depend on the parameters: the claim's ``ANY(ARRAY(...))`` shape was chosen for that. Left
alone, PostgreSQL plans every call afresh anyway, because a generic plan's estimated cost,
not knowing ``LIMIT n``, looks higher than a custom plan's (EXPLAIN at batch 50: 0.4-0.6 ms
of planning against 1.8 ms of execution for COMPLETE_AND_CLAIM).
"""

DEFAULT_SESSION = "RESET plan_cache_mode"

_REQUEUE_OR_GIVE_UP = """
    status = CASE WHEN attempts >= %(max_attempts)s THEN 'failed' ELSE 'pending' END,
    claimed_by = CASE WHEN attempts >= %(max_attempts)s THEN claimed_by END,
    claimed_at = CASE WHEN attempts >= %(max_attempts)s THEN claimed_at END,
    heartbeat_at = NULL,
    completed_at = CASE WHEN attempts >= %(max_attempts)s THEN now() END,
    updated_at = now()"""
"""A lost or failed run: back to the queue while attempts remain, else failed for good
(keeping who ran it last)."""

FAIL = f"""
UPDATE benchmark_configs
SET {_REQUEUE_OR_GIVE_UP},
    last_error = %(error)s
WHERE id = %(config_id)s AND status = 'running' AND claimed_by = %(worker_id)s
RETURNING status
"""
"""``attempts`` counts claims (incremented by CLAIM_BATCH), so this claim is included."""

RELEASE = """
UPDATE benchmark_configs c
SET status = 'pending', claimed_by = NULL, claimed_at = NULL, heartbeat_at = NULL,
    attempts = c.attempts - 1, updated_at = now()
FROM unnest(%(config_ids)s::bigint[]) AS given (id)
WHERE c.id = given.id AND c.status = 'running' AND c.claimed_by = %(worker_id)s
"""
"""Hand back claimed rows a stopping worker never started; they did not cost an attempt."""

HEARTBEAT = """
UPDATE benchmark_configs c
SET heartbeat_at = now()
FROM unnest(%(config_ids)s::bigint[]) AS given (id)
WHERE c.id = given.id AND c.status = 'running' AND c.claimed_by = %(worker_id)s
"""
"""Joined to the ids rather than testing ``id = ANY(...)``, as the UPDATE in _RECORDED is."""

RESET_STALE = f"""
UPDATE benchmark_configs
SET {_REQUEUE_OR_GIVE_UP},
    last_error = CASE WHEN attempts >= %(max_attempts)s
        THEN 'worker ' || claimed_by || ' stopped heartbeating on attempt ' || attempts
             || ' of ' || %(max_attempts)s || ' (killed or preempted)'
        ELSE last_error END
WHERE status = 'running' AND heartbeat_at < now() - %(older_than)s::interval
"""
"""Rows whose worker stopped heartbeating (spot reclaim, OOM kill) go back to the queue, as
FAIL does: a config whose runs keep killing their workers fails for good at the last
attempt instead of cycling forever."""

PROGRESS = """
SELECT count(*) FILTER (WHERE status = 'pending'),
       count(*) FILTER (WHERE status = 'running'),
       count(*) FILTER (WHERE status = 'completed'),
       count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE completed_at >= now() - %(window)s::interval),
       extract(epoch FROM least(
           %(window)s::interval,
           now() - min(claimed_at) FILTER (WHERE completed_at >= now() - %(window)s::interval)
       ))
FROM benchmark_configs
WHERE model_version_id = %(model_version_id)s
"""
"""Counts by status plus what the rate needs: rows finished in the window, and the time
they took — the window, or less when the first of them was claimed within it (a run that
started two minutes ago must not have its rate divided by a ten-minute window)."""

MODEL_VERSION_EXISTS = "SELECT 1 FROM model_versions WHERE id = %(model_version_id)s"
