DROP TABLE quarantine;
DROP TABLE alerts;
