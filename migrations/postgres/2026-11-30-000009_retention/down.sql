DROP INDEX baselines_deleted_idx;
DROP INDEX decisions_created_idx;
DROP INDEX gates_created_idx;
DROP INDEX verdicts_created_idx;
