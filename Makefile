# One install step (pip, from pyproject.toml) behind every target; all targets are idempotent.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
EXTRAS ?= test

.PHONY: install demo test typecheck lint protos broker bench clean browser postgres

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-installs when pyproject.toml changes; torch==2.13.0 resolves to the CPU build on this machine.
$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(INSTALLED)

install: $(INSTALLED)

# The main job: the embedded default (local broker, services as processes, SQLite, CPU or GPU).
demo: $(INSTALLED)
	$(BIN)/python -m gaelp.embedded $(ARGS)

# Debian's Chromium for the dashboard's browser test (skipped when it is there already).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# Debian's PostgreSQL binaries: the suite starts a throwaway server from them when none listens on
# 127.0.0.1:5432 and GAELP_TEST_POSTGRES_URL names none (tests/conftest.py).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq postgresql >/dev/null)

test: $(INSTALLED) browser postgres typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# mypy over libs/ and services/ with the generated protobuf stubs ([tool.mypy] in pyproject.toml).
typecheck: $(INSTALLED)
	$(BIN)/mypy libs/gaelp services

lint: $(INSTALLED)
	$(BIN)/ruff check .

protos: $(INSTALLED)
	$(BIN)/python -m gaelp.protogen

# A local Kafka-compatible broker (Tansu, memory storage) on 127.0.0.1:9092 for development.
broker: $(INSTALLED)
	$(BIN)/python -m gaelp.bus.local_broker --port 9092

# The RL benchmark (python -m benchmarks.rl); the `bench` extra adds Stable-Baselines3 and MuJoCo.
bench: $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS),bench]'
	$(BIN)/python -m benchmarks.rl $(ARGS)

clean:
	rm -rf $(VENV) var test-artifacts .pytest_cache
