-- Tasks per hour of created_at (UTC), and per owner and hour: where a deep page of the task
-- list starts (projections/page_seek.py), as 0004 and 0005 do for the executions list. The
-- middle page of 100,000 tasks walked 50,000 index entries: 4 ms while every page of `tasks`
-- is all-visible, but each task the projector updates (every run moves its row) clears its
-- page's bit until the next vacuum, and then each entry costs a heap fetch: 5 % of the tasks
-- updated made that 31,753 heap fetches, all of them (a mass edit, a replay's fresh copy)
-- 99,533 and 36 ms (bench/README.md). With these counts the index is walked only inside the
-- page's hour. Only a task's insert and delete move them (created_at and the owner never
-- change; an update that changed them is counted by a row trigger that otherwise never runs),
-- so the projector's updates of `tasks` cost nothing more.
CREATE TABLE IF NOT EXISTS task_counts_by_hour (
    hour timestamptz PRIMARY KEY,
    n    bigint      NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS task_counts_by_owner_hour (
    user_id text        NOT NULL,
    hour    timestamptz NOT NULL,
    n       bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, hour)
);

-- Rows in key order, as in 0001, so that two writers never wait for each other crosswise.
CREATE OR REPLACE FUNCTION task_hours_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH everyone AS (
        INSERT INTO task_counts_by_hour AS c (hour, n)
        SELECT date_trunc('hour', created_at, 'UTC'), count(*) FROM new_rows
        GROUP BY 1 ORDER BY 1
        ON CONFLICT (hour) DO UPDATE SET n = c.n + EXCLUDED.n
    )
    INSERT INTO task_counts_by_owner_hour AS c (user_id, hour, n)
    SELECT user_id, date_trunc('hour', created_at, 'UTC'), count(*) FROM new_rows
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (user_id, hour) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION task_hours_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH everyone AS (
        INSERT INTO task_counts_by_hour AS c (hour, n)
        SELECT date_trunc('hour', created_at, 'UTC'), -count(*) FROM old_rows
        GROUP BY 1 ORDER BY 1
        ON CONFLICT (hour) DO UPDATE SET n = c.n + EXCLUDED.n
    )
    INSERT INTO task_counts_by_owner_hour AS c (user_id, hour, n)
    SELECT user_id, date_trunc('hour', created_at, 'UTC'), -count(*) FROM old_rows
    GROUP BY 1, 2 ORDER BY 1, 2
    ON CONFLICT (user_id, hour) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
-- A row trigger, for the update that changes created_at or the owner (none does today): a
-- statement trigger with transition tables would run on every update of `tasks`.
CREATE OR REPLACE FUNCTION task_hours_moved() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_counts_by_hour AS c (hour, n)
    VALUES (date_trunc('hour', OLD.created_at, 'UTC'), -1)
    ON CONFLICT (hour) DO UPDATE SET n = c.n + EXCLUDED.n;
    INSERT INTO task_counts_by_hour AS c (hour, n)
    VALUES (date_trunc('hour', NEW.created_at, 'UTC'), 1)
    ON CONFLICT (hour) DO UPDATE SET n = c.n + EXCLUDED.n;
    INSERT INTO task_counts_by_owner_hour AS c (user_id, hour, n)
    VALUES (OLD.user_id, date_trunc('hour', OLD.created_at, 'UTC'), -1)
    ON CONFLICT (user_id, hour) DO UPDATE SET n = c.n + EXCLUDED.n;
    INSERT INTO task_counts_by_owner_hour AS c (user_id, hour, n)
    VALUES (NEW.user_id, date_trunc('hour', NEW.created_at, 'UTC'), 1)
    ON CONFLICT (user_id, hour) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION task_hours_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM task_counts_by_hour;
    DELETE FROM task_counts_by_owner_hour;
    RETURN NULL;
END $$;

-- read_counts_refresh of 0005, and the tasks' hours.
CREATE OR REPLACE FUNCTION read_counts_refresh() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE task_counts, execution_counts, execution_counts_by_owner,
        execution_stats_by_owner, execution_totals_by_owner, execution_counts_by_hour,
        execution_counts_by_owner_hour, task_counts_by_hour, task_counts_by_owner_hour
        IN EXCLUSIVE MODE;
    DELETE FROM task_counts;
    INSERT INTO task_counts (user_id, status, task_type, n)
    SELECT user_id, status, task_type, count(*) FROM tasks GROUP BY 1, 2, 3;
    DELETE FROM execution_counts;
    INSERT INTO execution_counts (status, trigger, n)
    SELECT status, trigger, count(*) FROM executions GROUP BY 1, 2;
    DELETE FROM execution_counts_by_owner;
    INSERT INTO execution_counts_by_owner (user_id, status, trigger, n)
    SELECT t.user_id, e.status, e.trigger, count(*)
    FROM executions e JOIN tasks t ON t.id = e.task_id GROUP BY 1, 2, 3;
    DELETE FROM execution_stats_by_owner;
    INSERT INTO execution_stats_by_owner (user_id, hour, succeeded, failed)
    SELECT t.user_id, s.hour, sum(s.succeeded), sum(s.failed)
    FROM execution_stats_hourly s JOIN tasks t ON t.id = s.task_id GROUP BY 1, 2;
    DELETE FROM execution_totals_by_owner;
    INSERT INTO execution_totals_by_owner (user_id, succeeded, failed)
    SELECT t.user_id, sum(s.succeeded), sum(s.failed)
    FROM execution_stats_hourly s JOIN tasks t ON t.id = s.task_id GROUP BY 1;
    DELETE FROM execution_counts_by_hour;
    INSERT INTO execution_counts_by_hour (hour, status, trigger, n)
    SELECT date_trunc('hour', scheduled_for, 'UTC'), status, trigger, count(*)
    FROM executions GROUP BY 1, 2, 3;
    DELETE FROM execution_counts_by_owner_hour;
    INSERT INTO execution_counts_by_owner_hour (user_id, hour, status, trigger, n)
    SELECT t.user_id, date_trunc('hour', e.scheduled_for, 'UTC'), e.status, e.trigger, count(*)
    FROM executions e JOIN tasks t ON t.id = e.task_id GROUP BY 1, 2, 3, 4;
    DELETE FROM task_counts_by_hour;
    INSERT INTO task_counts_by_hour (hour, n)
    SELECT date_trunc('hour', created_at, 'UTC'), count(*) FROM tasks GROUP BY 1;
    DELETE FROM task_counts_by_owner_hour;
    INSERT INTO task_counts_by_owner_hour (user_id, hour, n)
    SELECT user_id, date_trunc('hour', created_at, 'UTC'), count(*) FROM tasks GROUP BY 1, 2;
END $$;

-- No write to tasks may happen between the count and the triggers (reads go on).
LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER task_hours_insert AFTER INSERT ON tasks REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION task_hours_inserted();
CREATE TRIGGER task_hours_delete AFTER DELETE ON tasks REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION task_hours_deleted();
CREATE TRIGGER task_hours_update AFTER UPDATE OF created_at, user_id ON tasks
    FOR EACH ROW WHEN (OLD.created_at IS DISTINCT FROM NEW.created_at
        OR OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION task_hours_moved();
CREATE TRIGGER task_hours_truncate AFTER TRUNCATE ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION task_hours_truncated();

DELETE FROM task_counts_by_hour;
INSERT INTO task_counts_by_hour (hour, n)
SELECT date_trunc('hour', created_at, 'UTC'), count(*) FROM tasks GROUP BY 1;
DELETE FROM task_counts_by_owner_hour;
INSERT INTO task_counts_by_owner_hour (user_id, hour, n)
SELECT user_id, date_trunc('hour', created_at, 'UTC'), count(*) FROM tasks GROUP BY 1, 2;
