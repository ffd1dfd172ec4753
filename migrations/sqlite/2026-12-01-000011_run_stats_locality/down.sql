DROP INDEX run_stats_series_idx;
CREATE INDEX run_stats_series_idx ON run_stats (project, benchmark, metric, runner, created_at DESC, baseline_id DESC);
DROP INDEX run_stats_sha_idx;
CREATE INDEX run_stats_sha_idx ON run_stats (project, benchmark, git_sha, created_at DESC);
DROP INDEX run_stats_group_idx;
CREATE INDEX run_stats_group_idx ON run_stats (project, runner, metric, git_sha);
