DROP TABLE idempotency_keys;

CREATE TABLE idempotency_keys (
    project      TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    baseline_id  TEXT NOT NULL,
    response     TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (project, idem_key)
);
