DROP TABLE gate_benchmarks;
