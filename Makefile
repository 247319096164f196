# Switchboard — the two set-up commands are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The suite runs against real PostgreSQL and Redis (override to point elsewhere).
TEST_ENV := SWITCHBOARD_ENV=test \
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/switchboard} \
	REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/15}

.PHONY: demo test install lint typecheck check lock fakellm clean

$(STAMP): requirements/dev.txt
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/dev.txt
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m switchboard.demo

test: install
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	SWITCHBOARD_ENV=test $(VENV)/bin/mypy .

check: install
	$(TEST_ENV) $(PY) manage.py check
	$(TEST_ENV) $(PY) manage.py makemigrations --check --dry-run

fakellm: install
	$(PY) -m switchboard.fakellm --port 18080

# Re-pin every dependency with hashes after editing requirements/*.in.
lock:
	$(PYTHON) -m venv .venv-lock && .venv-lock/bin/pip install --quiet pip-tools
	cd requirements && ../.venv-lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
		--strip-extras --no-emit-index-url --no-emit-find-links -o base.txt base.in
	cd requirements && ../.venv-lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
		--strip-extras --no-emit-index-url --no-emit-find-links -o dev.txt dev.in

clean:
	rm -rf $(VENV) .venv-lock var .mypy_cache .ruff_cache
