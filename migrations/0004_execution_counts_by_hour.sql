-- Executions per hour of scheduled_for (UTC), status and trigger, kept by triggers like the
-- counts of 0001 (issue 12). A deep offset into the admin's list of 1M runs passed every index
-- entry before it (500,000 for the middle page: 50 to 350 ms); with these counts the page's
-- hour is found by adding up hours from the nearer end, and the index is walked only inside
-- that hour (projections/page_seek.py). Exact: the counts are read in the page's snapshot.
CREATE TABLE IF NOT EXISTS execution_counts_by_hour (
    hour    timestamptz NOT NULL,
    status  text        NOT NULL,
    trigger text        NOT NULL,
    n       bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, status, trigger)
);

-- Rows in key order, as in 0001, so that two writers never wait for each other crosswise.
CREATE OR REPLACE FUNCTION execution_hours_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO execution_counts_by_hour AS c (hour, status, trigger, n)
    SELECT date_trunc('hour', scheduled_for, 'UTC'), status, trigger, count(*) FROM new_rows
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (hour, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
-- Only rows whose hour, status or trigger changed: most updates (a run starting, a device's
-- result) change none, and then nothing is written.
CREATE OR REPLACE FUNCTION execution_hours_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH changed AS (
        SELECT o.scheduled_for AS was_at, o.status AS was_status, o.trigger AS was_trigger,
            n.scheduled_for, n.status, n.trigger
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE (o.scheduled_for, o.status, o.trigger)
            IS DISTINCT FROM (n.scheduled_for, n.status, n.trigger)
    )
    INSERT INTO execution_counts_by_hour AS c (hour, status, trigger, n)
    SELECT hour, status, trigger, sum(d) FROM (
        SELECT date_trunc('hour', was_at, 'UTC') AS hour, was_status AS status,
            was_trigger AS trigger, -1 AS d
        FROM changed
        UNION ALL SELECT date_trunc('hour', scheduled_for, 'UTC'), status, trigger, 1 FROM changed
    ) AS changes GROUP BY 1, 2, 3 HAVING sum(d) <> 0 ORDER BY 1, 2, 3
    ON CONFLICT (hour, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION execution_hours_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO execution_counts_by_hour AS c (hour, status, trigger, n)
    SELECT date_trunc('hour', scheduled_for, 'UTC'), status, trigger, -count(*) FROM old_rows
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (hour, status, trigger) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION execution_hours_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM execution_counts_by_hour;
    RETURN NULL;
END $$;

-- read_counts_refresh of 0001, and the hours.
CREATE OR REPLACE FUNCTION read_counts_refresh() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE task_counts, execution_counts, execution_counts_by_owner,
        execution_stats_by_owner, execution_totals_by_owner, execution_counts_by_hour
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
END $$;

-- No write to executions may happen between the count and the triggers (reads go on).
LOCK TABLE executions IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER execution_hours_insert AFTER INSERT ON executions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION execution_hours_inserted();
CREATE TRIGGER execution_hours_update AFTER UPDATE ON executions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION execution_hours_updated();
CREATE TRIGGER execution_hours_delete AFTER DELETE ON executions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION execution_hours_deleted();
CREATE TRIGGER execution_hours_truncate AFTER TRUNCATE ON executions
    FOR EACH STATEMENT EXECUTE FUNCTION execution_hours_truncated();

DELETE FROM execution_counts_by_hour;
INSERT INTO execution_counts_by_hour (hour, status, trigger, n)
SELECT date_trunc('hour', scheduled_for, 'UTC'), status, trigger, count(*)
FROM executions GROUP BY 1, 2, 3;
