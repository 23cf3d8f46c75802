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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

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
    """Thread-safe per-kid counters, cheap enough for every verification.

    Args:
        clock: wall clock in seconds since the epoch (``time.time``); pass a fake to freeze it.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # kid -> [count, legacy, last_seen_epoch]; cumulative for this process
        self._totals: dict[int, list[float]] = {}
        # kid -> [count, legacy, last_seen_epoch]; not yet confirmed in the store
        self._unreported: dict[int, list[float]] = {}

    def record(self, kid: int, *, legacy: bool = False) -> None:
        """Count one successful use of ``kid``."""
        now = self._clock()
        extra = 1 if legacy else 0
        with self._lock:
            for table in (self._totals, self._unreported):
                row = table.get(kid)
                if row is None:
                    table[kid] = [1, extra, now]
                else:
                    row[0] += 1
                    row[1] += extra
                    row[2] = now

    def snapshot(self) -> dict[int, KidUsage]:
        """This process's totals since start, by kid."""
        with self._lock:
            return {kid: _usage(row) for kid, row in self._totals.items()}

    def take_unreported(self) -> dict[int, KidUsage]:
        """Remove and return the uses not yet confirmed in the store (for the reporter)."""
        with self._lock:
            taken, self._unreported = self._unreported, {}
        return {kid: _usage(row) for kid, row in taken.items()}

    def give_back(self, pending: Mapping[int, KidUsage]) -> None:
        """Return uses the store did not keep, so the next report carries them again."""
        with self._lock:
            for kid, use in pending.items():
                seen = use.last_seen.timestamp() if use.last_seen else 0.0
                row = self._unreported.get(kid)
                if row is None:
                    self._unreported[kid] = [use.count, use.legacy, seen]
                else:
                    row[0] += use.count
                    row[1] += use.legacy
                    row[2] = max(row[2], seen)

    def __repr__(self) -> str:
        kids = ", ".join(format_kid(k) for k in sorted(self._totals))
        return f"UsageCounter(kids=[{kids}])"


def _usage(row: list[float]) -> KidUsage:
    return KidUsage(
        count=int(row[0]), legacy=int(row[1]), last_seen=datetime.fromtimestamp(row[2], UTC)
    )


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
    text = json.dumps(
        {format_kid(kid): use.to_json() for kid, use in sorted(stored.items())}, sort_keys=True
    )
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
