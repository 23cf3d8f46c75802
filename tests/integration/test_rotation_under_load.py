"""The control for the zero-failed-logins proof: the same kind of client load sees failures
when there are some.

Client threads open a new connection and run a query every ~20 ms, directly and through
PgBouncer, with a credential they cache and refresh every `REFRESH` seconds. Changing the
active role's password in place (what a one-password-per-user rotator does) fails them until
they refresh. The proof itself, five engine rotations under load with zero failures, is
``test_engine_rotation_under_load.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql

from keyroll.generate import generate
from keyroll.model import SecretValue
from keyroll.targets.pgbouncer import PgBouncerTarget
from keyroll.targets.postgres import PostgresTarget, RoleLayout
from keyroll.targets.scram import ScramVerifier
from tests.integration.conftest import FreshDatabase
from tests.servers import PgBouncerServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENTS_PER_PATH = 2
MAX_CLIENT_ITERATIONS = 20_000
REFRESH = 0.2  # seconds between two reads of the current credential by a client
MIN_OVERLAP = REFRESH * 3
DIRECT_APP = "kr-load-direct"


@dataclass
class Current:
    """The credential clients read: what the store's ``current`` label points at."""

    role: str
    password: SecretValue
    lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self) -> tuple[str, SecretValue]:
        with self.lock:
            return self.role, self.password

    def promote(self, role: str, password: SecretValue) -> None:
        with self.lock:
            self.role, self.password = role, password


@dataclass
class Counts:
    attempts: int = 0
    failed_logins: int = 0
    failed_queries: int = 0
    errors: list[str] = field(default_factory=list)


def _total(parts: list[Counts]) -> Counts:
    return Counts(sum(c.attempts for c in parts), sum(c.failed_logins for c in parts),
                  sum(c.failed_queries for c in parts), [e for c in parts for e in c.errors])


def _client(dsn: str, current: Current, stop: threading.Event, counts: Counts,
            app: str) -> None:
    role, password = current.read()
    read_at = time.monotonic()
    for _ in range(MAX_CLIENT_ITERATIONS):
        if stop.is_set():
            return
        if time.monotonic() - read_at >= REFRESH:
            role, password = current.read()
            read_at = time.monotonic()
        counts.attempts += 1
        try:
            conn = psycopg.connect(dsn, user=role, password=password.reveal(),
                                   autocommit=True, connect_timeout=10, application_name=app)
        except psycopg.Error as exc:
            counts.failed_logins += 1
            counts.errors.append(f"login {role}: {str(exc).splitlines()[0]}")
            continue
        try:
            conn.execute("SELECT count(*) FROM public.orders").fetchone()
        except psycopg.Error as exc:
            counts.failed_queries += 1
            counts.errors.append(f"query {role}: {str(exc).splitlines()[0]}")
        finally:
            conn.close()
        time.sleep(0.02)


@dataclass
class Rig:
    pg: PostgresTarget
    bouncer: PgBouncerTarget
    layout: RoleLayout
    verifiers: dict[str, ScramVerifier]
    current: Current


def _rig(fresh_db: FreshDatabase, pgbouncer_server: PgBouncerServer) -> Rig:
    pg = PostgresTarget(fresh_db.dsn)
    bouncer = PgBouncerTarget(
        pgbouncer_server.auth_file, host="127.0.0.1", port=pgbouncer_server.port,
        admin_user=pgbouncer_server.admin_user,
        admin_password=SecretValue(pgbouncer_server.admin_password),
    )
    layout = pg.ensure_layout(f"{fresh_db.prefix}_app")
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT SELECT ON public.orders TO {}").format(
            sql.Identifier(layout.group)))
    first = generate("password-32")
    verifiers: dict[str, ScramVerifier] = {layout.logins[0]: pg.set_password(layout.logins[0],
                                                                            first)}
    bouncer.publish(verifiers)
    return Rig(pg, bouncer, layout, verifiers, Current(layout.logins[0], first))


def _run_clients(
    fresh_db: FreshDatabase, pgbouncer_server: PgBouncerServer, current: Current,
    rotate: Callable[[], None],
) -> tuple[Counts, Counts]:
    """Run the client threads while ``rotate`` runs; return (direct, pgbouncer) counts."""
    stop = threading.Event()
    paths = ((fresh_db.base_dsn, DIRECT_APP), (pgbouncer_server.base_dsn(fresh_db.name), "pool"))
    per_thread = [(app, Counts()) for _, app in paths for _ in range(CLIENTS_PER_PATH)]
    threads = [
        threading.Thread(target=_client, args=(dsn, current, stop, counts, app), daemon=True)
        for (dsn, _), (app, counts) in zip(
            [p for p in paths for _ in range(CLIENTS_PER_PATH)], per_thread, strict=True)
    ]
    for thread in threads:
        thread.start()
    try:
        rotate()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    direct, pooled = (_total([c for a, c in per_thread if a == app]) for _, app in paths)
    print(
        f"\n{rotate.__doc__}: direct: attempts={direct.attempts} "
        f"failed_logins={direct.failed_logins} failed_queries={direct.failed_queries}; "
        f"pgbouncer: attempts={pooled.attempts} failed_logins={pooled.failed_logins} "
        f"failed_queries={pooled.failed_queries}"
    )
    return direct, pooled


def test_control_in_place_password_change_fails_clients_until_they_refresh(
    fresh_db: FreshDatabase, pgbouncer_server: PgBouncerServer
) -> None:
    rig = _rig(fresh_db, pgbouncer_server)
    role = rig.layout.logins[0]

    def rotate() -> None:
        """control: 2 in-place password changes"""
        for _ in range(2):
            time.sleep(MIN_OVERLAP)
            new = generate("password-32")
            rig.verifiers[role] = rig.pg.set_password(role, new)
            rig.bouncer.publish(rig.verifiers)
            time.sleep(REFRESH)  # the store is updated a moment later, as a rotator does
            rig.current.promote(role, new)
        time.sleep(MIN_OVERLAP)

    direct, pooled = _run_clients(fresh_db, pgbouncer_server, rig.current, rotate)
    assert direct.failed_logins > 0
    assert pooled.failed_logins > 0
