"""Issue 15 §5: preflight backups, the change window and the rehearsal gate, through the engine.

Backups are real: SQLite's online backup of a database an app writes, a command backup, and
(in tests/integration/test_preflight_pg_dump.py) ``pg_dump`` of a real PostgreSQL.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from keyroll._compat import UTC
from keyroll.audit import Journal
from keyroll.errors import InventoryError, RotationRefused
from keyroll.generate import generate
from keyroll.inventory import parse_inventory
from keyroll.model import SecretRef
from keyroll.reports import checklist
from keyroll.stores.sqlite import SQLiteStore
from tests.leaks import assert_no_leak
from tests.world import Clock, World

# 2026-11-01 02:00 UTC is 09:00 in Ho Chi Minh City (UTC+7, no DST)
INSIDE = datetime(2026, 11, 1, 19, 30, tzinfo=UTC)  # 02:30 local
OUTSIDE = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)  # 09:00 local


def _text(*, env_extra: str = "", class_extra: str = "") -> str:
    return f'''project = "t"
[environments.staging]
drill = true
[environments.prod]
production = true
{env_extra}

[classes.jwt]
kind = "jwt-signing"
env_vars = ["JWT_SECRET"]
cadence_days = 90
tier = "high"
blast_radius = "sessions"
owner = "auth"
environments = ["staging", "prod"]
overlap = {{ token_ttl = "15m", margin = "0s" }}
{class_extra}
'''


def _world(tmp_path: Path, text: str, now: datetime = INSIDE) -> World:
    world = World.create(tmp_path, text)
    world.clock.now = now
    for env in ("staging", "prod"):
        world.put_current(SecretRef(env, "jwt"), generate("base64-48"))
    return world


def _refusals(world: World) -> list[dict[str, object]]:
    return [r.evidence for r in Journal(world.store).records()
            if r.action == "rotation.refused" and r.outcome == "refused"]


# --- backups ------------------------------------------------------------------------------

def test_sqlite_backup_is_verified_and_its_path_and_sha256_are_evidence(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
        conn.executemany("INSERT INTO orders (total) VALUES (?)", [(n,) for n in range(500)])
    conn.close()
    world = _world(tmp_path, _text(class_extra='preflight = [{ backup = "sqlite", '
                                               'database = "app.db" }]'))
    record = world.rotate("jwt", "prod")
    assert record.state == "done", record.body.error
    plan = next(s.evidence for s in record.body.steps if s.step == "plan")
    [backup] = plan["preflight"]
    path = Path(backup["path"])
    assert path.parent == tmp_path / ".keyroll" / "backups"
    assert record.id in path.name and path.stat().st_mode & 0o777 == 0o600
    assert backup["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert backup["verified"].startswith("PRAGMA integrity_check ok")
    with sqlite3.connect(path) as copy:
        assert copy.execute("SELECT count(*) FROM orders").fetchone() == (500,)
    copy.close()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".keyroll-tmp")]
    text = checklist(world.store, world.inventory, Journal(world.store), "jwt", "prod")
    assert f"- [x] Backup taken (sqlite): `{path}`, SHA-256 `{backup['sha256'][:16]}" in text


def test_command_backup_fills_the_private_path_and_its_check_runs(tmp_path: Path) -> None:
    secret = "pl@nted$\"\\x"
    os.environ["KR_TEST_BACKUP_TOKEN"] = secret
    try:
        world = _world(tmp_path, _text(env_extra=(
            'preflight = [{ backup = { run = "sh -c \'echo dump-$KEYROLL_ROTATION > '
            '$KEYROLL_BACKUP_PATH; echo token=$KR_TEST_BACKUP_TOKEN\'", '
            'check = "sh -c \'grep -q dump- $KEYROLL_BACKUP_PATH\'", '
            'pass_env = ["KR_TEST_BACKUP_TOKEN"] } }]')))
        record = world.rotate("jwt", "prod")
    finally:
        del os.environ["KR_TEST_BACKUP_TOKEN"]
    assert record.state == "done", record.body.error
    [backup] = next(s.evidence for s in record.body.steps if s.step == "plan")["preflight"]
    assert Path(backup["path"]).read_text() == f"dump-{record.id}\n"
    assert backup["verified"] == "non-empty, check exit code 0"
    assert_no_leak([world.journal_text(), world.records_text()], [secret])


@pytest.mark.parametrize(("spec", "says"), [
    ('{ backup = { run = "false" } }', "backup command failed"),
    ('{ backup = { run = "true" } }', "wrote nothing"),
    ('{ backup = { run = "sh -c \'echo x > $KEYROLL_BACKUP_PATH\'", check = "false" } }',
     "does not verify"),
    ('{ backup = "sqlite", database = "missing.db" }', "does not exist"),
    ('{ backup = "pg_dump", dsn_env = "KR_TEST_UNSET_DSN" }', "KR_TEST_UNSET_DSN"),
])
def test_a_failed_backup_refuses_before_anything_changed(tmp_path: Path, spec: str,
                                                         says: str) -> None:
    world = _world(tmp_path, _text(class_extra=f"preflight = [{spec}]"))
    ref = SecretRef("prod", "jwt")
    versions = world.store.list_versions(ref)
    record = world.engine().run(world.engine().start("jwt", "prod").id)
    assert record.state == "rolled-back"
    assert record.body.error is not None and record.body.error.step == "plan"
    assert says in record.body.error.message and "\n" not in record.body.error.message
    assert world.store.list_versions(ref) == versions  # no new version was created
    folder = tmp_path / ".keyroll" / "backups"
    assert not folder.exists() or not [p for p in folder.iterdir() if p.is_file()]


# --- change window --------------------------------------------------------------------------

WINDOW = 'window = "02:00-04:00 Asia/Ho_Chi_Minh"'


def test_outside_the_window_a_production_rotation_is_refused_journaled_and_nothing_changes(
    tmp_path: Path,
) -> None:
    world = _world(tmp_path, _text(env_extra=WINDOW), now=OUTSIDE)
    before = world.store.list_rotations()
    with pytest.raises(RotationRefused) as caught:
        world.engine().start("jwt", "prod")
    message = str(caught.value)
    assert "outside the change window 02:00-04:00 Asia/Ho_Chi_Minh" in message
    assert "2026-11-01 19:00 UTC" in message and "--queue" in message
    assert caught.value.exit_code == 2
    assert world.store.list_rotations() == before
    assert [r["gate"] for r in _refusals(world)] == ["window"]
    # staging has no window: it rotates at any hour
    assert world.rotate("jwt", "staging").state == "done"


def test_a_queued_rotation_parks_until_the_window_opens_then_advance_runs_it(
    tmp_path: Path,
) -> None:
    world = _world(tmp_path, _text(class_extra=WINDOW), now=OUTSIDE)
    engine = world.engine()
    record = engine.run(engine.start("jwt", "prod", queue=True).id)
    assert record.state == "plan" and record.body.steps == ()
    assert record.body.waiting is not None and "opens at 2026-11-01 19:00" in record.body.waiting
    report = engine.advance(start_due=False)
    assert report.waiting == (record.id,) and report.failed == ()
    world.clock.now = datetime(2026, 11, 1, 19, 0, tzinfo=UTC)  # 02:00 local: open
    report = engine.advance(start_due=False)
    assert report.moved == (record.id,)
    assert world.finish(record.id).state == "done"
    done = engine.get(record.id)
    plan = next(s.evidence for s in done.body.steps if s.step == "plan")
    assert plan["window"] == {"window": "02:00-04:00 Asia/Ho_Chi_Minh", "inside": True,
                              "enforced": True}
    waits = [r for r in Journal(world.store).records() if r.action == "rotation.waiting"]
    assert len(waits) == 1  # journaled once, not once per tick


def test_an_incident_rotation_is_not_held_by_the_window(tmp_path: Path) -> None:
    world = _world(tmp_path, _text(env_extra=WINDOW), now=OUTSIDE)
    record = world.rotate("jwt", "prod", incident=True)
    assert record.state == "done"
    plan = next(s.evidence for s in record.body.steps if s.step == "plan")
    assert plan["window"]["inside"] is False and plan["window"]["enforced"] is False


# --- rehearsal gate -------------------------------------------------------------------------

def test_production_needs_a_completed_drill_in_staging_within_the_gate(tmp_path: Path) -> None:
    world = _world(tmp_path, _text(class_extra='require_rehearsal = "14d"\n'
                                               'rehearsal_environment = "staging"'))
    with pytest.raises(RotationRefused) as caught:
        world.engine().start("jwt", "prod")
    assert "no completed rehearsal of jwt in staging within the last 14d" in str(caught.value)
    assert "keyroll rotate jwt --env staging --drill" in str(caught.value)
    assert world.store.list_rotations(SecretRef("prod", "jwt")) == []
    drill = world.rotate("jwt", "staging")
    assert drill.state == "done" and drill.body.drill
    record = world.rotate("jwt", "prod")
    assert record.state == "done"
    plan = next(s.evidence for s in record.body.steps if s.step == "plan")
    assert plan["rehearsal"]["rotation"] == drill.id
    text = checklist(world.store, world.inventory, Journal(world.store), "jwt", "prod")
    assert "- [x] Staging rehearsal completed: staging" in text and drill.id in text
    # fifteen days later the rehearsal is stale again
    world.clock.tick(timedelta(days=15))
    with pytest.raises(RotationRefused):
        world.engine().start("jwt", "prod")
    assert [r["gate"] for r in _refusals(world)] == ["require_rehearsal", "require_rehearsal"]


def test_a_rolled_back_drill_is_no_rehearsal(tmp_path: Path) -> None:
    world = _world(tmp_path, _text(env_extra='require_rehearsal = "14d"'))
    engine = world.engine()
    drill = engine.start("jwt", "staging")
    engine.rollback(drill.id)
    with pytest.raises(RotationRefused):
        engine.start("jwt", "prod")


@pytest.mark.parametrize(("extra", "says"), [
    ('window = "2am-4am"', "HH:MM-HH:MM Zone"),
    ('window = "02:00-04:00 Mars/Olympus"', "not an IANA time zone"),
    ('window = "25:00-04:00 UTC"', "hours are 00-23"),
    ('window = "02:00-02:00 UTC"', "empty"),
    ('rehearsal_environment = "staging"', "needs require_rehearsal"),
    ('require_rehearsal = "14d"\nrehearsal_environment = "prod"', "is production"),
    ('preflight = [{ backup = "pg_dump" }]', "needs dsn_env"),
    ('preflight = [{ backup = "sqlite" }]', "exactly one of database"),
    ('preflight = [{ backup = "tar" }]', "preflight.0.backup"),
])
def test_bad_gate_settings_are_one_line_inventory_errors(extra: str, says: str) -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(_text(class_extra=extra))
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_a_crash_in_the_middle_of_a_backup_resumes_and_leaves_no_partial_file(
    tmp_path: Path,
) -> None:
    """The backup command SIGKILLs keyroll itself after writing half a backup (first run only);
    the next run removes the partial temp file, takes the backup again and finishes."""
    text = _text(class_extra=(
        'preflight = [{ backup = { run = "sh -c \'echo half > $KEYROLL_BACKUP_PATH; '
        'if [ ! -e crashed ]; then touch crashed; kill -9 $PPID; exit 1; fi; '
        'echo whole >> $KEYROLL_BACKUP_PATH\'" } }]'))
    world = _world(tmp_path, text)
    key, store_path = world.key, tmp_path / ".keyroll" / "store.db"
    world.store.close()

    def reopen() -> World:
        store = SQLiteStore(store_path, key)
        return World(tmp_path, store, parse_inventory(text, tmp_path / "keyroll.toml"),
                     Clock(INSIDE), key)

    pid = os.fork()
    if pid == 0:  # the child: keyroll, killed by its own backup command
        try:
            child = reopen()
            child.engine().run(child.engine().start("jwt", "prod").id)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    folder = tmp_path / ".keyroll" / "backups"
    [partial] = [p.name for p in folder.iterdir()]
    assert partial.startswith(".keyroll-tmp-")  # half a backup, under its temp name
    resumed = reopen()
    try:
        [record] = resumed.store.list_rotations(SecretRef("prod", "jwt"))
        assert record.state == "plan"
        final = resumed.finish(record.id)
        assert final.state == "done", final.body.error
        [backup] = next(s.evidence for s in final.body.steps
                        if s.step == "plan" and s.outcome == "ok")["preflight"]
        files = sorted(p.name for p in folder.iterdir())
        assert files == [Path(backup["path"]).name]  # the partial temp file is gone
        assert Path(backup["path"]).read_text() == "half\nwhole\n"
    finally:
        resumed.close()


def test_the_dry_run_shows_the_gates_and_backups(tmp_path: Path) -> None:
    world = _world(tmp_path, _text(env_extra=f'{WINDOW}\nrequire_rehearsal = "14d"',
                                   class_extra='preflight = [{ backup = "sqlite", '
                                               'database = "app.db" }]'), now=OUTSIDE)
    planned = {p.step: p.description for p in world.engine().preview("jwt", "prod")}
    assert planned["window"].startswith("02:00-04:00 Asia/Ho_Chi_Minh: closed: outside")
    assert "no completed rehearsal" in planned["rehearsal"]
    assert planned["backup"].startswith("sqlite before anything changes")
    assert world.store.list_rotations() == []
