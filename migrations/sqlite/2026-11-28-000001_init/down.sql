DROP TABLE audit_events;
DROP TABLE api_keys;
DROP TABLE idempotency_keys;
DROP TABLE benchmarks;
DROP TABLE baseline_tags;
DROP TABLE baselines;
