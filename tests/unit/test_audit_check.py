"""The verified-head checkpoint on the local store: what an incremental check reads and finds,
what only the full check finds, and a checkpoint or full-check record edited in the file."""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyroll.audit import Journal, chain_hash
from keyroll.audit_check import (
    CHECKPOINT_KEY,
    FULL_CHECK_KEY,
    check_full,
    check_recent,
    last_full_check,
)
from keyroll.model import SecretRef
from keyroll.stores.sqlite import SQLiteStore

REF = SecretRef("prod", "jwt-access")
START = datetime(2026, 11, 22, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def journal(db: Path) -> Iterator[Journal]:
    ticks = iter(range(10_000))
    with SQLiteStore(db, secrets.token_bytes(32)) as store:
        j = Journal(store, actor="alice", clock=lambda: START + timedelta(seconds=next(ticks)))
        for n in range(1, 11):
            j.append("rotation.step", ref=REF, version=n, evidence={"step": n})
        yield j


def _sql(db: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(sql, params)


def _meta(db: Path, key: str) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0])


def test_first_check_walks_everything_then_only_what_is_new(journal: Journal) -> None:
    first = check_recent(journal, advance=True, now=START)
    assert first.ok and first.mode == "full" and first.walked == 10
    assert first.last_full is not None and first.last_full.ok  # recorded as a full check
    again = check_recent(journal, advance=True)
    assert again.ok and again.mode == "incremental" and (again.since, again.walked) == (10, 0)
    for _ in range(3):
        journal.append("later")
    third = check_recent(journal, advance=True)
    assert third.ok and (third.since, third.walked, third.report.count) == (10, 3, 13)
    assert third.report.head == journal.verify().head
    assert check_recent(journal).since == 13


def test_an_edit_before_the_checkpoint_waits_for_the_full_check(
    journal: Journal, db: Path
) -> None:
    assert check_full(journal, now=START).ok
    payload = journal.store.audit_entries(3, 4).__next__().payload
    _sql(db, "UPDATE audit SET payload=? WHERE seq=3", (payload.replace("alice", "mallory"),))
    assert check_recent(journal).ok  # honest limit: record 3 lies before the verified head
    full = check_full(journal, now=START + timedelta(hours=1))
    assert not full.ok and "record 3 was edited" in full.report.problems[0]
    recorded = last_full_check(journal.store)
    assert recorded is not None and not recorded.ok
    assert recorded.at == START + timedelta(hours=1) and recorded.by == "alice"
    after = check_recent(journal, advance=True)
    assert not after.ok and "last full check" in after.report.problems[0]
    assert after.checkpoint is None


def test_an_edit_after_the_checkpoint_is_found_at_once(journal: Journal, db: Path) -> None:
    assert check_recent(journal, advance=True).ok
    journal.append("new.one")
    payload = next(iter(journal.store.audit_entries(11))).payload
    _sql(db, "UPDATE audit SET payload=? WHERE seq=11", (payload.replace("alice", "mallory"),))
    found = check_recent(journal, advance=True)
    assert not found.ok and "record 11 was edited" in found.report.problems[0]
    assert check_recent(journal).since == 10  # a failed check does not move the checkpoint


def test_a_rewritten_history_that_reaches_the_checkpoint_is_found(
    journal: Journal, db: Path
) -> None:
    """Records 4… edited and re-hashed up to the head (a consistent forgery): the chain walks
    clean from record 4 on, but the checkpoint's record no longer has its hash."""
    assert check_recent(journal, advance=True).ok
    entries = list(journal.store.audit_entries())
    prev = entries[2].hash
    for entry in entries[3:]:
        payload = entry.payload.replace("alice", "mallory")
        digest = chain_hash(prev, payload)
        _sql(db, "UPDATE audit SET payload=?, prev_hash=?, hash=? WHERE seq=?",
             (payload, prev, digest, entry.seq))
        prev = digest
    assert journal.verify().ok  # the full walk alone cannot tell (pin the head for that)
    found = check_recent(journal)
    assert not found.ok and "record 10, verified at" in found.report.problems[0]


def test_cutting_the_journal_below_the_checkpoint_is_found(journal: Journal, db: Path) -> None:
    assert check_recent(journal, advance=True).ok
    _sql(db, "DELETE FROM audit WHERE seq >= 8")
    found = check_recent(journal)
    assert not found.ok and "record 10" in found.report.problems[0]


def test_a_checkpoint_moved_forward_in_the_file_fails_its_mac(journal: Journal, db: Path) -> None:
    assert check_recent(journal, advance=True).ok
    journal.append("x")
    sealed = json.loads(_meta(db, CHECKPOINT_KEY))
    last = next(iter(journal.store.audit_entries(11)))
    payload = last.payload.replace('"x"', '"y"')  # an edit the forged checkpoint would hide
    _sql(db, "UPDATE audit SET payload=?, hash=? WHERE seq=11",
         (payload, chain_hash(last.prev_hash, payload)))
    sealed["doc"].update(seq=11, hash=chain_hash(last.prev_hash, payload))
    _sql(db, "UPDATE meta SET value=? WHERE key=?", (json.dumps(sealed), CHECKPOINT_KEY))
    found = check_recent(journal)
    assert not found.ok and found.mode == "full"
    assert "checkpoint fails its MAC" in found.report.problems[0]


def test_a_forged_passing_full_check_fails_its_mac(journal: Journal, db: Path) -> None:
    payload = journal.store.audit_entries(2, 3).__next__().payload
    _sql(db, "UPDATE audit SET payload=? WHERE seq=2", (payload.replace("alice", "eve"),))
    assert not check_full(journal).ok
    sealed = json.loads(_meta(db, FULL_CHECK_KEY))
    sealed["doc"].update(ok=True, problems=[])
    _sql(db, "UPDATE meta SET value=? WHERE key=?", (json.dumps(sealed), FULL_CHECK_KEY))
    assert last_full_check(journal.store) is None
    found = check_recent(journal)
    assert not found.ok
    assert any("last full check fails its MAC" in p for p in found.report.problems)
