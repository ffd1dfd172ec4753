-- Idempotency records belong to the caller that made them: one principal's Idempotency-Key can
-- no longer replay (or block) another principal's upload in the same project. Records expire
-- after 24 hours (created_at_idx serves the expiry sweep). Records made before this migration
-- are dropped: their principal is unknown, and they would have expired within a day anyway.
DROP TABLE idempotency_keys;

CREATE TABLE idempotency_keys (
    project      TEXT NOT NULL,
    principal    TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    baseline_id  TEXT NOT NULL,
    response     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (project, principal, idem_key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
