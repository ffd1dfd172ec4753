DROP TABLE decision_rules;
DROP TABLE decisions;
