"""The dashboard's view of a large journal: an in-memory index and an incremental check.

One `JournalIndex` lives as long as the dashboard app and is shared by every page and every
``/metrics`` scrape. It keeps every journal record's text with what the pages filter on
(sequence number, hash, environment, secret, rotation, action: ~600 bytes a record, about
60 MB at 100,000 records), reads only the entries appended since the last request (one range
read: on OpenBao one page or two), and answers the pages from memory. The first request after
start reads the whole journal once to build it (on OpenBao 100,000 records are 1,000 reads).

Verification is `keyroll.audit_check.check_recent`: from the stored checkpoint, or from the
head this index verified itself on an earlier request when that is later, so a page checks
only what was appended since. Records before the verified head are shown as this process read
them; an edit made in the store after that is the full check's to find (``keyroll audit verify
--full``, ``keyroll serve``'s schedule), and the pages say when the last one ran. The
dashboard never writes the checkpoint (it is read-only); writers do.
"""

from __future__ import annotations

import json
import sys
import threading
from collections import deque
from dataclasses import dataclass

from keyroll.audit import AuditRecord, Journal
from keyroll.audit_check import Checkpoint, JournalCheck, check_recent
from keyroll.stores.base import AuditEntry, Store

__all__ = ["IndexRow", "JournalIndex"]

@dataclass(frozen=True, slots=True)
class IndexRow:
    """What the pages filter on, for one record."""

    seq: int
    hash: str
    payload: str
    environment: str | None
    secret: str | None
    rotation: str | None
    action: str

    def matches(self, environment: str | None, secret: str | None, rotation: str | None,
                action: str | None) -> bool:
        return ((environment is None or self.environment == environment)
                and (secret is None or self.secret == secret)
                and (rotation is None or self.rotation == rotation)
                and (action is None or self.action == action
                     or self.action.startswith(action + ".")))


def _intern(text: object) -> str | None:
    return sys.intern(text) if isinstance(text, str) else None


def _row(entry: AuditEntry) -> IndexRow:
    try:
        doc = json.loads(entry.payload)
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    return IndexRow(entry.seq, entry.hash, entry.payload, _intern(doc.get("environment")),
                    _intern(doc.get("secret")), _intern(doc.get("rotation")),
                    _intern(doc.get("action")) or "")


class JournalIndex:
    """The app-wide index and verified head (see the module docstring). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[IndexRow] = []
        self._by_seq: dict[int, int] = {}
        self._anchor: Checkpoint | None = None
        self._store_url: str | None = None

    def _reset_for(self, store: Store) -> None:
        if self._store_url != store.url:
            self._rows, self._by_seq, self._anchor = [], {}, None
            self._store_url = store.url

    def refresh(self, store: Store) -> None:
        """Index the entries appended since the last refresh (all of them the first time)."""
        with self._lock:
            self._reset_for(store)
            after = self._rows[-1].seq if self._rows else 0
            for entry in store.audit_entries(after + 1):
                if entry.seq in self._by_seq:
                    continue  # a reordered journal: the check reports it
                self._by_seq[entry.seq] = len(self._rows)
                self._rows.append(_row(entry))

    def check(self, store: Store, journal_actor: str) -> JournalCheck:
        """The incremental check from the later of the stored checkpoint and this index's own
        verified head; a passing check moves that head forward."""
        with self._lock:
            self._reset_for(store)
            anchor = self._anchor
        result = check_recent(Journal(store, actor=journal_actor), anchor=anchor)
        if result.checkpoint is not None:
            with self._lock:
                if self._anchor is None or result.checkpoint.seq >= self._anchor.seq:
                    self._anchor = result.checkpoint
        return result

    def select(
        self,
        store: Store,
        *,
        environment: str | None = None,
        secret: str | None = None,
        rotation: str | None = None,
        action: str | None = None,
        limit: int | None = None,
    ) -> tuple[int, list[AuditRecord], list[str]]:
        """How many records match, the last ``limit`` of them (stored order), and a problem
        for every one whose text is not a journal record."""
        self.refresh(store)
        with self._lock:
            rows = self._rows
        total = 0
        wanted: deque[IndexRow] = deque(maxlen=limit)
        for row in rows:
            if row.matches(environment, secret, rotation, action):
                total += 1
                wanted.append(row)
        records: list[AuditRecord] = []
        problems: list[str] = []
        for row in wanted:
            try:
                records.append(AuditRecord.from_json(row.payload))
            except (ValueError, KeyError, TypeError):
                problems.append(f"record {row.seq} is not a journal record")
        return total, records, problems
