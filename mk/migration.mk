# hvguard_migration_tls (issue 4): benchmark and scenario shortcuts. See docs/migration-tls.md.
MIGRATION_BENCH_LAB ?= bench-migration
MIGRATION_BENCH_RUNS ?= 3
MIGRATION_BENCH_INV := $(LAB_CACHE)/run/$(MIGRATION_BENCH_LAB)/inventory.yml
MIGRATION_BENCH_REPORTS := $(HVGUARD_REPORT_DIR)/$(MIGRATION_BENCH_LAB)

.PHONY: bench-migration bench-migration-host molecule-migration

bench-migration: venv deps ## Live-migration wall time TLS vs plaintext TCP on two lab VMs (ratio, target <= 1.3)
	flock $(LAB_LOCK) bash -c '\
	  set -e; trap "$(LAB_PY) -m lab down --name $(MIGRATION_BENCH_LAB) >/dev/null 2>&1 || true" EXIT; \
	  $(LAB_PY) -m lab up --name $(MIGRATION_BENCH_LAB) --vms 2 --mem 1280 --inventory $(MIGRATION_BENCH_INV); \
	  export ANSIBLE_STRATEGY_PLUGINS=$(HVGUARD_MITOGEN_STRATEGY_PLUGINS) ANSIBLE_STRATEGY=mitogen_linear; \
	  HVGUARD_REPORT_DIR=$(MIGRATION_BENCH_REPORTS) ansible-playbook -i $(MIGRATION_BENCH_INV) bench/migration_converge.yml; \
	  HVGUARD_REPORT_DIR=$(MIGRATION_BENCH_REPORTS) ansible-playbook -i $(MIGRATION_BENCH_INV) bench/migration_bench.yml \
	    -e bench_migration_runs=$(MIGRATION_BENCH_RUNS)'
	@echo "figures: $(MIGRATION_BENCH_REPORTS)/migration-bench.json"

molecule-migration: venv ## The migration scenario alone (two VMs, under the VM lock)
	flock $(LAB_LOCK) molecule test -s migration

bench-migration-host: venv ## TLS vs plaintext migration between two hand-started libvirtd on loopback (no VM)
	flock /tmp/hvguard-libvirtd.lock $(BIN)/python bench/migration_host_bench.py
