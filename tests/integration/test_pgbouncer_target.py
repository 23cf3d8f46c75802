"""`keyroll.targets.pgbouncer` against a real PgBouncer in front of a real PostgreSQL."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from keyroll.errors import TargetError
from keyroll.generate import generate
from keyroll.model import SecretValue
from keyroll.targets.pgbouncer import PgBouncerTarget, format_auth_line, parse_auth_file
from keyroll.targets.postgres import PostgresTarget, RetireMode
from keyroll.targets.scram import scram_sha256_verifier
from tests.integration.conftest import FreshDatabase
from tests.servers import PgBouncerServer, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def bouncer(pgbouncer_server: PgBouncerServer) -> PgBouncerTarget:
    return PgBouncerTarget(
        pgbouncer_server.auth_file, host="127.0.0.1", port=pgbouncer_server.port,
        admin_user=pgbouncer_server.admin_user,
        admin_password=SecretValue(pgbouncer_server.admin_password),
    )


def test_both_login_roles_work_through_pgbouncer_after_reload(
    pgbouncer_server: PgBouncerServer, bouncer: PgBouncerTarget, fresh_db: FreshDatabase
) -> None:
    pg = PostgresTarget(fresh_db.dsn)
    layout = pg.ensure_layout(f"{fresh_db.prefix}_app")
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT SELECT ON public.orders TO {}").format(
            sql.Identifier(layout.group)))
    first, second = generate("password-32"), generate("password-32")
    v_a = pg.set_password(layout.logins[0], first)
    bouncer.publish({layout.logins[0]: v_a})
    bouncer.check_login(fresh_db.name, layout.logins[0], first)
    # A client of the active role stays connected through the apply step:
    live = psycopg.connect(pgbouncer_server.base_dsn(fresh_db.name), user=layout.logins[0],
                           password=first.reveal(), autocommit=True)
    try:
        v_b = pg.set_password(layout.logins[1], second)
        bouncer.publish({layout.logins[0]: v_a, layout.logins[1]: v_b})
        assert live.execute("SELECT count(*) FROM public.orders").fetchone() == (1,)
    finally:
        live.close()
    bouncer.check_login(fresh_db.name, layout.logins[0], first)
    bouncer.check_login(fresh_db.name, layout.logins[1], second)
    users = bouncer.users_in_auth_file()
    assert users[0] == pgbouncer_server.admin_user  # lines keyroll does not manage are kept
    assert set(layout.logins) <= set(users)
    assert set(layout.logins) <= set(bouncer.show_users()) | set(users)
    # Retire the old role: drop its line, reload; it can no longer log in through PgBouncer.
    pg.retire(layout.logins[0], RetireMode.BREAK_GLASS)
    bouncer.publish({layout.logins[1]: v_b}, remove=[layout.logins[0]])
    assert layout.logins[0] not in bouncer.users_in_auth_file()
    with pytest.raises(TargetError, match="login refused") as info:
        bouncer.check_login(fresh_db.name, layout.logins[0], first)
    assert first.reveal() not in str(info.value)
    bouncer.check_login(fresh_db.name, layout.logins[1], second)


def test_auth_file_is_replaced_atomically_with_mode_0600_and_owner_kept(
    pgbouncer_server: PgBouncerServer, bouncer: PgBouncerTarget
) -> None:
    before = pgbouncer_server.auth_file.stat()
    verifier = scram_sha256_verifier(generate("password-32"))
    bouncer.write_auth_file({"kr_atomic_user": verifier})
    after = pgbouncer_server.auth_file.stat()
    assert stat.S_IMODE(after.st_mode) == 0o600
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert after.st_ino != before.st_ino  # renamed into place, not rewritten in place
    leftovers = [p for p in os.listdir(pgbouncer_server.dir) if p.startswith(".userlist")]
    assert leftovers == [".userlist.txt.keyroll-lock"]  # the lock file stays, no temp file does
    text = pgbouncer_server.auth_file.read_text()
    assert format_auth_line("kr_atomic_user", verifier) in text
    bouncer.write_auth_file({}, remove=["kr_atomic_user"])
    assert "kr_atomic_user" not in pgbouncer_server.auth_file.read_text()
    bouncer.reload()


def test_auth_file_quotes_names_with_double_quotes() -> None:
    verifier = scram_sha256_verifier(SecretValue("p" * 32))
    line = format_auth_line('we"ird name', verifier)
    assert line.startswith('"we""ird name" "SCRAM-SHA-256$4096:')
    assert parse_auth_file("; comment\n" + line) == [(None, "; comment\n"), ('we"ird name', line)]
    with pytest.raises(TargetError, match="cannot be written"):
        format_auth_line("two\nlines", verifier)


def test_wrong_admin_password_and_dead_console_are_target_errors(
    pgbouncer_server: PgBouncerServer,
) -> None:
    wrong = generate("password-32")
    bad = PgBouncerTarget(pgbouncer_server.auth_file, host="127.0.0.1",
                          port=pgbouncer_server.port, admin_user=pgbouncer_server.admin_user,
                          admin_password=wrong)
    with pytest.raises(TargetError, match="admin console") as info:
        bad.reload()
    assert wrong.reveal() not in str(info.value)
    dead = PgBouncerTarget(pgbouncer_server.auth_file, host="127.0.0.1", port=free_port(),
                           admin_user="x", admin_password=wrong, connect_timeout=2)
    with pytest.raises(TargetError, match="cannot reach the admin console"):
        dead.reload()


def test_unwritable_auth_file_folder_is_a_target_error(tmp_path: os.PathLike[str]) -> None:
    target = PgBouncerTarget("/proc/keyroll-no-such-dir/userlist.txt", host="127.0.0.1",
                             port=1, admin_user="x", admin_password=SecretValue("y" * 8))
    with pytest.raises(TargetError, match="cannot update"):
        target.write_auth_file({"u": scram_sha256_verifier(SecretValue("z" * 32))})


def test_retire_behind_pgbouncer_needs_the_auth_file_updated_too(
    bouncer: PgBouncerTarget, fresh_db: FreshDatabase
) -> None:
    """PgBouncer checks clients against its auth_file and reuses pooled server connections:
    retiring the role in PostgreSQL alone leaves the old password working through PgBouncer.
    The retire order the strategy must follow: publish without the old role (RELOAD), retire
    it in PostgreSQL, terminate its sessions (the idle pooled server connections)."""
    pg = PostgresTarget(fresh_db.dsn)
    layout = pg.ensure_layout(f"{fresh_db.prefix}_app")
    old_role = layout.logins[0]
    old = generate("password-32")
    bouncer.publish({old_role: pg.set_password(old_role, old)})
    bouncer.check_login(fresh_db.name, old_role, old)  # leaves a pooled server connection
    assert pg.session_count(old_role) == 1
    pg.retire(old_role)
    bouncer.check_login(fresh_db.name, old_role, old)  # the hole: still accepted
    bouncer.publish({}, remove=[old_role])
    with pytest.raises(TargetError, match="login refused"):
        bouncer.check_login(fresh_db.name, old_role, old)
    assert pg.terminate_sessions(old_role) == 1
    assert pg.session_count(old_role) == 0


def test_server_pids_tell_pooled_connections_from_direct_sessions(
    pgbouncer_server: PgBouncerServer, bouncer: PgBouncerTarget, fresh_db: FreshDatabase
) -> None:
    pg = PostgresTarget(fresh_db.dsn)
    layout = pg.ensure_layout(f"{fresh_db.prefix}_app")
    role = layout.logins[0]
    password = generate("password-32")
    bouncer.publish({role: pg.set_password(role, password)})
    bouncer.check_login(fresh_db.name, role, password)  # leaves an idle pooled server connection
    direct = psycopg.connect(fresh_db.base_dsn, user=role, password=password.reveal(),
                             autocommit=True)
    try:
        direct_pid = direct.info.backend_pid
        sessions = pg.session_pids(role)
        pooled = bouncer.server_pids(role)
        assert direct_pid in sessions and direct_pid not in pooled
        assert pooled and pooled <= set(sessions)  # pooled, yet listed by pg_stat_activity
        assert bouncer.client_count(role) == 0
        assert bouncer.server_pids("nobody-has-this-name") == set()
    finally:
        direct.close()


def test_two_writers_of_one_auth_file_never_lose_a_line(tmp_path: Path) -> None:
    """Two classes sharing one userlist rotate at once: every user written stays."""
    auth_file = tmp_path / "userlist.txt"
    auth_file.write_text('"keep" "SCRAM-SHA-256$4096:c2FsdA==$a:b"\n')

    def writer(prefix: str) -> None:
        target = PgBouncerTarget(auth_file, host="127.0.0.1", port=1, admin_user="a",
                                 admin_password=SecretValue("unused-password-123"))
        for n in range(25):
            target.write_auth_file({f"{prefix}{n}": scram_sha256_verifier(
                SecretValue(f"pw-{prefix}-{n}-0123456789"), iterations=16)})

    threads = [threading.Thread(target=writer, args=(p,)) for p in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    users = {user for user, _ in parse_auth_file(auth_file.read_text()) if user}
    assert users == {"keep"} | {f"{p}{n}" for p in "ab" for n in range(25)}
