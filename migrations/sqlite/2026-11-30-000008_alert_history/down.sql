DROP INDEX alerts_project_waiver_idx;
DROP INDEX audit_events_resource_idx;
