-- Alerts with triage, waivers, and quarantined baseline versions.

-- One alert per (benchmark, metric, change): opened for every benchmark a final gate failed.
CREATE TABLE alerts (
    id                    TEXT PRIMARY KEY NOT NULL,
    project               TEXT NOT NULL,
    benchmark             TEXT NOT NULL,
    metric                TEXT NOT NULL,
    source                TEXT NOT NULL,
    gate_id               TEXT,
    status                TEXT NOT NULL,
    change_pct            DOUBLE PRECISION NOT NULL,
    git_sha               TEXT,
    previous_git_sha      TEXT,
    reason                TEXT,
    link                  TEXT,
    duplicate_of          TEXT,
    waiver_owner          TEXT,
    waiver_max_change_pct DOUBLE PRECISION,
    waiver_expires_at     BIGINT,
    triaged_by            TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);
CREATE INDEX alerts_project_idx ON alerts (project, created_at DESC, id DESC);
CREATE INDEX alerts_benchmark_idx ON alerts (project, benchmark, metric, status);
CREATE INDEX alerts_gate_idx ON alerts (gate_id, benchmark);
CREATE INDEX alerts_waiver_idx ON alerts (status, waiver_expires_at);

-- Baseline versions of runs a final gate failed: stored, never served as latest, never promoted
-- without triage (or an admin's audited override).
CREATE TABLE quarantine (
    baseline_id TEXT PRIMARY KEY NOT NULL,
    project     TEXT NOT NULL,
    benchmark   TEXT NOT NULL,
    gate_id     TEXT NOT NULL,
    alert_id    TEXT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX quarantine_alert_idx ON quarantine (alert_id);
