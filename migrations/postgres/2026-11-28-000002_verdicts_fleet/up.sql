-- Verdict history and fleet analytics.

CREATE TABLE verdicts (
    id              TEXT PRIMARY KEY NOT NULL,
    project         TEXT NOT NULL,
    benchmark       TEXT NOT NULL,
    run_id          TEXT NOT NULL,
    status          TEXT NOT NULL,
    counts          TEXT NOT NULL,
    reasons         TEXT NOT NULL,
    git_ref         TEXT,
    git_sha         TEXT,
    wall_ms_cv      DOUBLE PRECISION,
    flakiness_score DOUBLE PRECISION,
    created_at      BIGINT NOT NULL
);
-- The flakiness score reads the 19 newest verdicts of one benchmark through this index.
CREATE INDEX verdicts_benchmark_idx ON verdicts (project, benchmark, created_at DESC, id DESC);
CREATE INDEX verdicts_project_idx ON verdicts (project, created_at DESC, id DESC);
-- Verdicts per (project, benchmark, status), kept with every insert: list totals and the
-- benchmark names a restricted key may see come from here, not from a scan of the history.
CREATE TABLE verdict_counts (
    project   TEXT NOT NULL,
    benchmark TEXT NOT NULL,
    status    TEXT NOT NULL,
    n         BIGINT NOT NULL,
    PRIMARY KEY (project, benchmark, status)
);

-- Every recorded dependency change (the impact query reads them per dependency).
CREATE TABLE dependency_events (
    id          TEXT PRIMARY KEY NOT NULL,
    project     TEXT NOT NULL,
    benchmark   TEXT NOT NULL,
    dep_name    TEXT NOT NULL,
    old_version TEXT,
    new_version TEXT,
    metric      TEXT NOT NULL,
    delta_pct   DOUBLE PRECISION NOT NULL,
    group_key   TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX dependency_events_dep_idx ON dependency_events (dep_name, created_at, id);
CREATE INDEX dependency_events_group_idx ON dependency_events (group_key, created_at)
    WHERE delta_pct > 0;

-- Alert state, maintained with each regression event so that alerts never re-read the event
-- history: one row per (dependency, old, new) group and one per (group, project, benchmark)
-- holding that pair's newest regression.
CREATE TABLE fleet_groups (
    group_key     TEXT PRIMARY KEY NOT NULL,
    dep_name      TEXT NOT NULL,
    old_version   TEXT,
    new_version   TEXT,
    project_count BIGINT NOT NULL,
    entry_count   BIGINT NOT NULL,
    delta_sum     DOUBLE PRECISION NOT NULL,
    -- Alert order, kept with the aggregates: min(project_count, 5) (confidence) and the mean
    -- delta. The alert query walks this index top-down and stops after `limit` groups.
    conf_rank     BIGINT NOT NULL,
    avg_delta     DOUBLE PRECISION NOT NULL,
    first_seen    BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL
);
CREATE INDEX fleet_groups_rank_idx ON fleet_groups (conf_rank DESC, avg_delta DESC, group_key);

CREATE TABLE fleet_members (
    group_key  TEXT NOT NULL,
    project    TEXT NOT NULL,
    benchmark  TEXT NOT NULL,
    metric     TEXT NOT NULL,
    delta_pct  DOUBLE PRECISION NOT NULL,
    event_id   TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    PRIMARY KEY (group_key, project, benchmark)
);
CREATE INDEX fleet_members_last_seen_idx ON fleet_members (last_seen);
