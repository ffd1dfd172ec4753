-- Every benchmark some gate of a project has held a run of: what a benchmark-restricted
-- caller's gate list matches its filter against, read by project instead of collecting the
-- distinct benchmarks of every gate run. Written with the runs; a name whose gates retention
-- removed stays (the list still requires a run of it), and an import rebuilds the table.
CREATE TABLE gate_benchmarks (
    project   TEXT NOT NULL,
    benchmark TEXT NOT NULL,
    PRIMARY KEY (project, benchmark)
);
INSERT INTO gate_benchmarks (project, benchmark)
SELECT DISTINCT g.project, r.benchmark FROM gate_runs r JOIN gates g ON g.id = r.gate_id;
