DROP TABLE fleet_members;
DROP TABLE fleet_groups;
DROP TABLE dependency_events;
DROP TABLE verdict_counts;
DROP TABLE verdicts;
