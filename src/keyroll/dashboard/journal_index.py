"""The dashboard's view of a large journal: an in-memory index and an incremental check.

One `JournalIndex` lives as long as the dashboard app and is shared by every page and every
``/metrics`` scrape. It keeps every journal record's text with what the pages filter on
(sequence number, environment, secret, rotation, action), reads only the entries appended
since the last request (one range read: on OpenBao one page or two), and answers the pages
from memory. The first request after
start reads the whole journal once to build it (on OpenBao 100,000 records are 1,000 reads).

Besides the rows it keeps, per environment, secret, rotation and action (and every dotted
prefix of an action: ``rotation`` for ``rotation.plan``), the positions of the rows that carry
it, so a page finds its newest ``limit`` records from the end of the shortest of those lists
instead of scanning every record. A row is a plain tuple of strings and integers and the
positions are arrays of integers: the garbage collector does not track them, so a full
collection does not walk 100,000 objects in the middle of a page (it took some 80 ms).

Verification is `keyroll.audit_check.check_recent`: from the stored checkpoint, or from the
head this index verified itself on an earlier request (or while it first read the whole
journal) when that is later, so a page checks only what was appended since. Records before
the verified head are shown as this process read them; an edit made in the store after that
is the full check's to find (``keyroll audit verify --full``, ``keyroll serve``'s schedule),
and the pages say when the last one ran. The dashboard never writes the checkpoint (it is
read-only); writers do.
"""

from __future__ import annotations

import json
import sys
import threading
from array import array
from collections.abc import Sequence

from keyroll.audit import AuditRecord, ChainWalk, Journal
from keyroll.audit_check import Checkpoint, JournalCheck, check_recent
from keyroll.model import utcnow
from keyroll.stores.base import AuditEntry, Store

__all__ = ["IndexRow", "JournalIndex"]

#: One record: (seq, payload, environment, secret, rotation, action). A plain tuple of
#: atomic values, which the garbage collector stops tracking.
IndexRow = tuple[int, str, str | None, str | None, str | None, str]


def _matches(row: IndexRow, environment: str | None, secret: str | None, rotation: str | None,
             action: str | None) -> bool:
    return ((environment is None or row[2] == environment)
            and (secret is None or row[3] == secret)
            and (rotation is None or row[4] == rotation)
            and (action is None or row[5] == action or row[5].startswith(action + ".")))


def _intern(text: object) -> str | None:
    return sys.intern(text) if isinstance(text, str) else None


def _row(entry: AuditEntry) -> IndexRow:
    try:
        doc = json.loads(entry.payload)
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    return (entry.seq, entry.payload, _intern(doc.get("environment")),
            _intern(doc.get("secret")), _intern(doc.get("rotation")),
            _intern(doc.get("action")) or "")


def _prefixes(action: str) -> list[str]:
    """``a.b.c`` → ``a``, ``a.b``, ``a.b.c`` (what an action filter matches)."""
    parts = action.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts) + 1)]


class JournalIndex:
    """The app-wide index and verified head (see the module docstring). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[IndexRow] = []
        #: (field, value) → positions in ``_rows`` of the rows carrying it, ascending
        self._postings: dict[tuple[str, str], array[int]] = {}
        self._anchor: Checkpoint | None = None
        self._store_url: str | None = None
        self._built = self._checked = False

    @property
    def ready(self) -> bool:
        """Whether the whole journal has been read and checked once (the dashboard does both
        at start, in the background)."""
        return self._built and self._checked

    def __len__(self) -> int:
        return len(self._rows)

    def _reset_for(self, store: Store) -> None:
        if self._store_url != store.url:
            self._rows, self._postings, self._anchor = [], {}, None
            self._store_url, self._built, self._checked = store.url, False, False

    def _post(self, position: int, row: IndexRow) -> None:
        keys = [("action", a) for a in _prefixes(row[5])]
        for name, value in (("environment", row[2]), ("secret", row[3]), ("rotation", row[4])):
            if value is not None:
                keys.append((name, value))
        for key in keys:
            found = self._postings.get(key)
            if found is None:
                found = self._postings[key] = array("q")
            found.append(position)

    def refresh(self, store: Store, *, stop: threading.Event | None = None) -> None:
        """Index the entries appended since the last refresh (all of them the first time).

        Args:
            stop: when set, return at the next entry (the next refresh goes on from there).
        """
        with self._lock:
            self._reset_for(store)
            after = self._rows[-1][0] if self._rows else 0
            # the first build reads the whole journal: it verifies the chain on the way, so
            # the check that follows starts from the head instead of reading it all again
            walk = ChainWalk() if not self._rows else None
            for entry in store.audit_entries(after + 1):
                if stop is not None and stop.is_set():
                    return
                if walk is not None:
                    walk.feed(entry)
                if entry.seq <= after:
                    continue  # a reordered journal: the check reports it
                after = entry.seq
                row = _row(entry)
                self._post(len(self._rows), row)
                self._rows.append(row)
            self._built = True
            report = walk.report() if walk is not None else None
            if report is not None and report.ok and report.count > 0 and (
                    self._anchor is None or report.count >= self._anchor.seq):
                self._anchor = Checkpoint(report.count, report.head, utcnow())

    def check(self, store: Store, journal_actor: str) -> JournalCheck:
        """The incremental check from the later of the stored checkpoint and this index's own
        verified head; a passing check moves that head forward."""
        with self._lock:
            self._reset_for(store)
            anchor = self._anchor
        result = check_recent(Journal(store, actor=journal_actor), anchor=anchor)
        with self._lock:
            self._checked = True
            if result.checkpoint is not None and (self._anchor is None
                                                  or result.checkpoint.seq >= self._anchor.seq):
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
        asked = [(name, value) for name, value in (("environment", environment),
                                                  ("secret", secret), ("rotation", rotation),
                                                  ("action", action)) if value is not None]
        with self._lock:
            rows = self._rows
            lists: list[Sequence[int]] = [self._postings.get(key, array("q")) for key in asked]
            candidates: Sequence[int] = (min(lists, key=len) if lists
                                         else range(len(rows)))
            # the lists only grow, at their end: their length now is a consistent snapshot
            end = len(candidates)
        if len(asked) > 1:  # the shortest list's rows that match the other filters too
            candidates = [i for i in candidates[:end]
                          if _matches(rows[i], environment, secret, rotation, action)]
            end = len(candidates)
        total = end
        start = 0 if limit is None else max(0, end - limit)
        wanted = [rows[i] for i in candidates[start:end]]
        records: list[AuditRecord] = []
        problems: list[str] = []
        for row in wanted:
            try:
                records.append(AuditRecord.from_json(row[1]))
            except (ValueError, KeyError, TypeError):
                problems.append(f"record {row[0]} is not a journal record")
        return total, records, problems
