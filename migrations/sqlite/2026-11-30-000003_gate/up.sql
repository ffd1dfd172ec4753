-- The statistical gate: per-run summaries (the gate's history), gates with their attempts,
-- runs a final gate failed, and per-project gate settings.

-- One row per stored run and metric, written with the baseline (back-filled at start-up for
-- baselines stored before this table existed). The gate reads a benchmark's newest rows of one
-- metric and runner class through run_stats_series_idx and never parses a history receipt.
CREATE TABLE run_stats (
    baseline_id TEXT NOT NULL,
    metric      TEXT NOT NULL,
    project     TEXT NOT NULL,
    benchmark   TEXT NOT NULL,
    runner      TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    git_sha     TEXT,
    center      DOUBLE PRECISION NOT NULL,
    within_sd   DOUBLE PRECISION NOT NULL,
    n           BIGINT NOT NULL,
    resolution  DOUBLE PRECISION NOT NULL,
    created_at  BIGINT NOT NULL,
    -- A final gate failed this run (kept in step with failed_runs), or its version was deleted:
    -- either way it is not history. Flags on the row, so reading a history is one index range
    -- scan without lookups elsewhere.
    failed      BOOLEAN NOT NULL DEFAULT FALSE,
    deleted     BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (baseline_id, metric)
);
CREATE INDEX run_stats_series_idx ON run_stats (project, benchmark, metric, runner, created_at DESC, baseline_id DESC);
CREATE INDEX run_stats_sha_idx ON run_stats (project, benchmark, git_sha, created_at DESC);
CREATE INDEX run_stats_run_idx ON run_stats (project, benchmark, run_id);

CREATE TABLE gates (
    id           TEXT PRIMARY KEY NOT NULL,
    project      TEXT NOT NULL,
    status       TEXT NOT NULL,
    is_final     BOOLEAN NOT NULL,
    attempt      BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    git_ref      TEXT,
    git_sha      TEXT,
    base_sha     TEXT,
    runner       TEXT,
    record       BOOLEAN NOT NULL,
    metrics      TEXT NOT NULL,
    settings     TEXT NOT NULL,
    result       TEXT NOT NULL,
    deadline     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX gates_project_idx ON gates (project, created_at DESC, id DESC);

-- The runs of every attempt of a gate, with their summaries (re-decisions do not re-parse).
CREATE TABLE gate_runs (
    gate_id    TEXT NOT NULL,
    attempt    BIGINT NOT NULL,
    benchmark  TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    runner     TEXT NOT NULL,
    receipt    TEXT NOT NULL,
    summaries  TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (gate_id, attempt, benchmark)
);
CREATE INDEX gate_runs_run_idx ON gate_runs (gate_id, run_id);

-- Runs (by receipt run id) of a benchmark that a final gate failed: never part of its history.
CREATE TABLE failed_runs (
    project    TEXT NOT NULL,
    benchmark  TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    gate_id    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (project, benchmark, run_id)
);

CREATE TABLE gate_settings (
    project    TEXT PRIMARY KEY NOT NULL,
    settings   TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Where the start-up back-fill of run_stats stands (one row per task).
CREATE TABLE backfill_state (
    task     TEXT PRIMARY KEY NOT NULL,
    position TEXT NOT NULL,
    done     BOOLEAN NOT NULL
);
