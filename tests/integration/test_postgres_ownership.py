"""Ownership that follows the alternation, on real PostgreSQL 15 (issue 15 items 1 and 2).

The bugs the issue reports, reproduced as a user meets them (each failed on main before the
owner role): default privileges left on the adopted role (``permission denied for table
orders`` once the migrator creates a table after a rotation), and a table the app's own
migration created (``permission denied for table app_new`` after the next rotation). Then
what ``adopt`` moves with a superuser and with a ``CREATEROLE`` admin, what it refuses (by
object, nothing changed), the plan step giving the group what a login role owns, and the test
step failing on any privilege difference with the diff in the evidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from keyroll.errors import TargetError
from keyroll.generate import generate
from keyroll.model import SecretValue
from keyroll.targets.postgres import PostgresTarget
from keyroll.targets.scram import scram_sha256_verifier
from tests.integration.conftest import FreshDatabase
from tests.integration.rotation_world import EngineWorld, class_toml, inventory_text
from tests.integration.test_postgres_role_strategy import ADMIN_ENV
from tests.leaks import assert_no_leak
from tests.servers import PostgresServer

pytestmark = pytest.mark.integration

OVERLAP = {"min": "1h", "settle": "10m", "max": "2d"}


def _create_login(dsn: str, role: str, *extra: str) -> SecretValue:
    password = generate("password-32")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
            sql.Identifier(role), sql.SQL(" ".join(extra)),
            sql.Literal(scram_sha256_verifier(password).reveal())))
    return password


def _as(db: FreshDatabase, role: str, password: SecretValue) -> psycopg.Connection[Any]:
    return psycopg.connect(db.base_dsn, user=role, password=password.reveal(), autocommit=True)


def _run(dsn: str, *statements: Any) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _fetch(dsn: str, query: Any, params: Any = None) -> list[Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def _world(tmp_path: Path, name: str, options: dict[str, Any]) -> EngineWorld:
    folder = tmp_path / name
    folder.mkdir()
    text = inventory_text(class_toml("database", "postgres-role", "DATABASE_URL",
                                     {"admin_dsn_env": ADMIN_ENV, **options}, OVERLAP))
    return EngineWorld.create(folder, text)


@pytest.fixture
def admin_env(fresh_db: FreshDatabase, monkeypatch: pytest.MonkeyPatch) -> FreshDatabase:
    monkeypatch.setenv(ADMIN_ENV, fresh_db.dsn)
    return fresh_db


# the reported bugs -----------------------------------------------------------------------------


def test_default_privileges_follow_adopt_so_the_migrators_next_table_is_reachable(
    admin_env: FreshDatabase, tmp_path: Path,
) -> None:
    """Issue 15: ``ALTER DEFAULT PRIVILEGES … TO goodgo_app`` stayed on the old role, so after
    a rotation the table the migrator created next gave ``permission denied for table
    orders``."""
    db = admin_env
    role, migrator = f"{db.prefix}_goodgo_app", f"{db.prefix}_migrator"
    group, alternate = f"{db.prefix}_goodgo_rw", f"{db.prefix}_goodgo_app_v2"
    password = _create_login(db.dsn, role)
    migrator_password = _create_login(db.dsn, migrator)
    _run(db.dsn, sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
        sql.Identifier(db.name), sql.Identifier(migrator)))
    with _as(db, migrator, migrator_password) as conn:
        conn.execute("CREATE SCHEMA shop")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA shop TO {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA shop GRANT SELECT, INSERT ON "
                             "TABLES TO {}").format(sql.Identifier(role)))
    PostgresTarget(db.dsn).adopt(role, group=group, alternate=alternate)
    world = _world(tmp_path, "w", {"group_role": group, "login_roles": [role, alternate]})
    try:
        world.seed("database", password, role=role)
        record = world.rotate("database")
        assert record.state == "done", record.body.error
        current_role, current = world.current("database")
        assert current_role == alternate
        with _as(db, migrator, migrator_password) as conn:  # the next migration
            conn.execute("CREATE TABLE shop.orders (id int PRIMARY KEY, total numeric)")
        with _as(db, alternate, current) as conn:  # main: permission denied for table orders
            conn.execute("INSERT INTO shop.orders VALUES (1, 2.5)")
            assert conn.execute("SELECT count(*) FROM shop.orders").fetchone() == (1,)
    finally:
        world.close()


def test_a_table_the_apps_migration_creates_stays_reachable_after_each_rotation(
    admin_env: FreshDatabase, tmp_path: Path,
) -> None:
    """Issue 15: a table the app's migration creates (as the login role) belonged to that
    alternate, so after the next rotation: ``permission denied for table app_new``."""
    db = admin_env
    group = f"{db.prefix}_app"
    pg = PostgresTarget(db.dsn)
    layout = pg.ensure_layout(group)
    a, b = layout.logins
    _run(db.dsn, sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(
        sql.Identifier(group)))
    first = generate("password-32")
    pg.set_password(a, first)
    world = _world(tmp_path, "w", {"group_role": group})
    try:
        world.seed("database", first, role=a)
        with _as(db, a, first) as conn:  # the app runs its migration as its login role
            conn.execute("CREATE TABLE public.app_new (id serial PRIMARY KEY, note text)")
            conn.execute("CREATE INDEX app_new_note ON public.app_new (note)")
            conn.execute("INSERT INTO public.app_new (note) VALUES ('first')")
        assert world.rotate("database").state == "done"
        role, second = world.current("database")
        assert role == b
        with _as(db, b, second) as conn:  # main: permission denied for table app_new
            conn.execute("INSERT INTO public.app_new (note) VALUES ('second')")
            conn.execute("ALTER TABLE public.app_new ADD COLUMN amount int")
            conn.execute("CREATE TABLE public.app_newer (id int)")
        assert world.rotate("database").state == "done"
        role, third = world.current("database")
        assert role == a
        with _as(db, a, third) as conn:
            assert conn.execute("SELECT count(*) FROM public.app_new").fetchone() == (2,)
            conn.execute("ALTER TABLE public.app_newer ADD COLUMN note text")
            conn.execute("DROP INDEX public.app_new_note")
        owners = _fetch(db.dsn, "SELECT DISTINCT tableowner FROM pg_tables WHERE tablename "
                        "LIKE 'app\\_new%%'")
        assert owners == [(group,)]
    finally:
        world.close()


# what adopt moves ------------------------------------------------------------------------------


@dataclass
class Legacy:
    """One login role as found in the wild, around a migrator that owns the schema."""

    role: str
    password: SecretValue
    migrator: str
    migrator_password: SecretValue
    reporting: str


def _legacy(db: FreshDatabase) -> Legacy:
    p = db.prefix
    role, migrator, reporting = f"{p}_goodgo_app", f"{p}_migrator", f"{p}_reporting"
    password = _create_login(db.dsn, role)
    migrator_password = _create_login(db.dsn, migrator)
    ident = sql.Identifier(role)
    _run(db.dsn, sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(reporting)),
         sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(db.name),
                                                              sql.Identifier(migrator)),
         sql.SQL("ALTER ROLE {} SET search_path = shop, public").format(ident),
         sql.SQL("ALTER ROLE {} SET statement_timeout = '25s'").format(ident))
    with _as(db, migrator, migrator_password) as conn:
        for statement in (
            "CREATE SCHEMA shop",
            "GRANT USAGE, CREATE ON SCHEMA shop TO {}",
            "CREATE TABLE shop.customers (id serial PRIMARY KEY, name text)",
            "GRANT SELECT, INSERT, UPDATE ON shop.customers TO {}",
            "GRANT USAGE ON SEQUENCE shop.customers_id_seq TO {}",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA shop GRANT SELECT, INSERT, UPDATE, DELETE "
            "ON TABLES TO {}",
            "ALTER DEFAULT PRIVILEGES IN SCHEMA shop GRANT USAGE ON SEQUENCES TO {}",
            "CREATE FUNCTION shop.total(int, text[]) RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "REVOKE EXECUTE ON FUNCTION shop.total(int, text[]) FROM PUBLIC",
            "GRANT EXECUTE ON FUNCTION shop.total(int, text[]) TO {}",
            "CREATE TYPE shop.mood AS ENUM ('ok')",
            "REVOKE USAGE ON TYPE shop.mood FROM PUBLIC",
            "GRANT USAGE ON TYPE shop.mood TO {}",
            "CREATE TABLE shop.notes (tenant text, note text)",
            "INSERT INTO shop.notes VALUES ('a', 'mine'), ('b', 'theirs')",
            "ALTER TABLE shop.notes ENABLE ROW LEVEL SECURITY",
            "CREATE POLICY tenant_a ON shop.notes TO {} USING (tenant = 'a')",
            "GRANT SELECT ON shop.notes TO {}",
        ):
            conn.execute(sql.SQL(statement).format(ident))
    with _as(db, role, password) as conn:
        conn.execute("CREATE TABLE shop.app_made (id int)")
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO {}").format(
            sql.Identifier(reporting)))
    return Legacy(role, password, migrator, migrator_password, reporting)


def _createrole_admin(db: FreshDatabase) -> PostgresTarget:
    admin = f"{db.prefix}_rotator"
    password = _create_login(db.dsn, admin, "CREATEROLE")
    return PostgresTarget(db.base_dsn + f" user={admin}", password=password)


@pytest.mark.parametrize("admin", ["superuser", "createrole"])
def test_adopt_moves_grants_ownership_default_privileges_policies_and_settings(
    admin: str, fresh_db: FreshDatabase,
) -> None:
    db = fresh_db
    legacy = _legacy(db)
    role = legacy.role
    group, alternate = f"{role}_group", f"{role}_b"
    target = PostgresTarget(db.dsn) if admin == "superuser" else _createrole_admin(db)
    before = PostgresTarget(db.dsn).privileges(role)

    result = target.adopt(role)

    assert not result.already_adopted
    assert result.moved_grants >= 9  # schema, table, sequence, function, type, policy table …
    assert result.owned_objects >= 1  # shop.app_made
    assert result.default_privileges == 3  # two TO the role, one OF the role (copied)
    assert result.policies == 1
    assert result.settings_copied == 2
    assert result.privileges_verified == len(before)
    assert any("granted by" in line and "shop.customers" in line for line in result.moved)
    su = PostgresTarget(db.dsn)
    exclude = [role, group, alternate]
    assert su.privileges(role, exclude=exclude) == before
    assert su.privileges(alternate, exclude=exclude) == before
    # no other role's default privileges name the role any more (its own entries, copied to
    # the group, stay: they apply only to a session that leaves the group with SET ROLE NONE)
    left = _fetch(db.dsn, "SELECT count(*) FROM pg_default_acl d, aclexplode(d.defaclacl) x "
                  "WHERE x.grantee = %s::regrole AND d.defaclrole <> %s::regrole", (role, role))
    assert left == [(0,)]
    # the CREATEROLE admin gave back every membership it borrowed
    borrowed = _fetch(db.dsn, "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON "
                      "g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE "
                      "u.rolname = %s", (f"{db.prefix}_rotator",))
    assert borrowed == []
    settings = dict(_fetch(db.dsn, "SELECT r.rolname, s.setconfig FROM pg_db_role_setting s "
                           "JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = ANY(%s)",
                           ([role, alternate],)))
    assert f"role={group}" in settings[role] and f"role={group}" in settings[alternate]
    assert "search_path=shop, public" in settings[alternate]
    assert "statement_timeout=25s" in settings[alternate]
    policy = _fetch(db.dsn, "SELECT polroles::regrole[]::text[] FROM pg_policy "
                    "WHERE polname = 'tenant_a'")
    assert policy == [([group],)]

    new = generate("password-32")
    su.set_password(alternate, new)
    with _as(db, legacy.migrator, legacy.migrator_password) as conn:
        conn.execute("CREATE TABLE shop.orders (id serial PRIMARY KEY, total int)")
    with _as(db, alternate, new) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (group,)
        conn.execute("INSERT INTO orders (total) VALUES (3)")  # search_path copied
        conn.execute("INSERT INTO shop.app_made VALUES (1)")  # was the role's own table
        assert conn.execute("SELECT shop.total(1, ARRAY['x'])").fetchone() == (1,)
        assert conn.execute("SELECT 'ok'::shop.mood::text").fetchone() == ("ok",)
        assert conn.execute("SELECT note FROM shop.notes").fetchall() == [("mine",)]
        conn.execute("CREATE TABLE shop.app_new (id int)")
    with _as(db, role, legacy.password) as conn:  # the role apps use today, a new session
        conn.execute("ALTER TABLE shop.app_new ADD COLUMN note text")
        assert conn.execute("SELECT total FROM shop.orders").fetchall() == [(3,)]
    owner = _fetch(db.dsn, "SELECT tableowner FROM pg_tables WHERE tablename = 'app_new'")
    assert owner == [(group,)]
    reads = _fetch(db.dsn, "SELECT has_table_privilege(%s, 'shop.app_new', 'SELECT')",
                   (legacy.reporting,))
    assert reads == [(True,)]  # the role's own default privileges now apply to the group

    again = target.adopt(role)
    assert again.already_adopted and again.moved_grants == 0
    # the role's own default-privilege entries are not "owned objects": the plan step's
    # reclaim finds nothing to move
    assert target.reclaim(result.layout) == ({}, [])


def test_createrole_adopt_names_every_grant_a_superuser_made_and_changes_nothing(
    fresh_db: FreshDatabase,
) -> None:
    """Issue 15: with a CREATEROLE admin adopt failed with "permission denied for sequence";
    PostgreSQL 15 lets such an admin act for any role but a superuser, so what a superuser
    granted is refused up front, each object named."""
    db = fresh_db
    role = f"{db.prefix}_goodgo_app"
    _create_login(db.dsn, role)
    _run(db.dsn, "CREATE SEQUENCE public.invoice_no",
         sql.SQL("GRANT SELECT, INSERT ON public.orders TO {}").format(sql.Identifier(role)),
         sql.SQL("GRANT USAGE ON SEQUENCE public.invoice_no TO {}").format(
             sql.Identifier(role)))
    before = PostgresTarget(db.dsn).privileges(role)
    with pytest.raises(TargetError) as info:
        _createrole_admin(db).adopt(role)
    message = str(info.value)
    assert "USAGE on sequence public.invoice_no (granted by 'postgres')" in message
    assert "SELECT on table public.orders (granted by 'postgres')" in message
    assert "is a superuser and the admin is not" in message
    assert "nothing was changed" in message and "superuser admin DSN" in message
    assert PostgresTarget(db.dsn).privileges(role) == before
    created = _fetch(db.dsn, "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)",
                     ([f"{role}_group", f"{role}_b"],))
    assert created == []
    # a superuser admin moves the same role
    assert PostgresTarget(db.dsn).adopt(role).moved_grants == 3


def test_adopt_refuses_what_it_cannot_move_by_name_and_changes_nothing(
    fresh_db: FreshDatabase,
) -> None:
    db = fresh_db
    role, other = f"{db.prefix}_goodgo_app", f"{db.prefix}_partner"
    password = _create_login(db.dsn, role)
    _run(db.dsn, sql.SQL("CREATE ROLE {}").format(sql.Identifier(other)),
         sql.SQL("ALTER ROLE {} SET role = {}").format(sql.Identifier(role),
                                                      sql.Identifier(other)),
         sql.SQL("GRANT {} TO {}").format(sql.Identifier(other), sql.Identifier(role)),
         sql.SQL("GRANT SELECT ON public.orders TO {} WITH GRANT OPTION").format(
             sql.Identifier(role)),
         sql.SQL("GRANT SET ON PARAMETER work_mem TO {}").format(sql.Identifier(role)))
    with _as(db, role, password) as conn:  # passes its privilege on with the grant option
        conn.execute("RESET ROLE")
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT SELECT ON public.orders TO {}").format(
            sql.Identifier(other)))
    before = PostgresTarget(db.dsn).privileges(role)
    with pytest.raises(TargetError) as info:
        PostgresTarget(db.dsn).adopt(role)
    message = str(info.value)
    assert "3 thing(s) cannot be moved" in message
    assert f"SELECT on table public.orders that {role!r} granted to {other!r}" in message
    assert "ON PARAMETER work_mem" in message
    assert "the per-role setting role of" in message
    assert PostgresTarget(db.dsn).privileges(role) == before
    assert _fetch(db.dsn, "SELECT count(*) FROM pg_roles WHERE rolname = %s",
                  (f"{role}_group",)) == [(0,)]
    # parameter privileges are cluster-wide: give this one back so the role can be dropped
    _run(db.dsn, sql.SQL("REVOKE SET ON PARAMETER work_mem FROM {}").format(
        sql.Identifier(role)))


# the plan and test steps -----------------------------------------------------------------------


@pytest.mark.parametrize("admin", ["superuser", "createrole"])
def test_plan_gives_the_group_what_a_login_role_created_outside_it(
    admin: str, admin_env: FreshDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = admin_env
    group = f"{db.prefix}_app"
    if admin == "createrole":  # the whole rotation with a CREATEROLE admin (PostgreSQL 15)
        name = f"{db.prefix}_rotator"
        secret = _create_login(db.dsn, name, "CREATEROLE")
        _run(db.dsn, sql.SQL("GRANT pg_signal_backend TO {}").format(sql.Identifier(name)))
        monkeypatch.setenv(ADMIN_ENV, db.base_dsn + f" user={name} password={secret.reveal()}")
    pg = PostgresTarget(db.dsn)
    a, b = pg.ensure_layout(group).logins
    _run(db.dsn, sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(
        sql.Identifier(group)))
    first = generate("password-32")
    pg.set_password(a, first)
    with _as(db, a, first) as conn:
        conn.execute("SET ROLE NONE")  # leaves the owner role: this table is a's own
        conn.execute("CREATE TABLE public.stray (id int)")
    world = _world(tmp_path, "w", {"group_role": group})
    try:
        world.seed("database", first, role=a)
        record = world.rotate("database")
        assert record.state == "done", record.body.error
        plan = next(s for s in record.body.steps if s.step == "plan").evidence
        assert plan["ownership"] == {"creates_as": group, "reclaimed": {a: 1}, "warnings": []}
        _, second = world.current("database")
        with _as(db, b, second) as conn:
            conn.execute("INSERT INTO public.stray VALUES (1)")
        assert world.rotate("database").state == "done"  # nothing left to reclaim: no-op
    finally:
        world.close()


def test_the_test_step_fails_on_any_privilege_difference_with_the_diff_in_the_evidence(
    admin_env: FreshDatabase, tmp_path: Path,
) -> None:
    db = admin_env
    group = f"{db.prefix}_app"
    pg = PostgresTarget(db.dsn)
    a, b = pg.ensure_layout(group).logins
    _run(db.dsn, "CREATE TABLE public.secret_sauce (id int)",
         sql.SQL("GRANT SELECT ON public.orders TO {}").format(sql.Identifier(group)),
         sql.SQL("GRANT SELECT ON public.secret_sauce TO {}").format(sql.Identifier(a)))
    first = generate("password-32")
    pg.set_password(a, first)
    world = _world(tmp_path, "w", {"group_role": group, "probe_table": "public.orders"})
    try:
        world.seed("database", first, role=a)
        record = world.rotate("database")
        assert record.state == "rolled-back"
        assert record.body.error is not None and record.body.error.step == "test"
        assert f"{b!r} would lack SELECT on column public.secret_sauce.id, SELECT on table " \
            "public.secret_sauce" in record.body.error.message
        test = next(s for s in record.body.steps if s.step == "test").evidence
        assert test["privileges"]["compared_with"] == a
        assert test["privileges"]["missing"] == 2 and test["privileges"]["extra"] == 0
        assert test["privileges"]["diff"] == ["- SELECT on column public.secret_sauce.id",
                                              "- SELECT on table public.secret_sauce"]
        assert test["checked"]["acts_as"] == group
        assert world.current("database") == (a, world.current("database")[1])
        values = [first.reveal()] + [
            world.store.read_value(record.ref, v.number).reveal()
            for v in world.store.list_versions(record.ref) if not v.destroyed]
        assert_no_leak([world.journal_text(), world.records_text()], values,
                       where="journal and records")
        # granted to the group instead, the next rotation passes the comparison
        _run(db.dsn, sql.SQL("GRANT SELECT ON public.secret_sauce TO {}").format(
            sql.Identifier(group)))
        record = world.rotate("database")
        assert record.state == "done", record.body.error
        test = next(s for s in record.body.steps if s.step == "test").evidence
        assert test["privileges"]["diff"] == [] and test["privileges"]["compared"] > 5
        assert world.current("database")[0] == b
    finally:
        world.close()


def test_rollback_after_promote_keeps_what_the_new_role_created_reachable(
    admin_env: FreshDatabase, tmp_path: Path,
) -> None:
    """A rotation back (Direction.BACK): the role that stays is the old one; what the rolled-back
    role created while it was current belongs to the group, so the old role keeps it."""
    db = admin_env
    group = f"{db.prefix}_app"
    pg = PostgresTarget(db.dsn)
    a, b = pg.ensure_layout(group).logins
    _run(db.dsn, sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(
        sql.Identifier(group)))
    first = generate("password-32")
    pg.set_password(a, first)
    world = _world(tmp_path, "w", {"group_role": group})
    try:
        world.seed("database", first, role=a)
        engine = world.engine()
        record = engine.run(engine.start("database", "dev").id)
        assert record.state == "overlap"
        role, second = world.current("database")
        assert role == b
        with _as(db, b, second) as conn:  # a deploy's migration under the new role
            conn.execute("CREATE TABLE public.made_by_b (id serial PRIMARY KEY)")
            conn.execute("INSERT INTO public.made_by_b DEFAULT VALUES")
        engine.rollback(record.id, reason="the deploy went wrong")
        record = world.finish(record.id, engine=engine)
        assert record.state == "rolled-back", record.body.error
        assert world.current("database") == (a, world.current("database")[1])
        with _as(db, a, first) as conn:
            conn.execute("INSERT INTO public.made_by_b DEFAULT VALUES")
            conn.execute("ALTER TABLE public.made_by_b ADD COLUMN note text")
            assert conn.execute("SELECT count(*) FROM public.made_by_b").fetchone() == (2,)
        with pytest.raises(TargetError):
            pg.check_login(db.base_dsn, b, second)  # the rolled-back role retired
    finally:
        world.close()


def test_adopt_refuses_objects_in_another_database_and_a_schema_named_after_the_role(
    fresh_db: FreshDatabase, postgres_server: PostgresServer,
) -> None:
    db = fresh_db
    role = f"{db.prefix}_goodgo_app"
    other = f"{db.name}_other"
    password = _create_login(db.dsn, role)
    _run(db.dsn, sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
        sql.Identifier(role), sql.Identifier(role)))
    _run(db.dsn, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(other)))
    try:
        with psycopg.connect(postgres_server.dsn(other), autocommit=True) as conn:
            conn.execute("CREATE TABLE elsewhere (id int)")
            conn.execute(sql.SQL("ALTER TABLE elsewhere OWNER TO {}").format(
                sql.Identifier(role)))
        before = PostgresTarget(db.dsn).privileges(role)
        with pytest.raises(TargetError) as info:
            PostgresTarget(db.dsn).adopt(role)
        message = str(info.value)
        assert "2 thing(s) cannot be moved" in message
        assert f"owns 1 object(s) and holds 0 privilege(s) or default privilege(s) in " \
            f"database {other!r}" in message
        assert f"schema {role} is named after the role" in message
        assert PostgresTarget(db.dsn).privileges(role) == before
        with _as(db, role, password) as conn:  # the role itself is untouched
            assert conn.execute("SELECT current_user").fetchone() == (role,)
    finally:
        _run(db.dsn, sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(other)))
