-- Retention (`--retention-days`, DELETE /api/v1/admin/cleanup) finds old rows by age: oldest
-- first, a bounded batch at a time.
CREATE INDEX verdicts_created_idx ON verdicts (created_at);
CREATE INDEX gates_created_idx ON gates (created_at);
CREATE INDEX decisions_created_idx ON decisions (created_at);
CREATE INDEX baselines_deleted_idx ON baselines (deleted_at) WHERE deleted_at IS NOT NULL;
