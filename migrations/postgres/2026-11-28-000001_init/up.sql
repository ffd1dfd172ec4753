-- PostgreSQL twin of migrations/sqlite (keep the two in step). Timestamps are microseconds since
-- the Unix epoch (BIGINT); JSON documents are TEXT, stored as uploaded.

CREATE TABLE baselines (
    id             TEXT PRIMARY KEY NOT NULL,
    project        TEXT NOT NULL,
    benchmark      TEXT NOT NULL,
    version        TEXT NOT NULL,
    git_ref        TEXT,
    git_sha        TEXT,
    receipt        TEXT NOT NULL,
    metadata       TEXT NOT NULL,
    tags           TEXT NOT NULL,
    content_hash   TEXT NOT NULL,
    source         TEXT NOT NULL,
    promoted_from  TEXT,
    wall_ms_median BIGINT,
    -- {"metric": median, ...} of the receipt's stats: trends read this, never the receipts.
    medians        TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    deleted_at     BIGINT
);
-- Versions stay reserved after a soft delete: the unique index covers deleted rows too.
CREATE UNIQUE INDEX baselines_version_uq ON baselines (project, benchmark, version);
-- Latest per benchmark and list pages read these partial indexes top-down (no history scan).
CREATE INDEX baselines_latest_idx ON baselines (project, benchmark, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX baselines_list_idx ON baselines (project, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;

CREATE TABLE baseline_tags (
    baseline_id TEXT NOT NULL REFERENCES baselines (id),
    tag         TEXT NOT NULL,
    PRIMARY KEY (baseline_id, tag)
);
CREATE INDEX baseline_tags_tag_idx ON baseline_tags (tag, baseline_id);

-- One row per (project, benchmark): counts for the project picker and the benchmark list used to
-- apply regex-restricted keys to list queries.
CREATE TABLE benchmarks (
    project        TEXT NOT NULL,
    benchmark      TEXT NOT NULL,
    baseline_count BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (project, benchmark)
);

CREATE TABLE idempotency_keys (
    project      TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    baseline_id  TEXT NOT NULL,
    response     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (project, idem_key)
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY NOT NULL,
    key_hash    TEXT NOT NULL,
    key_prefix  TEXT NOT NULL,
    description TEXT NOT NULL,
    role        TEXT NOT NULL,
    project     TEXT NOT NULL,
    pattern     TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);
CREATE UNIQUE INDEX api_keys_hash_uq ON api_keys (key_hash);
CREATE INDEX api_keys_created_idx ON api_keys (created_at DESC, id DESC);

CREATE TABLE audit_events (
    id            TEXT PRIMARY KEY NOT NULL,
    ts            BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL,
    project       TEXT NOT NULL,
    metadata      TEXT NOT NULL
);
CREATE INDEX audit_events_ts_idx ON audit_events (ts DESC, id DESC);
CREATE INDEX audit_events_project_idx ON audit_events (project, ts DESC, id DESC);
