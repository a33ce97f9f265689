-- Migration 1: the first schema (task_queue 0.1). Times are UTC epoch
-- seconds (REAL). Kept as released: files made by that release are at this
-- version, and the tests build such files from it.
CREATE TABLE IF NOT EXISTS task_queue_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
-- AUTOINCREMENT: ids are never reused, even after purge(), so an id in a
-- log line or a caller's hand always means the same task.
CREATE TABLE IF NOT EXISTS tasks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT    NOT NULL,
    task_type        TEXT    NOT NULL CHECK (length(task_type) > 0),
    payload          TEXT,
    priority         INTEGER NOT NULL CHECK (priority BETWEEN 1 AND 4),
    status           TEXT    NOT NULL
                     CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
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
    owner_pid        INTEGER
);
-- Per-status counts kept by triggers, so get_queue_stats() costs the same
-- at a million rows as at ten.
CREATE TABLE IF NOT EXISTS task_counts (
    status TEXT PRIMARY KEY,
    n      INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO task_counts (status, n) VALUES
    ('pending', 0), ('running', 0), ('completed', 0), ('failed', 0), ('cancelled', 0);
CREATE TRIGGER IF NOT EXISTS tasks_count_insert AFTER INSERT ON tasks
BEGIN
    UPDATE task_counts SET n = n + 1 WHERE status = NEW.status;
END;
CREATE TRIGGER IF NOT EXISTS tasks_count_update AFTER UPDATE OF status ON tasks
WHEN OLD.status <> NEW.status
BEGIN
    UPDATE task_counts SET n = n - 1 WHERE status = OLD.status;
    UPDATE task_counts SET n = n + 1 WHERE status = NEW.status;
END;
CREATE TRIGGER IF NOT EXISTS tasks_count_delete AFTER DELETE ON tasks
BEGIN
    UPDATE task_counts SET n = n - 1 WHERE status = OLD.status;
END;
-- No index on status alone: every task would move in it twice on its way
-- through the queue. Each status has a partial index instead, so the hot
-- path (claim, complete) touches only small indexes of live tasks, and
-- finished tasks enter exactly one index, once.
-- Finished tasks by status and finish time: purge() and listings.
CREATE INDEX IF NOT EXISTS idx_tasks_finished ON tasks (status, completed_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
-- The claim query's index: its WHERE repeats this predicate literally and
-- its ORDER BY is this column order, so a claim is one index seek however
-- many finished rows the table holds.
CREATE INDEX IF NOT EXISTS idx_tasks_claim ON tasks (priority DESC, run_at, id)
    WHERE status = 'pending';
-- Scheduled time: when is the next pending task due (idle workers sleep until then).
CREATE INDEX IF NOT EXISTS idx_tasks_scheduled ON tasks (run_at) WHERE status = 'pending';
-- Rescue: running tasks whose lease expired.
CREATE INDEX IF NOT EXISTS idx_tasks_lease ON tasks (lease_expires_at) WHERE status = 'running';
-- Idempotent enqueue: one live task per unique_key, across processes.
CREATE UNIQUE INDEX IF NOT EXISTS idx_tasks_unique ON tasks (unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('pending', 'running');
