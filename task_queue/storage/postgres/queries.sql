-- All SQL of the PostgreSQL backend. Blocks are named by a line "-- name --"
-- followed by a description (storage/sqlfiles.py loads them once); where an
-- operation is the same as on SQLite, so is its name. Placeholders are
-- psycopg's %(name)s, typed with a cast wherever they may be NULL: nothing
-- here is built from user input. Every statement runs in READ COMMITTED:
-- a fenced UPDATE re-checks its WHERE on the newest row version after
-- waiting for a lock, which is what makes fencing by claim token hold.

-- insert_task --
-- Enqueue one task; returns no row when a live task already holds unique_key
-- (the partial unique index; the caller then looks the holder up).
INSERT INTO tasks (name, task_type, payload, priority, status, created_at, scheduled_at,
                   max_retries, run_at, timeout, unique_key, queue_name, depends_on,
                   waiting_on, completed_at, error_message, meta, concurrency_key)
VALUES (%(name)s, %(task_type)s, %(payload)s::text, %(priority)s, %(status)s, %(now)s,
        %(scheduled_at)s::float8, %(max_retries)s, %(run_at)s, %(timeout)s::float8,
        %(unique_key)s::text, %(queue_name)s, %(depends_on)s::text, %(waiting_on)s,
        %(completed_at)s::float8, %(error_message)s::text, %(meta)s::text,
        %(concurrency_key)s::text)
ON CONFLICT DO NOTHING
RETURNING id;

-- insert_tasks --
-- enqueue_many without unique keys or dependencies: one statement over
-- arrays, one per column (unnest keeps them aligned; ORDER BY keeps the ids
-- in the order given).
INSERT INTO tasks (name, task_type, payload, priority, status, created_at, scheduled_at,
                   max_retries, run_at, timeout, queue_name, meta, concurrency_key)
SELECT name, task_type, payload, priority, 'pending', %(now)s, scheduled_at, max_retries,
       run_at, timeout, queue_name, meta, concurrency_key
FROM unnest(%(names)s::text[], %(task_types)s::text[], %(payloads)s::text[],
            %(priorities)s::int[], %(scheduled_ats)s::float8[], %(max_retries)s::int[],
            %(run_ats)s::float8[], %(timeouts)s::float8[], %(queue_names)s::text[],
            %(metas)s::text[], %(concurrency_keys)s::text[])
     WITH ORDINALITY AS t(name, task_type, payload, priority, scheduled_at, max_retries,
                          run_at, timeout, queue_name, meta, concurrency_key, ord)
ORDER BY ord
RETURNING id;

-- dependency_states --
-- The tasks in :ids that exist, with their status, locked (FOR SHARE) until
-- the enqueue commits: a parent cannot finish in between, so the new task's
-- waiting count is right (its completion waits, then sees the dependency).
SELECT id, status FROM tasks WHERE id = ANY(%(ids)s::bigint[]) ORDER BY id FOR SHARE;

-- insert_dependencies --
-- Task :task_id waits for the tasks in :ids.
INSERT INTO task_dependencies (depends_on, task_id)
SELECT unnest(%(ids)s::bigint[]), %(task_id)s
ON CONFLICT DO NOTHING;

-- mark_depended_on --
-- (see insert_dependencies) Their outcomes look for dependents only then.
UPDATE tasks SET has_dependents = true
WHERE id = ANY(%(ids)s::bigint[]) AND NOT has_dependents;

-- find_live_unique --
-- The live task holding a unique_key.
SELECT id FROM tasks
WHERE unique_key = %(unique_key)s AND unique_key IS NOT NULL
  AND status IN ('pending', 'running');

-- claim --
-- Claim the best due tasks of every queue that is not paused, of the task
-- types in :types (NULL: any): highest priority, then earliest due, then
-- oldest. The candidates are picked with FOR UPDATE SKIP LOCKED in a
-- MATERIALIZED CTE, evaluated once: the "IN (SELECT ... LIMIT)" form can be
-- re-evaluated under concurrency and update more rows than the limit. A
-- walk of idx_tasks_claim in order, skipping what others hold. The paused
-- queues are a hashed subplan (NOT IN: built once per statement): with
-- "<> ALL (ARRAY(SELECT ...))" the planner, seeing one queue name in its
-- statistics, estimated 1 matching row and sorted every pending task
-- instead (16 ms for a claim at 20,000 pending, measured).
WITH picked AS MATERIALIZED (
    SELECT id FROM tasks
    WHERE status = 'pending' AND run_at <= %(now)s
      AND (%(types)s::text[] IS NULL OR task_type = ANY(%(types)s::text[]))
      AND queue_name NOT IN (SELECT queue_name FROM queue_pauses)
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE tasks
SET status = 'running', worker_id = %(worker_id)s, started_at = %(now)s,
    attempts = attempts + 1, lease_expires_at = %(lease_expires_at)s,
    claim_token = %(token)s, owner_host = %(owner_host)s, owner_pid = %(owner_pid)s,
    first_started_at = coalesce(first_started_at, %(now)s), progress = NULL
FROM picked WHERE tasks.id = picked.id
-- Only what the claimer does not know already (rows.py, CLAIMED_COLUMNS).
RETURNING tasks.id, name, task_type, payload, priority, created_at, scheduled_at,
          max_retries, retry_count, error_message, attempts, run_at, timeout, unique_key,
          error_traceback, queue_name, depends_on, first_started_at, meta, concurrency_key;

-- claim_plan --
-- For the rest of the claim's transaction: walk the claim index in order,
-- never sort the pending tasks. Right after a burst of enqueues (before
-- autovacuum's ANALYZE has seen them) the planner estimated 9 pending rows,
-- chose a bitmap scan and a sort of all 16,600 of them: 9 ms per claim
-- instead of 0.3 ms (measured). These only weigh against the other plans;
-- the claims' own indexes give them the order they ask for. Set after the
-- transaction's complete_many, never before: planned under them, it made a
-- drain 10x slower.
SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true),
       set_config('enable_sort', 'off', true);

-- claim_queues --
-- claim, from the queues in :queues only: each queue's first rows from its
-- own index (idx_tasks_claim_queue, one ordered walk per queue, whatever
-- the other queues hold), the best of those taken. A queue's rows beyond
-- the ones taken stay locked only until this statement's transaction ends.
WITH picked AS MATERIALIZED (
    SELECT c.id FROM unnest(%(queues)s::text[]) AS q(name)
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM tasks
        WHERE queue_name = q.name AND status = 'pending' AND run_at <= %(now)s
          AND (%(types)s::text[] IS NULL OR task_type = ANY(%(types)s::text[]))
        ORDER BY priority DESC, run_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS c
    WHERE q.name NOT IN (SELECT queue_name FROM queue_pauses)
    ORDER BY c.priority DESC, c.run_at, c.id
    LIMIT %(limit)s
)
UPDATE tasks
SET status = 'running', worker_id = %(worker_id)s, started_at = %(now)s,
    attempts = attempts + 1, lease_expires_at = %(lease_expires_at)s,
    claim_token = %(token)s, owner_host = %(owner_host)s, owner_pid = %(owner_pid)s,
    first_started_at = coalesce(first_started_at, %(now)s), progress = NULL
FROM picked WHERE tasks.id = picked.id
RETURNING tasks.id, name, task_type, payload, priority, created_at, scheduled_at,
          max_retries, retry_count, error_message, attempts, run_at, timeout, unique_key,
          error_traceback, queue_name, depends_on, first_started_at, meta, concurrency_key;

-- limited_candidates --
-- For a claim of one limited task type (rate or concurrency limit): up to
-- :scan of its due tasks in claim order, from the queues served (NULL:
-- all), with their concurrency key ('' for none), locked with SKIP LOCKED
-- (the claimer picks those the limits allow; the others are let go at the
-- end of the transaction).
SELECT id, coalesce(concurrency_key, '') FROM tasks
WHERE status = 'pending' AND run_at <= %(now)s AND task_type = %(task_type)s
  AND (%(queues)s::text[] IS NULL OR queue_name = ANY(%(queues)s::text[]))
  AND queue_name NOT IN (SELECT queue_name FROM queue_pauses)
ORDER BY priority DESC, run_at, id
LIMIT %(scan)s
FOR UPDATE SKIP LOCKED;

-- claim_ids --
-- Claim the pending tasks in :ids (picked and locked by the claimer within
-- the same transaction), as claim does.
UPDATE tasks
SET status = 'running', worker_id = %(worker_id)s, started_at = %(now)s,
    attempts = attempts + 1, lease_expires_at = %(lease_expires_at)s,
    claim_token = %(token)s, owner_host = %(owner_host)s, owner_pid = %(owner_pid)s,
    first_started_at = coalesce(first_started_at, %(now)s), progress = NULL
WHERE id = ANY(%(ids)s::bigint[]) AND status = 'pending'
RETURNING id, name, task_type, payload, priority, created_at, scheduled_at, max_retries,
          retry_count, error_message, attempts, run_at, timeout, unique_key, error_traceback,
          queue_name, depends_on, first_started_at, meta, concurrency_key;

-- lock_concurrency --
-- Serializes the claims of one concurrency-limited type for the rest of the
-- transaction (an advisory lock on the type's name): two claimers counting
-- running tasks at once would both see room for the last place. Claims of
-- other types do not wait.
SELECT pg_advisory_xact_lock(hashtext('task_queue.concurrency'), hashtext(%(task_type)s));

-- running_per_key --
-- Running tasks of one type per concurrency key ('' for none), from the
-- index of running tasks: a crashed holder's place is free as soon as its
-- task is rescued.
SELECT coalesce(concurrency_key, ''), count(*) FROM tasks
WHERE status = 'running' AND task_type = %(task_type)s
GROUP BY 1;

-- rate_bucket --
-- The token bucket of a rate-limited type, locked for the claim's
-- transaction (created full on first use, so there is a row to lock).
INSERT INTO rate_limits (task_type, tokens, updated_at)
VALUES (%(task_type)s, %(capacity)s, %(now)s)
ON CONFLICT (task_type) DO UPDATE SET task_type = excluded.task_type
RETURNING tokens, updated_at;

-- set_rate_bucket --
-- What is left in the bucket after a claim. The stamp never moves back: a
-- claimer whose clock is behind (an injected clock, a server clock stepped
-- back) would otherwise hand the next claimer its lag as refill time.
UPDATE rate_limits SET tokens = %(tokens)s, updated_at = greatest(updated_at, %(now)s)
WHERE task_type = %(task_type)s;

-- complete_many --
-- Record successes of the claims still held (fencing: the token and status
-- are checked on the row as it is once its lock is had): :ids, :tokens and
-- :results are aligned arrays. "status || ''" keeps the planner off the
-- index of running tasks (as SQLite's unary +): it would walk every entry of
-- it, the dead ones of tasks finished since the last vacuum included (20 ms
-- per batch of 68 during a drain of 20,000, measured), instead of one
-- primary-key lookup per item. The same for set_progress, release and renew. In the same statement: the finished count
-- of this connection's shard, and the dependents of completed tasks that
-- have some (each waits for one fewer, per parent completed here; pending
-- when none is left). Returns the claims recorded.
WITH done AS (
    UPDATE tasks
    SET status = 'completed', result = d.result, completed_at = %(now)s,
        lease_expires_at = NULL
    FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(results)s::text[])
         AS d(id, token, result)
    WHERE tasks.id = d.id AND tasks.claim_token = d.token
      AND (tasks.status || '') = 'running'
    RETURNING tasks.id, tasks.claim_token, tasks.has_dependents, tasks.queue_name
), counted AS (
    INSERT INTO task_counts (queue_name, status, shard, n)
    SELECT queue_name, 'completed', pg_backend_pid() %% 16, count(*) FROM done
    GROUP BY queue_name ORDER BY queue_name
    ON CONFLICT (queue_name, status, shard) DO UPDATE SET n = task_counts.n + excluded.n
), released AS (
    UPDATE tasks
    SET waiting_on = tasks.waiting_on - r.n,
        status = CASE WHEN tasks.waiting_on = r.n THEN 'pending' ELSE tasks.status END
    FROM (SELECT task_id, count(*) AS n FROM task_dependencies
          WHERE depends_on IN (SELECT id FROM done WHERE has_dependents)
          GROUP BY task_id) AS r
    WHERE tasks.id = r.task_id AND tasks.status = 'waiting'
)
SELECT id, claim_token FROM done;

-- count_finished --
-- Adjust the counts of finished tasks: :queues, :statuses and :deltas are
-- aligned arrays, one entry per queue and status (this connection's shard).
INSERT INTO task_counts (queue_name, status, shard, n)
SELECT q, s, pg_backend_pid() %% 16, n
FROM unnest(%(queues)s::text[], %(statuses)s::text[], %(deltas)s::bigint[]) AS d(q, s, n)
ORDER BY q, s
ON CONFLICT (queue_name, status, shard) DO UPDATE SET n = task_counts.n + excluded.n;

-- cancel_dependents --
-- Task :parent failed for good or was cancelled: what waits for it is
-- cancelled, saying why. Returns those cancelled (the next level is those
-- that have dependents of their own).
UPDATE tasks
SET status = 'cancelled', completed_at = %(now)s,
    error_message = 'cancelled: task ' || %(parent)s::bigint || ', which it depends on, was '
                    || %(status)s::text
WHERE status = 'waiting'
  AND id IN (SELECT task_id FROM task_dependencies WHERE depends_on = %(parent)s)
RETURNING id, has_dependents, queue_name;

-- set_progress --
-- The progress of running tasks whose claims are held (aligned arrays).
UPDATE tasks SET progress = r.progress
FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(progress)s::text[])
     AS r(id, token, progress)
WHERE tasks.id = r.id AND tasks.claim_token = r.token
  AND (tasks.status || '') = 'running'
RETURNING tasks.id, tasks.claim_token;

-- lock_held --
-- The attempt of task :id if it is still held under :token, locked until
-- the transaction ends (the failure or rescue recorded next cannot race a
-- renewal or a cancel).
SELECT attempts, worker_id, started_at, lease_expires_at, queue_name FROM tasks
WHERE id = %(id)s AND claim_token = %(token)s AND status = 'running'
FOR UPDATE;

-- lock_task --
-- Task :id's status and attempt, locked until the transaction ends (cancel).
SELECT status, attempts, worker_id, started_at, queue_name FROM tasks
WHERE id = %(id)s FOR UPDATE;

-- record_attempt --
-- Into the attempt history: an attempt ending as :outcome (a released
-- attempt's number is used again, hence the upsert).
INSERT INTO task_attempts (task_id, attempt, worker_id, started_at, finished_at, outcome,
                           error_class, error, traceback)
VALUES (%(id)s, %(attempt)s, %(worker_id)s::text, %(started_at)s::float8, %(now)s,
        %(outcome)s, %(error_class)s::text, %(error)s::text, %(traceback)s::text)
ON CONFLICT (task_id, attempt) DO UPDATE SET
    worker_id = excluded.worker_id, started_at = excluded.started_at,
    finished_at = excluded.finished_at, outcome = excluded.outcome,
    error_class = excluded.error_class, error = excluded.error, traceback = excluded.traceback;

-- task_attempts --
-- The recorded attempts of one task, first first.
SELECT attempt, worker_id, started_at, finished_at, outcome, error_class, error, traceback
FROM task_attempts WHERE task_id = %(id)s ORDER BY attempt;

-- fail_retry --
-- A failed attempt with retries left (the row is locked and held): back to
-- pending, due at :run_at.
UPDATE tasks
SET status = 'pending', retry_count = retry_count + 1, run_at = %(run_at)s,
    error_message = %(error)s, error_traceback = %(traceback)s::text, lease_expires_at = NULL
WHERE id = %(id)s AND claim_token = %(token)s AND status = 'running'
RETURNING id;

-- fail_final --
-- A failed attempt with no retries left: the dead-letter set.
UPDATE tasks
SET status = 'failed', completed_at = %(now)s, error_message = %(error)s,
    error_traceback = %(traceback)s::text, lease_expires_at = NULL
WHERE id = %(id)s AND claim_token = %(token)s AND status = 'running'
RETURNING id, has_dependents, queue_name;

-- release_tasks --
-- Give claimed tasks back unfinished (shutdown): pending again, the attempt
-- not counted. :ids and :tokens are aligned arrays.
UPDATE tasks
SET status = 'pending', attempts = greatest(attempts - 1, 0), worker_id = NULL,
    lease_expires_at = NULL, started_at = NULL
FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[]) AS r(id, token)
WHERE tasks.id = r.id AND tasks.claim_token = r.token
  AND (tasks.status || '') = 'running'
RETURNING tasks.id, tasks.claim_token;

-- renew_leases --
-- Heartbeat: extend the leases of claims still held. A HOT update: no index
-- holds lease_expires_at (see the schema).
UPDATE tasks SET lease_expires_at = %(lease_expires_at)s
FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[]) AS h(id, token)
WHERE tasks.id = h.id AND tasks.claim_token = h.token
  AND (tasks.status || '') = 'running'
RETURNING tasks.id, tasks.claim_token;

-- expired_claims --
-- Rescue candidates: running tasks whose lease expired (a scan of the
-- running tasks' index: a few rows per worker thread).
SELECT * FROM tasks WHERE status = 'running' AND lease_expires_at < %(now)s;

-- dead_owner_claims --
-- Rescue candidates: running tasks held by the dead processes (:hosts and
-- :pids aligned), asked only when some owner is dead.
SELECT * FROM tasks
WHERE status = 'running'
  AND (owner_host, owner_pid) IN (SELECT * FROM unnest(%(hosts)s::text[], %(pids)s::int[]));

-- rescue_retry --
-- A lost claim with retries left (locked, and seen with the lease the
-- rescuer saw): pending again, the lost attempt counted as a retry.
UPDATE tasks
SET status = 'pending', retry_count = retry_count + 1, run_at = %(run_at)s,
    error_message = %(error)s, lease_expires_at = NULL
WHERE id = %(id)s AND claim_token = %(token)s AND status = 'running'
  AND lease_expires_at IS NOT DISTINCT FROM %(lease_expires_at)s::float8
RETURNING id, status, has_dependents, queue_name;

-- rescue_final --
-- A lost claim with no retries left: failed for good (fenced as rescue_retry).
UPDATE tasks
SET status = 'failed', completed_at = %(now)s, run_at = %(now)s, error_message = %(error)s,
    lease_expires_at = NULL
WHERE id = %(id)s AND claim_token = %(token)s AND status = 'running'
  AND lease_expires_at IS NOT DISTINCT FROM %(lease_expires_at)s::float8
RETURNING id, status, has_dependents, queue_name;

-- local_owners --
-- Processes on this host holding running tasks.
SELECT DISTINCT owner_pid FROM tasks
WHERE status = 'running' AND owner_host = %(owner_host)s AND owner_pid IS NOT NULL;

-- cancel_task --
-- Cancel a pending, waiting or running task (locked by lock_task). A
-- running task's handler learns it at its next heartbeat; its late outcome
-- is then fenced out by the status.
UPDATE tasks
SET status = 'cancelled', completed_at = %(now)s, lease_expires_at = NULL
WHERE id = %(id)s AND status IN ('pending', 'running', 'waiting')
RETURNING id, has_dependents, queue_name;

-- retry_task --
-- A failed or cancelled task back to pending with a fresh retry budget (a
-- unique_key a live task holds now makes it fail: DuplicateTaskError).
UPDATE tasks
SET status = 'pending', retry_count = 0, run_at = %(now)s, completed_at = NULL,
    worker_id = NULL, lease_expires_at = NULL, claim_token = NULL
FROM (SELECT id, status AS old_status FROM tasks
      WHERE id = %(id)s AND status IN ('failed', 'cancelled') FOR UPDATE) AS old
WHERE tasks.id = old.id
RETURNING tasks.id, old.old_status, tasks.queue_name;

-- retry_tasks --
-- retry_task for the ids in :ids, in one statement. A task whose
-- unique_key a live task holds now stays as it is, and of several with the
-- same key only the lowest id goes back (SQLite's UPDATE OR IGNORE).
UPDATE tasks
SET status = 'pending', retry_count = 0, run_at = %(now)s, completed_at = NULL,
    worker_id = NULL, lease_expires_at = NULL, claim_token = NULL
FROM (SELECT id, status AS old_status FROM tasks
      WHERE id IN (
          SELECT id FROM tasks
          WHERE id = ANY(%(ids)s::bigint[]) AND status IN ('failed', 'cancelled')
            AND unique_key IS NULL
          UNION ALL
          SELECT min(f.id) FROM tasks AS f
          WHERE f.id = ANY(%(ids)s::bigint[]) AND f.status IN ('failed', 'cancelled')
            AND f.unique_key IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM tasks AS l
                            WHERE l.unique_key = f.unique_key
                              AND l.status IN ('pending', 'running'))
          GROUP BY f.unique_key)
      AND status IN ('failed', 'cancelled')
      ORDER BY id FOR UPDATE) AS old
WHERE tasks.id = old.id
RETURNING tasks.id, old.old_status, tasks.queue_name;

-- get_task --
-- One task by id.
SELECT * FROM tasks WHERE id = %(id)s;

-- get_tasks --
-- The tasks whose ids are in :ids.
SELECT * FROM tasks WHERE id = ANY(%(ids)s::bigint[]);

-- finished_among --
-- Of the ids in :ids: the finished tasks (every column after the first)
-- and the ids no task has (first column only, the rest NULL).
SELECT ids.id, tasks.* FROM unnest(%(ids)s::bigint[]) AS ids(id)
LEFT JOIN tasks ON tasks.id = ids.id
WHERE tasks.id IS NULL OR tasks.status IN ('completed', 'failed', 'cancelled');

-- task_status --
-- The status of one task (why a fenced update matched nothing).
SELECT status FROM tasks WHERE id = %(id)s;

-- list_newest --
-- A page of tasks, newest first, below id :before_id (keyset pagination)
-- and down to id :floor_id (where a bounded scan stops, see
-- scan_edge_newest), of one status, type and queue when those are given
-- (NULL: any).
SELECT * FROM tasks
WHERE id < %(before_id)s AND id >= %(floor_id)s
  AND (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(task_type)s::text IS NULL OR task_type = %(task_type)s::text)
  AND (%(queue_name)s::text IS NULL OR queue_name = %(queue_name)s::text)
ORDER BY id DESC LIMIT %(limit)s;

-- snapshot_read --
-- The first statement of a read whose statements must see one snapshot (a
-- bounded listing, see storage/scan.py).
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;

-- scan_edge_newest --
-- The window of a bounded list_newest (a filter no index narrows, such as
-- one task type; see storage/scan.py): the first row below :before_id
-- ('first'), and the :skip+1-th and the one after it ('edge'; :skip is the
-- bound less one). Two edge rows: the scan stops at the first of them, more
-- lie beyond. The primary key's ids only (an index-only scan).
(SELECT 'first', NULL::float8, id FROM tasks WHERE id < %(before_id)s
 ORDER BY id DESC LIMIT 1)
UNION ALL
(SELECT 'edge', NULL::float8, id FROM tasks WHERE id < %(before_id)s
 ORDER BY id DESC LIMIT 2 OFFSET %(skip)s);

-- scan_edge_finished --
-- scan_edge_newest for list_finished: the same window of finished tasks of
-- status :status in finish order, from idx_tasks_finished alone.
(SELECT 'first', completed_at, id FROM tasks
 WHERE status = %(status)s AND status IN ('completed', 'failed', 'cancelled')
   AND (completed_at, id) < (%(before_at)s, %(before_id)s)
 ORDER BY completed_at DESC, id DESC LIMIT 1)
UNION ALL
(SELECT 'edge', completed_at, id FROM tasks
 WHERE status = %(status)s AND status IN ('completed', 'failed', 'cancelled')
   AND (completed_at, id) < (%(before_at)s, %(before_id)s)
 ORDER BY completed_at DESC, id DESC LIMIT 2 OFFSET %(skip)s);

-- list_finished --
-- A page of finished tasks of one status, most recently finished first,
-- after (:before_at, :before_id) in that order and down to (:floor_at,
-- :floor_id) (where a bounded scan stops, see scan_edge_finished):
-- idx_tasks_finished read backwards.
SELECT * FROM tasks
WHERE status = %(status)s AND status IN ('completed', 'failed', 'cancelled')
  AND (completed_at, id) < (%(before_at)s, %(before_id)s)
  AND (completed_at, id) >= (%(floor_at)s, %(floor_id)s)
  AND (%(task_type)s::text IS NULL OR task_type = %(task_type)s::text)
  AND (%(queue_name)s::text IS NULL OR queue_name = %(queue_name)s::text)
ORDER BY completed_at DESC, id DESC LIMIT %(limit)s;

-- queue_counts --
-- Tasks per queue and status: live statuses counted from their partial
-- indexes (index-only scans of small indexes), finished ones summed from
-- their shard rows (a queue stays listed, at zero, once used).
SELECT queue_name, 'pending', count(*) FROM tasks WHERE status = 'pending' GROUP BY 1
UNION ALL
SELECT queue_name, 'running', count(*) FROM tasks WHERE status = 'running' GROUP BY 1
UNION ALL
SELECT queue_name, 'waiting', count(*) FROM tasks WHERE status = 'waiting' GROUP BY 1
UNION ALL
SELECT queue_name, status, sum(n)::bigint FROM task_counts GROUP BY 1, 2;

-- declare_schedule --
-- A Worker carrying schedule :name says so (at its start).
INSERT INTO schedules (name, task_type, expression, queue_name, misfire, next_fire, declared_at)
VALUES (%(name)s, %(task_type)s, %(expression)s, %(queue_name)s, %(misfire)s,
        %(next_fire)s::float8, %(now)s)
ON CONFLICT (name) DO UPDATE SET
    task_type = excluded.task_type, expression = excluded.expression,
    queue_name = excluded.queue_name, misfire = excluded.misfire,
    next_fire = excluded.next_fire, declared_at = excluded.declared_at;

-- schedule_last_slot --
-- The last slot schedule :name fired (NULL: none yet, or not declared).
SELECT last_slot FROM schedules WHERE name = %(name)s;

-- lock_schedule --
-- Serializes the firing of schedule :name across processes for the rest of
-- the transaction (an advisory lock: the schedule row may not exist yet).
-- Its last slot is read by the next statement, whose snapshot is taken
-- after the lock was had: whoever fired a slot first, the others see it.
SELECT pg_advisory_xact_lock(hashtext('task_queue.schedule'), hashtext(%(name)s));

-- slot_taken --
-- Was slot :slot of schedule :name fired already?
SELECT 1 FROM schedule_slots WHERE name = %(name)s AND slot = %(slot)s;

-- record_slot --
-- Slot :slot of schedule :name became task :task_id (unique: a second insert
-- of the slot fails, and its transaction with it).
INSERT INTO schedule_slots (name, slot, task_id) VALUES (%(name)s, %(slot)s, %(task_id)s);

-- advance_schedule --
-- Schedule :name fired up to :slot (never back).
UPDATE schedules
SET last_slot = %(slot)s, last_task_id = %(task_id)s, next_fire = %(next_fire)s
WHERE name = %(name)s AND (last_slot IS NULL OR last_slot < %(slot)s);

-- prune_slots --
-- Slot records older than the last few hundred of a schedule.
DELETE FROM schedule_slots
WHERE name = %(name)s AND slot < (
    SELECT slot FROM schedule_slots WHERE name = %(name)s
    ORDER BY slot DESC LIMIT 1 OFFSET 500);

-- list_schedules --
-- Every schedule the database knows, by name.
SELECT name, task_type, expression, queue_name, misfire, next_fire, last_slot, last_task_id,
       declared_at
FROM schedules ORDER BY name;

-- worker_seen --
-- A Worker reports itself: at its start, with each heartbeat, at its stop.
INSERT INTO workers (worker_id, name, host, pid, queues, concurrency, started_at, last_seen,
                     stopped_at, processed, failed)
VALUES (%(worker_id)s, %(name)s, %(host)s, %(pid)s, %(queues)s::text, %(concurrency)s,
        %(started_at)s, %(now)s, %(stopped_at)s::float8, %(processed)s, %(failed)s)
ON CONFLICT (worker_id) DO UPDATE SET
    last_seen = excluded.last_seen, stopped_at = excluded.stopped_at,
    processed = excluded.processed, failed = excluded.failed,
    started_at = excluded.started_at, queues = excluded.queues,
    concurrency = excluded.concurrency;

-- workers_seen --
-- Workers seen since :since, most recently seen first.
SELECT worker_id, name, host, pid, queues, concurrency, started_at, last_seen, stopped_at,
       processed, failed
FROM workers WHERE last_seen >= %(since)s ORDER BY last_seen DESC;

-- forget_workers --
-- Workers not seen since :before.
DELETE FROM workers WHERE last_seen < %(before)s;

-- throughput --
-- Tasks completed and failed for good per :bucket seconds since :since
-- (idx_tasks_finished, over that range only).
SELECT floor(completed_at / %(bucket)s) * %(bucket)s AS at, status, count(*)
FROM tasks
WHERE status IN ('completed', 'failed') AND completed_at >= %(since)s
GROUP BY at, status ORDER BY at;

-- oldest_due --
-- When the longest-waiting due pending task became due.
SELECT min(run_at) FROM tasks WHERE status = 'pending' AND run_at <= %(now)s;

-- pause_queue --
-- Pause a queue (used or not); pausing it again keeps the first time.
INSERT INTO queue_pauses (queue_name, paused_at) VALUES (%(queue_name)s, %(now)s)
ON CONFLICT (queue_name) DO NOTHING;

-- resume_queue --
-- Resume a paused queue; returns its name if it was paused.
DELETE FROM queue_pauses WHERE queue_name = %(queue_name)s RETURNING queue_name;

-- paused_queues --
-- The paused queues.
SELECT queue_name FROM queue_pauses;

-- next_due --
-- When the next pending task that is not yet due becomes due.
SELECT min(run_at) FROM tasks WHERE status = 'pending' AND run_at > %(now)s;

-- due_by_type --
-- Due pending tasks per type, in the queues :queues (NULL: all).
SELECT task_type, count(*) FROM tasks
WHERE status = 'pending' AND run_at <= %(now)s
  AND (%(queues)s::text[] IS NULL OR queue_name = ANY(%(queues)s::text[]))
GROUP BY task_type;

-- purge_finished --
-- Delete up to :limit finished tasks whose status is in :statuses and that
-- finished before :before, with their attempts and dependency rows, and
-- take them off the counts. Returns how many.
WITH gone AS (
    DELETE FROM tasks WHERE id IN (
        SELECT id FROM tasks
        WHERE status = ANY(%(statuses)s::text[])
          AND status IN ('completed', 'failed', 'cancelled')
          AND completed_at < %(before)s
        LIMIT %(limit)s)
    RETURNING id, status, queue_name
), attempts AS (
    DELETE FROM task_attempts WHERE task_id IN (SELECT id FROM gone)
), dependencies AS (
    DELETE FROM task_dependencies WHERE task_id IN (SELECT id FROM gone)
), counted AS (
    INSERT INTO task_counts (queue_name, status, shard, n)
    SELECT queue_name, status, pg_backend_pid() %% 16, -count(*) FROM gone
    GROUP BY queue_name, status ORDER BY queue_name, status
    ON CONFLICT (queue_name, status, shard) DO UPDATE SET n = task_counts.n + excluded.n
)
SELECT count(*) FROM gone;

-- probe_write --
-- Can this session write? (A hot standby or a read-only default says no.)
SELECT current_setting('transaction_read_only') = 'off', pg_is_in_recovery();

-- server_time --
-- The server's clock now, as epoch seconds (clock_timestamp(): the time of
-- this call, not of the transaction's start as now() is).
SELECT extract(epoch FROM clock_timestamp())::float8;

-- notify --
-- Wake listeners in other processes (a constant payload; debounced by the
-- sender, see notify.py).
SELECT pg_notify(%(channel)s, '');

-- session_guard --
-- The guard this storage sets on its sessions against a transaction left
-- idle (README: a long transaction holds back vacuum for everyone).
SELECT current_setting('idle_in_transaction_session_timeout');
