# Set-up and everyday commands. Each target creates .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Test processes (pytest-xdist). Each test file runs in one process, so a file's
# module-scoped fixtures are built once; 2 matches the 2-core CI machine.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=25

.PHONY: install demo test test-fast lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

# The main job: a Bayesian fit of the built-in default problem, with its report.
demo: install
	$(BIN)/bayesresnet fit models/default.toml --out runs/demo --overwrite

# The whole suite, statistical tests included. pytest's exit code 5 (no tests) fails too.
test: install
	$(PYTEST); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The fast tier (under two minutes on 2 cores): everything but the tests marked slow, the
# statistical ones and those that fit, compile or render for more than about 2 s.
test-fast: install
	$(PYTEST) -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/bench_inference.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
