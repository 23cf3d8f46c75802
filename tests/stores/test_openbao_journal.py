"""The OpenBao journal in pages, on a real ``bao server -dev``: what an append costs, the old
layout (one document per entry) still read and appended to, its migration (verified, resumable,
fencing older writers), many first appenders racing, and tampering with a page."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from keyroll.audit import GENESIS, Journal, chain_hash
from keyroll.audit_check import check_full, check_recent
from keyroll.errors import Conflict
from keyroll.stores.base import AuditEntry
from keyroll.stores.openbao import OpenBaoStore
from keyroll.stores.openbao._journal import PAGE_SIZE
from tests.openbao_fixtures import bao_dev as bao_dev
from tests.openbao_fixtures import bao_store_factory as bao_store_factory
from tests.openbao_server import DevServer

pytestmark = pytest.mark.integration

Factory = Callable[..., OpenBaoStore]
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@contextmanager
def _counting(store: OpenBaoStore) -> Iterator[dict[str, int]]:
    """Count the KV calls a block makes (reads, writes, lists) on ``store``'s real transport."""
    counts = {"read": 0, "write": 0, "list_keys": 0, "configure": 0}
    kv: Any = store._kv
    originals = {name: getattr(kv, name) for name in counts}

    def wrap(name: str) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return originals[name](*args, **kwargs)
        return counted

    for name in counts:
        setattr(kv, name, wrap(name))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(kv, name, original)


def _legacy_write(bao: DevServer, store: OpenBaoStore, count: int) -> list[AuditEntry]:
    """A journal as keyroll wrote it before pages: one KV document per entry at
    ``_journal/<seq>`` (the old writer's exact document), chained for real."""
    entries = []
    prev = GENESIS
    for seq in range(1, count + 1):
        payload = f'{{"action":"old.step","actor":"old","seq":{seq},"time":"{T0.isoformat()}"}}'
        entry = AuditEntry(seq, payload, prev, chain_hash(prev, payload))
        bao.api("POST", f"secret/data/{store.prefix}/_journal/{seq}",
                {"data": {"seq": seq, "payload": payload, "prev_hash": prev,
                          "hash": entry.hash}, "options": {"cas": 0}})
        entries.append(entry)
        prev = entry.hash
    return entries


def test_an_append_lists_nothing_and_costs_the_same_at_any_length(
    bao_store_factory: Factory,
) -> None:
    store = bao_store_factory()
    journal = Journal(store, actor="t", clock=lambda: T0)
    journal.append("first")
    costs = []
    for target in (10, 3 * PAGE_SIZE + 10):
        while (store.audit_tail() or AuditEntry(0, "", "", "")).seq < target - 1:
            journal.append("filler")
        fresh = bao_store_factory()  # a new process: nothing cached
        with _counting(fresh) as counts:
            Journal(fresh, actor="t", clock=lambda: T0).append("measured")
        costs.append(dict(counts))
    assert costs[0]["list_keys"] == costs[1]["list_keys"] == 0
    assert costs[0] == costs[1], costs  # flat: the same requests at entry 10 and entry 310
    assert Journal(store, actor="t").verify().ok


def test_a_long_read_is_one_request_per_page(bao_store_factory: Factory) -> None:
    store = bao_store_factory()
    journal = Journal(store, actor="t", clock=lambda: T0)
    for _ in range(2 * PAGE_SIZE + 5):
        journal.append("step")
    fresh = bao_store_factory()
    with _counting(fresh) as counts:
        assert fresh.audit_tail() is not None
        assert len(list(fresh.audit_entries())) == 2 * PAGE_SIZE + 5
    assert counts["list_keys"] == 0
    assert counts["read"] <= 2 + 3 + 1  # head, tail page (+1 probe), three pages


def test_many_first_appenders_race_on_an_empty_journal(bao_store_factory: Factory) -> None:
    handles = [bao_store_factory() for _ in range(6)]
    barrier = threading.Barrier(len(handles), timeout=30)
    failures: list[BaseException] = []

    def append(handle: OpenBaoStore, number: int) -> None:
        barrier.wait()
        try:
            for n in range(3):
                Journal(handle, actor=f"w{number}", clock=lambda: T0).append("race", evidence={
                    "n": n})
        except BaseException as exc:  # noqa: BLE001  (reported below)
            failures.append(exc)

    threads = [threading.Thread(target=append, args=(h, i)) for i, h in enumerate(handles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    report = Journal(bao_store_factory(), actor="t").verify()
    assert report.ok and report.count == 18


def test_old_layout_is_read_appended_then_migrated_and_fenced(
    bao_dev: DevServer, bao_store_factory: Factory
) -> None:
    store = bao_store_factory()
    old = _legacy_write(bao_dev, store, 2 * PAGE_SIZE + 30)
    reader = bao_store_factory()
    assert "old layout" in reader.audit_layout()
    assert list(reader.audit_entries()) == old
    assert list(reader.audit_entries(150, 152)) == old[149:151]
    assert Journal(reader, actor="t").verify().ok
    Journal(reader, actor="t", clock=lambda: T0).append("still.works")  # old layout appends
    before = list(reader.audit_entries())
    assert len(before) == len(old) + 1

    migrator = bao_store_factory()
    assert migrator.audit_migrate() == len(before)
    assert migrator.audit_layout() == "current"
    assert migrator.audit_migrate() == 0  # rerun: nothing to do
    assert list(bao_store_factory().audit_entries()) == before
    # an older keyroll finds a document that is not an entry where the next one would go
    moved = bao_dev.api("GET", f"secret/data/{store.prefix}/_journal/{len(before) + 1}")
    assert "moved" in moved["data"]["data"] and "seq" not in moved["data"]["data"]
    # a handle that still believed in the old layout appends into the pages, in one chain
    Journal(reader, actor="t", clock=lambda: T0).append("after.migration")
    report = Journal(bao_store_factory(), actor="t").verify()
    assert report.ok and report.count == len(before) + 1
    assert bao_dev.api("LIST", f"secret/metadata/{store.prefix}/_journal_pages")["data"][
        "keys"] == ["0", "1", "2"]


def test_a_migration_cut_between_its_fence_and_the_head_is_completed(
    bao_dev: DevServer, bao_store_factory: Factory
) -> None:
    store = bao_store_factory()
    old = _legacy_write(bao_dev, store, 12)
    assert store.audit_migrate() == 12
    # as if the process died after the fence, before the head
    bao_dev.api("DELETE", f"secret/metadata/{store.prefix}/_journal_head")
    fresh = bao_store_factory()
    assert list(fresh.audit_entries()) == old
    assert fresh.audit_layout() == "current"
    Journal(fresh, actor="t", clock=lambda: T0).append("next")
    assert Journal(bao_store_factory(), actor="t").verify().count == 13


def test_an_old_writer_racing_the_migration_stops_it(
    bao_dev: DevServer, bao_store_factory: Factory
) -> None:
    store = bao_store_factory()
    _legacy_write(bao_dev, store, 5)
    last = list(store.audit_entries())[-1]
    payload = '{"action":"late","seq":6}'
    pages: Any = store.journal_pages
    copy = pages.write_pages

    def copy_then_an_old_writer_appends(entries: Any) -> int:
        written = int(copy(entries))
        # an older keyroll appends entry 6 after the migration read the first five
        bao_dev.api("POST", f"secret/data/{store.prefix}/_journal/6", {"data": {
            "seq": 6, "payload": payload, "prev_hash": last.hash,
            "hash": chain_hash(last.hash, payload)}, "options": {"cas": 0}})
        return written

    pages.write_pages = copy_then_an_old_writer_appends
    with pytest.raises(Conflict, match="audit migrate"):
        store.audit_migrate()  # its fence (cas=0 at _journal/6) lost: nothing switched
    pages.write_pages = copy
    assert "old layout" in bao_store_factory().audit_layout()
    assert store.audit_migrate() == 6  # the rerun moves all six
    assert [e.seq for e in bao_store_factory().audit_entries()] == [1, 2, 3, 4, 5, 6]


def test_an_edited_page_entry_is_found_by_the_full_check(
    bao_dev: DevServer, bao_store_factory: Factory
) -> None:
    store = bao_store_factory()
    journal = Journal(store, actor="alice", clock=lambda: T0)
    for n in range(1, 121):
        journal.append("step", evidence={"n": n})
    assert check_recent(journal, advance=True).ok  # the checkpoint now sits at 120
    path = f"secret/data/{store.prefix}/_journal_pages/0"
    page = bao_dev.api("GET", path)["data"]
    entries = page["data"]["entries"]
    entries[41]["payload"] = entries[41]["payload"].replace("alice", "mallory")
    bao_dev.api("POST", path, {"data": page["data"],
                               "options": {"cas": page["metadata"]["version"]}})
    assert check_recent(journal).ok  # record 42 is before the checkpoint: not read again
    full = check_full(journal)
    assert not full.ok and "record 42 was edited" in full.report.problems[0]
    assert not check_recent(journal).ok  # from now on every check says so
