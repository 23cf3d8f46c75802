"""The ``postgres-role`` strategy driven by the engine against real PostgreSQL and PgBouncer.

Every test starts from the store's ``current`` (a password of one login role), lets the engine
run plan … retire, and checks the server: who logs in, who no longer does, what PgBouncer
accepts, what the journal says, and that no planted password reached any output.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

import tests.crash as crash
from keyroll.audit import Journal
from keyroll.errors import StepFailed, TargetError
from keyroll.generate import generate
from keyroll.inventory import Inventory, parse_inventory
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.reports import drill_report
from keyroll.rotation.events import Event
from keyroll.stores.sqlite import SQLiteStore
from keyroll.targets.pgbouncer import PgBouncerTarget
from keyroll.targets.postgres import PostgresTarget, RoleLayout
from tests.integration.conftest import FreshDatabase
from tests.integration.rotation_world import EngineWorld, class_toml, inventory_text
from tests.leaks import assert_no_leak
from tests.servers import PgBouncerServer, PostgresServer

pytestmark = pytest.mark.integration

ADMIN_ENV = "KR_TEST_PG_ADMIN_DSN"
BOUNCER_ENV = "KR_TEST_PGBOUNCER_ADMIN_URL"
OVERLAP = {"min": "1h", "settle": "10m", "max": "2d"}


def bouncer_target(server: PgBouncerServer) -> PgBouncerTarget:
    return PgBouncerTarget(server.auth_file, host="127.0.0.1", port=server.port,
                           admin_user=server.admin_user,
                           admin_password=SecretValue(server.admin_password))


def bouncer_url(server: PgBouncerServer) -> str:
    return (f"postgresql://{server.admin_user}:{quote(server.admin_password, safe='')}"
            f"@127.0.0.1:{server.port}/pgbouncer")


def db_options(group: str, logins: tuple[str, str] | None = None,
               bouncer: PgBouncerServer | None = None, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"admin_dsn_env": ADMIN_ENV, "group_role": group,
                               "probe_table": "public.orders"}
    if logins is not None:
        options["login_roles"] = list(logins)
    if bouncer is not None:
        options["pgbouncer_auth_file"] = str(bouncer.auth_file)
        options["pgbouncer_admin_url_env"] = BOUNCER_ENV
    options.update(extra)
    return options


def prepare_layout(dsn: str, group: str, logins: tuple[str, str] | None = None,
                   bouncer: PgBouncerTarget | None = None) -> tuple[RoleLayout, SecretValue]:
    """The database side before keyroll's first rotation: layout, grant, a first password."""
    pg = PostgresTarget(dsn)
    layout = pg.ensure_layout(group, logins)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT SELECT ON public.orders TO {}").format(
            sql.Identifier(layout.group)))
    first = generate("password-32")
    verifier = pg.set_password(layout.logins[0], first)
    if bouncer is not None:
        bouncer.publish({layout.logins[0]: verifier})
    return layout, first


def logs_in(dsn: str, role: str, password: SecretValue) -> bool:
    try:
        PostgresTarget(dsn).check_login(dsn, role, password, probe_table="public.orders")
    except TargetError:
        return False
    return True


def logs_in_via(bouncer: PgBouncerTarget, dbname: str, role: str, password: SecretValue) -> bool:
    try:
        bouncer.check_login(dbname, role, password)
    except TargetError:
        return False
    return True


def can_login(dsn: str, role: str) -> bool | None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s",
                           (role,)).fetchone()
    return None if row is None else bool(row[0])


@dataclass
class DbRig:
    world: EngineWorld
    db: FreshDatabase
    layout: RoleLayout
    first: SecretValue
    bouncer: PgBouncerTarget | None
    ref: SecretRef


@pytest.fixture
def make_rig(
    tmp_path: Path, fresh_db: FreshDatabase, monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., DbRig]]:
    worlds: list[EngineWorld] = []
    monkeypatch.setenv(ADMIN_ENV, fresh_db.dsn)

    def make(*, bouncer: PgBouncerServer | None = None, logins: tuple[str, str] | None = None,
             group: str | None = None, store_password: SecretValue | None = None,
             overlap: dict[str, Any] | None = None, **extra: Any) -> DbRig:
        group = group or f"{fresh_db.prefix}_app"
        target = bouncer_target(bouncer) if bouncer is not None else None
        if bouncer is not None:
            monkeypatch.setenv(BOUNCER_ENV, bouncer_url(bouncer))
        layout, first = prepare_layout(fresh_db.dsn, group, logins, target)
        options = db_options(group, logins, bouncer, **extra)
        text = inventory_text(class_toml("database", "postgres-role", "DATABASE_URL", options,
                                         overlap or OVERLAP))
        folder = tmp_path / f"world{len(worlds)}"
        folder.mkdir()
        world = EngineWorld.create(folder, text)
        worlds.append(world)
        ref = world.seed("database", store_password or first, role=layout.logins[0])
        return DbRig(world, fresh_db, layout, first, target, ref)

    yield make
    for world in worlds:
        world.close()


def _secrets_of(rig: DbRig, *more: SecretValue) -> list[str]:
    values = [v.reveal() for v in (rig.first, *more)]
    for version in rig.world.store.list_versions(rig.ref):
        if not version.destroyed:
            values.append(rig.world.store.read_value(rig.ref, version.number).reveal())
    return values


@pytest.mark.parametrize("via", ["direct", "pgbouncer"])
def test_two_rotations_alternate_the_login_roles(
    via: str, make_rig: Callable[..., DbRig], pgbouncer_server: PgBouncerServer,
    postgres_server: PostgresServer, capfd: pytest.CaptureFixture[str],
) -> None:
    bouncer = pgbouncer_server if via == "pgbouncer" else None
    rig = make_rig(bouncer=bouncer, backup_dir="backups")
    a, b = rig.layout.logins
    base = rig.db.base_dsn
    planted = [rig.first]

    first = rig.world.rotate("database")
    assert first.state == "done", first.body.error
    role, second_pw = rig.world.current("database")
    planted.append(second_pw)
    assert role == b
    assert logs_in(base, b, second_pw)
    assert not logs_in(base, a, rig.first), "the old password still logs in after retire"
    assert can_login(rig.db.dsn, a) is True  # break-glass: LOGIN with a password nobody holds
    if rig.bouncer is not None:
        assert logs_in_via(rig.bouncer, rig.db.name, b, second_pw)
        assert not logs_in_via(rig.bouncer, rig.db.name, a, rig.first)
        assert a not in rig.bouncer.users_in_auth_file()

    plan = next(s for s in first.body.steps if s.step == "plan")
    backup = plan.evidence["backup"]
    archive = Path(backup["path"])
    assert archive.is_file() and archive.parent == rig.world.path / "backups"
    assert backup["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert backup["entries"] > 0
    retired = next(s for s in first.body.steps if s.step == "retire").evidence
    assert retired["retired_role"]["role"] == a
    assert retired["retired_role"]["mode"] == "break-glass"

    second = rig.world.rotate("database")
    assert second.state == "done", second.body.error
    role, third_pw = rig.world.current("database")
    planted.append(third_pw)
    assert role == a
    assert logs_in(base, a, third_pw)
    assert not logs_in(base, b, second_pw)
    if rig.bouncer is not None:
        assert logs_in_via(rig.bouncer, rig.db.name, a, third_pw)
        assert not logs_in_via(rig.bouncer, rig.db.name, b, second_pw)

    journal = Journal(rig.world.store)
    assert journal.verify().ok
    report = drill_report(rig.world.store, rig.world.inventory, journal, second.id)
    assert "checked" in report
    captured = capfd.readouterr()
    outputs = [captured.out, captured.err, rig.world.journal_text(), rig.world.records_text(),
               report, postgres_server.log_text(), pgbouncer_server.log_text(),
               *(str(e) for e in rig.world.events)]
    assert_no_leak(outputs, [p.reveal() for p in planted], where="outputs and server logs")


def test_wrong_current_password_refuses_and_changes_nothing(
    make_rig: Callable[..., DbRig], pgbouncer_server: PgBouncerServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    wrong = generate("password-32")
    rig = make_rig(bouncer=pgbouncer_server, store_password=wrong)
    a, b = rig.layout.logins
    auth_before = pgbouncer_server.auth_file.read_text()
    labels_before = rig.world.store.get_labels(rig.ref)

    record = rig.world.rotate("database")

    assert record.state == "rolled-back"
    assert record.body.error.step == "plan"
    assert "does not log in" in record.body.error.message
    assert "nothing was changed" in record.body.error.message
    assert rig.world.store.get_labels(rig.ref) == labels_before
    assert [v.number for v in rig.world.store.list_versions(rig.ref)] == [1]  # no new value
    assert can_login(rig.db.dsn, b) is False  # the idle role was not touched
    assert logs_in(rig.db.base_dsn, a, rig.first)  # nor the active one
    assert pgbouncer_server.auth_file.read_text() == auth_before
    captured = capfd.readouterr()
    assert_no_leak([captured.out, captured.err, rig.world.journal_text(),
                    rig.world.records_text()], [wrong.reveal(), rig.first.reveal()])


def test_role_names_with_quotes_and_semicolons_are_quoted(
    make_rig: Callable[..., DbRig], fresh_db: FreshDatabase, pgbouncer_server: PgBouncerServer,
) -> None:
    canary = f"{fresh_db.prefix}_canary"
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(canary)))
    group = f'{fresh_db.prefix}"; DROP ROLE {canary}; --'
    logins = (f"{fresh_db.prefix}_a'; DROP TABLE public.orders; --",
              f'{fresh_db.prefix}_b" LOGIN SUPERUSER --')
    rig = make_rig(bouncer=pgbouncer_server, group=group, logins=logins)

    for expected in (logins[1], logins[0]):
        record = rig.world.rotate("database")
        assert record.state == "done", record.body.error
        role, password = rig.world.current("database")
        assert role == expected
        assert logs_in(rig.db.base_dsn, expected, password)
        assert rig.bouncer is not None
        assert logs_in_via(rig.bouncer, rig.db.name, expected, password)

    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        roles = {r for (r,) in conn.execute(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) AND NOT rolsuper",
            (fresh_db.prefix,)).fetchall()}
        assert conn.execute("SELECT count(*) FROM public.orders").fetchone() == (1,)
    assert {canary, group, *logins} <= roles


def test_target_down_at_apply_rolls_back_with_the_store_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    server = PostgresServer().start()  # this test stops it mid-rotation
    try:
        with psycopg.connect(server.superuser_dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE public.orders (id int)")
        monkeypatch.setenv(ADMIN_ENV, server.superuser_dsn)
        layout, first = prepare_layout(server.superuser_dsn, "kr_down_app")
        text = inventory_text(class_toml("database", "postgres-role", "DATABASE_URL",
                                         db_options("kr_down_app"), OVERLAP))
        world = EngineWorld.create(tmp_path, text)
        ref = world.seed("database", first, role=layout.logins[0])
        before = world.store.get_labels(ref)

        def stop_at_apply(event: Event) -> None:
            if event.kind == "step.started" and event.step == "apply":
                server.pause()

        engine = world.engine(observers=[stop_at_apply])
        rotation = engine.start("database", "dev")
        with pytest.raises(StepFailed, match="could not be reset"):
            engine.run(rotation.id)
        # the store is back where it was at once; the rollback stays open until the target
        # can be reset (apply may have set the idle role's password before the server died)
        record = engine.get(rotation.id)
        assert record.state == "rolling-back"
        assert record.body.error.step == "apply"
        assert "could not connect" in record.body.error.message
        assert world.store.get_labels(ref) == before
        assert world.store.read(ref)[1].reveal() == first.reveal()

        server.resume()
        record = engine.run(rotation.id)
        assert record.state == "rolled-back"
        assert world.store.get_labels(ref) == before
        created = [v for v in world.store.list_versions(ref) if v.number != before[Label.CURRENT]]
        assert created and all(v.destroyed for v in created)  # the new value is gone
        assert logs_in(server.base_dsn(), layout.logins[0], first)  # current still works
        assert Journal(world.store).verify().ok
        captured = capfd.readouterr()
        assert_no_leak([captured.out, captured.err, world.journal_text(), world.records_text()],
                       [first.reveal(), server.password])
        world.close()
    finally:
        server.stop()


@pytest.mark.parametrize(("config", "held_via"), [
    ("direct", "direct"),
    ("pgbouncer", "direct"),  # a job that bypasses PgBouncer still counts
    ("pgbouncer", "pgbouncer"),
])
def test_overlap_waits_until_the_old_role_has_no_session(
    config: str, held_via: str, make_rig: Callable[..., DbRig],
    pgbouncer_server: PgBouncerServer,
) -> None:
    rig = make_rig(bouncer=pgbouncer_server if config == "pgbouncer" else None)
    a, _ = rig.layout.logins
    dsn = rig.db.base_dsn if held_via == "direct" else pgbouncer_server.base_dsn(rig.db.name)
    held = psycopg.connect(dsn, user=a, password=rig.first.reveal(), autocommit=True)
    try:
        engine = rig.world.engine()
        record = engine.run(engine.start("database", "dev").id)
        assert record.state == "overlap"
        rig.world.clock.tick(timedelta(hours=2))  # past overlap.min
        record = engine.run(record.id)
        assert record.state == "overlap"
        assert "still has open connections" in record.body.waiting
        rig.world.clock.tick(timedelta(days=1))
        assert engine.run(record.id).state == "overlap"  # still open: no retire, however long
    finally:
        held.close()
    record = engine.run(record.id)
    assert record.state == "overlap" and "waiting" in record.body.waiting  # settling
    rig.world.clock.tick(timedelta(minutes=11))
    record = engine.run(record.id)
    assert record.state == "done", record.body.error
    overlap = next(s for s in record.body.steps if s.step == "overlap").evidence
    assert overlap["open_connections"] == 0 and overlap["settle_seconds"] == 600
    if config == "pgbouncer":
        # PgBouncer's idle pooled server connections of the old role did not hold it up
        assert overlap["pooled_server_connections"] >= 1, overlap


@pytest.mark.parametrize("via", ["direct", "pgbouncer"])
def test_incident_terminates_the_old_roles_sessions(
    via: str, make_rig: Callable[..., DbRig], pgbouncer_server: PgBouncerServer,
) -> None:
    rig = make_rig(retire="nologin", bouncer=pgbouncer_server if via == "pgbouncer" else None)
    a, b = rig.layout.logins
    dsn = rig.db.base_dsn if via == "direct" else pgbouncer_server.base_dsn(rig.db.name)
    held = psycopg.connect(dsn, user=a, password=rig.first.reveal(), autocommit=True)
    try:
        assert held.execute("SELECT 1").fetchone() == (1,)
        record = rig.world.rotate("database", incident=True)
        assert record.state == "done", record.body.error
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1").fetchone()
    finally:
        held.close()
    assert can_login(rig.db.dsn, a) is False
    if rig.bouncer is not None:
        assert not logs_in_via(rig.bouncer, rig.db.name, a, rig.first)
    retired = next(s for s in record.body.steps if s.step == "retire").evidence
    assert retired["retired_role"]["sessions_terminated"] >= 1
    assert retired["retired_role"]["mode"] == "nologin"
    _, password = rig.world.current("database")
    assert logs_in(rig.db.base_dsn, b, password)


def test_drop_retire_and_the_next_rotation_recreates_the_role(
    make_rig: Callable[..., DbRig],
) -> None:
    rig = make_rig(retire="drop")
    a, b = rig.layout.logins
    assert rig.world.rotate("database").state == "done"
    assert can_login(rig.db.dsn, a) is None  # dropped
    record = rig.world.rotate("database")
    assert record.state == "done", record.body.error
    role, password = rig.world.current("database")
    assert role == a and logs_in(rig.db.base_dsn, a, password)
    assert can_login(rig.db.dsn, b) is None


@pytest.mark.parametrize("mode", ["break-glass", "nologin", "drop"])
def test_retire_run_again_after_it_finished_is_a_no_op(
    mode: str, make_rig: Callable[..., DbRig], pgbouncer_server: PgBouncerServer,
) -> None:
    """What a crash right after retire's side effects leaves: the step runs a second time."""
    from keyroll.rotation.strategies.base import StepContext
    from keyroll.rotation.strategies.postgres_role import PostgresRoleStrategy

    rig = make_rig(bouncer=pgbouncer_server, retire=mode)
    a, b = rig.layout.logins
    record = rig.world.rotate("database")
    assert record.state == "done", record.body.error
    cls, ref = rig.world.inventory.resolve("database", "dev")
    versions = {v.number: v for v in rig.world.store.list_versions(ref)}
    ctx = StepContext(
        rotation=record.id, ref=ref, cls=cls, policy=rig.world.inventory.policy("dev"),
        inventory=rig.world.inventory, store=rig.world.store, now=rig.world.clock(),
        incident=False, old=versions[record.body.old_version],
        new=versions[record.body.new_version], state={}, evidence={}, workdir=rig.world.path,
    )
    PostgresRoleStrategy().retire(ctx)
    assert ctx.evidence["retired_role"]["role"] == a
    _, password = rig.world.current("database")
    assert logs_in(rig.db.base_dsn, b, password)
    assert rig.bouncer is not None and logs_in_via(rig.bouncer, rig.db.name, b, password)
    assert not logs_in(rig.db.base_dsn, a, rig.first)
    assert can_login(rig.db.dsn, a) is {"break-glass": True, "nologin": False, "drop": None}[mode]


# crash matrix ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("outcome", ["done", "rolled-back", "operator-rollback"])
def test_sigkill_at_every_step_boundary_resumes_and_the_target_accepts_current(
    outcome: str, tmp_path_factory: pytest.TempPathFactory, fresh_db: FreshDatabase,
    pgbouncer_server: PgBouncerServer, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ADMIN_ENV, fresh_db.dsn)
    monkeypatch.setenv(BOUNCER_ENV, bouncer_url(pgbouncer_server))
    bouncer = bouncer_target(pgbouncer_server)
    counter = itertools.count()

    def make_world() -> tuple[Path, Inventory]:
        folder = tmp_path_factory.mktemp("pg-crash")
        group = f"{fresh_db.prefix}_c{next(counter)}"
        # "rolled-back": the verify hook fails after promote, so every run rolls back (and a
        # SIGKILL may land in the middle of the rollback)
        hooks = {"verify": [{"run": "false"}]} if outcome == "rolled-back" else None
        text = inventory_text(class_toml("database", "postgres-role", "DATABASE_URL",
                                         db_options(group, bouncer=pgbouncer_server), OVERLAP,
                                         hooks))
        (folder / "keyroll.toml").write_text(text)
        PostgresTarget(fresh_db.dsn).ensure_layout(group)
        with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("GRANT SELECT ON public.orders TO {}").format(
                sql.Identifier(group)))
        return folder, parse_inventory(text, folder / "keyroll.toml")

    original_seed = crash.seed_version

    def seed(store: SQLiteStore, inventory: Inventory, name: str, env: str) -> SecretRef:
        """The matrix's seed, then the same password on the first login role (no meta role:
        the strategy must fall back to the first login role)."""
        ref = original_seed(store, inventory, name, env)
        group = inventory.classes[name].options["group_role"]
        verifier = PostgresTarget(fresh_db.dsn).set_password(f"{group}_a", store.read(ref)[1])
        bouncer.publish({f"{group}_a": verifier})
        return ref

    def check_target(store: SQLiteStore, ref: SecretRef) -> None:
        version, value = store.read(ref)
        text = (store.path.parent / "keyroll.toml").read_text()
        group = parse_inventory(text).classes["database"].options["group_role"]
        role = str(version.meta.get("role") or f"{group}_a")
        assert logs_in(fresh_db.base_dsn, role, value), "the target refuses the current value"
        assert logs_in_via(bouncer, fresh_db.name, role, value), "PgBouncer refuses it"

    # "operator-rollback": a person runs `keyroll rollback` while apps use the new role
    points = crash.run_crash_matrix(
        make_world, "database", "dev", check_target=check_target, seed=seed,
        rollback_at="overlap" if outcome == "operator-rollback" else None)
    with capsys.disabled():
        print("\n" + crash.format_table(f"postgres-role with PgBouncer, ends {outcome}", points))
    assert len(points) >= 20
    final = "rolled-back" if outcome == "operator-rollback" else outcome
    assert all(p.final == final for p in points), [p for p in points if p.final != final]


@pytest.mark.parametrize("step", ["promote", "retire"])
def test_a_writer_paused_past_its_lease_cannot_undo_a_finished_rotation(
    step: str, make_rig: Callable[..., DbRig], pgbouncer_server: PgBouncerServer,
) -> None:
    """Issue 10 §2: A pauses in a step past its lease; the cron tick (B) takes the rotation
    over and finishes it; A resumes. Before fencing, A saved its stale state over ``done``,
    retired again and left the store's current password refused by PostgreSQL and PgBouncer."""
    from keyroll.errors import LeaseLost
    from keyroll.model import utcnow
    from keyroll.rotation.engine import Engine
    from keyroll.rotation.lock import LEASE_TTL
    from keyroll.rotation.strategies.postgres_role import PostgresRoleStrategy

    rig = make_rig(bouncer=pgbouncer_server)
    world = rig.world

    def take_over() -> None:
        journal = Journal(world.store, actor="cron", clock=world.clock)
        b = Engine(world.store, world.inventory, journal=journal, clock=world.clock,
                   workdir=world.path, wall_clock=lambda: utcnow() + LEASE_TTL * 2)
        assert world.finish(pending.id, engine=b).state == "done"

    class Paused(PostgresRoleStrategy):
        armed = True

        def _pause(self) -> None:
            if self.armed:
                self.armed = False
                take_over()

        def promote(self, ctx):  # type: ignore[no-untyped-def]
            if step == "promote":
                self._pause()
            super().promote(ctx)

        def retire(self, ctx):  # type: ignore[no-untyped-def]
            if step == "retire":
                self._pause()
            super().retire(ctx)

    journal = Journal(world.store, actor="ops", clock=world.clock)
    a = Engine(world.store, world.inventory, journal=journal, clock=world.clock,
               workdir=world.path, strategies={"postgres-role": Paused()})
    pending = a.start("database", "dev")
    def run_until_paused() -> None:
        for _ in range(6):  # through the overlap (its session settle) until A pauses
            a.run(pending.id)
            world.clock.tick(timedelta(hours=1))

    with pytest.raises(LeaseLost):
        run_until_paused()
    assert a.get(pending.id).state == "done"
    role, password = world.current("database")
    assert role is not None
    assert logs_in(rig.db.base_dsn, role, password)
    assert rig.bouncer is not None and logs_in_via(rig.bouncer, rig.db.name, role, password)
    assert not logs_in(rig.db.base_dsn, rig.layout.logins[0], rig.first)
    assert Journal(world.store).verify().ok
    # and the next rotation works from there
    assert world.rotate("database").state == "done"
