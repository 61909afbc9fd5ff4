-- The runs of each owner's tasks per hour of scheduled_for (UTC), status and trigger: where a
-- deep page of a non-admin's executions list starts, as 0004's counts do for the admin's
-- (projections/page_seek.py). Without them, offset 50,000 into an owner's 100,000 runs walked
-- the 500,000 runs before it. Kept as execution_counts_by_owner is (0001, 0003): a run counts
-- for its task's owner while the task exists; the update, insert and delete functions of
-- `executions` now join the changed runs with `tasks` once for both tables.
CREATE TABLE IF NOT EXISTS execution_counts_by_owner_hour (
    user_id text        NOT NULL,
    hour    timestamptz NOT NULL,
    status  text        NOT NULL,
    trigger text        NOT NULL,
    n       bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, hour, status, trigger)
);

CREATE OR REPLACE FUNCTION execution_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH x AS (
        SELECT task_id, date_trunc('hour', scheduled_for, 'UTC') AS hour, status, trigger, 1 AS d
        FROM new_rows
    ), everyone AS (
        INSERT INTO execution_counts AS c (status, trigger, n)
        SELECT status, trigger, sum(d) FROM x GROUP BY 1, 2 HAVING sum(d) <> 0 ORDER BY 1, 2
        ON CONFLICT (status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n
    ), owned AS (
        SELECT t.user_id, x.hour, x.status, x.trigger, x.d FROM x JOIN tasks t ON t.id = x.task_id
    ), by_owner AS (
        INSERT INTO execution_counts_by_owner AS c (user_id, status, trigger, n)
        SELECT user_id, status, trigger, sum(d) FROM owned
        GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (user_id, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n
    )
    INSERT INTO execution_counts_by_owner_hour AS c (user_id, hour, status, trigger, n)
    SELECT user_id, hour, status, trigger, sum(d) FROM owned
    GROUP BY 1, 2, 3, 4 HAVING sum(d) <> 0 ORDER BY 1, 2, 3, 4
    ON CONFLICT (user_id, hour, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;

-- Only rows whose task, hour, status or trigger changed (0003): most updates change none.
CREATE OR REPLACE FUNCTION execution_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH changed AS (
        SELECT o.task_id AS was_task, o.scheduled_for AS was_at, o.status AS was_status,
            o.trigger AS was_trigger, n.task_id, n.scheduled_for, n.status, n.trigger
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE (o.task_id, o.scheduled_for, o.status, o.trigger)
            IS DISTINCT FROM (n.task_id, n.scheduled_for, n.status, n.trigger)
    ), x AS (
        SELECT was_task AS task_id, date_trunc('hour', was_at, 'UTC') AS hour,
            was_status AS status, was_trigger AS trigger, -1 AS d
        FROM changed
        UNION ALL
        SELECT task_id, date_trunc('hour', scheduled_for, 'UTC'), status, trigger, 1 FROM changed
    ), everyone AS (
        INSERT INTO execution_counts AS c (status, trigger, n)
        SELECT status, trigger, sum(d) FROM x GROUP BY 1, 2 HAVING sum(d) <> 0 ORDER BY 1, 2
        ON CONFLICT (status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n
    ), owned AS (
        SELECT t.user_id, x.hour, x.status, x.trigger, x.d FROM x JOIN tasks t ON t.id = x.task_id
    ), by_owner AS (
        INSERT INTO execution_counts_by_owner AS c (user_id, status, trigger, n)
        SELECT user_id, status, trigger, sum(d) FROM owned
        GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (user_id, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n
    )
    INSERT INTO execution_counts_by_owner_hour AS c (user_id, hour, status, trigger, n)
    SELECT user_id, hour, status, trigger, sum(d) FROM owned
    GROUP BY 1, 2, 3, 4 HAVING sum(d) <> 0 ORDER BY 1, 2, 3, 4
    ON CONFLICT (user_id, hour, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION execution_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH x AS (
        SELECT task_id, date_trunc('hour', scheduled_for, 'UTC') AS hour, status, trigger,
            -1 AS d
        FROM old_rows
    ), everyone AS (
        INSERT INTO execution_counts AS c (status, trigger, n)
        SELECT status, trigger, sum(d) FROM x GROUP BY 1, 2 HAVING sum(d) <> 0 ORDER BY 1, 2
        ON CONFLICT (status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n
    ), owned AS (
        SELECT t.user_id, x.hour, x.status, x.trigger, x.d FROM x JOIN tasks t ON t.id = x.task_id
    ), by_owner AS (
        INSERT INTO execution_counts_by_owner AS c (user_id, status, trigger, n)
        SELECT user_id, status, trigger, sum(d) FROM owned
        GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (user_id, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n
    )
    INSERT INTO execution_counts_by_owner_hour AS c (user_id, hour, status, trigger, n)
    SELECT user_id, hour, status, trigger, sum(d) FROM owned
    GROUP BY 1, 2, 3, 4 HAVING sum(d) <> 0 ORDER BY 1, 2, 3, 4
    ON CONFLICT (user_id, hour, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION execution_counts_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM execution_counts;
    DELETE FROM execution_counts_by_owner;
    DELETE FROM execution_counts_by_owner_hour;
    RETURN NULL;
END $$;

-- A task reaching the tasks table after its runs brings them to its owner; a deleted task
-- takes them away (as task_counts_follow does for execution_counts_by_owner).
CREATE OR REPLACE FUNCTION execution_owner_hours_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO execution_counts_by_owner_hour AS c (user_id, hour, status, trigger, n)
        SELECT t.user_id, date_trunc('hour', e.scheduled_for, 'UTC'), e.status, e.trigger,
            count(*)
        FROM new_rows t JOIN executions e ON e.task_id = t.id
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (user_id, hour, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO execution_counts_by_owner_hour AS c (user_id, hour, status, trigger, n)
        SELECT t.user_id, date_trunc('hour', e.scheduled_for, 'UTC'), e.status, e.trigger,
            -count(*)
        FROM old_rows t JOIN executions e ON e.task_id = t.id
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (user_id, hour, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSE  -- TRUNCATE: no task is left, so no run counts for an owner.
        DELETE FROM execution_counts_by_owner_hour;
    END IF;
    RETURN NULL;
END $$;

-- read_counts_refresh of 0004, and the owners' hours.
CREATE OR REPLACE FUNCTION read_counts_refresh() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE task_counts, execution_counts, execution_counts_by_owner,
        execution_stats_by_owner, execution_totals_by_owner, execution_counts_by_hour,
        execution_counts_by_owner_hour
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
END $$;

-- No write to the two tables may happen between the count and the triggers (reads go on).
LOCK TABLE tasks, executions IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER execution_owner_hours_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION execution_owner_hours_follow();
CREATE TRIGGER execution_owner_hours_delete AFTER DELETE ON tasks
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION execution_owner_hours_follow();
CREATE TRIGGER execution_owner_hours_truncate AFTER TRUNCATE ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION execution_owner_hours_follow();

DELETE FROM execution_counts_by_owner_hour;
INSERT INTO execution_counts_by_owner_hour (user_id, hour, status, trigger, n)
SELECT t.user_id, date_trunc('hour', e.scheduled_for, 'UTC'), e.status, e.trigger, count(*)
FROM executions e JOIN tasks t ON t.id = e.task_id GROUP BY 1, 2, 3, 4;
