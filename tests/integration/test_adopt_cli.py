"""``keyroll adopt`` on a real database: an existing single role joins the alternation without
its sessions noticing, then ``keyroll import`` + ``keyroll rotate`` move apps to the alternate."""

from __future__ import annotations

import base64
import io
import secrets
import sys
from pathlib import Path
from urllib.parse import unquote

import psycopg
import pytest
from psycopg import sql

from keyroll.cli.app import run
from keyroll.errors import TargetError
from keyroll.model import SecretValue
from keyroll.targets.postgres import PostgresTarget
from tests.integration.conftest import FreshDatabase
from tests.integration.rotation_world import class_toml, inventory_text
from tests.leaks import assert_no_leak

pytestmark = pytest.mark.integration

ADMIN_ENV = "KR_TEST_PG_ADMIN_DSN"


def test_adopt_then_rotate_through_the_cli(
    tmp_path: Path, fresh_db: FreshDatabase, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    role, group, alternate = (f"{fresh_db.prefix}_app", f"{fresh_db.prefix}_grp",
                              f"{fresh_db.prefix}_app_b")
    password = secrets.token_urlsafe(24)
    with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(password)))
        conn.execute(sql.SQL("GRANT SELECT, INSERT ON public.orders TO {}").format(
            sql.Identifier(role)))
        conn.execute("CREATE TABLE public.app_owned (id int)")
        conn.execute(sql.SQL("ALTER TABLE public.app_owned OWNER TO {}").format(
            sql.Identifier(role)))
    options = {"admin_dsn_env": ADMIN_ENV, "group_role": group,
               "login_roles": [role, alternate], "probe_table": "public.app_owned",
               "app_dsn": "postgresql://{role}:{password}@127.0.0.1/" + fresh_db.name}
    (tmp_path / "keyroll.toml").write_text(inventory_text(
        class_toml("database", "postgres-role", "DATABASE_URL", options,
                   {"min": "0", "settle": "0"}),
        class_toml("other", "api-key", "OTHER_KEY", {}, {"min": "0"}),
    ))
    monkeypatch.chdir(tmp_path)
    for var in ("KEYROLL_CONFIG", "KEYROLL_STORE", "KEYROLL_NOW"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KEYROLL_MASTER_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    monkeypatch.setenv("KEYROLL_ACTOR", "alice")
    monkeypatch.setenv(ADMIN_ENV, fresh_db.dsn)
    transcript: list[str] = []

    def keyroll(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = run(list(args))
        captured = capsys.readouterr()
        transcript.extend([captured.out, captured.err])
        return code, captured.out, captured.err

    assert keyroll("init")[0] == 0  # the store beside an existing keyroll.toml
    live = psycopg.connect(fresh_db.base_dsn, user=role, password=password, autocommit=True)
    try:
        code, out, err = keyroll("adopt", "database", "--env", "dev")
        assert code == 0, err
        assert f"role {role!r} adopted" in out and "verified identical" in out
        assert "moved: SELECT on table public.orders (granted by 'postgres')" in out
        assert f"both create objects as {group!r}" in out
        assert "keyroll import database --env dev" in out
        # the app's open session did not notice, and its grants now come from the group
        assert live.execute("SELECT count(*) FROM public.app_owned").fetchone() == (0,)
        assert live.execute("SELECT count(*) FROM public.orders").fetchone() == (1,)
    finally:
        live.close()

    again = keyroll("adopt", "database", "--env", "dev")
    assert again[0] == 0 and "nothing changed" in again[1]
    assert keyroll("adopt", "other", "--env", "dev")[0] == 2
    wrong_role = keyroll("adopt", "database", "--env", "dev", "--role", "postgres")
    assert wrong_role[0] == 2 and "options.login_roles" in wrong_role[2]

    dsn = f"postgresql://{role}:{password}@127.0.0.1:5432/{fresh_db.name}\n"
    assert keyroll("import", "database", "--env", "dev", stdin=dsn)[0] == 0
    code, out, err = keyroll("rotate", "database", "--env", "dev")
    assert code == 0, err + out
    code, out, err = keyroll("get", "database", "--env", "dev", "--json")
    assert code == 0 and '"labels"' in out

    pg = PostgresTarget(fresh_db.dsn)
    with pytest.raises(TargetError):
        pg.check_login(fresh_db.base_dsn, role, SecretValue(password))  # retired
    assert pg.privileges(alternate, exclude=[role, group, alternate]) == \
        pg.privileges(role, exclude=[role, group, alternate])
    export = tmp_path / "app.env"
    assert keyroll("export", "--env", "dev", "-o", str(export))[0] == 0
    new_dsn = export.read_text().split("DATABASE_URL=", 1)[1].split("\n", 1)[0].strip('"')
    assert f"//{alternate}:" in new_dsn
    new_password = new_dsn.split(":", 2)[2].split("@", 1)[0]
    pg.check_login(fresh_db.base_dsn, alternate, SecretValue(unquote(new_password)),
                   probe_table="public.app_owned")
    assert_no_leak(transcript, [password, unquote(new_password)], where="CLI output")
