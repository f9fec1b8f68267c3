# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test lint typecheck unit fmt bench fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Webhook receivers on this machine are allowed locally only (and only over loopback).
run: $(STAMP)
	PROVENIQ_WEBHOOK_ALLOWED_NETWORKS=$${PROVENIQ_WEBHOOK_ALLOWED_NETWORKS-127.0.0.0/8,::1/128} \
	PROVENIQ_WEBHOOK_ALLOW_HTTP=$${PROVENIQ_WEBHOOK_ALLOW_HTTP-true} \
	$(BIN)/proveniq serve

demo: $(STAMP)
	$(BIN)/proveniq demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

# A longer schemathesis run over terraform/openapi.yaml against the local stack.
fuzz: $(STAMP)
	SCHEMATHESIS_EXAMPLES=50 $(BIN)/pytest -q tests/e2e/test_schemathesis.py

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/merkle.py

clean:
	rm -rf $(VENV) .proveniq .pytest_cache .mypy_cache .ruff_cache
