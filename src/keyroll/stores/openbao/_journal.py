"""The audit journal on OpenBao / Vault KV v2: entries kept in pages of `PAGE_SIZE`.

Layout under the store's prefix::

    _journal_head              {"layout": 2, "page_size": N, "page": k}: the newest page
                               known (a hint, moved forward when a page is started)
    _journal_pages/<k>         entries k·N+1 … k·N+N, {"first": k·N+1, "entries": [...]}
    _journal/<seq>             the old layout (layout 1): one document per entry

Reading ``count`` entries takes ``count / N + 1`` requests (no list); the whole journal of
100,000 entries is 1,000 reads. An append reads the head and the newest page and writes that
page back with ``cas=<its KV version>`` (a new page: ``cas=0``), so two writers can never both
add entry S: the second one's check-and-set fails and `Journal.append` retries on the fresh
tail. Nothing lists the journal. Pages keep one KV version (each append rewrites its page, so
older versions are only shorter copies).

The old layout keeps working (read with one request per entry, as before) until
``keyroll audit migrate`` (`PagedJournal.migrate`) copies it into pages, reads the pages back
and compares them, then fences the old layout: it writes a "moved" document as entry
``n + 1`` of the old layout (``cas=0``: if an old-layout writer added that entry meanwhile the
migration stops and is rerun), and only then creates the head. An older keyroll reading that
document fails instead of appending beside the pages, and this module, finding it without a
head (a migration interrupted between the two writes), completes the migration itself. A new
store gets the same fence at ``_journal/1`` when its journal is created. The old documents
stay where they were (a stale copy; nothing reads them once the head exists).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from keyroll.errors import Conflict, StoreCorrupted
from keyroll.stores.base import AuditEntry
from keyroll.stores.openbao._transport import KV, CasMismatch

__all__ = ["LAYOUT", "PAGE_SIZE", "PagedJournal"]

#: Entries per page document (a full page is ~70 KB of JSON at typical record sizes).
PAGE_SIZE = 100
#: The layout number written in the head document.
LAYOUT = 2
#: KV versions kept per page: each append rewrites the page, older versions are prefixes.
_PAGE_VERSIONS = 1
_HEAD_VERSIONS = 10
#: Bounds: how far past the head hint a tail search walks, and attempts on a lost race.
_MAX_PROBE = 10_000
_CAS_ATTEMPTS = 50
_MOVED = "moved"
_MOVED_TEXT = ("keyroll keeps this journal in pages under _journal_pages/ (layout 2): upgrade "
               "keyroll to read or append to it")


def _entry_doc(entry: AuditEntry) -> dict[str, Any]:
    return {"seq": entry.seq, "payload": entry.payload, "prev_hash": entry.prev_hash,
            "hash": entry.hash}


def _entry(doc: dict[str, Any]) -> AuditEntry:
    try:
        return AuditEntry(int(doc["seq"]), str(doc["payload"]), str(doc["prev_hash"]),
                          str(doc["hash"]))
    except (KeyError, TypeError, ValueError):
        raise StoreCorrupted(
            "a journal document in OpenBao is not a journal entry (edited by hand?): run "
            "`keyroll audit verify --full` and restore from an OpenBao snapshot"
        ) from None


class PagedJournal:
    """The journal half of `OpenBaoStore` (see the module docstring).

    Args:
        kv: the KV v2 calls.
        path: joins path segments under the store's prefix.
    """

    def __init__(self, kv: KV, path: Callable[..., str]) -> None:
        self._kv = kv
        self._path = path
        self._layout: int | None = None
        self._page_size = PAGE_SIZE
        # the newest page this handle read: (index, entries, KV version), for the next append
        self._cached: tuple[int, list[dict[str, Any]], int] | None = None

    # --- paths ----------------------------------------------------------------------------

    def _head_path(self) -> str:
        return self._path("_journal_head")

    def _page_path(self, index: int) -> str:
        return self._path("_journal_pages", str(index))

    def _legacy_path(self, seq: int) -> str:
        return self._path("_journal", str(seq))

    def _page_of(self, seq: int) -> int:
        return (seq - 1) // self._page_size

    # --- which layout ---------------------------------------------------------------------

    def layout(self) -> int:
        """1 (one document per entry) or 2 (pages); an empty journal is created as 2."""
        if self._layout == LAYOUT:
            return LAYOUT
        stored = self._kv.read(self._head_path())
        if stored is not None:
            self._adopt_head(stored[0])
            return LAYOUT
        seqs = self._legacy_seqs()
        if seqs and self._is_moved(seqs[-1]):
            self.migrate()  # a migration stopped between its fence and the head: finish it
            return LAYOUT
        self._layout = 1 if seqs else None
        return 1 if seqs else LAYOUT

    def _adopt_head(self, doc: dict[str, Any]) -> None:
        if int(doc.get("layout") or 0) != LAYOUT or int(doc.get("page_size") or 0) < 1:
            raise StoreCorrupted(
                f"the journal head in OpenBao ({self._kv.api('data', self._head_path())}) names "
                f"layout {doc.get('layout')!r}, which this keyroll does not read: upgrade keyroll"
            )
        self._layout = LAYOUT
        self._page_size = int(doc["page_size"])

    def _is_moved(self, seq: int) -> bool:
        stored = self._kv.read(self._legacy_path(seq))
        return stored is not None and _MOVED in stored[0]

    def _legacy_seqs(self) -> list[int]:
        keys = self._kv.list_keys(self._path("_journal") + "/")
        return sorted(int(key) for key in keys if key.isdigit())

    # --- reading --------------------------------------------------------------------------

    def _read_page(self, index: int) -> tuple[list[dict[str, Any]], int] | None:
        stored = self._kv.read(self._page_path(index))
        if stored is None:
            return None
        doc, version = stored
        entries = doc.get("entries")
        if not isinstance(entries, list) or doc.get("first") != index * self._page_size + 1:
            raise StoreCorrupted(
                f"journal page {index} in OpenBao ({self._kv.api('data', self._page_path(index))})"
                " is not a journal page (edited by hand?): restore it from an OpenBao snapshot"
            )
        return entries, version

    def entries(self, start: int = 1, stop: int | None = None) -> Iterator[AuditEntry]:
        if self.layout() == 1:
            yield from self._legacy_entries(start, stop)
            return
        start = max(start, 1)
        if stop is not None and stop <= start:
            return
        index = self._page_of(start)
        for _ in range(2**40):  # bounded: each round reads the next page
            page = self._read_page(index)
            if page is None:
                return
            entries, _ = page
            for doc in entries:
                entry = _entry(doc)
                if stop is not None and entry.seq >= stop:
                    return
                if entry.seq >= start:
                    yield entry
            if len(entries) < self._page_size:
                return
            index += 1

    def _legacy_entries(self, start: int, stop: int | None) -> Iterator[AuditEntry]:
        for seq in self._legacy_seqs():
            if seq >= start and (stop is None or seq < stop):
                stored = self._kv.read(self._legacy_path(seq))
                if stored is None:
                    raise StoreCorrupted(f"journal entry {seq} vanished from OpenBao while reading")
                if _MOVED in stored[0]:
                    self._layout = None
                    raise Conflict("the journal was migrated to pages while reading; retry")
                yield _entry(stored[0])

    def tail(self) -> AuditEntry | None:
        """The last entry: the head's page, then any newer page (no list)."""
        if self.layout() == 1:
            seqs = self._legacy_seqs()
            if not seqs:
                return None
            last = list(self._legacy_entries(seqs[-1], None))
            return last[-1] if last else None
        if self._cached is not None:  # pages never shrink: the tail is there or later
            index = self._cached[0]
        else:
            stored = self._kv.read(self._head_path())
            index = int(stored[0].get("page") or 0) if stored is not None else 0
        newest: tuple[int, list[dict[str, Any]], int] | None = None
        for _ in range(_MAX_PROBE):
            page = self._read_page(index)
            if page is None:
                break
            newest = (index, page[0], page[1])
            if len(page[0]) < self._page_size:
                break
            index += 1
        else:
            raise Conflict("the journal grew faster than its tail could be found; retry")
        self._cached = newest
        if newest is None or not newest[1]:
            return None
        return _entry(newest[1][-1])

    # --- appending ------------------------------------------------------------------------

    def append(self, entry: AuditEntry) -> None:
        """Add ``entry`` as the next one, or raise `Conflict` (it does not follow the tail)."""
        if self.layout() == 1:
            self._legacy_append(entry)
            return
        if self._layout is None:
            self._create(0, "0" * 64)
        refused = Conflict(
            f"journal entry {entry.seq} does not follow the last entry; re-read the tail and retry"
        )
        if entry.seq < 1:
            raise refused
        index, offset = self._page_of(entry.seq), (entry.seq - 1) % self._page_size
        cached = self._cached
        self._cached = None
        if cached is not None and cached[0] == index:
            entries, version = cached[1], cached[2]
        else:
            page = self._read_page(index)
            entries, version = page if page is not None else ([], 0)
        if len(entries) != offset:
            raise refused
        if offset == 0 and entry.seq > 1:
            before = self._read_page(index - 1)
            if before is None or len(before[0]) != self._page_size:
                raise refused
        path = self._page_path(index)
        new = [*entries, _entry_doc(entry)]
        if version == 0:
            self._kv.configure(path, keep=_PAGE_VERSIONS)
        try:
            written = self._kv.write(path, {"first": index * self._page_size + 1,
                                            "entries": new}, cas=version)
        except CasMismatch:
            raise Conflict(
                f"journal moved on (entry {entry.seq} exists already); re-read the tail and retry"
            ) from None
        self._cached = (index, new, written)
        if offset == 0:
            self._advance_head(index)

    def _advance_head(self, index: int) -> None:
        """Move the head hint forward to page ``index`` (never back)."""
        for _ in range(_CAS_ATTEMPTS):
            stored = self._kv.read(self._head_path())
            if stored is None:
                return
            doc, version = stored
            if int(doc.get("page") or 0) >= index:
                return
            try:
                self._kv.write(self._head_path(), {**doc, "page": index}, cas=version)
            except CasMismatch:
                continue
            return

    def _legacy_append(self, entry: AuditEntry) -> None:
        if entry.seq < 1 or (entry.seq > 1 and self._kv.read(self._legacy_path(entry.seq - 1))
                             is None):
            raise Conflict(
                f"journal entry {entry.seq} does not follow the last entry; re-read the tail "
                "and retry"
            )
        try:
            self._kv.write(self._legacy_path(entry.seq), _entry_doc(entry), cas=0)
        except CasMismatch:
            self._layout = None  # an entry, or the migration's fence: look again next time
            raise Conflict(
                f"journal moved on (entry {entry.seq} exists already); re-read the tail and retry"
            ) from None

    # --- creating and migrating -----------------------------------------------------------

    def _create(self, count: int, head_hash: str) -> None:
        """Fence the old layout after ``count`` entries, then write the head (both ``cas=0``)."""
        fence = self._legacy_path(count + 1)
        try:
            self._kv.write(fence, {_MOVED: _MOVED_TEXT, "layout": LAYOUT, "after": count,
                                   "head_hash": head_hash}, cas=0)
        except CasMismatch:
            if not self._is_moved(count + 1):
                self._layout = None
                raise Conflict(
                    "an older keyroll appended to the journal while it was being moved to pages: "
                    "run `keyroll audit migrate` again"
                ) from None
        last = self._page_of(count) if count else 0
        self._kv.configure(self._head_path(), keep=_HEAD_VERSIONS)
        with contextlib.suppress(CasMismatch):  # another process created it: as good
            self._kv.write(self._head_path(), {"layout": LAYOUT, "page_size": self._page_size,
                                               "page": last}, cas=0)
        stored = self._kv.read(self._head_path())
        if stored is None:
            raise StoreCorrupted("the journal head vanished right after it was written; retry")
        self._adopt_head(stored[0])

    def migrate(self) -> int:
        """Copy an old-layout journal into pages, verified; the count moved (0: nothing to do)."""
        stored = self._kv.read(self._head_path())
        if stored is not None:
            self._adopt_head(stored[0])
            return 0
        seqs = self._legacy_seqs()
        if seqs:
            last = self._kv.read(self._legacy_path(seqs[-1]))
            if last is not None and _MOVED in last[0]:
                # the fence is written only once the pages hold every entry before it (or on
                # a new journal): only the head is missing, and maybe being written right now
                self._create(int(last[0].get("after") or 0),
                             str(last[0].get("head_hash") or "0" * 64))
                return 0
        entries: list[AuditEntry] = []
        for seq in seqs:
            doc = self._kv.read(self._legacy_path(seq))
            if doc is None:
                raise Conflict(f"journal entry {seq} vanished while migrating; rerun")
            if _MOVED in doc[0]:
                raise Conflict("the journal is being moved to pages by another process; rerun")
            entries.append(_entry(doc[0]))
        for number, entry in enumerate(entries, start=1):
            if entry.seq != number:
                raise Conflict(
                    f"the journal is not numbered 1…{len(entries)} (entry {entry.seq} at place "
                    f"{number}): run `keyroll audit verify --full` and repair it before migrating"
                )
        self._page_size = PAGE_SIZE
        self.write_pages(entries)
        if list(self._paged_entries()) != entries:
            raise StoreCorrupted("the journal pages do not read back as written; nothing was "
                                 "switched: rerun `keyroll audit migrate`")
        self._create(len(entries), entries[-1].hash if entries else "0" * 64)
        return len(entries)

    def _paged_entries(self) -> Iterator[AuditEntry]:
        for index in range(2**40):  # bounded: stops at the first missing or short page
            page = self._read_page(index)
            if page is None:
                return
            yield from (_entry(doc) for doc in page[0])
            if len(page[0]) < self._page_size:
                return

    def write_pages(self, entries: Iterable[AuditEntry]) -> int:
        """Write ``entries`` (numbered 1… in order) as whole pages, each with one request;
        a page already holding exactly that is left alone. Migration and bulk loads (the
        benchmark) use it; it does not create the head."""
        batch: list[dict[str, Any]] = []
        index = 0
        written = 0
        for entry in entries:
            batch.append(_entry_doc(entry))
            if len(batch) == self._page_size:
                self._put_page(index, batch)
                written += len(batch)
                batch, index = [], index + 1
        if batch:
            self._put_page(index, batch)
            written += len(batch)
        return written

    def _put_page(self, index: int, batch: list[dict[str, Any]]) -> None:
        doc = {"first": index * self._page_size + 1, "entries": batch}
        path = self._page_path(index)
        stored = self._kv.read(path)
        if stored is not None and stored[0] == doc:
            return
        if stored is None:
            self._kv.configure(path, keep=_PAGE_VERSIONS)
        self._kv.write(path, doc, cas=stored[1] if stored is not None else 0)

    def bulk_load(self, entries: Iterable[AuditEntry]) -> int:
        """Fill an empty journal with ``entries`` (numbered 1… and chained by the caller) a
        page per request: for loading history in bulk (the benchmark's 100,000 records),
        where appending one by one would take an hour. Refused unless the journal is empty."""
        if self.tail() is not None or self._legacy_seqs():
            raise Conflict("bulk_load fills an empty journal only")
        items = list(entries)
        self._page_size = PAGE_SIZE
        self.write_pages(items)
        self._create(len(items), items[-1].hash if items else "0" * 64)
        self._cached = None
        return len(items)

    def describe(self) -> str:
        return "current" if self.layout() == LAYOUT else (
            "one document per entry (old layout: run `keyroll audit migrate`)")
