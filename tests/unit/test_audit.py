from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyroll.audit import Journal, current_actor
from keyroll.errors import AuditTampered
from keyroll.model import SecretRef
from keyroll.stores.sqlite import SQLiteStore

REF = SecretRef("prod", "jwt-access")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def journal(db: Path) -> Iterator[Journal]:
    ticks = iter(range(1000))
    start = datetime(2026, 11, 22, tzinfo=UTC)
    with SQLiteStore(db, secrets.token_bytes(32)) as store:
        j = Journal(store, actor="alice", clock=lambda: start + timedelta(seconds=next(ticks)))
        for n in range(1, 6):
            j.append("rotation.step", ref=REF, version=n, fingerprints=[f"{n:016x}"],
                     evidence={"step": n})
        yield j


def _sql(db: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    with sqlite3.connect(db) as conn:
        for sql, params in statements:
            conn.execute(sql, params)


def _row(db: Path, seq: int) -> tuple[str, str, str]:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT payload, prev_hash, hash FROM audit WHERE seq=?", (seq,)).fetchone()
    return row[0], row[1], row[2]


def test_intact_journal_verifies(journal: Journal) -> None:
    report = journal.check()
    assert report.count == 5
    assert len(report.head) == 64
    records = list(journal.records())
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[0].actor == "alice"
    assert records[2].evidence == {"step": 3}
    assert journal.verify(expect_head=report.head).ok


def test_edited_record(journal: Journal, db: Path) -> None:
    payload, _, _ = _row(db, 3)
    _sql(db, ("UPDATE audit SET payload=? WHERE seq=3", (payload.replace('"alice"', '"mallory"'),)))
    report = journal.verify()
    assert report.problems == ("record 3 was edited: its content does not match its hash",)
    with pytest.raises(AuditTampered, match="record 3 was edited"):
        journal.check()


def test_edited_record_with_recomputed_hash(journal: Journal, db: Path) -> None:
    import hashlib

    payload, prev, _ = _row(db, 3)
    forged = payload.replace('"alice"', '"mallory"')
    digest = hashlib.sha256(f"{prev}\n{forged}".encode()).hexdigest()
    _sql(db, ("UPDATE audit SET payload=?, hash=? WHERE seq=3", (forged, digest)))
    problems = journal.verify().problems
    assert problems == (
        "record 4 does not link to record 3: a record before it was edited, inserted or "
        "reordered",
    )


def test_deleted_record(journal: Journal, db: Path) -> None:
    _sql(db, ("DELETE FROM audit WHERE seq=2", ()))
    problems = journal.verify().problems
    assert problems[0] == "record 2 is missing: deleted from the journal"


def test_inserted_record(journal: Journal, db: Path) -> None:
    # shift 3..5 up by one and insert a forged record 3 that links to record 2
    import hashlib

    _sql(db, ("UPDATE audit SET seq = seq + 10 WHERE seq >= 3", ()),
         ("UPDATE audit SET seq = seq - 9 WHERE seq >= 13", ()))
    _, _, hash2 = _row(db, 2)
    forged = '{"action":"secret.reveal","actor":"mallory","seq":3}'
    digest = hashlib.sha256(f"{hash2}\n{forged}".encode()).hexdigest()
    _sql(db, ("INSERT INTO audit VALUES (3, ?, ?, ?)", (forged, hash2, digest)))
    problems = journal.verify().problems
    assert any("record 4 carries sequence number 3" in p for p in problems)


def test_reordered_records(journal: Journal, db: Path) -> None:
    two, three = _row(db, 2), _row(db, 3)
    _sql(db, ("UPDATE audit SET payload=?, prev_hash=?, hash=? WHERE seq=2", three),
         ("UPDATE audit SET payload=?, prev_hash=?, hash=? WHERE seq=3", two))
    problems = journal.verify().problems
    assert "record 2 carries sequence number 3: moved from its place (inserted or reordered)" in problems
    assert "record 3 carries sequence number 2: moved from its place (inserted or reordered)" in problems


def test_truncated_tail_is_caught_by_pinned_head(journal: Journal, db: Path) -> None:
    head = journal.check().head
    _sql(db, ("DELETE FROM audit WHERE seq=5", ()))
    assert journal.verify().ok  # a chain alone cannot see a cut end ...
    problems = journal.verify(expect_head=head).problems  # ... a pinned head can
    assert problems and "cut off the end" in problems[0]


def test_actor_from_environment() -> None:
    assert current_actor({"KEYROLL_ACTOR": "ci-bot"}) == "ci-bot"
    assert current_actor({})
