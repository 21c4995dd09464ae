# VM lab and Molecule targets (included by the main Makefile). See lab/README.md and
# molecule/README.md. Every VM boot holds the host-wide lock $(LAB_LOCK).
LAB_NAME ?= lab
LAB_LOCK ?= /tmp/hvguard-vm.lock
LAB_PY := $(BIN)/python
LAB_CACHE := $(or $(HVGUARD_LAB_CACHE),$(abspath .cache/lab))
LAB_INVENTORY := $(LAB_CACHE)/run/$(LAB_NAME)/inventory.yml
LAB_REPORTS := $(HVGUARD_REPORT_DIR)/$(LAB_NAME)

# Mitogen: scenarios opt in with, in molecule.yml,
#   ansible: {env: {ANSIBLE_STRATEGY_PLUGINS: ${HVGUARD_MITOGEN_STRATEGY_PLUGINS},
#                   ANSIBLE_STRATEGY: mitogen_linear}}
# `make ... MITOGEN=1` switches every lab run and scenario to it (the pack itself must never
# depend on Mitogen: tests/host/test_audit_localhost.py pins linear). Expanded when a
# recipe runs (`=`, not `:=`): on a fresh clone the venv exists only after `make venv`, and
# `make unit`/`make molecule` must not get an empty plugin path.
export HVGUARD_MITOGEN_STRATEGY_PLUGINS = $(shell $(BIN)/python -c 'import ansible_mitogen, os; print(os.path.dirname(ansible_mitogen.__file__) + "/plugins/strategy")' 2>/dev/null)
MITOGEN ?= 0
ifeq ($(MITOGEN),1)
export ANSIBLE_STRATEGY_PLUGINS = $(HVGUARD_MITOGEN_STRATEGY_PLUGINS)
export ANSIBLE_STRATEGY := mitogen_linear
endif

# Scenarios: every molecule/<dir> with a molecule.yml, except the shared playbooks.
MOLECULE_SCENARIOS ?= $(filter-out _shared,$(patsubst molecule/%/molecule.yml,%,$(sort $(wildcard molecule/*/molecule.yml))))
MOLECULE_ARGS ?=
export MOLECULE_ARGS
# Groups run in order; a group's lanes ("a>b+c": lanes "a>b" and "c") run side by side, a
# lane's scenarios one after the other (mk/molecule.sh). CI's groups: `default` beside
# `scrub` (one VM each), then `migration` (two VMs): never more than two VMs. The lanes
# "default>migration+scrub" (three VMs once migration starts) took as long (2,079 s against
# 1,449 + 677 s): the two cores are the limit either way.
# `make molecule MOLECULE_SCENARIOS="x y"` runs exactly those, one at a time.
ifeq ($(origin MOLECULE_SCENARIOS),command line)
MOLECULE_GROUPS ?= $(MOLECULE_SCENARIOS)
else
MOLECULE_CI_GROUPS ?= default+scrub migration
MOLECULE_GROUPS ?= $(MOLECULE_CI_GROUPS) \
  $(filter-out $(subst +, ,$(subst >, ,$(MOLECULE_CI_GROUPS))),$(MOLECULE_SCENARIOS))
endif

.PHONY: lab lab-image lab-destroy lab-ssh lab-status lab-bench molecule

lab: venv deps ## Boot a lab hypervisor VM, apply site.yml, audit it (reports under reports/lab)
	flock $(LAB_LOCK) $(LAB_PY) -m lab up --name $(LAB_NAME) --inventory $(LAB_INVENTORY)
	HVGUARD_REPORT_DIR=$(LAB_REPORTS)/site ansible-playbook -i $(LAB_INVENTORY) playbooks/site.yml \
	  -e '{"hvguard_memory_reboot_ok": true}'
	HVGUARD_REPORT_DIR=$(LAB_REPORTS)/audit ansible-playbook -i $(LAB_INVENTORY) --check playbooks/audit.yml
	@echo "lab '$(LAB_NAME)' is up: make lab-ssh | make lab-destroy"
	@echo "reports: $(LAB_REPORTS)/site (apply run), $(LAB_REPORTS)/audit (check-mode audit)"

lab-image: venv ## Build (or find) the cached lab image only
	$(LAB_PY) -m lab image

lab-destroy: ## Stop the lab VM and delete its overlay
	$(LAB_PY) -m lab down --name $(LAB_NAME)

lab-ssh: ## SSH into the lab VM
	$(LAB_PY) -m lab ssh --name $(LAB_NAME)

lab-status: ## List running lab VMs
	$(LAB_PY) -m lab status

molecule: venv ## Run every Molecule scenario (MOLECULE_SCENARIOS=... one at a time), under the VM lock
	LAB_PY=$(LAB_PY) flock $(LAB_LOCK) mk/molecule.sh $(foreach g,$(MOLECULE_GROUPS),'$(g)')

lab-bench: venv ## Per-task cost on the lab VM (make lab first): linear vs Mitogen
	@for strategy in linear mitogen_linear; do \
	  t0=$$(date +%s.%N); \
	  ANSIBLE_STRATEGY_PLUGINS=$(HVGUARD_MITOGEN_STRATEGY_PLUGINS) ANSIBLE_STRATEGY=$$strategy \
	    ansible-playbook -i $(LAB_INVENTORY) lab/bench/tasks.yml >/dev/null || exit 1; \
	  t1=$$(date +%s.%N); \
	  echo "$$strategy $$t0 $$t1"; \
	done | awk '{ s = ($$3 - $$2) / 20; t[$$1] = s; printf "%-15s %6.2f s/task (20 tasks)\n", $$1, s } \
	  END { if (t["mitogen_linear"] > 0) printf "ratio linear/mitogen: %.1fx\n", t["linear"] / t["mitogen_linear"] }'
