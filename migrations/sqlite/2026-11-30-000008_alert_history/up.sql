-- An alert's audit trail (GET …/alerts/{id} answers it with the alert), oldest first.
CREATE INDEX audit_events_resource_idx ON audit_events (resource_type, resource_id, ts, id);
-- A project's waivers by expiry (GET …/waivers): only alerts that carry one.
CREATE INDEX alerts_project_waiver_idx ON alerts (project, waiver_expires_at, id)
    WHERE waiver_expires_at IS NOT NULL;
