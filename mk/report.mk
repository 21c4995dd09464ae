# Compliance report benchmarks (bench/report_overhead.py): callback cost as ratios against
# baselines measured in the same run.
.PHONY: bench-report

bench-report: venv ## Benchmark the hvguard_report callback (main-process share, fleet scale)
	$(BIN)/python bench/report_overhead.py
