DROP TABLE fleet_members;
DROP TABLE fleet_groups;
DROP TABLE dependency_events;
DROP TABLE verdicts;
