DROP TABLE backfill_state;
DROP TABLE gate_settings;
DROP TABLE failed_runs;
DROP TABLE gate_runs;
DROP TABLE gates;
DROP TABLE run_stats;
