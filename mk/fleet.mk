# Fleet-scale audit benchmark (bench/fleet_audit.py, issue 15): loopback hosts over a private
# sshd, linear and Mitogen. Not part of `make test`. FLEET_ARGS limits the matrix, e.g.
# FLEET_ARGS="--hosts 1,10 --forks 5 --strategy mitogen".
.PHONY: bench-fleet test-round-trips

FLEET_ARGS ?=

bench-fleet: venv ## Audit 1/10/100 loopback hosts over SSH (root, sshd): wall, CPU, RSS, round trips
	$(BIN)/python bench/fleet_audit.py $(FLEET_ARGS)

test-round-trips: venv ## The round-trip counter and the localhost audit's round-trip limit
	$(BIN)/pytest -q tests/unit/test_round_trips.py tests/host/test_audit_round_trips.py
