# hvguard_scrub: host tests and benchmarks of the scrub engine (root; loop devices).
.PHONY: bench-scrub test-scrub-host

bench-scrub: venv ## Scrub engine benchmarks (ratios vs dd and vol-wipe, throttle, RSS)
	$(PYTHON) bench/scrub_bench.py --json $(REPORT_DIR)/bench-scrub.json

test-scrub-host: venv ## Scrub engine host tests (root): raw-image marker scans, SIGKILL + resume
	pytest -q tests/unit/test_scrub_engine.py tests/host/test_scrub_host.py
