"""Proof under load for MariaDB: three engine rotations, zero failed logins, zero failed queries.

Client *processes* (`tests.integration.load_client --kind mysql`) each open a NEW connection
and run a query every ~20 ms with the credential they read from the store through the runtime
key source (`StoreKeySource`, refresh `REFRESH`, one attempt per iteration, no retry), while
the engine runs three ``mysql-user`` rotations (alternating accounts) with a real clock: the
overlap's minimum is longer than the refresh interval, and retire waits until
``information_schema.PROCESSLIST`` shows no session of the old user for the settle period.
The counts are printed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.conftest import MySQLDatabase
from tests.integration.rotation_world import EngineWorld, class_toml, inventory_text
from tests.integration.test_engine_rotation_under_load import Path_, _start_clients, _stop
from tests.integration.test_mysql_user_strategy import (
    ADMIN_ENV,
    create_app_user,
    grants_of,
    locked,
    options,
    planted,
)
from tests.leaks import assert_no_leak
from tests.servers import MariaDBServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROTATIONS = 3
CLIENTS = 2  # `_start_clients` starts this many per path (its CLIENTS_PER_PATH)
OVERLAP = {"min": 1, "settle": 0.5, "max": "1h"}  # seconds: min > the clients' refresh (0.25 s)
ROTATION_TIMEOUT = 60.0


def test_three_engine_rotations_under_load_mariadb(
    tmp_path: Path, mariadb_server: MariaDBServer, mysql_db: MySQLDatabase,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ADMIN_ENV, mariadb_server.admin_url())
    first_user = f"{mysql_db.prefix}_a"
    first = planted()
    create_app_user(mariadb_server, mysql_db, first_user, first)
    text = inventory_text(class_toml("database", "mysql-user", "DATABASE_URL",
                                     options(mysql_db), OVERLAP))
    world = EngineWorld.create(tmp_path, text)
    planted_values = [first.reveal(), mariadb_server.admin_password]
    try:
        world.seed("database", first, role=first_user)
        clients = _start_clients(world, "database",
                                 [Path_("direct", "mysql", mariadb_server.port, mysql_db.name)],
                                 tmp_path)
        try:
            world.clock.real = True
            engine = world.engine()
            for _ in range(ROTATIONS):
                record = engine.start("database", "dev")
                deadline = time.monotonic() + ROTATION_TIMEOUT
                for _ in range(int(ROTATION_TIMEOUT / 0.1)):
                    record = engine.run(record.id)
                    if record.terminal or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                assert record.state == "done", record.body.error or record.body.waiting
                planted_values.append(world.current("database")[1].reveal())
        finally:
            totals = _stop(clients, tmp_path)
        total = totals["direct"]
        with capsys.disabled():
            print(f"\nmysql-user (MariaDB, alternating users): {ROTATIONS} rotations, "
                  f"{CLIENTS} client processes: attempts={total['attempts']} "
                  f"failed_logins={total['failed_logins']} "
                  f"failed_queries={total['failed_queries']} "
                  f"credentials seen per client={total['credential_changes']}")
        assert_no_leak([total["output"], world.journal_text(), world.records_text(),
                        mariadb_server.log_text()], planted_values, where="load run outputs")
        assert total["errors"] == [], total["errors"][:5]
        assert total["failed_logins"] == 0 and total["failed_queries"] == 0
        assert total["attempts"] >= ROTATIONS * CLIENTS
        # every client followed all three rotations (first credential + three changes)
        assert all(seen == ROTATIONS + 1 for seen in total["credential_changes"]), total
        role, _ = world.current("database")
        other = f"{mysql_db.prefix}_a" if role == f"{mysql_db.prefix}_b" else f"{mysql_db.prefix}_b"
        assert locked(mariadb_server, other)
        assert grants_of(mariadb_server, other) == grants_of(mariadb_server, str(role))
    finally:
        world.close()
