"""Proof under load: five rotations through the engine, zero failed logins, zero failed queries.

Client *processes* (`tests.integration.load_client`) each open a NEW connection and run a
query every ~20 ms with the credential they read from the store through the runtime key
source (`StoreKeySource`, refresh interval `REFRESH`, one attempt per iteration: no retry on
failure). Meanwhile the engine runs five rotations of the secret with the real strategy and a
real clock; the overlap's minimum is longer than the refresh interval, and retire waits until
the old role (or Redis user) has no connection for the settle period. Counts are printed.

Cases: PostgreSQL with PgBouncer configured (clients directly *and* through PgBouncer; the
overlap measures PgBouncer's clients), PostgreSQL alone (the overlap measures
``pg_stat_activity``), Redis in both ACL modes; and PostgreSQL behind PgBouncer with a real
migration (create table, alter table, create index, as the app's login role) before, between
and after the rotations while the clients use every table migrated so far: 0 failed logins,
0 failed queries, 0 permission errors (issue 15 item 3).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from keyroll.generate import generate
from keyroll.model import SecretValue
from keyroll.targets.postgres import PostgresTarget
from tests.integration.conftest import FreshDatabase
from tests.integration.rotation_world import EngineWorld, class_toml, inventory_text
from tests.integration.test_postgres_role_strategy import (
    ADMIN_ENV,
    BOUNCER_ENV,
    bouncer_target,
    bouncer_url,
    db_options,
)
from tests.integration.test_redis_acl_strategy import ADMIN_ENV as REDIS_ENV
from tests.integration.test_redis_acl_strategy import admin, admin_url
from tests.leaks import assert_no_leak
from tests.servers import PgBouncerServer, PostgresServer, RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROTATIONS = 5
CLIENTS_PER_PATH = 2
REFRESH = 0.25
OVERLAP = {"min": 1, "settle": 0.5, "max": "1h"}  # seconds: min > refresh interval
REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60.0
ROTATION_TIMEOUT = 60.0


@dataclass(frozen=True)
class Path_:
    """Where one group of clients connects."""

    name: str
    kind: str
    port: int
    dbname: str = "postgres"


def _start_clients(world: EngineWorld, secret: str, paths: list[Path_], tmp: Path,
                   extra: tuple[str, ...] = ()) -> list[tuple[Path_, subprocess.Popen[str], Path]]:
    env = {**os.environ, "KEYROLL_MASTER_KEY": base64.b64encode(world.key).decode()}
    clients = []
    for path in paths:
        for number in range(CLIENTS_PER_PATH):
            ready = tmp / f"ready-{path.name}-{number}"
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.integration.load_client",
                 "--store", str(world.store.path), "--secret", f"dev/{secret}",
                 "--kind", path.kind, "--port", str(path.port), "--dbname", path.dbname,
                 "--app", f"kr-load-{path.name}", "--refresh", str(REFRESH),
                 "--stop-file", str(tmp / "stop"), "--ready-file", str(ready),
                 "--max-seconds", "240", *extra],
                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            clients.append((path, proc, ready))
    deadline = time.monotonic() + READY_TIMEOUT
    for _ in range(int(READY_TIMEOUT / 0.05)):
        if all(ready.exists() for _, _, ready in clients):
            return clients
        for _, proc, _ in clients:
            if proc.poll() is not None:
                _stop(clients, tmp)
                detail = proc.stderr.read()[-2000:] if proc.stderr else ""
                pytest.fail(f"a load client exited early: {detail}")
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    _stop(clients, tmp)
    pytest.fail("load clients did not log in within 60 s")


def _stop(clients: list[tuple[Path_, subprocess.Popen[str], Path]], tmp: Path
          ) -> dict[str, dict[str, Any]]:
    (tmp / "stop").touch()
    totals: dict[str, dict[str, Any]] = {}
    for path, proc, _ in clients:
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
        lines = out.strip().splitlines()
        result: dict[str, Any] = (json.loads(lines[-1]) if lines
                                  else {"errors": [f"no result: {err[-500:]}"]})
        total = totals.setdefault(path.name, {"attempts": 0, "failed_logins": 0,
                                              "failed_queries": 0, "permission_errors": 0,
                                              "queries": 0, "credential_changes": [],
                                              "errors": [], "output": ""})
        for key in ("attempts", "failed_logins", "failed_queries", "permission_errors",
                    "queries"):
            total[key] += int(result.get(key, 0))
        total["credential_changes"].append(int(result.get("credential_changes", 0)))
        total["errors"] += result.get("errors", [])
        total["output"] += out + err
    return totals


Between = Callable[[int], None]


def _rotate(world: EngineWorld, secret: str, planted: list[str], rotations: int = ROTATIONS,
            between: Between | None = None) -> None:
    world.clock.real = True
    engine = world.engine()
    for number in range(rotations):
        if between is not None:
            between(number)
        record = engine.start(secret, "dev")
        deadline = time.monotonic() + ROTATION_TIMEOUT
        for _ in range(int(ROTATION_TIMEOUT / 0.1)):
            record = engine.run(record.id)
            if record.state in ("done", "rolled-back") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert record.state == "done", record.body.error or record.body.waiting
        planted.append(world.current(secret)[1].reveal())
    if between is not None:
        between(rotations)


def _run(world: EngineWorld, secret: str, paths: list[Path_], tmp: Path, label: str,
         planted: list[str], rotations: int = ROTATIONS, between: Between | None = None,
         extra: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    clients = _start_clients(world, secret, paths, tmp, extra)
    try:
        _rotate(world, secret, planted, rotations, between)
    finally:
        totals = _stop(clients, tmp)
    for name, total in totals.items():
        print(f"\n{label}: {name}: attempts={total['attempts']} queries={total['queries']} "
              f"failed_logins={total['failed_logins']} failed_queries={total['failed_queries']} "
              f"permission_errors={total['permission_errors']} "
              f"credentials seen per client={total['credential_changes']}")
    assert_no_leak([t["output"] for t in totals.values()], planted, where="client output")
    for name, total in totals.items():
        assert total["errors"] == [], (name, total["errors"][:5])
        assert total["failed_logins"] == 0 and total["failed_queries"] == 0
        assert total["permission_errors"] == 0
        assert total["attempts"] >= rotations * CLIENTS_PER_PATH
        # each client really followed the rotations (not one stale credential throughout)
        assert all(seen >= 2 for seen in total["credential_changes"]), total
    return totals


@pytest.mark.parametrize("via", ["pgbouncer", "direct"])
def test_five_engine_rotations_under_load_postgres(
    via: str, tmp_path: Path, fresh_db: FreshDatabase, postgres_server: PostgresServer,
    pgbouncer_server: PgBouncerServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ADMIN_ENV, fresh_db.dsn)
    bouncer = pgbouncer_server if via == "pgbouncer" else None
    group = f"{fresh_db.prefix}_load"
    pg = PostgresTarget(fresh_db.dsn)
    layout = pg.ensure_layout(group)
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT SELECT ON public.orders TO {}").format(sql.Identifier(group)))
    first = generate("password-32")
    verifier = pg.set_password(layout.logins[0], first)
    if bouncer is not None:
        monkeypatch.setenv(BOUNCER_ENV, bouncer_url(bouncer))
        bouncer_target(bouncer).publish({layout.logins[0]: verifier})
    text = inventory_text(class_toml("database", "postgres-role", "DATABASE_URL",
                                     db_options(group, bouncer=bouncer), OVERLAP))
    world = EngineWorld.create(tmp_path, text)
    try:
        world.seed("database", first, role=layout.logins[0])
        paths = [Path_("direct", "postgres", postgres_server.port, fresh_db.name)]
        if bouncer is not None:
            paths.append(Path_("pgbouncer", "postgres", bouncer.port, fresh_db.name))
        planted = [first.reveal()]
        with capsys.disabled():
            _run(world, "database", paths, tmp_path, f"postgres-role ({via} config)", planted)
    finally:
        world.close()


MIGRATION_ROTATIONS = 3


def _migration(number: int) -> list[Any]:
    """Migration ``number``: a new table (created, altered, indexed) and, from the second on, a
    change to the table the *other* login role created in the previous one."""
    table = sql.Identifier("app", f"m{number}")
    statements: list[Any] = [
        sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, inserted_by name DEFAULT session_user)"
                ).format(table),
        sql.SQL("ALTER TABLE {} ADD COLUMN amount int DEFAULT 0").format(table),
        sql.SQL("CREATE INDEX {} ON {} (amount)").format(
            sql.Identifier(f"m{number}_amount"), table),
    ]
    if number > 0:
        previous = sql.Identifier("app", f"m{number - 1}")
        statements += [
            sql.SQL("ALTER TABLE {} ADD COLUMN {} int DEFAULT 1").format(
                previous, sql.Identifier(f"c{number}")),
            sql.SQL("CREATE INDEX {} ON {} ({})").format(
                sql.Identifier(f"m{number - 1}_c{number}"), previous,
                sql.Identifier(f"c{number}")),
        ]
    return statements


def test_migrations_between_engine_rotations_under_load_behind_pgbouncer(
    tmp_path: Path, fresh_db: FreshDatabase, postgres_server: PostgresServer,
    pgbouncer_server: PgBouncerServer, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ADMIN_ENV, fresh_db.dsn)
    monkeypatch.setenv(BOUNCER_ENV, bouncer_url(pgbouncer_server))
    group = f"{fresh_db.prefix}_mig"
    pg = PostgresTarget(fresh_db.dsn)
    layout = pg.ensure_layout(group)
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT SELECT ON public.orders TO {}").format(sql.Identifier(group)))
        conn.execute(sql.SQL("CREATE SCHEMA app AUTHORIZATION {}").format(sql.Identifier(group)))
    first = generate("password-32")
    bouncer_target(pgbouncer_server).publish({layout.logins[0]: pg.set_password(
        layout.logins[0], first)})
    text = inventory_text(class_toml("database", "postgres-role", "DATABASE_URL",
                                     db_options(group, bouncer=pgbouncer_server), OVERLAP))
    world = EngineWorld.create(tmp_path, text)
    migrated: list[str] = []

    def migrate(number: int) -> None:
        """The deploy's migration, as the app's current login role, through PgBouncer."""
        role, password = world.current("database")
        assert role is not None
        with psycopg.connect(pgbouncer_server.base_dsn(fresh_db.name), user=role,
                             password=password.reveal(), connect_timeout=10) as conn:
            for statement in _migration(number):
                conn.execute(statement)
        migrated.append(role)

    try:
        world.seed("database", first, role=layout.logins[0])
        paths = [Path_("direct", "postgres", postgres_server.port, fresh_db.name),
                 Path_("pgbouncer", "postgres", pgbouncer_server.port, fresh_db.name)]
        planted = [first.reveal()]
        with capsys.disabled():
            totals = _run(world, "database", paths, tmp_path,
                          "postgres-role behind PgBouncer, a migration between rotations",
                          planted, MIGRATION_ROTATIONS, migrate, ("--schema", "app"))
        assert len(migrated) == MIGRATION_ROTATIONS + 1
        assert set(migrated) == set(layout.logins)  # each login role ran migrations
        assert all(total["queries"] > total["attempts"] for total in totals.values())
        with psycopg.connect(fresh_db.dsn) as conn:
            owners = conn.execute("SELECT DISTINCT tableowner FROM pg_tables "
                                  "WHERE schemaname = 'app'").fetchall()
            writers = conn.execute("SELECT DISTINCT inserted_by FROM app.m0").fetchall()
            columns = conn.execute("SELECT count(*) FROM information_schema.columns WHERE "
                                   "table_schema = 'app' AND column_name LIKE 'c%%'").fetchone()
        assert owners == [(group,)]
        assert {w for (w,) in writers} == set(layout.logins)  # both wrote to m0 under load
        assert columns == (MIGRATION_ROTATIONS,)
    finally:
        world.close()


@pytest.mark.parametrize("mode", ["dual-password", "alternating-users"])
def test_five_engine_rotations_under_load_redis(
    mode: str, tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(REDIS_ENV, admin_url(redis_server))
    user = f"krload{os.getpid()}{mode[0]}"
    first_user = user if mode == "dual-password" else f"{user}_a"
    first = SecretValue(generate("password-32").reveal())
    target = admin(redis_server)
    target.ensure_users([first_user], ["~kr:*", "+@all", "-@dangerous"])
    target.set_password(first_user, first)
    options = {"admin_url_env": REDIS_ENV, "mode": mode, "user": user}
    text = inventory_text(class_toml("cache", "redis-acl", "REDIS_PASSWORD", options, OVERLAP))
    world = EngineWorld.create(tmp_path, text)
    try:
        world.seed("cache", first, role=first_user)
        planted = [first.reveal()]
        with capsys.disabled():
            _run(world, "cache", [Path_("redis", "redis", redis_server.port)], tmp_path,
                 f"redis-acl ({mode})", planted)
    finally:
        world.close()
        import redis

        client = redis.Redis(host="127.0.0.1", port=redis_server.port, username="default",
                             password=redis_server.password)
        try:
            for name in (user, f"{user}_a", f"{user}_b"):
                client.acl_deluser(name)
        finally:
            client.close()
