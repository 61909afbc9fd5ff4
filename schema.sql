-- DeployX Scheduler schema: every table, readable in one place. `deployx migrate` applies it as
-- the base (step 0 in schema_migrations) on a new database, and again only when this text has
-- changed, one statement at a time, each waiting at most the lock timeout (docs/upgrades.md).
-- So every statement must be idempotent (IF NOT EXISTS, OR REPLACE, or guarded in a DO block)
-- and cheap to repeat. What is not additive (a type change, a rename, a drop, a backfill, an
-- index on a big table) is a numbered step in migrations/ instead.

-- The event log: the one source of truth. Append-only (see the triggers below).
CREATE TABLE IF NOT EXISTS events (
    position       bigserial   PRIMARY KEY,
    id             uuid        NOT NULL UNIQUE,
    stream_id      text        NOT NULL,
    version        integer     NOT NULL CHECK (version > 0),
    type           text        NOT NULL,
    category       text        NOT NULL,
    schema_version integer     NOT NULL DEFAULT 1,
    data           jsonb       NOT NULL,
    metadata       jsonb       NOT NULL DEFAULT '{}',
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Readers only take rows whose transaction id is below every running transaction's that
    -- may append (deployx_log_horizon), so a row committed late can never be skipped; see
    -- docs/event-log.md.
    tx_id          xid8        NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (stream_id, version)
);
CREATE INDEX IF NOT EXISTS events_log_order ON events (tx_id, position);
CREATE INDEX IF NOT EXISTS events_by_task ON events ((data ->> 'task_id'), position)
    WHERE data ? 'task_id';

CREATE OR REPLACE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % is not allowed on events', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE OR REPLACE FUNCTION events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A wake-up signal only; readers always read the table itself.
    PERFORM pg_notify('deployx_events', '');
    RETURN NULL;
END $$;

-- Transactions that never append events (the projector's: they write only read tables) say so
-- with deployx_never_appends() before they have a transaction id; log readers then need not wait
-- for them (deployx_log_horizon, docs/event-log.md "Transactions that never append"). Called at
-- the top level (pg_export_snapshot refuses a subtransaction, whose rollback would drop the lock
-- early), it takes the reserved advisory lock (7240003, 1) in shared mode until the transaction
-- ends, and events_refuse_never_appending refuses every append of the transaction.
CREATE OR REPLACE FUNCTION deployx_never_appends() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'deployx_never_appends() must come before the transaction writes anything'
            USING ERRCODE = 'active_sql_transaction';
    END IF;
    PERFORM pg_export_snapshot();
    PERFORM pg_advisory_xact_lock_shared(7240003, 1);
    PERFORM set_config('deployx.never_appends', 'on', true);
END $$;

CREATE OR REPLACE FUNCTION events_refuse_never_appending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('deployx.never_appends', true) = 'on' THEN
        RAISE EXCEPTION 'this transaction declared that it never appends events '
            '(deployx_never_appends): it cannot insert into events'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NULL;
END $$;

-- Below it, every row of `events` visible in snap is there for good: no transaction that was
-- running at snap and may append can still commit one. It is the oldest transaction running at
-- snap that is not seen (now, in one reading of the lock table) holding the never-appends lock
-- with that xid, or snap's xmax when there is none. A transaction that has ended since snap is
-- not seen holding it, so it counts as one that may append: the rule only errs by waiting.
-- Readers call it once per statement, with their statement's snapshot:
-- (SELECT deployx_log_horizon(pg_current_snapshot())).
CREATE OR REPLACE FUNCTION deployx_log_horizon(snap pg_snapshot) RETURNS xid8
LANGUAGE plpgsql STABLE AS $$
DECLARE
    horizon xid8;
BEGIN
    IF pg_snapshot_xmin(snap) = pg_snapshot_xmax(snap) THEN
        RETURN pg_snapshot_xmax(snap);  -- nothing was running: no need to look at locks
    END IF;
    -- MATERIALIZED: pg_locks read once, so both locks of a backend come from the same moment.
    WITH locks AS MATERIALIZED (
        SELECT locktype, virtualtransaction, transactionid, classid, objid, objsubid
        FROM pg_locks
        WHERE granted AND (locktype = 'transactionid' AND mode = 'ExclusiveLock'
            OR locktype = 'advisory' AND classid = 7240003 AND objid = 1 AND objsubid = 2)
    ), declared AS (
        SELECT own.transactionid
        FROM locks own JOIN locks never ON never.virtualtransaction = own.virtualtransaction
        WHERE own.locktype = 'transactionid' AND never.locktype = 'advisory'
    )
    SELECT min(running) INTO horizon
    FROM pg_snapshot_xip(snap) AS running
    WHERE NOT EXISTS (SELECT 1 FROM declared WHERE declared.transactionid = xid(running));
    RETURN coalesce(horizon, pg_snapshot_xmax(snap));
END $$;

-- Created only when missing: CREATE or DROP TRIGGER would lock `events` against every append.
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = 'events'::regclass AND tgname = 'events_append_only') THEN
        CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
            FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = 'events'::regclass AND tgname = 'events_no_truncate') THEN
        CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
            FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = 'events'::regclass AND tgname = 'events_wake_readers') THEN
        CREATE TRIGGER events_wake_readers AFTER INSERT ON events
            FOR EACH STATEMENT EXECUTE FUNCTION events_notify();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = 'events'::regclass AND tgname = 'events_never_appending') THEN
        CREATE TRIGGER events_never_appending BEFORE INSERT ON events
            FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_never_appending();
    END IF;
END $$;

-- Where each reader of the log (projection, relay) has got to, in log order.
CREATE TABLE IF NOT EXISTS checkpoints (
    name       text        PRIMARY KEY,
    tx_id      xid8        NOT NULL DEFAULT '0',
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- Which version of a projection built the read tables behind its checkpoint: a projector
-- whose code has another version rebuilds them in the background (docs/operations.md).
ALTER TABLE checkpoints ADD COLUMN IF NOT EXISTS projection_version integer;

-- The first answer to a command sent with an Idempotency-Key header, replayed on retries.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id      text        NOT NULL,
    key          text        NOT NULL,
    request_hash text        NOT NULL,
    status       integer     NOT NULL,
    body         bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

CREATE TABLE IF NOT EXISTS api_tokens (
    token_hash bytea       PRIMARY KEY,
    user_name  text        NOT NULL,
    role       text        NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE IF NOT EXISTS device_group_ids;

-- Read tables below are projections of the log: `deployx replay` empties and rebuilds them.
CREATE TABLE IF NOT EXISTS tasks (
    id                    uuid        PRIMARY KEY,
    version               integer     NOT NULL,
    user_id               text        NOT NULL,
    name                  text        NOT NULL,
    description           text        NOT NULL DEFAULT '',
    task_type             text        NOT NULL,
    status                text        NOT NULL,
    recurrence_type       text        NOT NULL,
    recurrence_config     jsonb       NOT NULL,
    next_run_time         timestamptz,
    last_run_time         timestamptz,
    last_execution_status text,
    execution_count       integer     NOT NULL DEFAULT 0,
    running_executions    integer     NOT NULL DEFAULT 0,
    device_ids            text[]      NOT NULL DEFAULT '{}',
    group_ids             integer[]   NOT NULL DEFAULT '{}',
    task_payload          jsonb       NOT NULL DEFAULT '{}',
    misfire_grace_seconds integer     NOT NULL DEFAULT 3600,
    overlap_policy        text        NOT NULL DEFAULT 'skip',
    jitter_seconds        integer     NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (next_run_time) WHERE next_run_time IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_by_user ON tasks (user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS tasks_by_created ON tasks (created_at DESC);
-- Fleet delivery and the task's end (second wave): the run policy, end_at and max_runs
-- (scheduled_runs counts toward it; completed_by says which limit ended the task), and
-- pause_on_failure (failed_run: a failed scheduled run whose pause the ticker still owes).
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS delivery jsonb NOT NULL DEFAULT '{}';
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS end_at timestamptz;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS max_runs integer;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS scheduled_runs integer NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS completed_by text;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS pause_on_failure boolean NOT NULL DEFAULT false;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS failed_run uuid;
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS failed_run_error text;
CREATE INDEX IF NOT EXISTS tasks_pause_owed ON tasks (id) WHERE failed_run IS NOT NULL;

-- Which runs the tasks projection has seen start and finish (so none is counted twice).
CREATE TABLE IF NOT EXISTS task_runs (
    execution_id uuid PRIMARY KEY,
    task_id      uuid NOT NULL,
    status       text NOT NULL DEFAULT 'running'
);
-- Whether the run was fired by the schedule (pause_on_failure looks only at those).
ALTER TABLE task_runs ADD COLUMN IF NOT EXISTS scheduled boolean NOT NULL DEFAULT false;

CREATE TABLE IF NOT EXISTS executions (
    id                uuid        PRIMARY KEY,
    task_id           uuid        NOT NULL,
    task_type         text        NOT NULL,
    trigger           text        NOT NULL,
    scheduled_for     timestamptz NOT NULL,
    started_at        timestamptz,
    completed_at      timestamptz,
    deadline          timestamptz,
    status            text        NOT NULL,
    error_message     text,
    devices_targeted  integer     NOT NULL DEFAULT 0,
    devices_succeeded integer     NOT NULL DEFAULT 0,
    devices_failed    integer     NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS executions_by_task ON executions (task_id, scheduled_for DESC);
CREATE INDEX IF NOT EXISTS executions_running ON executions (deadline) WHERE status = 'running';
-- Fleet delivery (second wave): the policy a run went with, and a cancel asked for.
ALTER TABLE executions ADD COLUMN IF NOT EXISTS delivery jsonb NOT NULL DEFAULT '{}';
ALTER TABLE executions ADD COLUMN IF NOT EXISTS cancel_requested_at timestamptz;
-- Ad-hoc runs and reruns: a name of their own, who asked (ad-hoc runs have no task), the run
-- they repeat.
ALTER TABLE executions ALTER COLUMN task_id DROP NOT NULL;
ALTER TABLE executions ADD COLUMN IF NOT EXISTS name text NOT NULL DEFAULT '';
ALTER TABLE executions ADD COLUMN IF NOT EXISTS requested_by text;
ALTER TABLE executions ADD COLUMN IF NOT EXISTS rerun_of uuid;
CREATE INDEX IF NOT EXISTS executions_recent ON executions (scheduled_for DESC, id);

CREATE TABLE IF NOT EXISTS execution_results (
    execution_id uuid NOT NULL,
    device_id    text NOT NULL,
    status       text NOT NULL,
    exit_code    integer,
    stdout       text NOT NULL DEFAULT '',
    stderr       text NOT NULL DEFAULT '',
    error        text,
    recorded_at  timestamptz NOT NULL,
    PRIMARY KEY (execution_id, device_id)
);

CREATE TABLE IF NOT EXISTS devices (
    id            text        PRIMARY KEY,
    hostname      text        NOT NULL DEFAULT '',
    os            text        NOT NULL DEFAULT '',
    agent_version text        NOT NULL DEFAULT '',
    labels        jsonb       NOT NULL DEFAULT '{}',
    online        boolean     NOT NULL DEFAULT false,
    registered_at timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL
);
-- What the device can run, as its agent announced at start (DeviceRegistered.capabilities).
ALTER TABLE devices ADD COLUMN IF NOT EXISTS capabilities jsonb NOT NULL DEFAULT '{}';

CREATE TABLE IF NOT EXISTS device_groups (
    id         integer     PRIMARY KEY,
    name       text        NOT NULL,
    device_ids text[]      NOT NULL DEFAULT '{}',
    user_id    text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Finished executions per task and hour: the stats API and the console's charts.
CREATE TABLE IF NOT EXISTS execution_stats_hourly (
    task_id   uuid        NOT NULL,
    hour      timestamptz NOT NULL,
    succeeded integer     NOT NULL DEFAULT 0,
    failed    integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, hour)
);

-- Agent heartbeats, written in batches by the device registry. Not a projection: presence is
-- a fact about now, not history, so it is neither in the log nor rebuilt by replay.
CREATE TABLE IF NOT EXISTS device_presence (
    device_id        text        PRIMARY KEY,
    last_seen        timestamptz NOT NULL,
    interval_seconds real        NOT NULL DEFAULT 5
);
-- Executors compare every device's heartbeat with the freshest one.
CREATE INDEX IF NOT EXISTS device_presence_last_seen ON device_presence (last_seen DESC);
-- When each registry last wrote presence while connected to NATS: missed heartbeats count up
-- to then, so that a registry (or database) that was away makes no device look offline.
CREATE TABLE IF NOT EXISTS registry_heard (
    registry text        PRIMARY KEY,
    at       timestamptz NOT NULL
);

-- Events a consumer of the log (a projection, the relay, an executor) could not handle: set
-- aside so the consumer carries on, visible at GET /api/admin/dead-letters, retried on request.
-- A projection also parks the later events of the same stream here, to keep each stream's order.
CREATE TABLE IF NOT EXISTS dead_letters (
    id                 bigserial   PRIMARY KEY,
    consumer           text        NOT NULL,
    event_id           uuid        NOT NULL,
    position           bigint      NOT NULL,
    stream_id          text        NOT NULL,
    event_type         text        NOT NULL,
    error              text        NOT NULL,
    attempts           integer     NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    retry_requested_at timestamptz,
    resolved_at        timestamptz,
    UNIQUE (consumer, event_id)
);
CREATE INDEX IF NOT EXISTS dead_letters_open ON dead_letters (consumer, stream_id, position)
    WHERE resolved_at IS NULL;

-- Messages from devices refused at the boundary (bad types, ranges, sizes, another device's
-- id), counted per device, source and reason: what an operator sees of a misbehaving device.
CREATE TABLE IF NOT EXISTS rejected_messages (
    device_id  text        NOT NULL,
    source     text        NOT NULL,
    reason     text        NOT NULL,
    sample     text        NOT NULL DEFAULT '',
    count      bigint      NOT NULL DEFAULT 0,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, source, reason)
);

-- Bytes of uploaded files (POST /api/files) stored per user, against DEPLOYX_FILES_QUOTA_BYTES.
-- A file's bytes are reserved here before it is stored, so uploads racing cannot overshoot.
CREATE TABLE IF NOT EXISTS file_usage (
    user_name text    PRIMARY KEY,
    bytes     bigint  NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    files     integer NOT NULL DEFAULT 0 CHECK (files >= 0)
);

-- The audit chain (docs/audit.md): every event sealed in log order, seq 1, 2, ...; hash is
-- SHA-256(previous hash || the event's canonical bytes). Written by the sealer only.
CREATE TABLE IF NOT EXISTS audit_chain (
    seq       bigint      PRIMARY KEY CHECK (seq > 0),
    position  bigint      NOT NULL,
    event_id  uuid        NOT NULL UNIQUE,
    hash      bytea       NOT NULL CHECK (octet_length(hash) = 32),
    sealed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS audit_chain_position ON audit_chain (position);

CREATE OR REPLACE FUNCTION audit_chain_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit chain is append-only: % is not allowed on audit_chain', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = 'audit_chain'::regclass AND tgname = 'audit_chain_append_only')
    THEN
        CREATE TRIGGER audit_chain_append_only BEFORE UPDATE OR DELETE ON audit_chain
            FOR EACH ROW EXECUTE FUNCTION audit_chain_refuse_change();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = 'audit_chain'::regclass AND tgname = 'audit_chain_no_truncate')
    THEN
        CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain
            FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_refuse_change();
    END IF;
END $$;

-- Webhook subscriptions (docs/webhooks.md), managed by admins. The secret signs every body.
CREATE TABLE IF NOT EXISTS webhooks (
    id          uuid        PRIMARY KEY,
    url         text        NOT NULL,
    event_types text[]      NOT NULL,
    secret      text        NOT NULL,
    task_id     uuid,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- What to deliver: one row per (subscription, event), pending until delivered or given up.
-- Deliveries of one subscription and order_key (the task, else the stream) go out in log
-- order: only the queue's head (is_head) may be sent, the next becomes head when it ends.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    webhook_id      uuid        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    position        bigint      NOT NULL,
    log_tx          xid8        NOT NULL,
    order_key       text        NOT NULL,
    task_id         text,
    body            bytea,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered', 'failed')),
    is_head         boolean     NOT NULL DEFAULT false,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    leased_until    timestamptz,
    give_up_at      timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    last_error      text,
    PRIMARY KEY (webhook_id, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due
    ON webhook_deliveries (webhook_id, next_attempt_at) WHERE status = 'pending' AND is_head;
CREATE INDEX IF NOT EXISTS webhook_deliveries_queue
    ON webhook_deliveries (webhook_id, order_key, log_tx, position) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_recent
    ON webhook_deliveries (webhook_id, created_at DESC);

-- Every attempt of a delivery: when, the answer's status code or the error, how long it took.
CREATE TABLE IF NOT EXISTS webhook_attempts (
    id           bigserial        PRIMARY KEY,
    webhook_id   uuid             NOT NULL,
    event_id     uuid             NOT NULL,
    attempted_at timestamptz      NOT NULL,
    status_code  integer,
    error        text,
    duration_ms  double precision NOT NULL,
    FOREIGN KEY (webhook_id, event_id) REFERENCES webhook_deliveries ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS webhook_attempts_of ON webhook_attempts (webhook_id, event_id, id);
