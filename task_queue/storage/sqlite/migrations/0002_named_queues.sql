-- Migration 2 (task_queue 0.2): named queues and pauses; integer priorities
-- from -100 to 100 (the four named levels keep their values 1..4); progress,
-- dependencies between tasks (status "waiting") and the history of failed
-- attempts; the registry of workers.
--
-- SQLite cannot change a CHECK constraint in place, so the tasks table is
-- rebuilt (the "12-step" way): every task is copied, into queue "default".
-- It runs in one transaction with the version bump: all of it or none.

-- The triggers and indexes go with the old table; drop the triggers first,
-- or renaming task_counts below would rewrite them to the old name.
DROP TRIGGER IF EXISTS tasks_count_insert;
DROP TRIGGER IF EXISTS tasks_count_update;
DROP TRIGGER IF EXISTS tasks_count_delete;

-- AUTOINCREMENT's high-water mark, which may be above max(id) after a
-- purge: ids are never reused, across this migration too.
CREATE TEMP TABLE migration_seq AS SELECT seq FROM sqlite_sequence WHERE name = 'tasks';

CREATE TABLE tasks_v2 (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT    NOT NULL,
    task_type        TEXT    NOT NULL CHECK (length(task_type) > 0),
    payload          TEXT,
    priority         INTEGER NOT NULL CHECK (priority BETWEEN -100 AND 100),
    status           TEXT    NOT NULL
                     CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled',
                                       'waiting')),
    worker_id        TEXT,
    created_at       REAL    NOT NULL,
    scheduled_at     REAL,
    started_at       REAL,
    completed_at     REAL,
    max_retries      INTEGER NOT NULL CHECK (max_retries >= 0),
    retry_count      INTEGER NOT NULL DEFAULT 0,
    error_message    TEXT,
    result           TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    run_at           REAL    NOT NULL,
    lease_expires_at REAL,
    claim_token      INTEGER,
    timeout          REAL,
    unique_key       TEXT,
    error_traceback  TEXT,
    owner_host       TEXT,
    owner_pid        INTEGER,
    queue_name       TEXT    NOT NULL DEFAULT 'default'
                     CHECK (length(queue_name) BETWEEN 1 AND 100),
    -- The last progress a running task reported, JSON.
    progress         TEXT,
    -- The ids it waits for (JSON array), and how many of them have not
    -- completed yet: status "waiting" until that is 0.
    depends_on       TEXT,
    waiting_on       INTEGER NOT NULL DEFAULT 0,
    -- Some task waits for this one (only then do its outcomes look for
    -- dependents: the completion of every other task costs nothing more).
    has_dependents   INTEGER NOT NULL DEFAULT 0,
    -- When its first attempt started (started_at is the latest one's).
    first_started_at REAL,
    -- Free-form JSON carried with the task for hooks (a trace context...).
    meta             TEXT,
    -- Tasks of a concurrency-limited type run at most N at once per key.
    concurrency_key  TEXT
);
INSERT INTO tasks_v2 (id, name, task_type, payload, priority, status, worker_id, created_at,
                      scheduled_at, started_at, completed_at, max_retries, retry_count,
                      error_message, result, attempts, run_at, lease_expires_at, claim_token,
                      timeout, unique_key, error_traceback, owner_host, owner_pid, queue_name,
                      first_started_at)
SELECT id, name, task_type, payload, priority, status, worker_id, created_at, scheduled_at,
       started_at, completed_at, max_retries, retry_count, error_message, result, attempts,
       run_at, lease_expires_at, claim_token, timeout, unique_key, error_traceback, owner_host,
       owner_pid, 'default', started_at
FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_v2 RENAME TO tasks;
UPDATE sqlite_sequence
SET seq = max(seq, coalesce((SELECT seq FROM migration_seq), 0))
WHERE name = 'tasks';
DROP TABLE migration_seq;

-- Counts per queue and status, kept by triggers: get_queue_stats() (for
-- one queue or all) and the claim's list of queues cost the same at a
-- million rows as at ten. A row stays (at 0) once a queue was used.
CREATE TABLE task_counts_v2 (
    queue_name TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (queue_name, status)
) WITHOUT ROWID;
INSERT INTO task_counts_v2 (queue_name, status, n)
SELECT 'default', status, n FROM task_counts;
DROP TABLE task_counts;
ALTER TABLE task_counts_v2 RENAME TO task_counts;
CREATE TRIGGER tasks_count_insert AFTER INSERT ON tasks
BEGIN
    INSERT INTO task_counts (queue_name, status, n) VALUES (NEW.queue_name, NEW.status, 1)
    ON CONFLICT (queue_name, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tasks_count_update AFTER UPDATE OF status, queue_name ON tasks
WHEN OLD.status <> NEW.status OR OLD.queue_name <> NEW.queue_name
BEGIN
    UPDATE task_counts SET n = n - 1
    WHERE queue_name = OLD.queue_name AND status = OLD.status;
    INSERT INTO task_counts (queue_name, status, n) VALUES (NEW.queue_name, NEW.status, 1)
    ON CONFLICT (queue_name, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tasks_count_delete AFTER DELETE ON tasks
BEGIN
    UPDATE task_counts SET n = n - 1
    WHERE queue_name = OLD.queue_name AND status = OLD.status;
END;

-- Dependencies, looked up by the task depended on. The storage's units
-- release a completed task's dependents (the last one makes each pending)
-- and cancel a failed or cancelled one's, level by level, in the same
-- transaction as that outcome; tasks nobody depends on (has_dependents 0)
-- cost nothing more.
CREATE TABLE task_dependencies (
    depends_on INTEGER NOT NULL,
    task_id    INTEGER NOT NULL,
    PRIMARY KEY (depends_on, task_id)
) WITHOUT ROWID;

-- Failed attempts (also those lost with their worker), one row each, for
-- the history a dashboard or Django's TaskResult.errors shows. The attempt
-- that succeeded, or runs now, is the task row itself.
CREATE TABLE task_attempts (
    task_id     INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    worker_id   TEXT,
    started_at  REAL,
    finished_at REAL    NOT NULL,
    -- "retried", "failed" (for good), "lost" (rescued), "cancelled".
    outcome     TEXT    NOT NULL,
    error_class TEXT,
    error       TEXT,
    traceback   TEXT,
    PRIMARY KEY (task_id, attempt)
);
-- What goes with a task when purge() deletes it.
CREATE TRIGGER tasks_purge_related AFTER DELETE ON tasks
BEGIN
    DELETE FROM task_attempts WHERE task_id = OLD.id;
    DELETE FROM task_dependencies WHERE task_id = OLD.id;
END;

-- Workers, as they report themselves: at start, with each heartbeat, at stop.
CREATE TABLE workers (
    worker_id   TEXT PRIMARY KEY,
    name        TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    queues      TEXT,
    concurrency INTEGER NOT NULL,
    started_at  REAL    NOT NULL,
    last_seen   REAL    NOT NULL,
    stopped_at  REAL,
    processed   INTEGER NOT NULL DEFAULT 0,
    failed      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- Periodic schedules, as the Workers carrying them declare them, and the
-- slots fired: a slot's row is written in the same transaction as its
-- task, under a unique key, and no slot at or before last_slot fires.
CREATE TABLE schedules (
    name         TEXT PRIMARY KEY,
    task_type    TEXT NOT NULL,
    expression   TEXT NOT NULL,
    queue_name   TEXT NOT NULL,
    misfire      TEXT NOT NULL,
    next_fire    REAL,
    last_slot    REAL,
    last_task_id INTEGER,
    declared_at  REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE schedule_slots (
    name    TEXT    NOT NULL,
    slot    REAL    NOT NULL,
    task_id INTEGER NOT NULL,
    PRIMARY KEY (name, slot)
) WITHOUT ROWID;

-- Token buckets of rate-limited task types, shared by every process: a
-- claim takes a task of such a type only if a token is there.
CREATE TABLE rate_limits (
    task_type  TEXT PRIMARY KEY,
    tokens     REAL NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;

-- Paused queues: nothing is claimed from them (the claim reads this table),
-- in every process on the file. A queue nobody used yet may be paused.
CREATE TABLE queue_pauses (
    queue_name TEXT PRIMARY KEY,
    paused_at  REAL NOT NULL
) WITHOUT ROWID;

-- No index on status alone: every task would move in it twice on its way
-- through the queue. Each status has a partial index instead, so the hot
-- path (claim, complete) touches only small indexes of live tasks, and
-- finished tasks enter exactly one index, once.
-- Finished tasks by status and finish time: purge() and listings.
CREATE INDEX idx_tasks_finished ON tasks (status, completed_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
-- The dead-letter set by queue and by type, most recently failed last:
-- the failed tasks of one queue or one type, a page at a time, without
-- reading the others (the dashboard's filters, retry_failed(queue_name=,
-- task_type=)). Only tasks failed for good enter them (once), so the claim
-- and the completion never touch them.
CREATE INDEX idx_tasks_failed_queue ON tasks (queue_name, completed_at) WHERE status = 'failed';
CREATE INDEX idx_tasks_failed_type ON tasks (task_type, completed_at) WHERE status = 'failed';
-- The claim's index: per queue, in claim order. A claim reads the first
-- rows of each queue it serves (one seek per queue), however many tasks
-- the table or the other queues hold.
CREATE INDEX idx_tasks_claim ON tasks (queue_name, priority DESC, run_at, id)
    WHERE status = 'pending';
-- Scheduled time: when is the next pending task due (idle workers sleep until then).
CREATE INDEX idx_tasks_scheduled ON tasks (run_at) WHERE status = 'pending';
-- Rescue: running tasks whose lease expired.
CREATE INDEX idx_tasks_lease ON tasks (lease_expires_at) WHERE status = 'running';
-- Idempotent enqueue: one live task per unique_key, across processes.
CREATE UNIQUE INDEX idx_tasks_unique ON tasks (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running');

-- Which migrations ran, when and by which process (each exactly once).
CREATE TABLE task_queue_migrations (
    version    INTEGER PRIMARY KEY,
    applied_at REAL    NOT NULL,
    pid        INTEGER NOT NULL
);
