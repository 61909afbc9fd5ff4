-- Counts kept beside the read tables, so that the totals of the task list, the executions list
-- and the stats cost a few rows instead of a count over 100,000 tasks or 1M runs (issue 12).
-- Triggers keep them, statement by statement (transition tables, set-based), whatever writes
-- the read tables: the projector's apply, a batch of it, or `deployx replay` (TRUNCATE).
-- Every count follows the queries' own rules: an execution counts for a task's owner only
-- while the task exists (the lists join tasks), and for everyone in the admin's totals.

-- Tasks per owner, status and type: every total of GET /api/schedule/tasks without q, and
-- the stats' by_status and by_type.
CREATE TABLE IF NOT EXISTS task_counts (
    user_id   text   NOT NULL,
    status    text   NOT NULL,
    task_type text   NOT NULL,
    n         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, status, task_type)
);

-- Executions per status and trigger: the admin's totals.
CREATE TABLE IF NOT EXISTS execution_counts (
    status  text   NOT NULL,
    trigger text   NOT NULL,
    n       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (status, trigger)
);

-- Executions of existing tasks per task owner, status and trigger: an owner's totals (plus
-- the runs they asked for on tasks not theirs, counted by the query).
CREATE TABLE IF NOT EXISTS execution_counts_by_owner (
    user_id text   NOT NULL,
    status  text   NOT NULL,
    trigger text   NOT NULL,
    n       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, status, trigger)
);

-- Finished executions of existing tasks per owner and hour: the stats' totals and buckets.
CREATE TABLE IF NOT EXISTS execution_stats_by_owner (
    user_id   text        NOT NULL,
    hour      timestamptz NOT NULL,
    succeeded bigint      NOT NULL DEFAULT 0,
    failed    bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, hour)
);
CREATE INDEX IF NOT EXISTS execution_stats_by_owner_hour ON execution_stats_by_owner (hour);
-- The same, all hours together.
CREATE TABLE IF NOT EXISTS execution_totals_by_owner (
    user_id   text   PRIMARY KEY,
    succeeded bigint NOT NULL DEFAULT 0,
    failed    bigint NOT NULL DEFAULT 0
);

-- Rows are added in key order so that two writers can never wait for each other's rows in
-- opposite orders (today one projector writes each table; replay takes the same lock).
CREATE OR REPLACE FUNCTION task_counts_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO task_counts AS c (user_id, status, task_type, n)
        SELECT user_id, status, task_type, count(*) FROM new_rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (user_id, status, task_type) DO UPDATE SET n = c.n + EXCLUDED.n;
        -- Runs the executions projection recorded before this projection saw their task.
        INSERT INTO execution_counts_by_owner AS c (user_id, status, trigger, n)
        SELECT t.user_id, e.status, e.trigger, count(*)
        FROM new_rows t JOIN executions e ON e.task_id = t.id
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (user_id, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n;
        INSERT INTO execution_stats_by_owner AS c (user_id, hour, succeeded, failed)
        SELECT t.user_id, s.hour, sum(s.succeeded), sum(s.failed)
        FROM new_rows t JOIN execution_stats_hourly s ON s.task_id = t.id
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (user_id, hour) DO UPDATE SET succeeded = c.succeeded + EXCLUDED.succeeded,
            failed = c.failed + EXCLUDED.failed;
        INSERT INTO execution_totals_by_owner AS c (user_id, succeeded, failed)
        SELECT t.user_id, sum(s.succeeded), sum(s.failed)
        FROM new_rows t JOIN execution_stats_hourly s ON s.task_id = t.id
        GROUP BY 1 ORDER BY 1
        ON CONFLICT (user_id) DO UPDATE SET succeeded = c.succeeded + EXCLUDED.succeeded,
            failed = c.failed + EXCLUDED.failed;
    ELSIF TG_OP = 'UPDATE' THEN
        -- Most updates leave owner, status and type alone: then nothing is written.
        INSERT INTO task_counts AS c (user_id, status, task_type, n)
        SELECT user_id, status, task_type, sum(d) FROM (
            SELECT user_id, status, task_type, -1 AS d FROM old_rows
            UNION ALL SELECT user_id, status, task_type, 1 FROM new_rows
        ) AS changes GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3
        ON CONFLICT (user_id, status, task_type) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO task_counts AS c (user_id, status, task_type, n)
        SELECT user_id, status, task_type, -count(*) FROM old_rows
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (user_id, status, task_type) DO UPDATE SET n = c.n + EXCLUDED.n;
        -- A deleted task's runs leave its owner's lists and stats (the admin still sees them).
        INSERT INTO execution_counts_by_owner AS c (user_id, status, trigger, n)
        SELECT t.user_id, e.status, e.trigger, -count(*)
        FROM old_rows t JOIN executions e ON e.task_id = t.id
        GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (user_id, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n;
        INSERT INTO execution_stats_by_owner AS c (user_id, hour, succeeded, failed)
        SELECT t.user_id, s.hour, -sum(s.succeeded), -sum(s.failed)
        FROM old_rows t JOIN execution_stats_hourly s ON s.task_id = t.id
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (user_id, hour) DO UPDATE SET succeeded = c.succeeded + EXCLUDED.succeeded,
            failed = c.failed + EXCLUDED.failed;
        INSERT INTO execution_totals_by_owner AS c (user_id, succeeded, failed)
        SELECT t.user_id, -sum(s.succeeded), -sum(s.failed)
        FROM old_rows t JOIN execution_stats_hourly s ON s.task_id = t.id
        GROUP BY 1 ORDER BY 1
        ON CONFLICT (user_id) DO UPDATE SET succeeded = c.succeeded + EXCLUDED.succeeded,
            failed = c.failed + EXCLUDED.failed;
    ELSE  -- TRUNCATE: no task is left, so no run counts for an owner.
        DELETE FROM task_counts;
        DELETE FROM execution_counts_by_owner;
        DELETE FROM execution_stats_by_owner;
        DELETE FROM execution_totals_by_owner;
    END IF;
    RETURN NULL;
END $$;

-- One function per kind of statement: a function may name only the transition tables its
-- trigger has.
CREATE OR REPLACE FUNCTION execution_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH x AS (SELECT task_id, status, trigger, 1 AS d FROM new_rows), everyone AS (
        INSERT INTO execution_counts AS c (status, trigger, n)
        SELECT status, trigger, sum(d) FROM x GROUP BY 1, 2 HAVING sum(d) <> 0 ORDER BY 1, 2
        ON CONFLICT (status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n
    )
    INSERT INTO execution_counts_by_owner AS c (user_id, status, trigger, n)
    SELECT t.user_id, x.status, x.trigger, sum(x.d) FROM x JOIN tasks t ON t.id = x.task_id
    GROUP BY 1, 2, 3 HAVING sum(x.d) <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (user_id, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION execution_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH x AS (SELECT task_id, status, trigger, -1 AS d FROM old_rows UNION ALL SELECT task_id, status, trigger, 1 AS d FROM new_rows), everyone AS (
        INSERT INTO execution_counts AS c (status, trigger, n)
        SELECT status, trigger, sum(d) FROM x GROUP BY 1, 2 HAVING sum(d) <> 0 ORDER BY 1, 2
        ON CONFLICT (status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n
    )
    INSERT INTO execution_counts_by_owner AS c (user_id, status, trigger, n)
    SELECT t.user_id, x.status, x.trigger, sum(x.d) FROM x JOIN tasks t ON t.id = x.task_id
    GROUP BY 1, 2, 3 HAVING sum(x.d) <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (user_id, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION execution_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH x AS (SELECT task_id, status, trigger, -1 AS d FROM old_rows), everyone AS (
        INSERT INTO execution_counts AS c (status, trigger, n)
        SELECT status, trigger, sum(d) FROM x GROUP BY 1, 2 HAVING sum(d) <> 0 ORDER BY 1, 2
        ON CONFLICT (status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n
    )
    INSERT INTO execution_counts_by_owner AS c (user_id, status, trigger, n)
    SELECT t.user_id, x.status, x.trigger, sum(x.d) FROM x JOIN tasks t ON t.id = x.task_id
    GROUP BY 1, 2, 3 HAVING sum(x.d) <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (user_id, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION execution_counts_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM execution_counts;
    DELETE FROM execution_counts_by_owner;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION execution_stats_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH x AS (
        SELECT t.user_id, c.hour, sum(c.succeeded) AS succeeded, sum(c.failed) AS failed
        FROM (SELECT task_id, hour, succeeded, failed FROM new_rows) AS c JOIN tasks t ON t.id = c.task_id
        GROUP BY 1, 2 HAVING sum(c.succeeded) <> 0 OR sum(c.failed) <> 0
    ), totals AS (
        INSERT INTO execution_totals_by_owner AS c (user_id, succeeded, failed)
        SELECT user_id, sum(succeeded), sum(failed) FROM x GROUP BY 1 ORDER BY 1
        ON CONFLICT (user_id) DO UPDATE SET succeeded = c.succeeded + EXCLUDED.succeeded,
            failed = c.failed + EXCLUDED.failed
    )
    INSERT INTO execution_stats_by_owner AS c (user_id, hour, succeeded, failed)
    SELECT user_id, hour, succeeded, failed FROM x ORDER BY 1, 2
    ON CONFLICT (user_id, hour) DO UPDATE SET succeeded = c.succeeded + EXCLUDED.succeeded,
        failed = c.failed + EXCLUDED.failed;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION execution_stats_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH x AS (
        SELECT t.user_id, c.hour, sum(c.succeeded) AS succeeded, sum(c.failed) AS failed
        FROM (SELECT task_id, hour, -succeeded AS succeeded, -failed AS failed FROM old_rows UNION ALL SELECT task_id, hour, succeeded, failed FROM new_rows) AS c JOIN tasks t ON t.id = c.task_id
        GROUP BY 1, 2 HAVING sum(c.succeeded) <> 0 OR sum(c.failed) <> 0
    ), totals AS (
        INSERT INTO execution_totals_by_owner AS c (user_id, succeeded, failed)
        SELECT user_id, sum(succeeded), sum(failed) FROM x GROUP BY 1 ORDER BY 1
        ON CONFLICT (user_id) DO UPDATE SET succeeded = c.succeeded + EXCLUDED.succeeded,
            failed = c.failed + EXCLUDED.failed
    )
    INSERT INTO execution_stats_by_owner AS c (user_id, hour, succeeded, failed)
    SELECT user_id, hour, succeeded, failed FROM x ORDER BY 1, 2
    ON CONFLICT (user_id, hour) DO UPDATE SET succeeded = c.succeeded + EXCLUDED.succeeded,
        failed = c.failed + EXCLUDED.failed;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION execution_stats_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH x AS (
        SELECT t.user_id, c.hour, sum(c.succeeded) AS succeeded, sum(c.failed) AS failed
        FROM (SELECT task_id, hour, -succeeded AS succeeded, -failed AS failed FROM old_rows) AS c JOIN tasks t ON t.id = c.task_id
        GROUP BY 1, 2 HAVING sum(c.succeeded) <> 0 OR sum(c.failed) <> 0
    ), totals AS (
        INSERT INTO execution_totals_by_owner AS c (user_id, succeeded, failed)
        SELECT user_id, sum(succeeded), sum(failed) FROM x GROUP BY 1 ORDER BY 1
        ON CONFLICT (user_id) DO UPDATE SET succeeded = c.succeeded + EXCLUDED.succeeded,
            failed = c.failed + EXCLUDED.failed
    )
    INSERT INTO execution_stats_by_owner AS c (user_id, hour, succeeded, failed)
    SELECT user_id, hour, succeeded, failed FROM x ORDER BY 1, 2
    ON CONFLICT (user_id, hour) DO UPDATE SET succeeded = c.succeeded + EXCLUDED.succeeded,
        failed = c.failed + EXCLUDED.failed;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION execution_stats_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM execution_stats_by_owner;
    DELETE FROM execution_totals_by_owner;
    RETURN NULL;
END $$;

-- No write to these tables may happen between the backfill and the triggers.
LOCK TABLE tasks, executions, execution_stats_hourly IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION task_counts_follow();
CREATE TRIGGER task_counts_update AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION task_counts_follow();
CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION task_counts_follow();
CREATE TRIGGER task_counts_truncate AFTER TRUNCATE ON tasks
    FOR EACH STATEMENT EXECUTE FUNCTION task_counts_follow();

CREATE TRIGGER execution_counts_insert AFTER INSERT ON executions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION execution_counts_inserted();
CREATE TRIGGER execution_counts_update AFTER UPDATE ON executions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION execution_counts_updated();
CREATE TRIGGER execution_counts_delete AFTER DELETE ON executions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION execution_counts_deleted();
CREATE TRIGGER execution_counts_truncate AFTER TRUNCATE ON executions
    FOR EACH STATEMENT EXECUTE FUNCTION execution_counts_truncated();

CREATE TRIGGER execution_stats_insert AFTER INSERT ON execution_stats_hourly
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION execution_stats_inserted();
CREATE TRIGGER execution_stats_update AFTER UPDATE ON execution_stats_hourly
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION execution_stats_updated();
CREATE TRIGGER execution_stats_delete AFTER DELETE ON execution_stats_hourly
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION execution_stats_deleted();
CREATE TRIGGER execution_stats_truncate AFTER TRUNCATE ON execution_stats_hourly
    FOR EACH STATEMENT EXECUTE FUNCTION execution_stats_truncated();

-- All the counts again from the tables the search_path names first: after a rebuild filled
-- shadow copies without triggers (services/engine/shadow.py), and after it swapped some of
-- them in. Writers of the counts wait for it (readers do not): about a second per 1M runs.
CREATE OR REPLACE FUNCTION read_counts_refresh() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE task_counts, execution_counts, execution_counts_by_owner,
        execution_stats_by_owner, execution_totals_by_owner IN EXCLUSIVE MODE;
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
END $$;

-- What the tables hold now.
SELECT read_counts_refresh();
