"""The dashboard's journal index: pages find the same records as a full scan without reading
the whole journal, and the overview says when the last full check ran."""

from __future__ import annotations

import sqlite3

from keyroll.audit import Journal
from keyroll.audit_check import CHECKPOINT_KEY, check_full
from keyroll.dashboard.journal_index import JournalIndex
from keyroll.dashboard.views import ReadOnlyJournal
from tests.unit.dashboard.conftest import NOW, History, TestClient


def test_overview_says_when_the_last_full_check_ran(client: TestClient, history: History) -> None:
    assert "No full check of the journal recorded yet" in client.get("/").text
    check_full(Journal(history.world.store, actor="ops"), now=NOW)
    page = client.get("/").text
    assert "Last full check 2026-" in page and "by ops: passed" in page
    health = client.get("/api/audit").json()["verification"]
    assert health["ok"] is True and health["mode"] == "incremental"
    assert health["last_full_check"]["by"] == "ops"


def test_select_matches_the_full_scan(history: History) -> None:
    store = history.world.store
    plain = Journal(store, actor="t")
    indexed = ReadOnlyJournal(store, clock=history.world.clock, index=JournalIndex())
    rotation = history.rotations["done"]
    for filters in ({}, {"rotation": rotation}, {"environment": "dev", "secret": "jwt-access"},
                    {"action": "rotation"}, {"action": "rotation.promote", "limit": 2},
                    {"secret": "no-such-class"}, {"limit": 5}, {"limit": 0},
                    {"environment": "dev"}, {"environment": "dev", "limit": 3},
                    {"action": "rotation", "environment": "staging"},
                    {"rotation": rotation, "action": "rotation.promote"},
                    {"action": "rot"}, {"action": "rotation."}, {"action": ""},
                    {"environment": "", "secret": ""}, {"secret": "jwt-access", "limit": 1},
                    {"environment": "dev", "secret": "jwt-access", "rotation": rotation,
                     "action": "rotation", "limit": 4}):
        assert indexed.select(**filters) == plain.select(**filters), filters  # type: ignore[arg-type]
    assert indexed.shown_problems == []


def test_select_keeps_up_with_appends(history: History) -> None:
    """Records appended after the index was built are found by every filter, in order."""
    store = history.world.store
    index = JournalIndex()
    indexed = ReadOnlyJournal(store, clock=history.world.clock, index=index)
    plain = Journal(store, actor="t")
    assert indexed.select(limit=3) == plain.select(limit=3)
    writer = Journal(store, actor="ops")
    for n in range(5):
        writer.append("note.added", evidence={"n": n})
    writer.append("rotation.noted", evidence={})
    for filters in ({"limit": 3}, {"action": "note"}, {"action": "rotation", "limit": 2}, {}):
        assert indexed.select(**filters) == plain.select(**filters), filters  # type: ignore[arg-type]
    assert len(index) == plain.select()[0]


def test_the_first_build_verifies_the_chain_so_the_check_reads_nothing_again(
    history: History,
) -> None:
    """No stored checkpoint: the index's first read of the whole journal walks the chain, and
    the check that follows starts at the head it verified."""
    store = history.world.store
    assert store.get_meta(CHECKPOINT_KEY) is None  # nothing was ever checked
    index = JournalIndex()
    index.refresh(store)
    check = index.check(store, "t")
    assert check.report.ok and check.mode == "incremental" and check.walked == 0
    assert check.since == check.report.count == len(index)


def test_a_journal_edited_before_the_first_build_is_reported(history: History) -> None:
    store = history.world.store
    db = sqlite3.connect(store.path)
    try:
        db.execute("UPDATE audit SET payload = replace(payload, 'alice', 'mallory') WHERE seq = 2")
        db.commit()
    finally:
        db.close()
    index = JournalIndex()
    index.refresh(store)
    check = index.check(store, "t")
    assert not check.report.ok and check.mode == "full"
    assert "record 2 was edited" in check.report.problems[0]
