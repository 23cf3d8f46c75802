"""The ``mysql-user`` strategy driven by the engine against a real MariaDB (Debian's package).

MariaDB has no dual passwords, so ``auto`` runs the alternating accounts here; the plan says
so. The dual-password SQL is unit-tested in ``tests/unit/targets/test_mysql_statements.py``
(no MySQL 8 server runs here).
"""

from __future__ import annotations

import base64
import io
import itertools
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pymysql
import pytest

import tests.crash as crash
from keyroll.audit import Journal
from keyroll.cli.app import run
from keyroll.errors import TargetError
from keyroll.generate import generate
from keyroll.inventory import Inventory, parse_inventory
from keyroll.model import SecretRef, SecretValue
from keyroll.stores.sqlite import SQLiteStore
from keyroll.targets.mysql import Account, MySQLTarget, parse_url
from keyroll.targets.mysql.accounts import MirrorResult
from keyroll.targets.mysql.statements import native_password_hash
from tests.integration.conftest import MySQLDatabase
from tests.integration.rotation_world import EngineWorld, class_toml, inventory_text
from tests.leaks import assert_no_leak
from tests.servers import MariaDBServer

pytestmark = pytest.mark.integration

ADMIN_ENV = "KR_TEST_MYSQL_ADMIN_URL"
OVERLAP = {"min": "1h", "settle": "10m", "max": "2d"}


def planted() -> SecretValue:
    """A password with every character that quoting gets wrong: $ " \\ '."""
    return SecretValue(f"p$w\"q\\r'{secrets.token_urlsafe(12)}")


def target(server: MariaDBServer, database: str | None = None) -> MySQLTarget:
    return MySQLTarget(parse_url(server.admin_url()), database=database)


def logs_in(server: MariaDBServer, user: str, password: SecretValue) -> bool:
    return target(server).logs_in(Account(user), password)


def grants_of(server: MariaDBServer, user: str) -> list[str]:
    return target(server).grant_lines(Account(user))


def locked(server: MariaDBServer, user: str) -> bool:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW CREATE USER %s@'%%'", (user,))
            row = cur.fetchone()
    finally:
        conn.close()
    return row is not None and "ACCOUNT LOCK" in str(row[0])


def admin_sql(server: MariaDBServer, *statements: str | tuple[str, tuple[Any, ...]]) -> None:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            for statement in statements:
                if isinstance(statement, tuple):
                    cur.execute(*statement)
                else:
                    cur.execute(statement)
    finally:
        conn.close()


def create_app_user(server: MariaDBServer, db: MySQLDatabase, user: str, password: SecretValue) -> None:
    """The account the application uses today, with every kind of grant MariaDB has."""
    name = f"`{db.name}`"
    admin_sql(
        server,
        ("CREATE USER %s@'%%' IDENTIFIED BY PASSWORD %s",
         (user, native_password_hash(password).reveal())),  # no plaintext in the general log
        (f"GRANT SELECT, INSERT ON {name}.orders TO %s@'%%'", (user,)),  # table
        (f"GRANT UPDATE (total) ON {name}.orders TO %s@'%%'", (user,)),  # column
        (f"GRANT CREATE TEMPORARY TABLES ON {name}.* TO %s@'%%'", (user,)),  # database
        (f"GRANT EXECUTE ON PROCEDURE {name}.p TO %s@'%%'", (user,)),  # routine
        ("GRANT PROCESS ON *.* TO %s@'%%'", (user,)),  # global
        (f"GRANT `{db.role}` TO %s@'%%'", (user,)),  # role
        (f"SET DEFAULT ROLE `{db.role}` FOR %s@'%%'", (user,)),
        ("ALTER USER %s@'%%' WITH MAX_QUERIES_PER_HOUR 100000", (user,)),  # limits
    )


def options(db: MySQLDatabase, **extra: Any) -> dict[str, Any]:
    return {"admin_url_env": ADMIN_ENV, "user": db.prefix, "database": db.name,
            "probe_table": f"{db.name}.orders", **extra}


@dataclass
class Rig:
    world: EngineWorld
    first: SecretValue
    users: tuple[str, str]
    ref: SecretRef


@pytest.fixture
def make_rig(tmp_path: Path, mariadb_server: MariaDBServer, mysql_db: MySQLDatabase,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Rig]]:
    monkeypatch.setenv(ADMIN_ENV, mariadb_server.admin_url())
    made: list[EngineWorld] = []

    def make(store_password: SecretValue | None = None, **extra: Any) -> Rig:
        users = (f"{mysql_db.prefix}_a", f"{mysql_db.prefix}_b")
        first = planted()
        create_app_user(mariadb_server, mysql_db, users[0], first)
        text = inventory_text(class_toml("database", "mysql-user", "DATABASE_URL",
                                         options(mysql_db, **extra), OVERLAP))
        folder = tmp_path / f"world{len(made)}"
        folder.mkdir()
        world = EngineWorld.create(folder, text)
        made.append(world)
        ref = world.seed("database", store_password or first, role=users[0])
        return Rig(world, first, users, ref)

    yield make
    for world in made:
        world.close()


def test_alternating_rotation_mirrors_every_grant_and_waits_for_sessions(
    make_rig: Callable[..., Rig], mariadb_server: MariaDBServer, mysql_db: MySQLDatabase,
    capfd: pytest.CaptureFixture[str],
) -> None:
    rig = make_rig()
    a, b = rig.users
    held = mariadb_server.connect(a, rig.first.reveal(), mysql_db.name)  # an app session
    try:
        engine = rig.world.engine()
        record = engine.run(engine.start("database", "dev").id)
        assert record.state == "overlap", record.body.error
        steps = {s.step: s.evidence for s in record.body.steps}
        server = steps["plan"]["server"]
        assert server["variant"] == "MariaDB" and server["dual_password"] is False
        assert server["mode"] == "alternating-users"
        assert "does not support dual passwords" in server["note"]
        assert steps["test"]["checked"]["privileges"]["result"] == "identical"
        role, new = rig.world.current("database")
        assert role == b
        assert logs_in(mariadb_server, b, new) and logs_in(mariadb_server, a, rig.first)
        assert grants_of(mariadb_server, b) == grants_of(mariadb_server, a)
        assert len(grants_of(mariadb_server, a)) >= 6  # role, global, table+column, db, routine, default role
        rig.world.clock.tick(timedelta(hours=2))
        record = engine.run(record.id)
        assert record.state == "overlap" and "still has open connections" in record.body.waiting
    finally:
        held.close()
    record = engine.run(record.id)
    rig.world.clock.tick(timedelta(minutes=11))
    record = engine.run(record.id)
    assert record.state == "done", record.body.error
    assert not logs_in(mariadb_server, a, rig.first) and locked(mariadb_server, a)
    assert logs_in(mariadb_server, b, new)
    assert Journal(rig.world.store).verify().ok
    captured = capfd.readouterr()
    assert_no_leak([captured.out, captured.err, rig.world.journal_text(),
                    rig.world.records_text(), mariadb_server.log_text()],
                   [rig.first.reveal(), new.reveal(), mariadb_server.admin_password])


def test_the_next_rotation_mirrors_grants_changed_meanwhile(
    make_rig: Callable[..., Rig], mariadb_server: MariaDBServer, mysql_db: MySQLDatabase,
) -> None:
    rig = make_rig()
    a, b = rig.users
    assert rig.world.rotate("database").state == "done"
    # a DBA changes the active account's grants between rotations: both directions
    admin_sql(mariadb_server, (f"GRANT DELETE ON `{mysql_db.name}`.orders TO %s@'%%'", (b,)),
              (f"REVOKE CREATE TEMPORARY TABLES ON `{mysql_db.name}`.* FROM %s@'%%'", (b,)),
              ("ALTER USER %s@'%%' WITH MAX_UPDATES_PER_HOUR 7", (b,)))
    record = rig.world.rotate("database")
    assert record.state == "done", record.body.error
    applied = {s.step: s.evidence for s in record.body.steps}["apply"]["applied"]
    assert applied["grants_changed"] is True and applied["grants_from"] == f"'{b}'@'%'"
    role, third = rig.world.current("database")
    assert role == a and logs_in(mariadb_server, a, third)
    assert grants_of(mariadb_server, a) == grants_of(mariadb_server, b)
    assert any("DELETE" in line for line in grants_of(mariadb_server, a))
    assert not any("CREATE TEMPORARY" in line for line in grants_of(mariadb_server, a))
    # and a third rotation with nothing changed mirrors nothing
    record = rig.world.rotate("database")
    applied = {s.step: s.evidence for s in record.body.steps}["apply"]["applied"]
    assert record.state == "done" and applied["grants_changed"] is False


def test_a_privilege_difference_fails_the_test_step_with_the_diff(
    make_rig: Callable[..., Rig], mariadb_server: MariaDBServer, mysql_db: MySQLDatabase,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = make_rig()
    a, b = rig.users
    real = MySQLTarget.mirror_grants

    def lossy(self: MySQLTarget, source: Account, to: Account) -> MirrorResult:
        """A mirror that misses one privilege (on the real server): the test step must see it."""
        result = real(self, source, to)
        admin_sql(mariadb_server, (f"REVOKE INSERT ON `{mysql_db.name}`.orders FROM %s@'%%'",
                                   (to.user,)))
        return result

    monkeypatch.setattr(MySQLTarget, "mirror_grants", lossy)
    record = rig.world.rotate("database")
    assert record.state == "rolled-back"
    assert record.body.error is not None and record.body.error.step == "test"
    assert "does not hold the privileges" in record.body.error.message
    message = record.body.error.message
    assert f"missing: GRANT SELECT, INSERT, UPDATE (`total`) ON `{mysql_db.name}`.`orders`" in message
    assert f"extra: GRANT SELECT, UPDATE (`total`) ON `{mysql_db.name}`.`orders` TO <user>" in message
    assert locked(mariadb_server, b)  # the idle account is locked again
    role, _ = rig.world.current("database")
    assert role == a and logs_in(mariadb_server, a, rig.first)


def test_wrong_current_password_refuses_and_changes_nothing(
    make_rig: Callable[..., Rig], mariadb_server: MariaDBServer,
) -> None:
    rig = make_rig(store_password=generate("password-32"))
    record = rig.world.rotate("database")
    assert record.state == "rolled-back" and record.body.error is not None
    assert record.body.error.step == "plan" and "nothing was changed" in record.body.error.message
    assert not target(mariadb_server).exists(Account(rig.users[1]))
    assert logs_in(mariadb_server, rig.users[0], rig.first)


def test_dual_password_mode_is_refused_on_mariadb(
    make_rig: Callable[..., Rig], mariadb_server: MariaDBServer,
) -> None:
    rig = make_rig(mode="dual-password")
    record = rig.world.rotate("database")
    assert record.state == "rolled-back" and record.body.error is not None
    assert record.body.error.step == "plan"
    assert "MariaDB" in record.body.error.message
    assert "does not support dual passwords" in record.body.error.message
    assert "nothing was changed" in record.body.error.message
    assert logs_in(mariadb_server, rig.users[0], rig.first)


def test_the_login_must_match_the_named_account(
    mariadb_server: MariaDBServer, mysql_db: MySQLDatabase,
) -> None:
    """'app'@'%' and 'app'@'127.0.0.1' are two accounts: the more specific host wins the match,
    and keyroll refuses to treat that login as the account it was told about."""
    user = f"{mysql_db.prefix}_h"
    wide, narrow = planted(), planted()
    admin_sql(mariadb_server,
              ("CREATE USER %s@'%%' IDENTIFIED BY PASSWORD %s",
               (user, native_password_hash(wide).reveal())),
              ("CREATE USER %s@'127.0.0.1' IDENTIFIED BY PASSWORD %s",
               (user, native_password_hash(narrow).reveal())))
    mysql = target(mariadb_server)
    assert not mysql.logs_in(Account(user, "%"), wide)  # the server matched @127.0.0.1
    mysql.check_login(Account(user, "127.0.0.1"), narrow)
    with pytest.raises(TargetError, match="matched account") as info:
        mysql.check_login(Account(user, "%"), narrow)
    assert_no_leak([str(info.value)], [wide.reveal(), narrow.reveal()])


def test_rollback_after_promote_turns_back_and_locks_the_new_account(
    make_rig: Callable[..., Rig], mariadb_server: MariaDBServer,
) -> None:
    rig = make_rig()
    a, b = rig.users
    engine = rig.world.engine()
    record = engine.run(engine.start("database", "dev").id)
    assert record.state == "overlap"
    _, new = rig.world.current("database")
    record = engine.rollback(record.id, reason="app errors")
    assert record.reverted
    role, current = rig.world.current("database")
    assert role == a and current.reveal() == rig.first.reveal()
    assert logs_in(mariadb_server, b, new)  # still accepted through the overlap back
    for _ in range(5):
        rig.world.clock.tick(timedelta(hours=3))
        record = engine.run(record.id)
        if record.terminal:
            break
    assert record.state == "rolled-back", record.body.error
    assert logs_in(mariadb_server, a, rig.first)
    assert not logs_in(mariadb_server, b, new) and locked(mariadb_server, b)


def test_incident_kills_the_old_users_sessions(
    make_rig: Callable[..., Rig], mariadb_server: MariaDBServer, mysql_db: MySQLDatabase,
) -> None:
    rig = make_rig()
    a, _ = rig.users
    held = mariadb_server.connect(a, rig.first.reveal(), mysql_db.name)
    try:
        record = rig.world.rotate("database", incident=True)
        assert record.state == "done", record.body.error
        revoked = {s.step: s.evidence for s in record.body.steps}["retire"]["revoked"]
        assert revoked["sessions_killed"] >= 1
        with pytest.raises(pymysql.err.OperationalError), held.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        held.close()
    assert not logs_in(mariadb_server, a, rig.first)


@pytest.mark.parametrize("retire", ["drop", "break-glass"])
def test_retire_modes(retire: str, make_rig: Callable[..., Rig],
                      mariadb_server: MariaDBServer) -> None:
    rig = make_rig(retire=retire)
    a, b = rig.users
    expected = grants_of(mariadb_server, a)
    assert rig.world.rotate("database").state == "done"
    assert target(mariadb_server).exists(Account(a)) is (retire != "drop")
    if retire == "break-glass":
        assert not locked(mariadb_server, a) and not logs_in(mariadb_server, a, rig.first)
    # and back: the dropped account is created again, locked, then mirrored
    record = rig.world.rotate("database")
    assert record.state == "done", record.body.error
    role, third = rig.world.current("database")
    assert role == a and logs_in(mariadb_server, a, third)
    assert grants_of(mariadb_server, a) == expected
    assert target(mariadb_server).exists(Account(b)) is (retire != "drop")


@pytest.mark.slow
@pytest.mark.parametrize("outcome", ["done", "rolled-back"])
def test_sigkill_at_every_step_boundary_resumes_and_mariadb_accepts_current(
    outcome: str, tmp_path_factory: pytest.TempPathFactory, mariadb_server: MariaDBServer,
    mysql_db: MySQLDatabase, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ADMIN_ENV, mariadb_server.admin_url())
    counter = itertools.count()

    def make_world() -> tuple[Path, Inventory]:
        folder = tmp_path_factory.mktemp("mysql-crash")
        opts = options(mysql_db, user=f"{mysql_db.prefix}{next(counter)}")
        hooks = {"verify": [{"run": "false"}]} if outcome == "rolled-back" else None
        text = inventory_text(class_toml("database", "mysql-user", "DATABASE_URL", opts,
                                         OVERLAP, hooks))
        (folder / "keyroll.toml").write_text(text)
        return folder, parse_inventory(text, folder / "keyroll.toml")

    def first_user(inventory: Inventory) -> str:
        return f"{inventory.classes['database'].options['user']}_a"

    original_seed = crash.seed_version

    def seed(store: SQLiteStore, inventory: Inventory, name: str, env: str) -> SecretRef:
        ref = original_seed(store, inventory, name, env)
        create_app_user(mariadb_server, mysql_db, first_user(inventory), store.read(ref)[1])
        return ref

    def check_target(store: SQLiteStore, ref: SecretRef) -> None:
        version, value = store.read(ref)
        inventory = parse_inventory((store.path.parent / "keyroll.toml").read_text())
        user = str(version.meta.get("role") or first_user(inventory))
        assert logs_in(mariadb_server, user, value), "MariaDB refuses the current value"
        users = (first_user(inventory), first_user(inventory)[:-1] + "b")
        other = users[1] if user == users[0] else users[0]
        if target(mariadb_server).exists(Account(other)):
            assert locked(mariadb_server, other), "the account that is not current is open"

    points = crash.run_crash_matrix(make_world, "database", "dev", check_target=check_target,
                                    seed=seed)
    with capsys.disabled():
        print("\n" + crash.format_table(f"mysql-user (alternating-users, MariaDB), ends "
                                        f"{outcome}", points))
    assert len(points) >= 20
    assert all(p.final == outcome for p in points), [p for p in points if p.final != outcome]


def test_through_the_cli_with_planted_passwords(
    tmp_path: Path, mariadb_server: MariaDBServer, mysql_db: MySQLDatabase,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """``import`` a mysql:// DSN, ``rotate``, ``get``, ``export``: every output grepped."""
    a, b = f"{mysql_db.prefix}_a", f"{mysql_db.prefix}_b"
    first = planted()
    create_app_user(mariadb_server, mysql_db, a, first)
    app_dsn = f"mysql://{{role}}:{{password}}@127.0.0.1:{mariadb_server.port}/{mysql_db.name}"
    (tmp_path / "keyroll.toml").write_text(inventory_text(class_toml(
        "database", "mysql-user", "DATABASE_URL", options(mysql_db, app_dsn=app_dsn),
        {"min": "0", "settle": "0"})))
    monkeypatch.chdir(tmp_path)
    for var in ("KEYROLL_CONFIG", "KEYROLL_STORE", "KEYROLL_NOW"):
        monkeypatch.delenv(var, raising=False)
    key = secrets.token_bytes(32)
    monkeypatch.setenv("KEYROLL_MASTER_KEY", base64.b64encode(key).decode())
    monkeypatch.setenv("KEYROLL_ACTOR", "alice")
    transcript: list[str] = []

    def keyroll(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = run(list(args))
        captured = capsys.readouterr()
        transcript.extend([captured.out, captured.err])
        return code, captured.out, captured.err

    def rotations() -> int:
        with SQLiteStore(tmp_path / ".keyroll" / "store.db", key) as store:
            return len(store.list_rotations())

    assert keyroll("init")[0] == 0
    assert keyroll("inventory", "check")[0] == 0
    dsn = (f"mysql://{a}:{quote(first.reveal(), safe='')}@127.0.0.1:{mariadb_server.port}/"
           f"{mysql_db.name}\n")
    code, out, err = keyroll("import", "database", "--env", "dev", stdin=dsn)
    assert code == 0, err
    # without the admin URL: refused, one line, nothing changed
    code, out, err = keyroll("rotate", "database", "--env", "dev")
    assert code != 0 and ADMIN_ENV in err + out and "Traceback" not in err + out
    assert not target(mariadb_server).exists(Account(b))
    monkeypatch.setenv(ADMIN_ENV, mariadb_server.admin_url())
    code, out, err = keyroll("rotate", "database", "--env", "dev")
    assert code == 0, err + out
    assert "does not support dual passwords" in out + err  # the plan says why
    assert keyroll("get", "database", "--env", "dev", "--json")[0] == 0
    export = tmp_path / "app.env"
    assert keyroll("export", "--env", "dev", "-o", str(export))[0] == 0
    new_dsn = export.read_text().split("DATABASE_URL=", 1)[1].split("\n", 1)[0].strip('"')
    assert f"//{b}:" in new_dsn
    new_password = SecretValue(unquote(new_dsn.split(":", 2)[2].split("@", 1)[0]))
    assert logs_in(mariadb_server, b, new_password)
    assert not logs_in(mariadb_server, a, first) and locked(mariadb_server, a)
    # hostile options: one line naming the field, exit 2, no traceback, nothing changed
    before = grants_of(mariadb_server, b), rotations()
    (tmp_path / "keyroll.toml").write_text(inventory_text(class_toml(
        "database", "mysql-user", "DATABASE_URL",
        options(mysql_db, host="%' OR '1'='1", app_dsn=app_dsn), {"min": "0"})))
    for command in (("inventory", "check"), ("rotate", "database", "--env", "dev")):
        code, out, err = keyroll(*command)
        assert code == 2, (command, out, err)
        assert "options.host" in err and "Traceback" not in out + err
        assert len(err.strip().splitlines()) == 1, err
    assert (grants_of(mariadb_server, b), rotations()) == before
    assert_no_leak([*transcript, mariadb_server.log_text()],
                   [first.reveal(), new_password.reveal(), mariadb_server.admin_password],
                   where="CLI output and the server's general log")

