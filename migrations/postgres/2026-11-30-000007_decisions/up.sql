-- The decision ledger: perfgate.tradeoff.v1 decisions (with their scenario receipt and artifact
-- index) recorded by `perfgate decision upload`, read back by `decision history|latest|debt|export`
-- and removed by `decision prune`.
CREATE TABLE decisions (
    id               TEXT PRIMARY KEY NOT NULL,
    project          TEXT NOT NULL,
    scenario         TEXT,
    status           TEXT NOT NULL,
    verdict          TEXT NOT NULL,
    -- JSON array of the names of the rules with `accepted: true`; `accepted` is whether it is
    -- non-empty (the `accepted` filter reads the column, the `rule` filter `decision_rules`).
    accepted_rules   TEXT NOT NULL,
    accepted         BOOLEAN NOT NULL,
    review_required  BOOLEAN NOT NULL,
    review_reasons   TEXT NOT NULL,
    git_ref          TEXT,
    git_sha          TEXT,
    -- The receipts exactly as uploaded.
    tradeoff_receipt TEXT NOT NULL,
    scenario_receipt TEXT,
    artifact_index   TEXT,
    created_at       BIGINT NOT NULL
);
-- Lists (newest first), latest, and the prune cutoff read a project's decisions through this index.
CREATE INDEX decisions_project_idx ON decisions (project, created_at DESC, id DESC);
CREATE INDEX decisions_scenario_idx ON decisions (project, scenario, created_at DESC, id DESC);
-- One row per accepted rule of a decision: the `rule` filter matches names exactly.
CREATE TABLE decision_rules (
    decision_id TEXT NOT NULL,
    project     TEXT NOT NULL,
    rule        TEXT NOT NULL,
    PRIMARY KEY (decision_id, rule)
);
CREATE INDEX decision_rules_rule_idx ON decision_rules (project, rule);
