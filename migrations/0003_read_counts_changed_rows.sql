-- The update triggers of 0001 look only at rows whose counted columns changed: most updates
-- (a device's result, a schedule moving on) change none, and then the counts' statements find
-- nothing to add instead of joining every updated row with `tasks` (the projector's catch-up of
-- results ran about a fifth slower with 0001's versions, bench/README.md).
CREATE OR REPLACE FUNCTION execution_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    WITH changed AS (
        SELECT o.task_id AS was_task, o.status AS was_status, o.trigger AS was_trigger,
            n.task_id, n.status, n.trigger
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE (o.task_id, o.status, o.trigger) IS DISTINCT FROM (n.task_id, n.status, n.trigger)
    ), x AS (
        SELECT was_task AS task_id, was_status AS status, was_trigger AS trigger, -1 AS d
        FROM changed
        UNION ALL SELECT task_id, status, trigger, 1 FROM changed
    ), everyone AS (
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
        -- Only rows whose owner, status or type changed: most updates change none.
        WITH changed AS (
            SELECT o.user_id AS was_user, o.status AS was_status, o.task_type AS was_type,
                n.user_id, n.status, n.task_type
            FROM old_rows o JOIN new_rows n ON n.id = o.id
            WHERE (o.user_id, o.status, o.task_type)
                IS DISTINCT FROM (n.user_id, n.status, n.task_type)
        )
        INSERT INTO task_counts AS c (user_id, status, task_type, n)
        SELECT user_id, status, task_type, sum(d) FROM (
            SELECT was_user AS user_id, was_status AS status, was_type AS task_type, -1 AS d
            FROM changed
            UNION ALL SELECT user_id, status, task_type, 1 FROM changed
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
