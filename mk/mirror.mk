# hvguard_mirror (issue 11): host tests and benchmarks in network namespaces (root, no VM).
.PHONY: bench-mirror test-mirror-host

bench-mirror: venv ## Mirror benchmarks in namespaces: TCP ratio with/without mirror, completeness at fixed rates, hook cost
	$(BIN)/python bench/mirror_bench.py --json $(REPORT_DIR)/bench-mirror.json

test-mirror-host: venv ## Mirror hook, gate and reconciler host tests (root, network namespaces)
	pytest -q tests/host/test_mirror_hook.py tests/host/test_mirror_hostile.py tests/host/test_mirror_reconcile.py tests/negative/test_bad_input.py -k mirror
