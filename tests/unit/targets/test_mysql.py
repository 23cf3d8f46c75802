"""``keyroll.targets.mysql`` without a server: detection, statements, grant lines, the URL, the
``mysql-user`` options, and the dual-password mode against the MySQL 8 model.

The alternating mode runs against a real MariaDB in ``tests/integration/test_mysql_user_strategy.py``.
The dual-password mode cannot (no MySQL 8 here): `tests.unit.targets.mysql8_model` models the
documented semantics and records the SQL, which these tests check statement by statement.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pymysql.converters import escape_item

from keyroll.errors import RotationRefused, TargetError, UsageError
from keyroll.inventory import parse_inventory
from keyroll.model import Kind, SecretRef, SecretValue
from keyroll.rotation.strategies import StepContext, strategy_for
from keyroll.rotation.strategies.mysql_user import (
    ALTERNATING_USERS,
    DUAL_PASSWORD,
    MySQLUserStrategy,
    resolve_mode,
    user_options,
)
from keyroll.targets.mysql import Account, ServerInfo, parse_url
from keyroll.targets.mysql import grants as g
from keyroll.targets.mysql import statements as st
from tests.leaks import assert_no_leak
from tests.unit.targets.mysql8_model import MySQL8Model, Passwords
from tests.world import World

MARIADB = ServerInfo.parse("10.11.19-MariaDB-0+deb12u1", "Debian 12")
MYSQL8 = ServerInfo.parse("8.0.36", "MySQL Community Server - GPL")
PLANTED = "p$w\"q\\r'Zx9-planted"


# detection -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "comment", "variant", "dual"), [
    ("10.11.19-MariaDB-0+deb12u1", "Debian 12", "MariaDB", False),
    ("5.5.5-10.6.12-MariaDB", "", "MariaDB", False),
    ("11.4.2-MariaDB", "mariadb.org binary distribution", "MariaDB", False),
    ("10.4.0", "MariaDB Server", "MariaDB", False),  # a build whose version has no "MariaDB"
    ("8.0.13", "MySQL Community Server - GPL", "MySQL", False),
    ("8.0.14", "MySQL Community Server - GPL", "MySQL", True),
    ("8.4.0", "MySQL Community Server - GPL", "MySQL", True),
    ("8.0.36-28", "Percona Server (GPL), Release 28", "MySQL", True),
    ("5.7.44-log", "MySQL Community Server (GPL)", "MySQL", False),
])
def test_dual_password_detection(version: str, comment: str, variant: str, dual: bool) -> None:
    info = ServerInfo.parse(version, comment)
    assert info.variant == variant and info.dual_password is dual
    note = info.dual_password_note()
    if dual:
        assert "supports dual passwords" in note
    elif variant == "MariaDB":
        assert "MariaDB" in note and "does not support dual passwords" in note
    else:
        assert "older than 8.0.14" in note


def test_an_unparseable_version_is_refused() -> None:
    with pytest.raises(ValueError, match="unrecognised server version"):
        ServerInfo.parse("banana")


def test_auto_picks_dual_passwords_only_where_the_server_has_them() -> None:
    assert resolve_mode("auto", MYSQL8) == DUAL_PASSWORD
    assert resolve_mode("auto", MARIADB) == ALTERNATING_USERS
    assert resolve_mode(ALTERNATING_USERS, MYSQL8) == ALTERNATING_USERS
    with pytest.raises(RotationRefused, match=r"MariaDB .* does not support dual passwords"):
        resolve_mode(DUAL_PASSWORD, MARIADB)


# statements ------------------------------------------------------------------------------------


def test_dual_password_statements() -> None:
    account = Account("app", "%")
    password = SecretValue(PLANTED)
    retain = st.retain_current(account, password)
    assert retain.sql == "ALTER USER %s@%s IDENTIFIED BY %s RETAIN CURRENT PASSWORD"
    assert retain.args == ("app", "%", PLANTED) and retain.secret is password
    assert st.discard_old(account).sql == "ALTER USER %s@%s DISCARD OLD PASSWORD"
    assert st.discard_old(account).args == ("app", "%")
    assert st.replace_primary(account, password).sql == "ALTER USER %s@%s IDENTIFIED BY %s"
    assert PLANTED not in repr(retain)


def test_mariadb_gets_the_native_hash_never_the_password() -> None:
    password = SecretValue("password")
    statement = st.set_password(MARIADB, Account("app_b", "%"), password, lock=False)
    assert statement.sql == "ALTER USER %s@%s IDENTIFIED BY PASSWORD %s ACCOUNT UNLOCK"
    # the well-known mysql_native_password hash of "password"
    assert statement.args == ("app_b", "%", "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19")
    assert "password" not in statement.args[2:]
    locked = st.create_locked(MARIADB, Account("app_b"), password)
    assert locked.sql == "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY PASSWORD %s ACCOUNT LOCK"


def test_mysql_gets_the_password_which_it_rewrites_out_of_its_logs() -> None:
    statement = st.set_password(MYSQL8, Account("app_b", "10.0.%"), SecretValue(PLANTED),
                                lock=True)
    assert statement.sql == "ALTER USER %s@%s IDENTIFIED BY %s ACCOUNT LOCK"
    assert statement.args == ("app_b", "10.0.%", PLANTED)
    assert st.default_role_none(MYSQL8, Account("a")).sql == "SET DEFAULT ROLE NONE TO %s@%s"
    assert st.default_role_none(MARIADB, Account("a")).sql == "SET DEFAULT ROLE NONE FOR %s@%s"


def test_a_planted_password_is_quoted_by_the_driver() -> None:
    """The password is a bind parameter: PyMySQL's escaping makes it one string literal."""
    literal = escape_item(PLANTED, "utf8mb4")
    assert literal == "'p$w\\\"q\\\\r\\'Zx9-planted'"
    rendered = st.retain_current(Account("app"), SecretValue(PLANTED)).sql % tuple(
        escape_item(a, "utf8mb4") for a in ("app", "%", PLANTED))
    assert rendered == ("ALTER USER 'app'@'%' IDENTIFIED BY 'p$w\\\"q\\\\r\\'Zx9-planted' "
                        "RETAIN CURRENT PASSWORD")


def test_account_options_statement() -> None:
    options = st.AccountOptions.from_row({"ssl_type": b"SPECIFIED", "x509_issuer": b"/CN=ca",
                                          "ssl_cipher": b"", "x509_subject": "",
                                          "max_questions": 5, "max_user_connections": 2})
    statement = st.set_account_options(Account("a"), options)
    assert statement.sql.startswith("ALTER USER %s@%s REQUIRE ISSUER %s WITH MAX_QUERIES_PER_HOUR")
    assert statement.args == ("a", "%", "/CN=ca", 5, 0, 0, 2)
    none = st.set_account_options(Account("a"), st.AccountOptions.from_row({}))
    assert "REQUIRE NONE" in none.sql


# grant lines -----------------------------------------------------------------------------------


A = Account("app_a", "%")
B = Account("app_b", "%")
HASHED = ("GRANT PROCESS ON *.* TO `app_a`@`%` IDENTIFIED BY PASSWORD "
          "'*74742FFB380FB9BCF31E2135C379AAC70759D69B' REQUIRE SSL WITH MAX_QUERIES_PER_HOUR 100")


def test_normalise_cuts_the_hash_and_names_no_grantee() -> None:
    assert g.normalise(HASHED, A) == ("GRANT PROCESS ON *.* TO <user> REQUIRE SSL WITH "
                                      "MAX_QUERIES_PER_HOUR 100")
    assert g.normalise("SET DEFAULT ROLE `r` FOR `app_a`@`%`", A) == "SET DEFAULT ROLE `r` FOR <user>"
    via = "GRANT USAGE ON *.* TO `app_a`@`%` IDENTIFIED VIA ed25519 USING 'abc''d' OR unix_socket"
    assert g.normalise(via, A) == "GRANT USAGE ON *.* TO <user>"


def test_retarget_and_revoke() -> None:
    line = "GRANT SELECT, UPDATE (`total`) ON `shop`.`orders` TO `app_a`@`%` WITH GRANT OPTION"
    assert g.retarget(line, A, B) == ("GRANT SELECT, UPDATE (`total`) ON `shop`.`orders` TO "
                                      "`app_b`@`%` WITH GRANT OPTION")
    assert "74742FF" not in g.retarget(HASHED, A, B)
    assert g.revoke_roles("GRANT `r1`, `r2` TO `app_a`@`%` WITH ADMIN OPTION", A) == \
        "REVOKE `r1`, `r2` FROM `app_a`@`%`"
    assert g.revoke_roles(line, A) is None
    # a grantee inside an object name is not the grantee
    tricky = "GRANT SELECT ON `x TO ``app_a```.* TO `app_a`@`%`"
    assert g.retarget(tricky, A, B).endswith(" TO `app_b`@`%`")
    assert Account("we`ird", "%").quoted == "`we``ird`@`%`"


def test_a_line_without_the_grantee_is_refused_without_its_hash() -> None:
    with pytest.raises(TargetError, match="does not name") as info:
        g.normalise(HASHED, B)
    assert "74742FF" not in str(info.value)


def test_diff() -> None:
    result = g.diff(["GRANT A TO <user>", "GRANT B TO <user>"], ["GRANT B TO <user>", "GRANT C TO <user>"])
    assert result.missing == ("GRANT A TO <user>",) and result.extra == ("GRANT C TO <user>",)
    assert result.describe() == "missing: GRANT A TO <user> | extra: GRANT C TO <user>"
    assert not g.diff(["x"], ["x"])


# the admin URL -------------------------------------------------------------------------------


def test_parse_url() -> None:
    url = parse_url("mysql://root:p%24w%22q%5Cr%27@db.internal:3307/shop?ssl_ca=/ca.pem")
    assert (url.host, url.port, url.user, url.database, url.ssl_ca) == (
        "db.internal", 3307, "root", "shop", "/ca.pem")
    assert url.password is not None and url.password.reveal() == "p$w\"q\\r'"
    assert url.where == "db.internal:3307"
    sock = parse_url("mariadb://root:x@/?unix_socket=/run/mysqld/mysqld.sock")
    assert sock.unix_socket == "/run/mysqld/mysqld.sock" and sock.connect_kwargs()["unix_socket"]
    # TLS: verified with a CA, off where nothing crosses a network, else the driver's default
    assert url.connect_kwargs()["ssl"] == {"ca": "/ca.pem"}
    assert sock.connect_kwargs()["ssl_disabled"] is True
    assert parse_url("mysql://r:x@127.0.0.1").connect_kwargs()["ssl_disabled"] is True
    assert not {"ssl", "ssl_disabled"} & set(parse_url("mysql://r:x@db.internal").connect_kwargs())


@pytest.mark.parametrize("url", [
    "postgresql://root:SECRETPW@h/db", "mysql://h:3306", "mysql://root:SECRETPW@h:99999",
    "mysql://root:SECRETPW@[SECRETPW]/", "mysql://root:SECRETPW@h/?password=SECRETPW",
])
def test_a_bad_url_is_refused_without_its_text(url: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_url(url)
    assert "SECRETPW" not in str(info.value)


# options -------------------------------------------------------------------------------------


def _class(options: dict[str, Any]) -> Any:
    text = ('project = "t"\n[environments.dev]\n[classes.db]\nkind = "mysql-user"\n'
            'env_vars = ["DATABASE_URL"]\ncadence_days = 30\ntier = "high"\n'
            'blast_radius = "x"\nowner = "y"\nenvironments = ["dev"]\n'
            f"options = {json.dumps(options)}\n").replace('": ', '" = ')
    text = text.replace('options = {"', 'options = { "').replace("}\n", " }\n")
    return parse_inventory(text).classes["db"]


@pytest.mark.parametrize(("options", "field", "problem"), [
    ({"user": "app"}, "admin_url_env", "required"),
    ({"admin_url_env": "mysql://root:pw@h", "user": "app"}, "admin_url_env", "not an env var"),
    ({"admin_url_env": "X", "user": "app", "mode": "triple"}, "mode", "use one of"),
    ({"admin_url_env": "X", "user": "a'pp"}, "user", "quote"),
    ({"admin_url_env": "X", "user": "app", "host": "evil' OR 1"}, "host", "host part"),
    ({"admin_url_env": "X", "user": "app", "users": ["a", "a"]}, "users", "must differ"),
    ({"admin_url_env": "X", "user": "app", "mode": "dual-password", "users": ["a", "b"]},
     "users", "only for mode"),
    ({"admin_url_env": "X", "user": "app", "retire": "burn"}, "retire", "use one of"),
    ({"admin_url_env": "X", "user": "app", "colour": "red"}, "colour", "unknown option"),
    ({"admin_url_env": "X", "user": "x" * 79}, "users", "longer than 80"),
])
def test_bad_options_are_one_line_usage_errors(options: dict[str, Any], field: str,
                                               problem: str) -> None:
    cls = _class(options)
    with pytest.raises(UsageError, match=problem) as info:
        strategy_for(Kind.MYSQL_USER).validate(cls)
    message = str(info.value)
    assert f"options.{field}" in message and "\n" not in message
    assert "pw@h" not in message


def test_defaults() -> None:
    opts = user_options(_class({"admin_url_env": "X", "user": "app"}))
    assert opts.mode == "auto" and opts.users == ("app_a", "app_b") and opts.host == "%"
    assert opts.retire.value == "lock"
    assert isinstance(strategy_for(Kind.MYSQL_USER), MySQLUserStrategy)


# dual-password mode on the MySQL 8 model ---------------------------------------------------------


INVENTORY = """project = "t"
[environments.dev]
[classes.db]
kind = "mysql-user"
env_vars = ["DATABASE_URL"]
cadence_days = 30
tier = "high"
blast_radius = "x"
owner = "y"
environments = ["dev"]
overlap = { min = "1h", settle = "10m", max = "1d" }
options = { admin_url_env = "KR_UNIT_MYSQL_URL", user = "app", probe_table = "shop.orders" }
"""
FIRST = "first-" + PLANTED


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> MySQL8Model:
    server = MySQL8Model()
    server.accounts[("app", "%")] = Passwords(FIRST)
    monkeypatch.setattr("keyroll.targets.mysql.accounts.pymysql", server.module)
    monkeypatch.setenv("KR_UNIT_MYSQL_URL", f"mysql://root:{server.admin[1]}@127.0.0.1:3306")
    return server


@pytest.fixture
def dual_world(tmp_path: Path, model: MySQL8Model) -> World:
    world = World.create(tmp_path, INVENTORY)
    world.put_current(SecretRef("dev", "db"), SecretValue(FIRST), role="app")
    return world


def _accepted(model: MySQL8Model) -> set[str]:
    passwords = model.accounts[("app", "%")]
    return {p for p in (passwords.primary, passwords.secondary) if p}


def test_dual_password_rotation_issues_retain_then_discard(
    dual_world: World, model: MySQL8Model, capfd: pytest.CaptureFixture[str],
) -> None:
    engine = dual_world.engine()
    record = engine.run(engine.start("db", "dev").id)
    assert record.state == "overlap", record.body.error
    steps = {s.step: s.evidence for s in record.body.steps}
    assert steps["plan"]["server"]["mode"] == DUAL_PASSWORD
    assert "supports dual passwords" in steps["plan"]["server"]["note"]
    new = dual_world.store.read(SecretRef("dev", "db"))[1].reveal()
    assert model.sql() == ["ALTER USER %s@%s IDENTIFIED BY %s RETAIN CURRENT PASSWORD"]
    assert _accepted(model) == {FIRST, new}  # both log in through the overlap
    dual_world.clock.tick(timedelta(hours=2))
    record = engine.run(record.id)
    assert record.state == "done", record.body.error
    assert model.sql() == ["ALTER USER %s@%s IDENTIFIED BY %s RETAIN CURRENT PASSWORD",
                           "ALTER USER %s@%s DISCARD OLD PASSWORD"]
    assert _accepted(model) == {new}
    assert dual_world.store.read(SecretRef("dev", "db"))[0].meta["role"] == "app"
    captured = capfd.readouterr()
    assert_no_leak([captured.out, captured.err, dual_world.journal_text(),
                    dual_world.records_text()], [FIRST, new, model.admin[1]])


def test_dual_password_apply_is_not_repeated_after_a_crash(dual_world: World,
                                                           model: MySQL8Model) -> None:
    """A second RETAIN would make the new password the secondary and drop the old one."""
    engine = dual_world.engine()
    record = engine.run(engine.start("db", "dev").id)
    ctx = _context(dual_world, record.id)
    MySQLUserStrategy().apply(ctx)  # the rerun a crash after apply would cause
    assert ctx.evidence["applied"]["already_applied"] is True
    assert model.sql().count("ALTER USER %s@%s IDENTIFIED BY %s RETAIN CURRENT PASSWORD") == 1
    assert FIRST in _accepted(model)


def test_dual_password_rollback_before_promote_restores_the_old_password_only(
    dual_world: World, model: MySQL8Model,
) -> None:
    engine = dual_world.engine()
    record = engine.run(engine.start("db", "dev").id)
    # the server is as apply left it (new primary, old secondary); the engine's context has
    # old = the current version, new = the pending one, as before promote
    ctx = _context(dual_world, record.id)
    new = ctx.value(ctx.new)
    MySQLUserStrategy().rollback(ctx)
    assert model.sql()[-2:] == ["ALTER USER %s@%s IDENTIFIED BY %s",
                                "ALTER USER %s@%s DISCARD OLD PASSWORD"]
    assert model.statements[-2][1] == ("app", "%", FIRST)
    assert _accepted(model) == {FIRST} and new.reveal() not in _accepted(model)
    sent = list(model.statements)
    MySQLUserStrategy().rollback(ctx)  # a rerun: the new password no longer logs in
    assert model.statements == sent and _accepted(model) == {FIRST}


def test_dual_password_rotation_back_after_promote_keeps_the_old_password(
    dual_world: World, model: MySQL8Model,
) -> None:
    engine = dual_world.engine()
    record = engine.run(engine.start("db", "dev").id)
    record = engine.rollback(record.id, reason="app errors")
    assert record.reverted
    for _ in range(5):
        dual_world.clock.tick(timedelta(hours=2))
        record = engine.run(record.id)
        if record.terminal:
            break
    assert record.state == "rolled-back", record.body.error
    assert model.sql()[-2:] == ["ALTER USER %s@%s IDENTIFIED BY %s",
                                "ALTER USER %s@%s DISCARD OLD PASSWORD"]
    assert _accepted(model) == {FIRST}
    assert dual_world.store.read(SecretRef("dev", "db"))[1].reveal() == FIRST


def _context(world: World, rotation_id: str) -> StepContext:
    engine = world.engine()
    record = engine.get(rotation_id)
    return engine._context(record, world.inventory.classes["db"])


def test_the_example_in_docs_providers_is_a_valid_class() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "providers.md").read_text()
    section = doc.split("## MariaDB and MySQL", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    inventory = parse_inventory('project = "t"\n[environments.staging]\n[environments.prod]\n'
                                + example)
    cls = inventory.classes["shop-db"]
    strategy_for(cls.kind).validate(cls)
    assert user_options(cls).users == ("shop_a", "shop_b")
