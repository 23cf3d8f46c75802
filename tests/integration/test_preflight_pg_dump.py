"""Issue 15 §5: the generic ``preflight = [{ backup = "pg_dump" }]`` of any class, on a real
PostgreSQL 15 (the database of ``dsn_env``; the class itself rotates no database role)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from keyroll.generate import generate
from keyroll.model import SecretRef
from tests.integration.conftest import FreshDatabase
from tests.leaks import assert_no_leak
from tests.servers import PostgresServer
from tests.world import World

pytestmark = pytest.mark.integration

DSN_ENV = "KR_TEST_PREFLIGHT_DSN"


def test_pg_dump_preflight_of_a_jwt_class_in_production(
    tmp_path: Path, fresh_db: FreshDatabase, postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(DSN_ENV, fresh_db.dsn)
    pg_dump = postgres_server.bin_dir / "pg_dump"
    world = World.create(tmp_path, f'''project = "t"
[environments.prod]
production = true
preflight = [{{ backup = "pg_dump", dsn_env = "{DSN_ENV}", pg_dump = "{pg_dump}", dir = "backups" }}]

[classes.jwt]
kind = "jwt-signing"
env_vars = ["JWT_SECRET"]
cadence_days = 90
tier = "high"
blast_radius = "sessions"
owner = "auth"
environments = ["prod"]
overlap = {{ token_ttl = "15m", margin = "0s" }}
''')
    world.put_current(SecretRef("prod", "jwt"), generate("base64-48"))
    record = world.rotate("jwt", "prod")
    assert record.state == "done", record.body.error
    [backup] = next(s.evidence for s in record.body.steps if s.step == "plan")["preflight"]
    path = Path(backup["path"])
    assert path.parent == tmp_path / "backups" and path.suffix == ".dump"
    assert backup["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert backup["verified"].startswith("pg_restore --list")
    listing = subprocess.run([str(postgres_server.bin_dir / "pg_restore"), "--list", str(path)],
                             capture_output=True, text=True, check=True).stdout
    assert "TABLE public orders" in listing
    captured = capfd.readouterr()
    assert_no_leak([world.journal_text(), world.records_text(), captured.out, captured.err],
                   [postgres_server.password])


def test_pg_dump_of_an_unreachable_database_refuses_before_anything_changed(
    tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = f"host=127.0.0.1 port={postgres_server.port} dbname=nope user=postgres " \
            f"password=Wr0ng$\"pw"
    monkeypatch.setenv(DSN_ENV, wrong)
    pg_dump = postgres_server.bin_dir / "pg_dump"
    world = World.create(tmp_path, f'''project = "t"
[environments.prod]
production = true

[classes.jwt]
kind = "jwt-signing"
env_vars = ["JWT_SECRET"]
cadence_days = 90
tier = "high"
blast_radius = "sessions"
owner = "auth"
environments = ["prod"]
overlap = {{ token_ttl = "15m", margin = "0s" }}
preflight = [{{ backup = "pg_dump", dsn_env = "{DSN_ENV}", pg_dump = "{pg_dump}" }}]
''')
    ref = world.put_current(SecretRef("prod", "jwt"), generate("base64-48"))
    record = world.engine().run(world.engine().start("jwt", "prod").id)
    assert record.state == "rolled-back"
    assert record.body.error is not None and record.body.error.step == "plan"
    assert "preflight pg_dump backup failed" in record.body.error.message
    assert len(world.store.list_versions(ref)) == 1
    assert_no_leak([world.journal_text(), world.records_text()], ['Wr0ng$"pw'])
