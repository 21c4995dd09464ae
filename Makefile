# hvguard developer entry points. Everything runs from the repo root; `make venv` builds the
# pinned controller toolchain, `make deps` the Debian packages the tests and the lab need.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(abspath ansible.cfg)
export ANSIBLE_FORCE_COLOR ?= 0
REPORT_DIR ?= reports
export HVGUARD_REPORT_DIR := $(abspath $(REPORT_DIR))

# Debian packages the controller side needs (tests, lab). Kept in one place for .ci/run.
APT_PACKAGES := $(shell grep -v '^\#' .ci/apt-packages.txt)

.PHONY: help venv deps audit audit-ci audit-local site-local lint unit test docs docs-check collection clean

help:
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(VENV)/.stamp: requirements.txt requirements-runtime.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

venv: $(VENV)/.stamp ## Create the pinned Python toolchain in .venv

deps: ## Install the Debian packages the tests and the lab need (root)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

audit-local: venv ## Audit THIS machine in check mode and write the reports
	ansible-playbook -i inventories/localhost/hosts.yml playbooks/audit.yml
	@echo "reports: $(HVGUARD_REPORT_DIR)"

audit: audit-local

audit-ci: venv ## Audit INVENTORY in check mode; exit 0 compliant, 10 drift, 11 error (tools/hvguard_audit.py)
	$(BIN)/python tools/hvguard_audit.py -i $(or $(INVENTORY),inventories/localhost/hosts.yml)

lint: venv docs-check ## generated docs current (docs-check), yamllint, ansible-lint (production profile), ruff
	yamllint -s .
	ruff check .
	ruff format --check .
	ansible-lint --profile production --offline -q

# Both cores (xdist; tests/conftest.py starts the longest modules first) and Mitogen for the
# tests' playbook runs (the TLS sandbox scenario: 352 s on linear, 155 s on Mitogen). The
# tests that prove the pack on Ansible's own linear strategy pin ANSIBLE_STRATEGY=linear.
UNIT_WORKERS ?= auto
unit: venv ## pytest: plugins, modules, callback, catalogue, negative tests, host tests
	ANSIBLE_STRATEGY_PLUGINS=$(HVGUARD_MITOGEN_STRATEGY_PLUGINS) ANSIBLE_STRATEGY=mitogen_linear \
	  pytest -q -n $(UNIT_WORKERS) --dist worksteal tests

COLLECTION_DIR ?= build/collection
collection: venv ## Build the hvguard.kvm Ansible collection into dist/ (tools/build_collection.py)
	$(BIN)/python tools/build_collection.py $(COLLECTION_DIR)
	$(BIN)/ansible-galaxy collection build $(COLLECTION_DIR) --output-path dist --force

docs: venv ## Regenerate docs/controls.md and the role READMEs
	$(BIN)/python tools/gen_docs.py

docs-check: venv
	$(BIN)/python tools/gen_docs.py --check

# Lab, Molecule and benchmark targets live in mk/*.mk (lab.mk defines `molecule`).
-include mk/*.mk

# Stages run in order and stop at the first failure; each one's wall time is printed and,
# when HVGUARD_TIMINGS names a file, appended to it (.ci/run prints it in its summary). The
# targets of a stage "a+b" run side by side (output grouped per target): the lab image's
# build (debootstrap, mostly waiting on dpkg and the disk) beside the CPU-bound unit tests.
TEST_STAGES ?= lint unit+lab-image molecule
test: venv ## Everything CI runs: lint, pytest, Molecule scenarios
	@summary=""; for t in $(TEST_STAGES); do \
	  targets=$${t//+/ }; set -- $$targets; \
	  t0=$$(date +%s); rc=0; $(MAKE) --no-print-directory -j$$# --output-sync=target $$targets || rc=$$?; \
	  line=$$(printf '%-22s %5ss  rc=%s' "make $$t" "$$(( $$(date +%s) - t0 ))" "$$rc"); \
	  summary="$$summary\n  $$line"; [ -z "$$HVGUARD_TIMINGS" ] || echo "$$line" >> "$$HVGUARD_TIMINGS"; \
	  if [ $$rc -ne 0 ]; then printf "::: make test stages:$$summary\n"; exit $$rc; fi; \
	done; printf "::: make test stages:$$summary\n"

clean:
	rm -rf $(REPORT_DIR) .pytest_cache build dist
