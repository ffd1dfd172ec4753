-- An upload stores one run_stats row per metric. Indexes that put the metric before what the
-- rows of one run share scatter those rows over as many leaves as there are metrics, and every
-- leaf is a page the commit writes to the WAL (and the checkpoint writes again): the run's
-- rows now stay together, and rows that no query can reach are not indexed.

-- A series' history: one range scan per (project, benchmark, runner), newest first, the metric
-- checked in the index before any row is read.
DROP INDEX run_stats_series_idx;
CREATE INDEX run_stats_series_idx ON run_stats (project, benchmark, runner, created_at DESC, baseline_id DESC, metric);

-- Both are read only with git_sha = ?, which a run without a commit never matches.
DROP INDEX run_stats_sha_idx;
CREATE INDEX run_stats_sha_idx ON run_stats (project, benchmark, git_sha, created_at DESC) WHERE git_sha IS NOT NULL;
DROP INDEX run_stats_group_idx;
CREATE INDEX run_stats_group_idx ON run_stats (project, runner, git_sha, metric) WHERE git_sha IS NOT NULL;
