"""Fixtures that start real PostgreSQL, PgBouncer, Redis and MariaDB servers for integration tests.

Servers are session-scoped (started once, stopped by PID at the end); databases and Redis users
are per test. A missing binary fails the test with the package to install: never a skip.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from tests.pebble_server import PebbleServer
from tests.rabbitmq_server import RabbitMQServer
from tests.servers import (
    MariaDBServer,
    PgBouncerServer,
    PostgresServer,
    RedisServer,
    ServerUnavailable,
)

Server = TypeVar("Server", PostgresServer, PgBouncerServer, RedisServer, MariaDBServer,
                 PebbleServer)


def _start(server: Server) -> Server:
    try:
        return server.start()
    except ServerUnavailable as exc:
        server.stop()
        pytest.fail(str(exc), pytrace=False)


def _make(factory: Callable[..., Server], *args: Any, **kwargs: Any) -> Server:
    """Build a server object; a missing binary becomes a test failure naming the package."""
    try:
        return factory(*args, **kwargs)
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL 15 cluster for the whole session (scram-sha-256, all statements logged)."""
    server = _start(_make(PostgresServer))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pgbouncer_server(postgres_server: PostgresServer) -> Iterator[PgBouncerServer]:
    """PgBouncer in front of `postgres_server`, auth_type scram-sha-256."""
    server = _start(_make(PgBouncerServer, postgres_server))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """redis-server with an ACL file (so ACL SAVE works)."""
    server = _start(_make(RedisServer))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server_no_aclfile() -> Iterator[RedisServer]:
    """redis-server configured with requirepass and no ACL file."""
    server = _start(_make(RedisServer, aclfile=False))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    """Debian's MariaDB for the whole session (temp datadir, loopback port, general log on)."""
    server = _start(_make(MariaDBServer))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pebble_server() -> Iterator[PebbleServer]:
    """Debian's pebble ACME test CA with its DNS (every name is 127.0.0.1); it validates
    HTTP-01 for real on 127.0.0.1:<http_port>."""
    server = _start(_make(PebbleServer))
    yield server
    server.stop()


@dataclass(frozen=True)
class FreshDatabase:
    """A database created for one test, owned by the superuser, with a table to probe.

    Attributes:
        name: the database name.
        dsn: the superuser's conninfo to it.
        base_dsn: host, port and dbname only.
        prefix: a unique prefix for role names in this test.
    """

    name: str
    dsn: str
    base_dsn: str
    prefix: str


@pytest.fixture
def fresh_db(postgres_server: PostgresServer) -> Iterator[FreshDatabase]:
    """A new database (with ``public.orders``) and a role-name prefix; both dropped after."""
    import psycopg
    from psycopg import sql

    token = secrets.token_hex(4)
    name = f"kr_test_{token}"
    prefix = f"kr{token}"
    with psycopg.connect(postgres_server.superuser_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = postgres_server.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.orders (id int PRIMARY KEY, total numeric)")
        conn.execute("INSERT INTO public.orders VALUES (1, 10.5)")
    yield FreshDatabase(name, dsn, postgres_server.base_dsn(name), prefix)
    with psycopg.connect(postgres_server.superuser_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        roles = [r for (r,) in conn.execute(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (prefix,)
        ).fetchall()]
        for role in roles:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@dataclass(frozen=True)
class MySQLDatabase:
    """A MariaDB database with an ``orders`` table and a procedure ``p``, a role holding
    SELECT on it, and a unique prefix for the test's user names.

    Attributes:
        name: the database name.
        prefix: user names of this test start with it (they are dropped after).
        role: a role (``SELECT`` on the database) tests may grant.
    """

    name: str
    prefix: str
    role: str


@pytest.fixture
def mysql_db(mariadb_server: MariaDBServer) -> Iterator[MySQLDatabase]:
    """A fresh database on `mariadb_server`; it, its role and the prefixed users are dropped."""
    token = secrets.token_hex(4)
    db = MySQLDatabase(f"kr_{token}", f"kr{token}", f"kr{token}_role")
    setup = (f"CREATE DATABASE `{db.name}`",
             f"CREATE TABLE `{db.name}`.orders (id INT PRIMARY KEY, total INT)",
             f"INSERT INTO `{db.name}`.orders VALUES (1, 10)",  # noqa: S608 (a generated name)
             f"CREATE PROCEDURE `{db.name}`.p() SELECT 1",
             f"CREATE ROLE `{db.role}`",
             f"GRANT SELECT ON `{db.name}`.* TO `{db.role}`")
    conn = mariadb_server.connect()
    try:
        with conn.cursor() as cur:
            for statement in setup:
                cur.execute(statement)
    finally:
        conn.close()
    yield db
    conn = mariadb_server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db.name}`")
            cur.execute("SELECT User, Host FROM mysql.user WHERE User LIKE %s",
                        (db.prefix.replace("_", "\\_") + "%",))
            for user, host in cur.fetchall():
                cur.execute("DROP USER IF EXISTS %s@%s", (user, host))
    finally:
        conn.close()


@pytest.fixture(scope="session")
def rabbitmq_server() -> Iterator[RabbitMQServer]:
    """One RabbitMQ broker (management plugin) for the whole session: its startup takes
    seconds, so users and vhosts are made per test. Stopped by its PID, with its own epmd."""
    try:
        server = RabbitMQServer()
    except ServerUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        server.start()
    except ServerUnavailable as exc:
        server.stop()
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()
