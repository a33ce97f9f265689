-- All SQL of the SQLite backend. Blocks are named by a line "-- name --"
-- followed by a description; task_queue/storage/sql.py loads them once.
-- Statements use only placeholders: nothing here is built from user input.

-- insert_task --
-- Enqueue one task; returns no row when a live task already holds unique_key.
-- :status is pending, or waiting (:waiting_on unfinished dependencies), or
-- cancelled when a dependency had already failed (:error_message says which).
INSERT INTO tasks (name, task_type, payload, priority, status, created_at, scheduled_at,
                   max_retries, run_at, timeout, unique_key, queue_name, depends_on,
                   waiting_on, completed_at, error_message, meta, concurrency_key)
VALUES (:name, :task_type, :payload, :priority, :status, :now, :scheduled_at,
        :max_retries, :run_at, :timeout, :unique_key, :queue_name, :depends_on,
        :waiting_on, :completed_at, :error_message, :meta, :concurrency_key)
ON CONFLICT DO NOTHING
RETURNING id;

-- insert_plain_task --
-- One task without unique key or dependencies, as one autocommit statement
-- run by its caller (Engine.call_insert): no RETURNING (the id is the
-- cursor's lastrowid), so the statement is done, and committed, when
-- execute() returns.
INSERT INTO tasks (name, task_type, payload, priority, status, created_at, scheduled_at,
                   max_retries, run_at, timeout, queue_name, meta, concurrency_key)
VALUES (:name, :task_type, :payload, :priority, 'pending', :now, :scheduled_at,
        :max_retries, :run_at, :timeout, :queue_name, :meta, :concurrency_key);

-- insert_tasks --
-- enqueue_many without unique keys or dependencies, in one statement: :tasks
-- is a JSON array of [name, task_type, payload JSON text or null, priority,
-- scheduled_at, max_retries, run_at, timeout, queue_name, meta JSON text or
-- null, concurrency_key]. Row by row this is half as fast (one statement
-- per task, measured 41k/s against 85k/s).
INSERT INTO tasks (name, task_type, payload, priority, status, created_at, scheduled_at,
                   max_retries, run_at, timeout, queue_name, meta, concurrency_key)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), 'pending', :now, json_extract(value, '$[4]'),
       json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]'),
       json_extract(value, '$[8]'), json_extract(value, '$[9]'), json_extract(value, '$[10]')
FROM json_each(:tasks) ORDER BY key
RETURNING id;

-- insert_tasks_stamped --
-- insert_tasks for single tasks of several callers at once (the engine
-- merges their units): each row of :tasks carries its own created_at as a
-- 12th element.
INSERT INTO tasks (name, task_type, payload, priority, status, created_at, scheduled_at,
                   max_retries, run_at, timeout, queue_name, meta, concurrency_key)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),
       json_extract(value, '$[3]'), 'pending', json_extract(value, '$[11]'),
       json_extract(value, '$[4]'), json_extract(value, '$[5]'), json_extract(value, '$[6]'),
       json_extract(value, '$[7]'), json_extract(value, '$[8]'), json_extract(value, '$[9]'),
       json_extract(value, '$[10]')
FROM json_each(:tasks) ORDER BY key
RETURNING id;

-- dependency_states --
-- The tasks in the JSON array :ids that exist, with their status.
SELECT id, status FROM tasks WHERE id IN (SELECT value FROM json_each(:ids));

-- insert_dependencies --
-- Task :task_id waits for the tasks in the JSON array :ids, which are told
-- they have a dependent (their outcomes look for dependents only then).
INSERT INTO task_dependencies (depends_on, task_id)
SELECT value, :task_id FROM json_each(:ids) WHERE true
ON CONFLICT DO NOTHING;

-- mark_depended_on --
-- (see insert_dependencies)
UPDATE tasks SET has_dependents = 1
WHERE id IN (SELECT value FROM json_each(:ids)) AND has_dependents = 0;

-- find_live_unique --
-- The live task holding a unique_key.
SELECT id FROM tasks
WHERE unique_key = :unique_key AND unique_key IS NOT NULL AND status IN ('pending', 'running');

-- claim --
-- Claim the best due tasks of the queues served (the JSON array :queues, or
-- every queue with pending tasks when it is NULL), none of them paused, of
-- the task types in :types (NULL: any): highest priority, then earliest
-- due, then oldest. One statement, so two claimers never take the same row.
-- For each queue it reads the first :limit rows of that queue in the claim
-- index (INDEXED BY: the planner might sort every pending row instead),
-- and orders those few: a claim costs the same at a million pending tasks
-- as at ten, whatever the other queues hold.
UPDATE tasks
SET status = 'running', worker_id = :worker_id, started_at = :now, attempts = attempts + 1,
    lease_expires_at = :lease_expires_at, claim_token = :token,
    owner_host = :owner_host, owner_pid = :owner_pid,
    first_started_at = coalesce(first_started_at, :now), progress = NULL
WHERE id IN (
    SELECT id FROM tasks
    WHERE id IN (
        SELECT t.id
        FROM (SELECT value AS name FROM json_each(:queues) WHERE :queues IS NOT NULL
              UNION ALL
              SELECT queue_name FROM task_counts
              WHERE :queues IS NULL AND status = 'pending' AND n > 0) AS q,
             tasks AS t
        WHERE q.name NOT IN (SELECT queue_name FROM queue_pauses)
          AND t.id IN (
              SELECT id FROM tasks INDEXED BY idx_tasks_claim
              WHERE queue_name = q.name AND status = 'pending' AND run_at <= :now
                AND (:types IS NULL OR task_type IN (SELECT value FROM json_each(:types)))
              ORDER BY priority DESC, run_at, id
              LIMIT :limit))
    ORDER BY priority DESC, run_at, id
    LIMIT :limit)
-- Only what the claimer does not know already (rows.py, CLAIMED_COLUMNS).
RETURNING id, name, task_type, payload, priority, created_at, scheduled_at, max_retries,
          retry_count, error_message, attempts, run_at, timeout, unique_key, error_traceback,
          queue_name, depends_on, first_started_at, meta, concurrency_key;
-- limited_candidates --
-- For a claim of one limited task type (rate or concurrency limit): up to
-- :scan of its due tasks, in claim order, from the queues served (as in
-- claim), with their concurrency key ('' for none). The claimer picks
-- those the limits allow and claims them with claim_ids.
SELECT t.id, coalesce(t.concurrency_key, '')
FROM (SELECT value AS name FROM json_each(:queues) WHERE :queues IS NOT NULL
      UNION ALL
      SELECT queue_name FROM task_counts
      WHERE :queues IS NULL AND status = 'pending' AND n > 0) AS q,
     tasks AS t
WHERE q.name NOT IN (SELECT queue_name FROM queue_pauses)
  AND t.id IN (
      SELECT id FROM tasks INDEXED BY idx_tasks_claim
      WHERE queue_name = q.name AND status = 'pending' AND run_at <= :now
        AND task_type = :task_type
      ORDER BY priority DESC, run_at, id
      LIMIT :scan)
ORDER BY t.priority DESC, t.run_at, t.id
LIMIT :scan;

-- claim_ids --
-- Claim the pending tasks whose ids are in the JSON array :ids (picked by
-- the claimer within the same transaction), as claim does.
UPDATE tasks
SET status = 'running', worker_id = :worker_id, started_at = :now, attempts = attempts + 1,
    lease_expires_at = :lease_expires_at, claim_token = :token,
    owner_host = :owner_host, owner_pid = :owner_pid,
    first_started_at = coalesce(first_started_at, :now), progress = NULL
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'pending'
RETURNING id, name, task_type, payload, priority, created_at, scheduled_at, max_retries,
          retry_count, error_message, attempts, run_at, timeout, unique_key, error_traceback,
          queue_name, depends_on, first_started_at, meta, concurrency_key;

-- running_per_key --
-- Running tasks of one type per concurrency key ('' for none): a read of
-- the running tasks only (a few per worker thread), so a crashed holder's
-- place is free as soon as its task is rescued.
SELECT coalesce(concurrency_key, ''), count(*) FROM tasks INDEXED BY idx_tasks_lease
WHERE status = 'running' AND task_type = :task_type
GROUP BY 1;

-- rate_bucket --
-- The token bucket of a rate-limited type (no row: a full bucket).
SELECT tokens, updated_at FROM rate_limits WHERE task_type = :task_type;

-- set_rate_bucket --
-- What is left in the bucket after a claim. The stamp never moves back: a
-- claimer whose clock is behind would otherwise hand the next claimer with
-- a clock ahead the whole skew as elapsed time, refilled at once.
INSERT INTO rate_limits (task_type, tokens, updated_at) VALUES (:task_type, :tokens, :now)
ON CONFLICT (task_type) DO UPDATE
SET tokens = excluded.tokens, updated_at = MAX(updated_at, excluded.updated_at);

-- complete_task --
-- Record success, only for the current holder of the claim (fencing).
UPDATE tasks
SET status = 'completed', result = :result, completed_at = :now, lease_expires_at = NULL
WHERE id = :id AND claim_token = :token AND status = 'running'
RETURNING id;

-- complete_many --
-- complete_task for many claims in one statement (a Worker's batched
-- outcomes); :items is a JSON array of [id, token, result JSON text or null].
-- Returns the claims recorded; the others were fenced out. The unary + keeps
-- the planner off the index of running tasks: it would scan every running
-- task and re-parse :items for each (O(running x items)); this way each
-- item is one primary-key lookup.
UPDATE tasks
SET status = 'completed', result = done.result, completed_at = :now, lease_expires_at = NULL
FROM (SELECT json_extract(value, '$[0]') AS done_id, json_extract(value, '$[1]') AS done_token,
             json_extract(value, '$[2]') AS result
      FROM json_each(:items)) AS done
WHERE tasks.id = done.done_id AND tasks.claim_token = done.done_token
  AND +tasks.status = 'running'
RETURNING tasks.id, tasks.claim_token, tasks.has_dependents;

-- release_dependents --
-- Task :parent completed: each task waiting for it has one fewer to wait
-- for, and becomes pending when none is left. One statement however many.
UPDATE tasks
SET waiting_on = waiting_on - 1,
    status = CASE WHEN waiting_on = 1 THEN 'pending' ELSE status END
WHERE status = 'waiting'
  AND id IN (SELECT task_id FROM task_dependencies WHERE depends_on = :parent);

-- cancel_dependents --
-- Task :parent failed for good or was cancelled: what waits for it is
-- cancelled, saying why. Returns those that have dependents of their own
-- (the next level).
UPDATE tasks
SET status = 'cancelled', completed_at = :now,
    error_message = 'cancelled: task ' || :parent || ', which it depends on, was ' || :status
WHERE status = 'waiting'
  AND id IN (SELECT task_id FROM task_dependencies WHERE depends_on = :parent)
RETURNING id, has_dependents;

-- set_progress --
-- The progress of running tasks whose claims are held: :items is a JSON
-- array of [id, token, progress JSON text]. Returns the claims written.
-- (+: see complete_many.)
UPDATE tasks
SET progress = reported.progress
FROM (SELECT json_extract(value, '$[0]') AS task_id, json_extract(value, '$[1]') AS token,
             json_extract(value, '$[2]') AS progress
      FROM json_each(:items)) AS reported
WHERE tasks.id = reported.task_id AND tasks.claim_token = reported.token
  AND +tasks.status = 'running'
RETURNING tasks.id, tasks.claim_token;

-- record_attempt --
-- Into the attempt history: the attempt of task :id now ending as :outcome,
-- while still held under :token (run before the statement that ends it).
-- REPLACE: a released attempt's number is used again.
INSERT OR REPLACE INTO task_attempts (task_id, attempt, worker_id, started_at, finished_at,
                                      outcome, error_class, error, traceback)
SELECT id, attempts, worker_id, started_at, :now, :outcome, :error_class, :error, :traceback
FROM tasks
WHERE id = :id AND claim_token IS :token AND status = 'running';

-- record_running_attempt --
-- As record_attempt, for task :id if it is running (whoever holds it).
INSERT OR REPLACE INTO task_attempts (task_id, attempt, worker_id, started_at, finished_at,
                                      outcome)
SELECT id, attempts, worker_id, started_at, :now, :outcome
FROM tasks WHERE id = :id AND status = 'running';

-- task_lease --
-- The claim token and lease of task :id (is it still the claim a rescuer found?).
SELECT claim_token, lease_expires_at FROM tasks WHERE id = :id AND status = 'running';

-- task_attempts --
-- The recorded attempts of one task, first first.
SELECT attempt, worker_id, started_at, finished_at, outcome, error_class, error, traceback
FROM task_attempts WHERE task_id = :id ORDER BY attempt;

-- fail_retry --
-- A failed attempt with retries left, if the caller still holds the claim:
-- back to pending, due at :run_at (the backoff decided by the caller).
UPDATE tasks
SET status = 'pending', retry_count = retry_count + 1, run_at = :run_at,
    error_message = :error, error_traceback = :traceback, lease_expires_at = NULL
WHERE id = :id AND claim_token = :token AND status = 'running'
RETURNING id;
-- fail_final --
-- A failed attempt with no retries left, if the caller still holds the
-- claim: the dead-letter set (status failed).
UPDATE tasks
SET status = 'failed', completed_at = :now, error_message = :error,
    error_traceback = :traceback, lease_expires_at = NULL
WHERE id = :id AND claim_token = :token AND status = 'running'
RETURNING id, has_dependents;
-- release_task --
-- Give a claimed task back unfinished (shutdown): pending again, and the
-- attempt does not count.
UPDATE tasks
SET status = 'pending', attempts = max(attempts - 1, 0), worker_id = NULL,
    lease_expires_at = NULL, started_at = NULL
WHERE id = :id AND claim_token = :token AND status = 'running'
RETURNING id;

-- renew_leases --
-- Heartbeat: extend the leases of claims still held; :claims is a JSON
-- array of [id, token] pairs. Returns the claims renewed. (+: see complete_many.)
UPDATE tasks
SET lease_expires_at = :lease_expires_at
FROM (SELECT json_extract(value, '$[0]') AS held_id, json_extract(value, '$[1]') AS held_token
      FROM json_each(:claims)) AS held
WHERE tasks.id = held.held_id AND tasks.claim_token = held.held_token
  AND +tasks.status = 'running'
RETURNING tasks.id, tasks.claim_token;
-- expired_claims --
-- Rescue candidates: running tasks whose lease expired (a range seek).
SELECT * FROM tasks INDEXED BY idx_tasks_lease
WHERE status = 'running' AND lease_expires_at < :now;

-- dead_owner_claims --
-- Rescue candidates: running tasks held by the dead processes in :owners,
-- a JSON array of [host, pid] (asked only when some owner is dead).
SELECT * FROM tasks INDEXED BY idx_tasks_lease
WHERE status = 'running'
  AND EXISTS (SELECT 1 FROM json_each(:owners)
              WHERE json_extract(value, '$[0]') = owner_host
                AND json_extract(value, '$[1]') = owner_pid);

-- rescue_retry --
-- A lost claim with retries left: pending again at once, the lost attempt
-- counted as a retry. Only if the task is still held under the claim the
-- rescuer found, with the lease it saw (a renewal since then wins).
UPDATE tasks
SET status = 'pending', retry_count = retry_count + 1, run_at = :run_at,
    error_message = :error, lease_expires_at = NULL
WHERE id = :id AND claim_token = :token AND status = 'running'
  AND lease_expires_at IS :lease_expires_at
RETURNING id, status, has_dependents;

-- rescue_final --
-- A lost claim with no retries left: failed for good (fenced as rescue_retry).
UPDATE tasks
SET status = 'failed', completed_at = :now, run_at = :now, error_message = :error,
    lease_expires_at = NULL
WHERE id = :id AND claim_token = :token AND status = 'running'
  AND lease_expires_at IS :lease_expires_at
RETURNING id, status, has_dependents;
-- local_owners --
-- Processes on this host holding running tasks (the rescuer checks which are gone).
SELECT DISTINCT owner_pid FROM tasks INDEXED BY idx_tasks_lease
WHERE status = 'running' AND owner_host = :owner_host AND owner_pid IS NOT NULL;
-- cancel_task --
-- Cancel a pending or running task. A running task's handler learns it at
-- its next heartbeat; its late outcome is then fenced out by the status.
UPDATE tasks
SET status = 'cancelled', completed_at = :now, lease_expires_at = NULL
WHERE id = :id AND status IN ('pending', 'running', 'waiting')
RETURNING id, has_dependents;

-- retry_task --
-- A failed or cancelled task back to pending with a fresh retry budget.
UPDATE tasks
SET status = 'pending', retry_count = 0, run_at = :now, completed_at = NULL,
    worker_id = NULL, lease_expires_at = NULL, claim_token = NULL
WHERE id = :id AND status IN ('failed', 'cancelled')
RETURNING id;

-- retry_tasks --
-- retry_task for the ids in the JSON array :ids, in one statement. OR
-- IGNORE: a task whose unique_key a live task holds now stays as it is
-- (it would violate the unique index) instead of failing the whole batch.
UPDATE OR IGNORE tasks
SET status = 'pending', retry_count = 0, run_at = :now, completed_at = NULL,
    worker_id = NULL, lease_expires_at = NULL, claim_token = NULL
WHERE id IN (SELECT value FROM json_each(:ids)) AND status IN ('failed', 'cancelled')
RETURNING id;

-- get_task --
-- One task by id.
SELECT * FROM tasks WHERE id = :id;

-- get_tasks --
-- The tasks whose ids are in the JSON array :ids.
SELECT * FROM tasks WHERE id IN (SELECT value FROM json_each(:ids));

-- finished_among --
-- Of the ids in the JSON array :ids: the finished tasks (every column after
-- the first) and the ids no task has (first column only, the rest NULL).
SELECT ids.value, tasks.* FROM json_each(:ids) AS ids
LEFT JOIN tasks ON tasks.id = ids.value
WHERE tasks.id IS NULL OR tasks.status IN ('completed', 'failed', 'cancelled');

-- task_status --
-- The status of one task (why a fenced update matched nothing).
SELECT status FROM tasks WHERE id = :id;

-- list_newest --
-- A page of tasks, newest first, below id :before_id (keyset pagination)
-- and down to id :floor_id (where a bounded scan stops, see
-- scan_edge_newest; below every id when unbounded), of one status, type and
-- queue when those are given (NULL: any). A backward walk of the table from
-- there: pending and running tasks are the recent ones, so it finds them at
-- once.
SELECT * FROM tasks
WHERE id < :before_id AND id >= :floor_id
  AND (:status IS NULL OR status = :status)
  AND (:task_type IS NULL OR task_type = :task_type)
  AND (:queue_name IS NULL OR queue_name = :queue_name)
ORDER BY id DESC LIMIT :limit;

-- scan_edge_newest --
-- The window of a bounded list_newest (a filter no index narrows, such as
-- one task type: at a million tasks, a type that no task has meant reading
-- them all): the first row below :before_id ('first'), and the :skip+1-th
-- and the one after it ('edge'; :skip is the bound less one). Two edge rows:
-- the scan stops at the first of them, more lie beyond; one or none: the
-- window reaches the oldest task. Reads ids only (the table b-tree, no
-- column decoded): 50,000 rows in ~6 ms at a million.
SELECT 'first', NULL, id FROM (
    SELECT id FROM tasks WHERE id < :before_id ORDER BY id DESC LIMIT 1)
UNION ALL
SELECT 'edge', NULL, id FROM (
    SELECT id FROM tasks WHERE id < :before_id ORDER BY id DESC LIMIT 2 OFFSET :skip);

-- scan_edge_finished --
-- scan_edge_newest for list_finished: the same window of finished tasks of
-- status :status in finish order after (:before_at, :before_id), read from
-- the index of finished tasks alone (it holds completed_at and the id).
SELECT 'first', completed_at, id FROM (
    SELECT completed_at, id FROM tasks INDEXED BY idx_tasks_finished
    WHERE status = :status AND status IN ('completed', 'failed', 'cancelled')
      AND (completed_at, id) < (:before_at, :before_id)
    ORDER BY completed_at DESC, id DESC LIMIT 1)
UNION ALL
SELECT 'edge', completed_at, id FROM (
    SELECT completed_at, id FROM tasks INDEXED BY idx_tasks_finished
    WHERE status = :status AND status IN ('completed', 'failed', 'cancelled')
      AND (completed_at, id) < (:before_at, :before_id)
    ORDER BY completed_at DESC, id DESC LIMIT 2 OFFSET :skip);

-- list_pending --
-- list_newest for status pending when few tasks are pending: their ids
-- from the index of pending tasks (all of them, the newest kept), then
-- those rows. A walk of the table from the end finds recent pending tasks
-- at once, but one scheduled for next week behind a million finished
-- tasks only after reading them all (a full scan: 110 ms at a million
-- rows, against 8 ms for 20,000 pending this way). The storage picks this
-- one from the kept counts.
SELECT * FROM tasks WHERE id IN (
    SELECT id FROM tasks INDEXED BY idx_tasks_scheduled
    WHERE status = 'pending' AND id < :before_id
      AND (:task_type IS NULL OR task_type = :task_type)
      AND (:queue_name IS NULL OR queue_name = :queue_name)
    ORDER BY id DESC LIMIT :limit)
ORDER BY id DESC;

-- list_pending_in_queue --
-- list_pending for one queue (:queue_name, not NULL): a seek into that
-- queue's part of the claim index.
SELECT * FROM tasks WHERE id IN (
    SELECT id FROM tasks INDEXED BY idx_tasks_claim
    WHERE status = 'pending' AND queue_name = :queue_name AND id < :before_id
      AND (:task_type IS NULL OR task_type = :task_type)
    ORDER BY id DESC LIMIT :limit)
ORDER BY id DESC;

-- list_running --
-- list_newest for status running (as list_pending does for pending): the
-- index of running tasks, the newest kept.
SELECT * FROM tasks WHERE id IN (
    SELECT id FROM tasks INDEXED BY idx_tasks_lease
    WHERE status = 'running' AND id < :before_id
      AND (:task_type IS NULL OR task_type = :task_type)
      AND (:queue_name IS NULL OR queue_name = :queue_name)
    ORDER BY id DESC LIMIT :limit)
ORDER BY id DESC;

-- list_finished --
-- A page of finished tasks of one status, most recently finished first,
-- after (:before_at, :before_id) in that order and down to (:floor_at,
-- :floor_id) (where a bounded scan stops, see scan_edge_finished; -inf
-- unbounded), of one type and queue when given: the index of finished
-- tasks, read from the end.
SELECT * FROM tasks INDEXED BY idx_tasks_finished
WHERE status = :status AND status IN ('completed', 'failed', 'cancelled')
  AND (completed_at, id) < (:before_at, :before_id)
  AND (completed_at, id) >= (:floor_at, :floor_id)
  AND (:task_type IS NULL OR task_type = :task_type)
  AND (:queue_name IS NULL OR queue_name = :queue_name)
ORDER BY completed_at DESC, id DESC LIMIT :limit;

-- list_failed_of_type --
-- list_finished for status failed and one task type (:task_type, not
-- NULL): a seek into that type's part of the failed tasks' index, in
-- failure order.
SELECT * FROM tasks INDEXED BY idx_tasks_failed_type
WHERE status = 'failed' AND task_type = :task_type
  AND (completed_at, id) < (:before_at, :before_id)
  AND (:queue_name IS NULL OR queue_name = :queue_name)
ORDER BY completed_at DESC, id DESC LIMIT :limit;

-- list_failed_in_queue --
-- list_finished for status failed and one queue (:queue_name, not NULL),
-- of any type: that queue's part of the failed tasks' index.
SELECT * FROM tasks INDEXED BY idx_tasks_failed_queue
WHERE status = 'failed' AND queue_name = :queue_name
  AND (completed_at, id) < (:before_at, :before_id)
ORDER BY completed_at DESC, id DESC LIMIT :limit;

-- counts --
-- Tasks per status, over every queue.
SELECT status, sum(n) FROM task_counts GROUP BY status;

-- queue_counts --
-- Tasks per queue and status (a queue stays listed, at zero, once used).
SELECT queue_name, status, n FROM task_counts;

-- declare_schedule --
-- A Worker carrying schedule :name says so (at its start): its definition
-- as that Worker has it, and when it fires next.
INSERT INTO schedules (name, task_type, expression, queue_name, misfire, next_fire, declared_at)
VALUES (:name, :task_type, :expression, :queue_name, :misfire, :next_fire, :now)
ON CONFLICT (name) DO UPDATE SET
    task_type = excluded.task_type, expression = excluded.expression,
    queue_name = excluded.queue_name, misfire = excluded.misfire,
    next_fire = excluded.next_fire, declared_at = excluded.declared_at;

-- schedule_last_slot --
-- The last slot schedule :name fired (NULL: none yet, or not declared).
SELECT last_slot FROM schedules WHERE name = :name;

-- slot_taken --
-- Was slot :slot of schedule :name fired already?
SELECT 1 FROM schedule_slots WHERE name = :name AND slot = :slot;

-- record_slot --
-- Slot :slot of schedule :name became task :task_id (unique: a second
-- insert of the slot fails, and its transaction with it).
INSERT INTO schedule_slots (name, slot, task_id) VALUES (:name, :slot, :task_id);

-- advance_schedule --
-- Schedule :name fired up to :slot (never back: a late Worker's older slot
-- does not move it).
UPDATE schedules
SET last_slot = :slot, last_task_id = :task_id, next_fire = :next_fire
WHERE name = :name AND (last_slot IS NULL OR last_slot < :slot);

-- prune_slots --
-- Slot records older than the last few hundred of a schedule: no slot at
-- or before last_slot ever fires again, so they only guard what is newer.
DELETE FROM schedule_slots
WHERE name = :name AND slot < (
    SELECT slot FROM schedule_slots WHERE name = :name ORDER BY slot DESC LIMIT 1 OFFSET 500);

-- list_schedules --
-- Every schedule the file knows, by name.
SELECT name, task_type, expression, queue_name, misfire, next_fire, last_slot, last_task_id,
       declared_at
FROM schedules ORDER BY name;

-- worker_seen --
-- A Worker reports itself: at its start, with each heartbeat (its counts
-- so far), and at its stop (:stopped_at set).
INSERT INTO workers (worker_id, name, host, pid, queues, concurrency, started_at, last_seen,
                     stopped_at, processed, failed)
VALUES (:worker_id, :name, :host, :pid, :queues, :concurrency, :started_at, :now, :stopped_at,
        :processed, :failed)
ON CONFLICT (worker_id) DO UPDATE SET
    last_seen = excluded.last_seen, stopped_at = excluded.stopped_at,
    processed = excluded.processed, failed = excluded.failed,
    started_at = excluded.started_at, queues = excluded.queues,
    concurrency = excluded.concurrency;

-- workers_seen --
-- Workers seen since :since, most recently seen first.
SELECT worker_id, name, host, pid, queues, concurrency, started_at, last_seen, stopped_at,
       processed, failed
FROM workers WHERE last_seen >= :since ORDER BY last_seen DESC;

-- forget_workers --
-- Workers not seen since :before (their rows only say they once existed).
DELETE FROM workers WHERE last_seen < :before;

-- throughput --
-- Tasks completed and failed for good per :bucket seconds since :since (the
-- index of finished tasks, read over that range only).
SELECT CAST(completed_at / :bucket AS INTEGER) * :bucket AS at, status, count(*)
FROM tasks INDEXED BY idx_tasks_finished
WHERE status IN ('completed', 'failed') AND status IN ('completed', 'failed', 'cancelled')
  AND completed_at >= :since
GROUP BY at, status ORDER BY at;

-- oldest_due --
-- When the longest-waiting due pending task became due (its run_at).
SELECT min(run_at) FROM tasks INDEXED BY idx_tasks_scheduled
WHERE status = 'pending' AND run_at <= :now;

-- pause_queue --
-- Pause a queue (used or not); pausing it again keeps the first time.
INSERT INTO queue_pauses (queue_name, paused_at) VALUES (:queue_name, :now)
ON CONFLICT (queue_name) DO NOTHING;

-- resume_queue --
-- Resume a paused queue; returns its name if it was paused.
DELETE FROM queue_pauses WHERE queue_name = :queue_name RETURNING queue_name;

-- paused_queues --
-- The paused queues.
SELECT queue_name FROM queue_pauses;
-- next_due --
-- When the next pending task that is not yet due becomes due.
SELECT min(run_at) FROM tasks INDEXED BY idx_tasks_scheduled
WHERE status = 'pending' AND run_at > :now;

-- due_by_type --
-- Due pending tasks per type, in the queues of the JSON array :queues (NULL:
-- all), to report types no worker handles.
SELECT task_type, count(*) FROM tasks
WHERE status = 'pending' AND run_at <= :now
  AND (:queues IS NULL OR queue_name IN (SELECT value FROM json_each(:queues)))
GROUP BY task_type;

-- purge_finished --
-- Delete up to :limit finished tasks whose status is in the JSON array
-- :statuses and that finished before :before.
DELETE FROM tasks WHERE id IN (
    SELECT id FROM tasks INDEXED BY idx_tasks_finished
    WHERE status IN (SELECT value FROM json_each(:statuses))
      AND status IN ('completed', 'failed', 'cancelled')
      AND completed_at < :before
    LIMIT :limit);
-- data_version --
-- Changes whenever another connection commits: a cheap "anything new?".
PRAGMA data_version;

-- probe_write --
-- A write that changes nothing: it opens a write transaction on the file
-- (refused on a read-only one; BEGIN IMMEDIATE alone is not) without
-- touching a page, so its COMMIT costs no sync.
DELETE FROM task_queue_meta WHERE 0;
