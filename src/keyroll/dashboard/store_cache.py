"""The dashboard's reads of the secrets' state, kept between requests while the store says
nothing changed.

Every page and ``/metrics`` scrape reads each secret's labels and versions, the rotation
records and some bookkeeping (usage reports, the rotator's last tick, the journal checkpoint):
on OpenBao some 50–300 KV reads a page for the example inventory. `StoreCache` lives as long
as the app and keeps what one request read, against the store's two change markers
(`Store.change_markers`): a store moves the first after every write to versions, labels,
locks or rotation records and the second after every bookkeeping write, whichever process
made it. Each request reads the markers first (two reads), and reuses what was read under the
same markers, or reads afresh. A change made by the CLI, the rotator or an app in another
process is therefore on the very next page.

Why not key the cache on the journal's head: not every change is journaled, and not in the
order a cache would need. The engine journals a step *before* it saves the rotation's new
state (a crash repeats an entry rather than losing it), so a page read between the two would
keep the old state under the new head; a lease claim saves the record without an entry;
``keyroll import``, usage reports and bookkeeping are not journaled at all.

Only what the store reports by marker is cached. Due dates, ages and states are computed at
request time from the cached versions (they depend on "now"); the lock (its expiry is time)
and the journal (its own index, `keyroll.dashboard.journal_index`) are read at every request.
A store without markers (the local store: its reads are cheap) is read afresh every request,
each thing once. A marker does not move for a write made by hand in the backend or by a
keyroll older than the markers, and a writer that dies between its write and the marker's
leaves the marker behind: what was read is therefore re-read at least every
`MAX_AGE_SECONDS` whatever the markers say.

`CachedStore` is the request's read-only `Store`: every write, and `read_value`, raise, so a
value cannot reach the dashboard through it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, NoReturn

from keyroll.model import Label, SecretRef, SecretValue, Version
from keyroll.stores.base import AuditEntry, Fence, LockInfo, RotationRecord, Store

__all__ = ["MAX_AGE_SECONDS", "CachedStore", "StoreCache"]

#: What was read is re-read after this long even when no marker moved (writes made by hand,
#: by an older keyroll, or by a writer that died before moving the marker).
MAX_AGE_SECONDS = 30.0


class _Area:
    """What was read under one marker (``marker`` None: for one request only)."""

    __slots__ = ("data", "made", "marker")

    def __init__(self, marker: str | None, made: float) -> None:
        self.marker = marker
        self.made = made
        self.data: dict[Any, Any] = {}


class StoreCache:
    """The app-wide cache (see the module docstring). Thread-safe.

    Args:
        max_age: seconds after which what was read is read again whatever the markers say.
        clock: a monotonic clock in seconds (a fake in tests).
    """

    def __init__(self, *, max_age: float = MAX_AGE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._url: str | None = None
        self._state: _Area | None = None
        self._meta: _Area | None = None
        #: how many times an area was read afresh (tests and the bench look at it)
        self.refills = 0

    def _area(self, current: _Area | None, marker: str | None, now: float) -> _Area:
        if (current is not None and marker is not None and current.marker == marker
                and now - current.made < self._max_age):
            return current
        self.refills += 1
        return _Area(marker, now)

    def view(self, store: Store) -> CachedStore:
        """The request's read-only view of ``store`` (reads its change markers first)."""
        markers = store.change_markers()
        state_marker, meta_marker = markers if markers is not None else (None, None)
        now = self._clock()
        with self._lock:
            if self._url != store.url:
                self._state = self._meta = None
                self._url = store.url
            state = self._area(self._state, state_marker, now)
            meta = self._area(self._meta, meta_marker, now)
            if state_marker is not None:
                self._state = state
            if meta_marker is not None:
                self._meta = meta
        return CachedStore(store, state.data, meta.data)


def _refused(what: str) -> NoReturn:
    raise RuntimeError(f"the dashboard never writes to the store nor reads values (tried {what})")


class CachedStore(Store):
    """One request's read-only view of a store, through the app's `StoreCache`.

    Args:
        inner: the store the request opened (closed by whoever opened it, not here).
        state: what was read under the current versions/labels/rotations marker.
        meta: what was read under the current bookkeeping marker.
    """

    def __init__(self, inner: Store, state: dict[Any, Any], meta: dict[Any, Any]) -> None:
        self.inner = inner
        self.url = inner.url
        self._state = state
        self._meta = meta

    def __repr__(self) -> str:
        return f"CachedStore({self.inner!r})"

    # --- cached: versions, labels, rotations, bookkeeping -----------------------------------

    def secret_index(self, ref: SecretRef) -> tuple[dict[Label, int], list[Version]]:
        """Labels and versions; none, without a read, for a secret `list_secrets` does not
        list (no version ever stored: no labels either)."""
        key = ("index", ref)
        found: tuple[dict[Label, int], list[Version]] | None = self._state.get(key)
        if found is None:
            found = self.inner.secret_index(ref) if ref in self._existing() else ({}, [])
            self._state[key] = found
        return dict(found[0]), list(found[1])

    def _existing(self) -> frozenset[SecretRef]:
        found: frozenset[SecretRef] | None = self._state.get("existing")
        if found is None:
            found = frozenset(self.list_secrets())
            self._state["existing"] = found
        return found

    def get_labels(self, ref: SecretRef) -> dict[Label, int]:
        return self.secret_index(ref)[0]

    def list_versions(self, ref: SecretRef) -> list[Version]:
        return self.secret_index(ref)[1]

    def list_secrets(self) -> list[SecretRef]:
        found: list[SecretRef] | None = self._state.get("secrets")
        if found is None:
            found = self.inner.list_secrets()
            self._state["secrets"] = found
        return list(found)

    def list_rotations(self, ref: SecretRef | None = None) -> list[RotationRecord]:
        found: list[RotationRecord] | None = self._state.get("rotations")
        if found is None:
            found = self.inner.list_rotations()
            self._state["rotations"] = found
        return [r for r in found if ref is None or r.ref == ref]

    def get_rotation(self, rotation_id: str) -> RotationRecord:
        for record in self.list_rotations():
            if record.id == rotation_id:
                return record
        return self.inner.get_rotation(rotation_id)  # NotFound, in the store's words

    def get_meta(self, key: str) -> str | None:
        cache_key = ("meta", key)
        if cache_key in self._meta:
            value: str | None = self._meta[cache_key]
            return value
        value = self.inner.get_meta(key)
        self._meta[cache_key] = value
        return value

    def list_meta(self) -> list[str]:
        found: list[str] | None = self._meta.get("keys")
        if found is None:
            found = self.inner.list_meta()
            self._meta["keys"] = found
        return list(found)

    def recognition_key(self) -> bytes:
        found: bytes | None = self._meta.get("recognition-key")
        if found is None:
            found = self.inner.recognition_key()
            self._meta["recognition-key"] = found
        return found

    # --- read at every request ---------------------------------------------------------------

    def get_lock(self, ref: SecretRef, *, now: datetime | None = None) -> LockInfo | None:
        return self.inner.get_lock(ref, now=now)

    def audit_entries(self, start: int = 1, stop: int | None = None) -> Iterator[AuditEntry]:
        return self.inner.audit_entries(start, stop)

    def audit_tail(self) -> AuditEntry | None:
        return self.inner.audit_tail()

    def audit_layout(self) -> str:
        return self.inner.audit_layout()

    def change_markers(self) -> tuple[str, str] | None:
        return self.inner.change_markers()

    def identity(self) -> tuple[str, tuple[str, ...]] | None:
        return self.inner.identity()

    def scan_baseline_key(self) -> bytes:
        return self.inner.scan_baseline_key()

    def own_secrets(self) -> list[SecretValue]:
        return self.inner.own_secrets()

    def close(self) -> None:
        """Nothing: the request's store is closed by whoever opened it."""

    # --- refused -----------------------------------------------------------------------------

    def read_value(self, ref: SecretRef, number: int) -> SecretValue:
        _refused("read_value")

    def put_version(self, ref: SecretRef, value: SecretValue, *, kid: int | None = None,
                    created_at: datetime | None = None, meta: Mapping[str, Any] | None = None,
                    fence: Fence | None = None) -> Version:
        _refused("put_version")

    def destroy_version(self, ref: SecretRef, number: int, *, fence: Fence | None = None) -> None:
        _refused("destroy_version")

    def set_labels(self, ref: SecretRef, *, expected: Mapping[Label, int | None],
                   new: Mapping[Label, int | None], fence: Fence | None = None
                   ) -> dict[Label, int]:
        _refused("set_labels")

    def acquire_lock(self, ref: SecretRef, owner: str, *, ttl: timedelta,
                     now: datetime | None = None, generation: int | None = None) -> LockInfo:
        _refused("acquire_lock")

    def release_lock(self, ref: SecretRef, owner: str) -> None:
        _refused("release_lock")

    def create_rotation(self, record: RotationRecord, *, fence: Fence | None = None
                        ) -> RotationRecord:
        _refused("create_rotation")

    def save_rotation(self, record: RotationRecord, *, expected_revision: int,
                      fence: Fence | None = None) -> RotationRecord:
        _refused("save_rotation")

    def audit_append(self, entry: AuditEntry, *, fence: Fence | None = None) -> None:
        _refused("audit_append")

    def audit_migrate(self) -> int:
        _refused("audit_migrate")

    def put_meta(self, key: str, value: str | None, *, fence: Fence | None = None) -> None:
        _refused("put_meta")
