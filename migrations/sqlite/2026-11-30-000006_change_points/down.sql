DROP INDEX run_stats_group_idx;
DROP INDEX run_stats_created_idx;
DROP TABLE change_points;
DROP TABLE cp_series;
DROP TABLE run_shifts;
