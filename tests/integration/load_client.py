"""One application process for the rotation load tests and the bench: a NEW connection and a
query every ~20 ms, with the credential it reads through the runtime key source.

    python -m tests.integration.load_client --store PATH --secret ENV/NAME --kind postgres \\
        --host 127.0.0.1 --port N --dbname DB --stop-file PATH --ready-file PATH

The store's master key comes in ``KEYROLL_MASTER_KEY`` (base64), never on argv. The client
reads ``current`` (value + ``meta["role"]``) from `StoreKeySource` every ``--refresh``
seconds, as an app would, and makes exactly one attempt per iteration: no retry on failure.
At the end it prints one JSON line of counts; error lines hold the driver's first line, which
names the role but never a password. Bounded: ``--max-iterations`` and ``--max-seconds``.

With ``--schema S`` (PostgreSQL) each iteration also uses every table a migration has created
in schema ``S`` so far, as an app would after deploying it: ``INSERT … DEFAULT VALUES`` and
``SELECT count(*)`` on each. Every statement that ran counts in ``queries``; a refusal for
lack of privilege (SQLSTATE 42501) also counts in ``permission_errors``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from pathlib import Path

from keyroll.model import SecretRef
from keyroll.runtime.keysource import StoreKeySource
from keyroll.stores.sqlite import SQLiteStore

_TABLES_SQL = "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename"
_queries = 0


def _postgres_attempt(args: argparse.Namespace, role: str, password: str) -> str | None:
    """One login + queries; None if all worked, else ``login: …`` / ``query: …`` /
    ``permission: …``."""
    global _queries
    import psycopg
    from psycopg import sql

    try:
        conn = psycopg.connect(host=args.host, port=args.port, dbname=args.dbname, user=role,
                               password=password, autocommit=True, connect_timeout=10,
                               application_name=args.app)
    except psycopg.Error as exc:
        return "login: " + (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    try:
        conn.execute("SELECT count(*) FROM public.orders").fetchone()
        _queries += 1
        if args.schema:
            tables = [t for (t,) in conn.execute(_TABLES_SQL, (args.schema,)).fetchall()]
            _queries += 1
            for table in tables:
                name = sql.Identifier(args.schema, table)
                conn.execute(sql.SQL("INSERT INTO {} DEFAULT VALUES").format(name))
                conn.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()
                _queries += 2
    except psycopg.Error as exc:
        kind = "permission" if getattr(exc, "sqlstate", None) == "42501" else "query"
        return f"{kind}: " + (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    finally:
        conn.close()
    return None


def _redis_attempt(args: argparse.Namespace, user: str, password: str) -> str | None:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # no credentials on the client: AUTH below is the login, made once (no retry)
    client = redis.Redis(host=args.host, port=args.port, socket_timeout=10, protocol=2,
                         retry=Retry(NoBackoff(), 0))
    try:
        try:
            client.execute_command("AUTH", user, password)  # type: ignore[no-untyped-call]
        except redis.exceptions.RedisError as exc:
            return "login: " + str(exc).splitlines()[0]
        try:
            client.execute_command("GET", "kr:load")  # type: ignore[no-untyped-call]
        except redis.exceptions.RedisError as exc:
            return "query: " + str(exc).splitlines()[0]
    finally:
        client.close()
    return None


def _rabbitmq_attempt(args: argparse.Namespace, user: str, password: str) -> str | None:
    """One AMQP connection (its login, to vhost ``--dbname``) and a passive declare of the
    queue ``kr.load`` (the "query"); pika tries once (``connection_attempts=1``)."""
    import pika
    import pika.exceptions

    params = pika.ConnectionParameters(
        host=args.host, port=args.port, virtual_host=args.dbname, connection_attempts=1,
        retry_delay=0, socket_timeout=10, stack_timeout=10, heartbeat=0,
        credentials=pika.PlainCredentials(user, password, erase_on_connect=True),
        client_properties={"connection_name": args.app})
    try:
        connection = pika.BlockingConnection(params)
    except pika.exceptions.AMQPError as exc:
        return "login: " + (repr(exc).splitlines() or [type(exc).__name__])[0][:300]
    try:
        connection.channel().queue_declare("kr.load", passive=True)
    except pika.exceptions.AMQPError as exc:
        return "query: " + (repr(exc).splitlines() or [type(exc).__name__])[0][:300]
    finally:
        if connection.is_open:
            connection.close()
    return None



def _mysql_attempt(args: argparse.Namespace, user: str, password: str) -> str | None:
    """One login + query against MySQL/MariaDB (PyMySQL), like `_postgres_attempt`."""
    import pymysql

    try:
        conn = pymysql.connect(host=args.host, port=args.port, user=user, password=password,
                               database=args.dbname, connect_timeout=10, autocommit=True,
                               program_name=args.app, ssl_disabled=True)  # loopback
    except pymysql.err.MySQLError as exc:
        return "login: " + (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM orders")
            cur.fetchone()
    except pymysql.err.MySQLError as exc:
        return "query: " + (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    finally:
        conn.close()
    return None


_ATTEMPTS = {"postgres": _postgres_attempt, "redis": _redis_attempt, "mysql": _mysql_attempt,
             "rabbitmq": _rabbitmq_attempt}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--secret", required=True, help="ENV/NAME")
    parser.add_argument("--kind", choices=sorted(_ATTEMPTS), default="postgres")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dbname", default="postgres", help="the database (RabbitMQ: vhost)")
    parser.add_argument("--app", default="kr-load")
    parser.add_argument("--schema", default="", help="also use every table in this schema")
    parser.add_argument("--refresh", type=float, default=0.25)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--stop-file", required=True)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--max-iterations", type=int, default=50_000)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args(argv)

    key = base64.b64decode(os.environ["KEYROLL_MASTER_KEY"])
    env, name = args.secret.split("/", 1)
    attempt = _ATTEMPTS[args.kind]
    counts = {"attempts": 0, "failed_logins": 0, "failed_queries": 0, "permission_errors": 0,
              "credential_changes": 0}
    errors: list[str] = []
    stop, ready = Path(args.stop_file), Path(args.ready_file)
    deadline = time.monotonic() + args.max_seconds
    with SQLiteStore(Path(args.store), key) as store:
        source = StoreKeySource(store, SecretRef(env, name), refresh_interval=args.refresh)
        last_version = None
        for _ in range(args.max_iterations):
            if stop.exists() or time.monotonic() > deadline:
                break
            current = source.snapshot().current
            if current.version != last_version:
                counts["credential_changes"] += 1
                last_version = current.version
            role = str(current.meta.get("role") or "")
            counts["attempts"] += 1
            problem = attempt(args, role, current.value.reveal())
            if problem is not None:
                counts["failed_logins" if problem.startswith("login") else "failed_queries"] += 1
                if problem.startswith("permission"):
                    counts["permission_errors"] += 1
                if len(errors) < 20:
                    errors.append(f"{role}: {problem}")
            elif not ready.exists():
                ready.touch()
            time.sleep(args.interval)
    print(json.dumps({**counts, "queries": _queries, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
