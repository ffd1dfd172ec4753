-- Change points: where the level of each (project, benchmark, metric, runner) series moved.

-- The common shift of one CI run (the benchmarks of one commit on one runner class), estimated
-- once its runs have arrived; change points are found on values with it removed.
CREATE TABLE run_shifts (
    project    TEXT NOT NULL,
    runner     TEXT NOT NULL,
    metric     TEXT NOT NULL,
    git_sha    TEXT NOT NULL,
    shift      DOUBLE PRECISION NOT NULL,
    benchmarks BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project, runner, metric, git_sha)
);

-- Where the incremental scan of each series stands: the run its next update starts from.
CREATE TABLE cp_series (
    project            TEXT NOT NULL,
    benchmark          TEXT NOT NULL,
    metric             TEXT NOT NULL,
    runner             TEXT NOT NULL,
    resume_index       BIGINT NOT NULL,
    resume_created_at  BIGINT NOT NULL,
    resume_baseline_id TEXT NOT NULL,
    runs               BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    PRIMARY KEY (project, benchmark, metric, runner)
);

-- Found points: settled ones never change; unsettled ones are replaced by each update.
CREATE TABLE change_points (
    id               TEXT PRIMARY KEY NOT NULL,
    project          TEXT NOT NULL,
    benchmark        TEXT NOT NULL,
    metric           TEXT NOT NULL,
    runner           TEXT NOT NULL,
    idx              BIGINT NOT NULL,
    baseline_id      TEXT NOT NULL,
    git_sha          TEXT,
    previous_git_sha TEXT,
    run_created_at   BIGINT NOT NULL,
    level_before     DOUBLE PRECISION NOT NULL,
    level_after      DOUBLE PRECISION NOT NULL,
    change_pct       DOUBLE PRECISION NOT NULL,
    p                DOUBLE PRECISION NOT NULL,
    strong           BOOLEAN NOT NULL,
    settled          BOOLEAN NOT NULL,
    alert_id         TEXT,
    created_at       BIGINT NOT NULL
);
CREATE INDEX change_points_series_idx ON change_points (project, benchmark, metric, runner, idx);
CREATE INDEX change_points_alert_idx ON change_points (alert_id);

-- The scan reads runs in arrival order, and the runs of one CI run together.
CREATE INDEX run_stats_created_idx ON run_stats (created_at);
CREATE INDEX run_stats_group_idx ON run_stats (project, runner, metric, git_sha);
