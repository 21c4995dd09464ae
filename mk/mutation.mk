# Mutation run (tools/mutation.py over tests/mutation/*.yml): outside `make test` (it is run
# before an issue is resolved, not in CI's time budget). MUTATION_ARGS="--only NAME" runs one.
.PHONY: mutation

MUTATION_ARGS ?=
mutation: venv ## Named mutations of the core Python: score to bench/mutation-score.json
	$(BIN)/python tools/mutation.py $(MUTATION_ARGS)
