"""`keyroll.targets.postgres` against a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from keyroll.errors import TargetError
from keyroll.generate import generate
from keyroll.model import SecretValue
from keyroll.targets.postgres import (
    PostgresTarget,
    Privilege,
    RetireMode,
    RoleLayout,
    backup,
)
from keyroll.targets.scram import ScramVerifier, scram_sha256_verifier
from tests.integration.conftest import FreshDatabase
from tests.servers import PostgresServer

pytestmark = pytest.mark.integration


@pytest.fixture
def target(fresh_db: FreshDatabase) -> PostgresTarget:
    return PostgresTarget(fresh_db.dsn)


def _grant_orders(fresh_db: FreshDatabase, role: str) -> None:
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT SELECT ON public.orders TO {}").format(sql.Identifier(role)))


def _layout(target: PostgresTarget, fresh_db: FreshDatabase) -> RoleLayout:
    layout = target.ensure_layout(f"{fresh_db.prefix}_app")
    _grant_orders(fresh_db, layout.group)
    return layout


# SCRAM verifiers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["plain-ascii-password-0123456789", "pässwörd with ümlauts", "ｆｕｌｌｗｉｄｔｈ\u00a0space"],
)
def test_client_side_verifier_matches_what_the_server_computes(
    postgres_server: PostgresServer, fresh_db: FreshDatabase, text: str
) -> None:
    role = f"{fresh_db.prefix}_scram"
    with psycopg.connect(postgres_server.superuser_dsn, autocommit=True) as conn:
        # The server computes this one itself (test only: plaintext in the statement).
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(text)))
        stored = conn.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)).fetchone()
    assert stored is not None
    server_verifier = ScramVerifier.parse(stored[0])
    assert server_verifier.matches(SecretValue(text))
    assert not server_verifier.matches(SecretValue(text + "x"))
    ours = scram_sha256_verifier(
        SecretValue(text), salt=server_verifier.salt, iterations=server_verifier.iterations)
    assert ours.reveal() == stored[0]


def test_verifier_repr_hides_keys() -> None:
    verifier = scram_sha256_verifier(SecretValue("x" * 32))
    assert verifier.reveal().startswith("SCRAM-SHA-256$4096:")
    assert "SCRAM" not in repr(verifier)
    assert verifier.reveal().split("$")[2] not in repr(verifier)


# layout, password, login, probe ---------------------------------------------------------------


def test_layout_is_created_once_and_idempotent(
    target: PostgresTarget, fresh_db: FreshDatabase
) -> None:
    group = f"{fresh_db.prefix}_app"
    layout = target.ensure_layout(group)
    assert layout == RoleLayout(group, (f"{group}_a", f"{group}_b"))
    assert target.ensure_layout(group) == layout
    with psycopg.connect(fresh_db.dsn) as conn:
        rows = conn.execute(
            "SELECT rolname, rolcanlogin, rolinherit FROM pg_roles WHERE rolname = ANY(%s) "
            "ORDER BY rolname", ([group, *layout.logins],)).fetchall()
        members = conn.execute(
            "SELECT u.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = %s ORDER BY 1",
            (group,)).fetchall()
    assert rows == [(group, False, True), (f"{group}_a", False, True),
                    (f"{group}_b", False, True)]
    assert [m for (m,) in members] == list(layout.logins)
    assert layout.other(layout.logins[0]) == layout.logins[1]
    with pytest.raises(ValueError, match="not one of"):
        layout.other(group)


def test_set_password_then_login_and_probe_through_the_group(
    target: PostgresTarget, fresh_db: FreshDatabase
) -> None:
    layout = _layout(target, fresh_db)
    password = generate("password-32")
    verifier = target.set_password(layout.logins[0], password)
    assert verifier.matches(password)
    target.check_login(fresh_db.base_dsn, layout.logins[0], password,
                       probe_table="public.orders")
    target.check_login(fresh_db.base_dsn, layout.logins[0], password, probe_table="orders")
    read_back = target.read_verifier(layout.logins[0])
    assert read_back is not None
    assert read_back.reveal() == verifier.reveal()
    assert target.read_verifier(layout.logins[1]) is None  # idle role has no password yet


def test_wrong_current_password_is_refused_without_echoing_it(
    target: PostgresTarget, fresh_db: FreshDatabase
) -> None:
    layout = _layout(target, fresh_db)
    right, wrong = generate("password-32"), generate("password-32")
    target.set_password(layout.logins[0], right)
    with pytest.raises(TargetError) as info:
        target.check_login(fresh_db.base_dsn, layout.logins[0], wrong)
    message = str(info.value)
    assert "password authentication failed" in message
    assert layout.logins[0] in message
    assert "do not rotate" in message
    assert wrong.reveal() not in message and right.reveal() not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_probe_failure_names_the_table(target: PostgresTarget, fresh_db: FreshDatabase) -> None:
    layout = target.ensure_layout(f"{fresh_db.prefix}_app")  # no grant on orders
    password = generate("password-32")
    target.set_password(layout.logins[1], password)
    with pytest.raises(TargetError, match=r"privilege probe on 'public.orders'.*permission denied"):
        target.check_login(fresh_db.base_dsn, layout.logins[1], password,
                           probe_table=("public", "orders"))
    with pytest.raises(TargetError, match="does not exist"):
        target.check_login(fresh_db.base_dsn, layout.logins[1], password,
                           probe_table="public.missing")


def test_set_password_on_missing_role_says_what_to_do(target: PostgresTarget) -> None:
    with pytest.raises(TargetError, match=r"does not exist.*ensure_layout"):
        target.set_password("kr_nobody_here", generate("password-32"))


def test_overlong_role_name_is_refused_before_truncation(target: PostgresTarget) -> None:
    with pytest.raises(TargetError, match="longer than 63 bytes"):
        target.ensure_layout("x" * 70)


def test_unreachable_server_is_a_target_error(fresh_db: FreshDatabase) -> None:
    from tests.servers import free_port

    password = generate("password-32")
    dead = PostgresTarget(f"host=127.0.0.1 port={free_port()} dbname=x user=u",
                          password=password, connect_timeout=2)
    with pytest.raises(TargetError, match="could not connect") as info:
        dead.session_count("anyone")
    assert password.reveal() not in str(info.value)


# injection ------------------------------------------------------------------------------------


@pytest.mark.parametrize("evil", [
    "x'; DROP TABLE public.orders; --",
    'y"; DROP TABLE public.orders; --',
    "z\"'); CREATE ROLE pwned SUPERUSER; --",
])
def test_role_names_with_quotes_and_semicolons_are_quoted(
    target: PostgresTarget, fresh_db: FreshDatabase, evil: str
) -> None:
    group = f"{fresh_db.prefix}{evil}"[:63]
    logins = (f"{fresh_db.prefix}_a{evil}"[:63], f"{fresh_db.prefix}_b{evil}"[:63])
    layout = target.ensure_layout(group, logins)
    _grant_orders(fresh_db, layout.group)
    password = generate("password-32")
    target.set_password(logins[0], password)
    target.check_login(fresh_db.base_dsn, logins[0], password, probe_table="public.orders")
    assert target.session_count(logins[0]) == 0
    assert target.terminate_sessions(logins[0]) == 0
    result = target.retire(logins[0], RetireMode.NOLOGIN)
    assert result.break_glass_fingerprint
    with psycopg.connect(fresh_db.dsn) as conn:
        names = {r for (r,) in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
        orders = conn.execute("SELECT count(*) FROM public.orders").fetchone()
    assert {group, *logins} <= names  # created with the literal names
    assert "pwned" not in names
    assert orders == (1,)  # the table is still there


# sessions -------------------------------------------------------------------------------------


def test_session_count_and_terminate(target: PostgresTarget, fresh_db: FreshDatabase) -> None:
    layout = _layout(target, fresh_db)
    role = layout.logins[0]
    password = generate("password-32")
    target.set_password(role, password)
    conns = [psycopg.connect(fresh_db.base_dsn, user=role, password=password.reveal())
             for _ in range(3)]
    try:
        assert target.session_count(role) == 3
        assert target.session_count(layout.logins[1]) == 0
        assert target.terminate_sessions(role) == 3
        assert target.session_count(role) == 0
        with pytest.raises(psycopg.OperationalError):
            conns[0].execute("SELECT 1")
    finally:
        for conn in conns:
            conn.close()


# retire ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [RetireMode.BREAK_GLASS, RetireMode.NOLOGIN])
def test_retire_makes_the_old_password_useless(
    target: PostgresTarget, fresh_db: FreshDatabase, mode: RetireMode
) -> None:
    layout = _layout(target, fresh_db)
    old = generate("password-32")
    target.set_password(layout.logins[0], old)
    result = target.retire(layout.logins[0], mode)
    assert result.mode is mode
    assert result.break_glass_fingerprint is not None
    assert len(result.break_glass_fingerprint) == 16
    with pytest.raises(TargetError, match="password authentication failed"):
        target.check_login(fresh_db.base_dsn, layout.logins[0], old)
    with psycopg.connect(fresh_db.dsn) as conn:
        row = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s",
                           (layout.logins[0],)).fetchone()
    assert row == (mode is RetireMode.BREAK_GLASS,)
    # Revived by the next rotation's apply step:
    new = generate("password-32")
    target.set_password(layout.logins[0], new)
    target.check_login(fresh_db.base_dsn, layout.logins[0], new, probe_table="public.orders")


def test_retire_drop_reassigns_owned_objects_to_the_group(
    target: PostgresTarget, fresh_db: FreshDatabase
) -> None:
    layout = _layout(target, fresh_db)
    role = layout.logins[0]
    password = generate("password-32")
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(
            sql.Identifier(layout.group)))
    target.set_password(role, password)
    with psycopg.connect(fresh_db.base_dsn, user=role, password=password.reveal(),
                         autocommit=True) as conn:
        conn.execute("CREATE TABLE public.made_by_role (id int)")
    with pytest.raises(TargetError, match="reassign_to"):
        target.retire(role, RetireMode.DROP)
    result = target.retire(role, "drop", reassign_to=layout.group)
    assert result.break_glass_fingerprint is None
    with psycopg.connect(fresh_db.dsn) as conn:
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'made_by_role'").fetchone()
        gone = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    assert owner == (layout.group,)
    assert gone is None
    assert target.retire(role, "drop", reassign_to=layout.group).role == role  # idempotent
    assert target.ensure_layout(layout.group, layout.logins) == layout  # recreated next time


# adopt ----------------------------------------------------------------------------------------


def _legacy_app(fresh_db: FreshDatabase) -> tuple[str, SecretValue]:
    """A single login role as found in the wild: owns a table, direct grants of all sorts."""
    role = f"{fresh_db.prefix}_goodgo_app"
    password = generate("password-32")
    verifier = scram_sha256_verifier(password).reveal()
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        ident = sql.Identifier(role)
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            ident, sql.Literal(verifier)))
        conn.execute("CREATE SCHEMA billing")
        conn.execute("CREATE TABLE billing.invoices (id serial PRIMARY KEY, amount int, "
                     "secret_note text)")
        conn.execute("CREATE TABLE public.audit (id int)")
        for stmt in (
            "GRANT SELECT, INSERT, UPDATE, DELETE ON public.orders TO {}",
            "GRANT USAGE ON SCHEMA billing TO {}",
            "GRANT SELECT (id, amount), UPDATE (amount) ON billing.invoices TO {}",
            "GRANT USAGE, SELECT ON SEQUENCE billing.invoices_id_seq TO {}",
            "GRANT INSERT ON public.audit TO {} WITH GRANT OPTION",
            "GRANT pg_read_all_stats TO {}",
        ):
            conn.execute(sql.SQL(stmt).format(ident))
        conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
            sql.Identifier(fresh_db.name), ident))
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(ident))
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(fresh_db.name), ident))
        conn.execute(sql.SQL("CREATE SCHEMA app_owned AUTHORIZATION {}").format(ident))
    with psycopg.connect(fresh_db.base_dsn, user=role, password=password.reveal(),
                         autocommit=True) as conn:
        conn.execute("CREATE TABLE public.owned_by_app (id int)")
    return role, password


def test_adopt_moves_grants_to_the_group_and_keeps_every_privilege(
    target: PostgresTarget, fresh_db: FreshDatabase
) -> None:
    role, password = _legacy_app(fresh_db)
    before = target.privileges(role)
    assert Privilege("table", "public.owned_by_app", "DELETE") in before
    assert Privilege("column", "billing.invoices.amount", "UPDATE") in before
    assert Privilege("member-of", "pg_read_all_stats", "USAGE") in before
    assert Privilege("schema", "app_owned", "CREATE") in before
    live = psycopg.connect(fresh_db.base_dsn, user=role, password=password.reveal(),
                           autocommit=True)  # a current user, connected through the change
    try:
        result = target.adopt(role)
        assert live.execute("SELECT count(*) FROM public.orders").fetchone() == (1,)
    finally:
        live.close()
    group, alternate = f"{role}_group", f"{role}_b"
    assert result.layout == RoleLayout(group, (role, alternate))
    assert result.moved_grants >= 10
    assert result.privileges_verified == len(before)
    assert not result.already_adopted
    exclude = [role, group, alternate]
    assert target.privileges(role, exclude=exclude) == before
    # The current users go on logging in with the current password:
    target.check_login(fresh_db.base_dsn, role, password, probe_table="public.orders")
    # The alternate, once it has a password, can do all the role could:
    new = generate("password-32")
    target.set_password(alternate, new)
    target.check_login(fresh_db.base_dsn, alternate, new, probe_table="public.orders")
    assert target.privileges(alternate, exclude=exclude) == before
    with psycopg.connect(fresh_db.base_dsn, user=alternate, password=new.reveal(),
                         autocommit=True) as conn:
        conn.execute("INSERT INTO public.owned_by_app VALUES (1)")  # was owner-only
        conn.execute("SELECT id, amount FROM billing.invoices").fetchall()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT secret_note FROM billing.invoices")
    with psycopg.connect(fresh_db.dsn) as conn:
        direct = conn.execute(
            "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a "
            "WHERE a.grantee = %s::regrole", (role,)).fetchone()
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'owned_by_app'").fetchone()
    assert direct == (0,)  # the group holds the grants now
    assert owner == (group,)
    again = target.adopt(role)
    assert again.already_adopted
    assert again.moved_grants == 0


def test_adopt_moves_function_grants_and_refuses_an_onward_grant_changing_nothing(
    target: PostgresTarget, fresh_db: FreshDatabase
) -> None:
    role, _ = _legacy_app(fresh_db)
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION public.only_for_app() RETURNS int LANGUAGE sql "
                     "AS 'SELECT 1'")
        conn.execute("REVOKE EXECUTE ON FUNCTION public.only_for_app() FROM PUBLIC")
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION public.only_for_app() TO {}").format(
            sql.Identifier(role)))
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(f"{role}_partner")))
        # the role passes its grant option on: that grant cannot move without the role
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT INSERT ON public.audit TO {}").format(
            sql.Identifier(f"{role}_partner")))
        conn.execute("RESET ROLE")
    before = target.privileges(role)
    with pytest.raises(TargetError, match=r"INSERT on table public.audit that .* granted to "
                       r".*_partner' with its grant option") as info:
        target.adopt(role)
    assert "nothing was changed" in str(info.value)
    assert target.privileges(role) == before
    with psycopg.connect(fresh_db.dsn) as conn:
        created = conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                               ([f"{role}_group", f"{role}_b"],)).fetchall()
    assert created == []
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:  # as its grantor
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("REVOKE INSERT ON public.audit FROM {}").format(
            sql.Identifier(f"{role}_partner")))
    result = target.adopt(role)
    assert any("EXECUTE on routine public.only_for_app" in line for line in result.moved)
    assert Privilege("function", "only_for_app()", "EXECUTE") in target.privileges(
        f"{role}_b", exclude=[role, f"{role}_group", f"{role}_b"])


def test_adopt_refuses_missing_or_taken_names(
    target: PostgresTarget, fresh_db: FreshDatabase
) -> None:
    with pytest.raises(TargetError, match="missing or NOLOGIN"):
        target.adopt(f"{fresh_db.prefix}_ghost")
    role, _ = _legacy_app(fresh_db)
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(f"{role}_b")))
    with pytest.raises(TargetError, match="already exists"):
        target.adopt(role)


def test_adopt_copies_per_role_settings_to_the_alternate(
    target: PostgresTarget, fresh_db: FreshDatabase
) -> None:
    role, _ = _legacy_app(fresh_db)
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL('ALTER ROLE {} SET search_path = billing, "My Schema", public'
                             ).format(sql.Identifier(role)))
        conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET work_mem = '8MB'").format(
            sql.Identifier(role), sql.Identifier(fresh_db.name)))
    result = target.adopt(role)
    assert result.settings_copied == 2
    with psycopg.connect(fresh_db.dsn) as conn:
        rows = conn.execute(
            "SELECT coalesce(d.datname, ''), s.setconfig FROM pg_db_role_setting s "
            "LEFT JOIN pg_database d ON d.oid = s.setdatabase WHERE s.setrole = %s::regrole "
            "ORDER BY 1", (f"{role}_b",)).fetchall()
    assert rows == [("", ['search_path=billing, "My Schema", public', f"role={role}_group"]),
                    (fresh_db.name, ["work_mem=8MB"])]


# backup ---------------------------------------------------------------------------------------


def test_backup_is_verified_and_hashed(
    postgres_server: PostgresServer, fresh_db: FreshDatabase, tmp_path: Path
) -> None:
    path = tmp_path / "dumps" / "before-rotation.dump"
    result = backup(postgres_server.base_dsn(fresh_db.name) + " user=postgres", path,
                    password=SecretValue(postgres_server.password),
                    pg_dump=str(postgres_server.bin_dir / "pg_dump"))
    assert result.path == path
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.size == path.stat().st_size
    assert result.entries >= 2
    assert path.stat().st_mode & 0o777 == 0o600
    assert list(path.parent.iterdir()) == [path]  # no partial file left
    listing = subprocess.run([str(postgres_server.bin_dir / "pg_restore"), "--list", str(path)],
                             capture_output=True, text=True, check=True).stdout
    assert "TABLE public orders" in listing


def test_backup_failure_leaves_no_file_and_no_password(
    postgres_server: PostgresServer, fresh_db: FreshDatabase, tmp_path: Path
) -> None:
    wrong = generate("password-32")
    path = tmp_path / "x.dump"
    dsn = postgres_server.base_dsn(fresh_db.name) + f" user=postgres password={wrong.reveal()}"
    with pytest.raises(TargetError, match="exit code") as info:
        backup(dsn, path, pg_dump=str(postgres_server.bin_dir / "pg_dump"))
    assert wrong.reveal() not in str(info.value)
    assert list(tmp_path.iterdir()) == []


# no password in the server log ----------------------------------------------------------------


def test_planted_passwords_never_reach_the_server_log_or_messages(
    postgres_server: PostgresServer, target: PostgresTarget, fresh_db: FreshDatabase
) -> None:
    layout = _layout(target, fresh_db)
    planted = [generate("password-32") for _ in range(3)]
    messages: list[str] = []
    verifier = target.set_password(layout.logins[0], planted[0])
    target.check_login(fresh_db.base_dsn, layout.logins[0], planted[0],
                       probe_table="public.orders")
    for wrong in (planted[1], planted[2]):
        with pytest.raises(TargetError) as info:
            target.check_login(fresh_db.base_dsn, layout.logins[0], wrong)
        messages.append(str(info.value))
    with pytest.raises(TargetError) as info:
        target.check_login(fresh_db.base_dsn, layout.logins[0], planted[0],
                           probe_table="public.nope")
    messages.append(str(info.value))
    target.set_password(layout.logins[1], planted[1])
    target.retire(layout.logins[0])
    log = postgres_server.log_text()
    assert "connection authorized" in log  # the log is being written
    assert f"user={layout.logins[0]}" in log
    # As superuser keyroll also keeps the verifier out of the statement log:
    assert verifier.reveal() not in log
    assert verifier.reveal().split("$")[2] not in log
    for value in planted:
        assert value.reveal() not in log
        for message in messages:
            assert value.reveal() not in message


# a non-superuser admin ------------------------------------------------------------------------


def test_createrole_admin_can_run_a_rotation_but_not_read_verifiers(
    postgres_server: PostgresServer, fresh_db: FreshDatabase
) -> None:
    admin = f"{fresh_db.prefix}_rotator"
    admin_password = generate("password-32")
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
            sql.Identifier(admin),
            sql.Literal(scram_sha256_verifier(admin_password).reveal())))
        conn.execute(sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(admin)))
    target = PostgresTarget(fresh_db.base_dsn + f" user={admin}", password=admin_password)
    target.check_admin()
    layout = target.ensure_layout(f"{fresh_db.prefix}_app")
    _grant_orders(fresh_db, layout.group)
    password = generate("password-32")
    target.set_password(layout.logins[0], password)
    target.check_login(fresh_db.base_dsn, layout.logins[0], password, probe_table="orders")
    live = psycopg.connect(fresh_db.base_dsn, user=layout.logins[0], password=password.reveal())
    try:
        assert target.session_count(layout.logins[0]) == 1
        target.retire(layout.logins[0])
        assert target.terminate_sessions(layout.logins[0]) == 1
    finally:
        live.close()
    with pytest.raises(TargetError, match="only a superuser may read pg_authid") as info:
        target.read_verifier(layout.logins[0])
    assert admin_password.reveal() not in str(info.value)
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} NOCREATEROLE").format(sql.Identifier(admin)))
    with pytest.raises(TargetError, match="may not manage roles"):
        target.check_admin()


def test_malformed_dsn_is_refused_without_showing_it(fresh_db: FreshDatabase) -> None:
    password = generate("password-32")
    target = PostgresTarget(f"host=127.0.0.1 password={password.reveal()} oops")
    with pytest.raises(TargetError, match="neither libpq conninfo") as info:
        target.session_count("anyone")
    assert password.reveal() not in str(info.value)
    with pytest.raises(TargetError, match="neither libpq conninfo") as info:
        PostgresTarget(fresh_db.dsn).check_login(
            f"postgresql://u:{password.reveal()}@127.0.0.1:5432/db?bogus=1", "u", password)
    assert password.reveal() not in str(info.value)
