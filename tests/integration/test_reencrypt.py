"""`keyroll reencrypt` and the retire gate on real databases: SQLite and PostgreSQL.

Every test runs on both backends. Plaintexts, keys and Fernet keys are planted and every
output (CLI, JSON, journal, PostgreSQL's statement log) is grepped for them.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from keyroll.cli.app import run
from keyroll.errors import TargetError
from keyroll.model import Label
from keyroll.reencrypt import Reencryptor, cipher_for_class
from keyroll.reencrypt.connect import open_database
from keyroll.reencrypt.database import Database, Update
from keyroll.reencrypt.job import checkpoint_key
from tests.leaks import assert_no_leak
from tests.reencrypt_world import (
    DOC_CONTEXT,
    DSN_ENV,
    AppDatabase,
    World,
    email_context,
    garbage_value,
    inventory_text,
    make_world,
)
from tests.servers import PostgresServer

pytestmark = pytest.mark.integration

DEADLINE = 90.0


@pytest.fixture(params=["sqlite", "postgres"])
def app_db(request: pytest.FixtureRequest, tmp_path: Path) -> AppDatabase:
    if request.param == "sqlite":
        path = tmp_path / "app.db"
        sqlite3.connect(path).close()
        return AppDatabase("sqlite", f"sqlite:///{path}", path)
    fresh = request.getfixturevalue("fresh_db")
    return AppDatabase("postgres", fresh.dsn)


@pytest.fixture
def world(tmp_path: Path, app_db: AppDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    project = tmp_path / "project"
    project.mkdir()
    made = make_world(project, app_db)
    for var in ("KEYROLL_STORE", "KEYROLL_NOW"):
        monkeypatch.delenv(var, raising=False)
    for var, value in made.env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("KEYROLL_ACTOR", "alice")
    monkeypatch.chdir(project)
    yield made
    made.store.close()


class CLI:
    """Runs ``keyroll`` in-process and keeps every output for the leak checks."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.transcript: list[str] = []

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = run(list(args))
        captured = self.capsys.readouterr()
        self.transcript += [captured.out, captured.err]
        return code, captured.out, captured.err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> CLI:
    return CLI(capsys)


def _journal_text(world: World) -> str:
    return "\n".join(e.payload for e in world.store.audit_entries())


def _audit(world: World) -> list[dict[str, Any]]:
    return [json.loads(e.payload) for e in world.store.audit_entries()]


def _no_leaks(world: World, cli: CLI, postgres: PostgresServer | None = None) -> None:
    outputs: list[str | bytes] = [*cli.transcript, _journal_text(world)]
    if postgres is not None:
        outputs.append(postgres.log_text())
    assert_no_leak(outputs, world.planted(), where="reencrypt outputs")


def _job(world: World, **kwargs: Any) -> Reencryptor:
    cls = world.inventory.classes["field"]
    cipher = cipher_for_class(world.store, world.ref, cls)
    return Reencryptor(cipher, store=world.store, ref=world.ref, **kwargs)


# --- the happy path -----------------------------------------------------------------------


def test_dry_run_counts_then_reencrypt_rewrites_everything(
    world: World, cli: CLI, request: pytest.FixtureRequest
) -> None:
    world.populate(300)  # under version 1; every 10th row legacy Fernet; every 7th email NULL
    old = world.version(Label.CURRENT)
    world.rotate()
    new = world.version(Label.CURRENT)
    before = world.db.rows()

    code, out, err = cli("reencrypt", "field", "--env", "dev", "--dry-run", "--json")
    assert (code, err) == (0, "")
    dry = json.loads(out)
    assert dry["dry_run"] and dry["current_kid"] == new.kid_hex
    email, doc = dry["columns"]
    assert email["census"] == {old.kid_hex: 232, "legacy-fernet": 26, "null": 42}
    assert doc["census"] == {old.kid_hex: 270, "legacy-fernet": 30}
    assert (email["remaining"], doc["remaining"]) == (258, 300)
    assert world.db.rows() == before  # a dry run changes nothing

    code, out, err = cli("reencrypt", "field", "--env", "dev", "--json", "--batch-size", "40")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["ok"] and summary["remaining"] == 0 and summary["failed"] == 0
    assert summary["rewritten"] == 258 + 300
    world.check_all_current()
    assert world.store.get_meta(checkpoint_key(world.ref, "users", "email_enc")) is None

    code, out, _ = cli("reencrypt", "field", "--env", "dev")  # again: nothing to do
    assert code == 0 and "re-encrypted under" in out
    actions = [e["action"] for e in _audit(world)]
    assert actions.count("reencrypt.run") == 2 and actions.count("reencrypt.dry-run") == 1
    postgres = request.getfixturevalue("postgres_server") if world.db.kind == "postgres" else None
    _no_leaks(world, cli, postgres)


# --- SIGKILL mid-job, then resume ------------------------------------------------------------


def _under_current(world: World) -> int:
    kid = world.version(Label.CURRENT).kid.to_bytes(4, "big")
    return sum(1 for _, (_, doc) in world.db.rows().items() if doc is not None and doc[1:5] == kid)


@pytest.mark.slow
def test_sigkill_mid_job_then_resume_finishes_with_every_plaintext(world: World, cli: CLI) -> None:
    world.populate(3000)
    world.rotate()
    env = {**os.environ, **world.env}
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from keyroll.cli.app import run; sys.exit(run(sys.argv[1:]))",
         "reencrypt", "field", "--env", "dev", "--batch-size", "50", "--pause-ms", "20"],
        env=env, cwd=world.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + DEADLINE
        for _ in range(int(DEADLINE / 0.05)):
            if _under_current(world) >= 400 or time.monotonic() > deadline or child.poll() is not None:
                break
            time.sleep(0.05)
        assert child.poll() is None, "the job finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        child_out, child_err = child.communicate(timeout=30)
    cli.transcript += [child_out.decode(errors="replace"), child_err.decode(errors="replace")]
    assert child.returncode == -signal.SIGKILL
    done = _under_current(world)
    assert 400 <= done < 3000  # killed half-way: rows under two keys
    # columns run one after the other: email_enc is done, doc_enc was killed half-way
    assert world.store.get_meta(checkpoint_key(world.ref, "users", "email_enc")) is None
    checkpoint = world.store.get_meta(checkpoint_key(world.ref, "users", "doc_enc"))
    assert checkpoint is not None and json.loads(checkpoint)["kid"] == world.version(Label.CURRENT).kid_hex

    code, out, err = cli("reencrypt", "field", "--env", "dev", "--json", "--batch-size", "200")
    assert code == 0, err
    summary = json.loads(out)
    doc = summary["columns"][1]
    assert doc["resumed_after"] is not None
    assert int(doc["resumed_after"]) > 0
    # the resumed run did not redo the first part: together both runs rewrote each row once
    assert summary["columns"][1]["rewritten"] == 3000 - done
    world.check_all_current()
    _no_leaks(world, cli)


class CountingStore:
    """The world's store, counting checkpoint writes (every other call goes through)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.writes: list[str | None] = []

    def put_meta(self, name: str, value: str | None, **kwargs: Any) -> None:
        if name.startswith("reencrypt:"):
            self.writes.append(value)
        self.inner.put_meta(name, value, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class WrappedDatabase(Database):
    """The real adapter, every call passed through (subclasses change `compare_and_set`)."""

    inner: Database

    def resolve(self, table: str, key: str, column: str) -> Any:
        return self.inner.resolve(table, key, column)

    def scan(self, *args: Any) -> Any:
        return self.inner.scan(*args)

    def _bound(self, *args: Any) -> Any:
        return self.inner._bound(*args)

    def _count_range(self, *args: Any) -> int:
        return self.inner._count_range(*args)

    def _census_range(self, *args: Any) -> Any:
        return self.inner._census_range(*args)

    def close(self) -> None:
        self.inner.close()

    def compare_and_set(self, column: Any, updates: Any) -> int:
        return self.inner.compare_and_set(column, updates)


class FailingDatabase(WrappedDatabase):
    """The real adapter; the compare-and-set of batch ``fail_at`` of ``doc_enc`` fails."""

    def __init__(self, inner: Database, fail_at: int) -> None:
        self.inner, self.fail_at, self.batches = inner, fail_at, 0

    def compare_and_set(self, column: Any, updates: Any) -> int:
        if column.column == "doc_enc":
            self.batches += 1
            if self.batches == self.fail_at:
                raise TargetError("the database went away (planted failure)")
        return self.inner.compare_and_set(column, updates)


@pytest.mark.parametrize(("every", "per_column"), [(3600.0, 1), (0.0, 10)])
def test_checkpoints_are_written_at_most_every_interval(world: World, every: float,
                                                        per_column: int) -> None:
    world.populate(200)
    world.rotate()
    counting = CountingStore(world.store)
    cls = world.inventory.classes["field"]
    job = Reencryptor(cipher_for_class(world.store, world.ref, cls), store=counting,  # type: ignore[arg-type]
                      ref=world.ref, batch_size=20, checkpoint_every=every)
    report = job.run(cls.columns)
    assert report.ok and report.columns[1].rewritten == 200
    positions = [w for w in counting.writes if w is not None]
    assert len(positions) == 2 * per_column, counting.writes  # 10 windows of 20 per column
    assert counting.writes.count(None) == 2  # each pass's end clears its checkpoint
    world.check_all_current()


def test_a_failed_batch_leaves_the_last_committed_position_then_resume_finishes(
        world: World) -> None:
    world.populate(200)
    world.rotate()
    opened: list[FailingDatabase] = []

    def connect(dsn: str, env_var: str) -> Database:
        opened.append(FailingDatabase(open_database(dsn, env_var=env_var), fail_at=6))
        return opened[-1]

    job = _job(world, batch_size=20, checkpoint_every=3600.0, connect=connect)
    with pytest.raises(TargetError, match="planted failure"):
        job.run(world.inventory.classes["field"].columns)
    # five batches of doc_enc committed; the checkpoint says so although the interval had
    # not passed since the first batch's
    checkpoint = world.store.get_meta(checkpoint_key(world.ref, "users", "doc_enc"))
    assert checkpoint is not None
    assert json.loads(checkpoint)["after"] == {"int": 100}
    report = _job(world, batch_size=20).run(world.inventory.classes["field"].columns)
    assert report.ok
    doc = report.columns[1]
    assert (doc.resumed_after, doc.rewritten) == ("100", 100)  # nothing before it again
    world.check_all_current()


# --- concurrent application writes ----------------------------------------------------------


class RacingDatabase(WrappedDatabase):
    """The real adapter, with an application write slipped in between scan and update."""

    def __init__(self, inner: Database, world: World, lagging: Any) -> None:
        self.inner, self.world, self.lagging = inner, world, lagging
        self.batches = 0

    def compare_and_set(self, column: Any, updates: Any) -> int:
        if column.column == "email_enc":
            self.batches += 1
        if updates and column.column == "email_enc" and self.batches <= 8:  # the first pass
            # the application writes a row of this very batch first; every other batch it
            # is a lagging instance that still encrypts under the previous key
            target: Update = updates[len(updates) // 2]
            key = int(str(target.key))
            plain = f"planted-app-write-{key}-{secrets.token_hex(6)}"
            cipher = self.lagging if self.batches % 2 else self.world.cipher_of(Label.CURRENT)
            self.world.db.execute("UPDATE users SET email_enc = ? WHERE id = ?",
                                  (cipher.encrypt_text(plain, context=email_context(key)), key))
            self.world.plaintexts[key] = (plain, self.world.plaintexts[key][1])
        return self.inner.compare_and_set(column, updates)


def test_application_writes_during_the_job_are_never_lost(world: World) -> None:
    world.populate(400, legacy_every=1000, null_every=1000)
    world.rotate()
    lagging = world.cipher_of(Label.PREVIOUS)
    racers: list[RacingDatabase] = []

    def connect(dsn: str, env_var: str) -> Database:
        racers.append(RacingDatabase(open_database(dsn, env_var=env_var), world, lagging))
        return racers[-1]

    report = _job(world, batch_size=50, connect=connect).run(world.inventory.classes["field"].columns)
    email = report.columns[0]
    assert email.conflicts == 8  # one lost compare-and-set per batch: the app's write won
    assert email.passes == 2  # the lagging writes were under the old key: a second pass took them
    assert report.ok
    world.check_all_current()  # every application write survived, under the current key


def test_application_thread_writing_throughout(world: World) -> None:
    world.populate(1500, legacy_every=1000, null_every=1000)
    world.rotate()
    current = world.cipher_of(Label.CURRENT)
    lagging = world.cipher_of(Label.PREVIOUS)
    stop = threading.Event()
    lock = threading.Lock()
    writes = 0

    def app() -> None:
        nonlocal writes
        deadline = time.monotonic() + DEADLINE
        for n in range(100_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            key = secrets.randbelow(1500) + 1
            plain = f"planted-thread-{key}-{n}"
            cipher = lagging if n % 3 == 0 else current
            with lock:
                world.db.execute("UPDATE users SET email_enc = ? WHERE id = ?",
                                 (cipher.encrypt_text(plain, context=email_context(key)), key))
                world.plaintexts[key] = (plain, world.plaintexts[key][1])
                writes += 1
            time.sleep(0.001)

    thread = threading.Thread(target=app)
    thread.start()
    try:
        report = _job(world, batch_size=25, max_passes=2).run(
            world.inventory.classes["field"].columns)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert writes > 0
    assert report.columns[0].failed == 0
    # the app may have written under the old key after the last pass: one more run settles it
    final = _job(world).run(world.inventory.classes["field"].columns)
    assert final.ok
    world.check_all_current()


# --- the retire gate ----------------------------------------------------------------------


def test_retire_gate_blocks_at_one_remaining_row(world: World) -> None:
    world.populate(120)
    engine = world.engine()
    record = engine.run(engine.start("field", "dev").id)
    assert record.state == "overlap"
    old_cipher = world.cipher_of(Label.PREVIOUS)
    world.clock.tick(timedelta(hours=2))
    waiting = engine.run(record.id)
    assert waiting.state == "overlap"
    assert "223 records still encrypted under the old key" in waiting.body.waiting

    assert _job(world).run(world.inventory.classes["field"].columns).ok
    # one row written under the old key (a lagging app instance) keeps the gate shut
    world.db.execute("UPDATE users SET doc_enc = ? WHERE id = 5",
                     (old_cipher.encrypt(b"planted-late-write", context=DOC_CONTEXT),))
    world.plaintexts[5] = (world.plaintexts[5][0], b"planted-late-write")
    blocked = engine.run(record.id)
    assert blocked.state == "overlap"
    assert "1 records still encrypted under the old key" in blocked.body.waiting
    assert world.store.get_labels(world.ref) == {Label.CURRENT: 2, Label.PREVIOUS: 1}

    assert _job(world).run(world.inventory.classes["field"].columns).ok
    done = engine.run(record.id)
    assert done.state == "done"
    overlap = next(s for s in done.body.steps if s.step == "overlap")
    assert overlap.evidence["remaining_under_old_key"] == 0
    retire = next(s for s in done.body.steps if s.step == "retire")
    assert retire.evidence["remaining_under_old_key"] == 0
    assert retire.evidence["reencrypt_remaining"]["columns"] == {
        "users.email_enc": 0, "users.doc_enc": 0}
    assert world.store.get_labels(world.ref) == {Label.CURRENT: 2}
    world.check_all_current()


def test_retire_gate_cannot_count_without_the_dsn(world: World,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    world.populate(10)
    monkeypatch.delenv(DSN_ENV)
    engine = world.engine()
    record = engine.run(engine.start("field", "dev").id)
    world.clock.tick(timedelta(hours=2))
    waiting = engine.run(record.id)
    assert waiting.state == "overlap"
    assert "no way to count" in waiting.body.waiting


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(("table", "column", "message"), [
    ("nosuch", "email_enc", "no table 'nosuch'"),
    ("users", "nosuch", "has no column 'nosuch'"),
    ('users"; DROP TABLE users; --', "email_enc", "no table"),
])
def test_unknown_table_or_column_is_one_line_exit_2(world: World, cli: CLI, table: str,
                                                    column: str, message: str) -> None:
    world.populate(20)
    world.rotate()
    before = world.db.rows()
    text = inventory_text(table=table.replace('"', '\\"'), email=column)
    (world.path / "keyroll.toml").write_text(text)
    code, _, err = cli("reencrypt", "field", "--env", "dev")
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert world.db.rows() == before  # resolved before anything is written: doc_enc untouched
    _no_leaks(world, cli)


def test_undecryptable_rows_are_reported_by_key_and_the_job_goes_on(world: World, cli: CLI) -> None:
    world.populate(90)
    world.rotate()
    for key in (13, 58):
        email, doc = garbage_value(world, key)
        world.db.execute("UPDATE users SET email_enc = ?, doc_enc = ? WHERE id = ?", (email, doc, key))
    code, out, err = cli("reencrypt", "field", "--env", "dev", "--json", "--batch-size", "25")
    assert code == 1
    summary = json.loads(out)
    assert not summary["ok"]
    for column in summary["columns"]:
        assert column["failed"] == 2 and column["failed_keys"] == ["13", "58"]
        assert column["remaining"] == 2
    code, out, err = cli("reencrypt", "field", "--env", "dev")
    assert code == 1
    assert "rows no retained key opens (row keys: 13, 58)" in err
    rows = world.db.rows()
    current = world.version(Label.CURRENT).kid
    cipher = world.cipher_of(Label.CURRENT)
    for key, (_, doc) in rows.items():
        if key not in (13, 58):
            assert doc is not None and cipher.kid_of(doc) == current
            assert cipher.decrypt(doc, context=DOC_CONTEXT) == world.plaintexts[key][1]
    entries = [e for e in _audit(world) if e["action"] == "reencrypt.run"]
    assert entries[-1]["outcome"] == "failed"
    _no_leaks(world, cli)


def test_wrong_master_key_touches_nothing(world: World, cli: CLI,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    world.populate(30)
    world.rotate()
    before = world.db.rows()
    monkeypatch.setenv("KEYROLL_MASTER_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    code, _, err = cli("reencrypt", "field", "--env", "dev")
    assert code == 2  # refused at open by the store's key check (issue 10 §5)
    assert "KEYROLL_MASTER_KEY does not open the local store" in err and err.count("\n") == 1
    assert world.db.rows() == before
    _no_leaks(world, cli)


def test_missing_dsn_and_wrong_kind_are_usage_errors(world: World, cli: CLI,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DSN_ENV)
    code, _, err = cli("reencrypt", "field", "--env", "dev")
    assert code == 2 and f"{DSN_ENV} is not set" in err
    monkeypatch.setenv(DSN_ENV, "mysql://u:hunter2-planted@127.0.0.1/x")
    code, _, err = cli("reencrypt", "field", "--env", "dev")
    assert code == 2 and "cannot re-encrypt" in err and "hunter2" not in err
    code, _, err = cli("reencrypt", "nosuch", "--env", "dev")
    assert code == 2
    monkeypatch.setenv(DSN_ENV, world.db.dsn)
    monkeypatch.delenv("SECRET_KEY")
    code, _, err = cli("reencrypt", "field", "--env", "dev")
    assert code == 2 and "legacy Fernet keys" in err and "SECRET_KEY is not set" in err


# --- key types (PostgreSQL casts the batch arrays to the key's own type) ---------------------


@pytest.mark.parametrize("key_type", ["uuid", "text", "varchar(40)", "integer"])
def test_postgres_key_types(fresh_db: Any, tmp_path: Path, key_type: str) -> None:
    import uuid

    import psycopg

    db = AppDatabase("postgres", fresh_db.dsn)
    world = make_world(tmp_path, db, table="unused")
    try:
        world.rotate()
        old = world.cipher_of(Label.PREVIOUS)
        keys: list[Any] = (
            [uuid.uuid4() for _ in range(60)] if key_type == "uuid"
            else list(range(1, 61)) if key_type == "integer"
            else [f"user-{secrets.token_hex(4)}" for _ in range(60)]
        )
        with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE users (id {key_type} PRIMARY KEY, email_enc text, doc_enc bytea)")
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO users VALUES (%s, %s, %s)", [
                    (k, old.encrypt_text(f"planted-{k}", context=("users", "email", str(k))),
                     old.encrypt(str(k).encode(), context=DOC_CONTEXT)) for k in keys])
        cls = world.inventory.classes["field"]
        report = Reencryptor(cipher_for_class(world.store, world.ref, cls, environ=world.env),
                             store=world.store, ref=world.ref, batch_size=16,
                             environ={DSN_ENV: fresh_db.dsn}).run(cls.columns)
        assert report.ok and [c.rewritten for c in report.columns] == [60, 60]
        current = world.cipher_of(Label.CURRENT)
        with psycopg.connect(fresh_db.dsn, autocommit=True) as conn:
            for k, email, doc in conn.execute("SELECT id, email_enc, doc_enc FROM users"):
                assert current.decrypt_text(email, context=("users", "email", str(k))) == f"planted-{k}"
                assert current.decrypt(doc, context=DOC_CONTEXT) == str(k).encode()
    finally:
        world.store.close()


def test_postgres_login_failure_never_echoes_the_password(postgres_server: PostgresServer) -> None:
    from keyroll.errors import TargetError

    password = "planted-wrong-password-" + secrets.token_hex(6)
    for dsn in (postgres_server.dsn(user="postgres", password=password),
                f"postgresql+psycopg://postgres:{password}@127.0.0.1:{postgres_server.port}/postgres"):
        with pytest.raises(TargetError) as info:
            open_database(dsn, env_var=DSN_ENV)
        message = str(info.value)
        assert "cannot connect" in message and DSN_ENV in message
        assert_no_leak([message], [password])


def test_postgres_batch_behind_an_application_lock_is_retried_not_waited_for(
    fresh_db: Any, tmp_path: Path
) -> None:
    import psycopg

    db = AppDatabase("postgres", fresh_db.dsn)
    world = make_world(tmp_path, db)
    try:
        world.populate(100, legacy_every=1000, null_every=1000)
        world.rotate()
        held = threading.Event()
        release = threading.Event()

        def application_transaction() -> None:
            with psycopg.connect(fresh_db.dsn) as conn:  # a transaction holding row 50's lock
                conn.execute("SELECT 1 FROM users WHERE id = 50 FOR UPDATE")
                held.set()
                release.wait(timeout=30)

        thread = threading.Thread(target=application_transaction)
        thread.start()
        try:
            assert held.wait(timeout=30)
            passes: list[int] = []

            def progress(update: Any) -> None:
                passes.append(update.passes)
                release.set()  # the application commits after the job's first batch gave up

            cls = world.inventory.classes["field"]
            report = Reencryptor(cipher_for_class(world.store, world.ref, cls, environ=world.env),
                                 store=world.store, ref=world.ref, batch_size=100,
                                 environ={DSN_ENV: fresh_db.dsn}, progress=progress,
                                 ).run(cls.columns[:1])
        finally:
            release.set()
            thread.join(timeout=30)
        email = report.columns[0]
        assert email.conflicts == 100  # the locked batch was skipped after lock_timeout (2 s)
        assert email.passes == 2 and passes == [1, 2] and report.ok
        assert email.longest_batch_ms < 30_000
    finally:
        world.store.close()


def test_counts_in_small_windows_match_one_statement(world: World,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import keyroll.reencrypt.database as database

    world.populate(100)
    world.rotate()
    world.populate(23, start=101)  # some rows already under the current key
    cls = world.inventory.classes["field"]
    whole = _job(world).run(cls.columns, dry_run=True)
    for window in (1, 7, 100, 123, 124):
        monkeypatch.setattr(database, "COUNT_WINDOW", window)
        windowed = _job(world).run(cls.columns, dry_run=True)
        assert [c.census for c in windowed.columns] == [c.census for c in whole.columns]
        assert [c.remaining for c in windowed.columns] == [c.remaining for c in whole.columns]
    # 100 old rows (14 NULL emails) + legacy rows 110 and 120 of the second batch
    assert [c.remaining for c in whole.columns] == [100 - 14 + 2, 100 + 2]
