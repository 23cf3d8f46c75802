"""Usage counters: how often each key id verified or decrypted something, and when last.

The rotation engine ends an overlap early only when nothing still uses the old key ("no
verifications by the old kid", DESIGN.md). Every key ring records each successful verification
or decryption here, per kid, and flags the ones that went through a legacy fallback (a JWT
without ``kid`` tried against every key, a Fernet token).

Cross-process protocol (read by the engine with `read_usage`): a `StoreKeySource` created with
``report_usage=True`` merges its counters into the store's bookkeeping area on every refresh,
under the key ``usage:{environment}/{name}``, as JSON::

    {"<kid_hex>": {"count": <int>, "legacy": <int>, "last_seen": "<ISO 8601 UTC>"}}

The merge is a read-modify-write (`Store.put_meta` has no compare-and-set). Two processes that
write at the same instant can lose one's increments, so ``count`` is a lower bound. ``last_seen``
is protected against that race: after writing, the reporter reads the record back, and any kid
whose stored ``last_seen`` is older than its own keeps its delta for the next refresh. So
``last_seen``, the signal retirement depends on, is eventually exact.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from keyroll.model import SecretRef, format_kid, parse_kid
from keyroll.stores.base import Store

__all__ = ["KidUsage", "UsageCounter", "merge_usage", "read_usage", "usage_key"]


@dataclass(frozen=True, slots=True)
class KidUsage:
    """What one key id was used for.

    Attributes:
        count: successful verifications or decryptions (including legacy ones).
        legacy: how many of them went through a legacy fallback.
        last_seen: when it was last used (UTC), or None if never.
    """

    count: int = 0
    legacy: int = 0
    last_seen: datetime | None = None

    def to_json(self) -> dict[str, object]:
        """The JSON object stored per kid (see the module docstring)."""
        return {
            "count": self.count,
            "legacy": self.legacy,
            "last_seen": self.last_seen.isoformat() if self.last_seen else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> KidUsage:
        """Parse one stored entry; tolerant of missing fields (older writers)."""
        count = data.get("count", 0)
        legacy = data.get("legacy", 0)
        seen = data.get("last_seen")
        return cls(
            count=count if isinstance(count, int) else 0,
            legacy=legacy if isinstance(legacy, int) else 0,
            last_seen=datetime.fromisoformat(seen) if isinstance(seen, str) else None,
        )

    def merged(self, other: KidUsage) -> KidUsage:
        """Sum the counts and keep the later ``last_seen``."""
        seen = [t for t in (self.last_seen, other.last_seen) if t is not None]
        return KidUsage(
            count=self.count + other.count,
            legacy=self.legacy + other.legacy,
            last_seen=max(seen) if seen else None,
        )


class UsageCounter:
    """Per-kid counters, cheap enough for every verification, exact under threads.

    Each thread counts into its own table (no lock on the hot path, one writer per row); the
    tables are summed when read. Tables of threads that have ended are folded into one at the
    next registration, so thread-per-request servers do not grow the list.

    Args:
        clock: wall clock in seconds since the epoch (``time.time``); pass a fake to freeze it.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._local = threading.local()
        self._lock = threading.Lock()
        # (owner thread, table); table: kid -> [count, legacy, last_seen_epoch]
        self._tables: list[tuple[threading.Thread | None, dict[int, list[float]]]] = []
        # kid -> [count, legacy] already confirmed in the store
        self._reported: dict[int, list[float]] = {}

    def _register(self) -> dict[int, list[float]]:
        table: dict[int, list[float]] = {}
        with self._lock:
            finished = [t for owner, t in self._tables if owner is not None and not owner.is_alive()]
            if finished:
                merged: dict[int, list[float]] = {}
                for owner, t in self._tables:
                    if owner is None:
                        merged = t
                _fold(merged, finished)
                self._tables = [(o, t) for o, t in self._tables if o is not None and o.is_alive()]
                self._tables.append((None, merged))
            self._tables.append((threading.current_thread(), table))
        self._local.table = table
        return table

    def record(self, kid: int, *, legacy: bool = False, count: int = 1) -> None:
        """Count ``count`` successful uses of ``kid`` (one by default)."""
        try:
            row = self._local.table[kid]
        except (AttributeError, KeyError):
            self._first_record(kid, legacy, count)
            return
        row[0] += count
        row[2] = self._clock()
        if legacy:
            row[1] += count

    def _first_record(self, kid: int, legacy: bool, count: int) -> None:
        try:
            table: dict[int, list[float]] = self._local.table
        except AttributeError:
            table = self._register()
        table[kid] = [count, count if legacy else 0, self._clock()]

    def _totals(self) -> dict[int, list[float]]:
        totals: dict[int, list[float]] = {}
        with self._lock:  # _register may be folding finished tables meanwhile
            _fold(totals, [t for _, t in self._tables])
        return totals

    def snapshot(self) -> dict[int, KidUsage]:
        """This process's totals since start, by kid."""
        return {kid: _usage(row) for kid, row in self._totals().items()}

    def take_unreported(self) -> dict[int, KidUsage]:
        """The uses not yet confirmed in the store, marked as reported (for the reporter)."""
        delta: dict[int, KidUsage] = {}
        totals = self._totals()
        with self._lock:
            for kid, row in totals.items():
                done = self._reported.setdefault(kid, [0, 0])
                if row[0] > done[0]:
                    delta[kid] = _usage([row[0] - done[0], row[1] - done[1], row[2]])
                    done[0], done[1] = row[0], row[1]
        return delta

    def give_back(self, pending: Mapping[int, KidUsage]) -> None:
        """Mark uses the store did not keep as unreported again, for the next report."""
        with self._lock:
            for kid, use in pending.items():
                done = self._reported.get(kid)
                if done is not None:
                    done[0] -= use.count
                    done[1] -= use.legacy

    def __repr__(self) -> str:
        kids = ", ".join(format_kid(k) for k in sorted(self._totals()))
        return f"UsageCounter(kids=[{kids}])"


def _fold(into: dict[int, list[float]], tables: Iterable[dict[int, list[float]]]) -> None:
    """Sum ``tables`` into ``into`` (counts add up, ``last_seen`` keeps the latest)."""
    for table in tables:
        for kid, row in list(table.items()):
            count, legacy, seen = row[0], row[1], row[2]
            acc = into.get(kid)
            if acc is None:
                into[kid] = [count, legacy, seen]
            else:
                acc[0] += count
                acc[1] += legacy
                acc[2] = max(acc[2], seen)


def _usage(row: list[float]) -> KidUsage:
    return KidUsage(count=int(row[0]), legacy=int(row[1]),
                    last_seen=datetime.fromtimestamp(row[2], timezone.utc))


def usage_key(ref: SecretRef) -> str:
    """The `Store.get_meta` key under which usage of ``ref`` is kept."""
    return f"usage:{ref.environment}/{ref.name}"


def _parse(text: str | None) -> dict[int, KidUsage]:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[int, KidUsage] = {}
    for kid_hex, entry in data.items():
        try:
            kid = parse_kid(kid_hex)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out[kid] = KidUsage.from_json(entry)
    return out


def read_usage(store: Store, ref: SecretRef) -> dict[int, KidUsage]:
    """Usage of each kid of ``ref`` as reported by every process, merged.

    The engine's overlap check: ``read_usage(store, ref).get(old_kid)`` is None or its
    ``last_seen`` is older than the quiet period → nothing reported using the old key.
    Unreadable records count as empty (a reporter will rewrite them).
    """
    return _parse(store.get_meta(usage_key(ref)))


def merge_usage(store: Store, ref: SecretRef, delta: Mapping[int, KidUsage]) -> dict[int, KidUsage]:
    """Add ``delta`` to the stored usage of ``ref``; return the part the store did not keep.

    Read-modify-write, then read back: a kid whose stored ``last_seen`` is older than ours lost
    a race with another writer and is returned so the caller can retry it later.
    """
    if not delta:
        return {}
    key = usage_key(ref)
    stored = _parse(store.get_meta(key))
    for kid, use in delta.items():
        stored[kid] = stored.get(kid, KidUsage()).merged(use)
    text = json.dumps({format_kid(kid): use.to_json() for kid, use in sorted(stored.items())}, sort_keys=True)
    store.put_meta(key, text)
    after = _parse(store.get_meta(key))
    lost: dict[int, KidUsage] = {}
    for kid, use in delta.items():
        kept = after.get(kid)
        if kept is None or (
            use.last_seen is not None and (kept.last_seen is None or kept.last_seen < use.last_seen)
        ):
            lost[kid] = use
    return lost
