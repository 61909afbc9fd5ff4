-- transaction: none
-- Indexes for the list pages at 100,000 tasks and 1M executions (issue 12): each filter walks
-- an index in the list's order (newest first, id breaking ties) and reads the page's rows only;
-- q searches name and description through trigram indexes instead of reading every row.
-- Built CONCURRENTLY: writes go on while they build.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_list ON tasks (created_at DESC, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_list_by_owner ON tasks (user_id, created_at DESC, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_list_by_status ON tasks (status, created_at DESC, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_list_by_type ON tasks (task_type, created_at DESC, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_name_trgm ON tasks USING gin (name gin_trgm_ops);
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_description_trgm
    ON tasks USING gin (description gin_trgm_ops);
CREATE INDEX CONCURRENTLY IF NOT EXISTS executions_list_by_task
    ON executions (task_id, scheduled_for DESC, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS executions_list_by_status
    ON executions (status, scheduled_for DESC, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS executions_list_by_trigger
    ON executions (trigger, scheduled_for DESC, id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS executions_list_by_requester
    ON executions (requested_by, scheduled_for DESC, id) WHERE requested_by IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS execution_results_by_device
    ON execution_results (device_id, execution_id);
