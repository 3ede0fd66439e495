# Gatehouse: `make demo` and `make test` work from a fresh clone (see README.md).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# Django 6.1 needs Python 3.12 or newer; take the first one this machine has.
PYTHON ?= $(shell for p in python3.13 python3.12 $$HOME/.pyenv/versions/3.13*/bin/python3 \
	$$HOME/.pyenv/versions/3.12*/bin/python3 /usr/local/bin/python3.1[23] python3; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo "$$p"; break; }; done)
# CI sets these; locally PostgreSQL is tried at its usual address and the pass is skipped if it is not there.
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/gatehouse
REQUIRE_POSTGRES ?= 0

.PHONY: install demo test lint typecheck clean

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.12 or newer is required" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	GATEHOUSE_ENV=local $(BIN)/python manage.py demo

lint: install
	$(BIN)/ruff check .

# mypy with Django's and Celery's stubs over the apps and the integrations ([tool.mypy] in pyproject.toml);
# a read of an attribute a class does not have fails the build here, before any test runs.
typecheck: install
	$(BIN)/mypy

test: install lint typecheck
	@command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || [ "$$GATEHOUSE_REQUIRE_SERVICES" = 1 ] || \
		echo "== Chromium not found: browser tests skipped (install it with: apt-get install chromium) =="
	@echo "== test suite on SQLite (the embedded default) =="
	env -u DATABASE_URL $(BIN)/python -m pytest
	@if pg_isready -q -d "$(TEST_POSTGRES_URL)" 2>/dev/null; then \
		echo "== test suite on PostgreSQL ($(TEST_POSTGRES_URL)) =="; \
		DATABASE_URL="$(TEST_POSTGRES_URL)" $(BIN)/python -m pytest -m "not browser"; \
	elif [ "$(REQUIRE_POSTGRES)" = 1 ]; then \
		echo "PostgreSQL is not reachable at $(TEST_POSTGRES_URL)" >&2; exit 1; \
	else \
		echo "== PostgreSQL not reachable at $(TEST_POSTGRES_URL): PostgreSQL pass skipped =="; \
	fi

clean:
	rm -rf $(VENV) var .pytest_cache
