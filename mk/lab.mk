# Placeholder until the lab lands: the lab owner replaces this file.
.PHONY: molecule
molecule:
	@echo "no molecule scenarios yet"
