"""The contract a database adapter fulfils for re-encryption (`keyroll.reencrypt.connect` opens one).

An adapter knows one dialect's SQL (`keyroll.reencrypt.postgres`, `keyroll.reencrypt.sqlite`);
the job (`keyroll.reencrypt.job`) knows none. Every statement an adapter runs is short (and
is its own transaction): a keyset window of at most ``limit`` rows, one compare-and-set
UPDATE of one batch, or an aggregate over at most `COUNT_WINDOW` rows.

DSNs come from the application's environment (``DATABASE_URL`` by default) and may hold a
password: no message ever repeats a DSN, and driver messages are cut to their first line with
the password removed.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from keyroll.model import format_kid
from keyroll.reencrypt.headers import MALFORMED, HeaderMatch, kid_of_text_head
from keyroll.reencrypt.throttle import DatabaseHealth, ProbeSampler
from keyroll.scrub import scrub

__all__ = [
    "COUNT_WINDOW",
    "NULL",
    "Column",
    "Database",
    "Form",
    "KeyValue",
    "Pace",
    "Update",
    "Window",
    "scrub",
]

#: A row's key as the driver returns it (int, str, uuid.UUID, bytes …).
KeyValue = object
#: How a column stores ciphertexts: ``bytea``/BLOB, text, or (SQLite) either, row by row.
Form = Literal["binary", "text", "mixed"]
#: Census bucket of NULL values.
NULL = "null"

#: Told how long a count window took, in seconds (`Database.count_stale`'s ``pace``).
Pace = Callable[[float], None]
#: Rows per statement when counting (see `Database.count_stale`).
COUNT_WINDOW = 50_000


@dataclass(frozen=True, slots=True)
class Column:
    """A ciphertext column, checked against the database's catalog.

    Attributes:
        table: the table as named in the inventory (``schema.table`` allowed on PostgreSQL).
        key: the unique key column that orders the scan.
        column: the ciphertext column.
        form: how values are stored (decides the header predicate).
        key_array: PostgreSQL: the array type of the key column (schema, name), for casts.
        value_array: PostgreSQL: the array type of the ciphertext column (schema, name).
    """

    table: str
    key: str
    column: str
    form: Form
    key_array: tuple[str, str] | None = None
    value_array: tuple[str, str] | None = None

    @property
    def label(self) -> str:
        """``table.column``, for messages and checkpoints."""
        return f"{self.table}.{self.column}"


@dataclass(frozen=True, slots=True)
class Window:
    """One keyset window of a scan.

    Attributes:
        stale: the rows not under the current key, with their ciphertexts, in key order.
        last_key: the largest key in the window (where the next window starts), or None when
            the window was empty (the scan is over).
        scanned: how many rows the window covered (stale or not).
    """

    stale: list[tuple[KeyValue, bytes | str | object]]
    last_key: KeyValue | None
    scanned: int


@dataclass(frozen=True, slots=True)
class Update:
    """One compare-and-set: write ``new`` where the row still holds ``old``."""

    key: KeyValue
    old: bytes | str
    new: bytes | str


class Database(ABC):
    """One connection to an application database, speaking its dialect."""

    @abstractmethod
    def resolve(self, table: str, key: str, column: str) -> Column:
        """Check that the table and columns exist and suit; return the checked column.

        Raises:
            UsageError: unknown table or column, a key that is not unique, a column type that
                cannot hold ciphertexts (one line, exit 2).
        """

    @abstractmethod
    def scan(self, column: Column, after: KeyValue | None, limit: int,
             current: HeaderMatch) -> Window:
        """The next ``limit`` rows by key after ``after`` (from the start if None)."""

    @abstractmethod
    def compare_and_set(self, column: Column, updates: Sequence[Update]) -> int:
        """Apply the updates in one short transaction; return how many rows changed.

        A row whose value is no longer ``old`` (the application wrote it meanwhile) is left
        as it is: that is the point, it is never overwritten with stale data.
        """

    @abstractmethod
    def _bound(self, column: Column, after: KeyValue | None, n: int) -> KeyValue | None:
        """The ``n``-th key after ``after`` (from the start if None), or None if fewer remain."""

    @abstractmethod
    def _count_range(self, column: Column, lower: KeyValue | None, upper: KeyValue | None,
                     current: HeaderMatch) -> int:
        """Stale rows (see `count_stale`) with ``lower < key <= upper`` (None: unbounded)."""

    @abstractmethod
    def _census_range(self, column: Column, lower: KeyValue | None,
                      upper: KeyValue | None) -> Iterable[tuple[str, int]]:
        """Raw groups of the rows with ``lower < key <= upper``: ``b:<hex of 5 header
        bytes>``, ``t:<first 11 chars>``, `LEGACY`, `MALFORMED` or `NULL`, with counts."""

    def _ranges(self, column: Column, pace: Pace | None = None
                ) -> Iterator[tuple[KeyValue | None, KeyValue | None]]:
        """Key ranges of `COUNT_WINDOW` rows covering the table, found one at a time; after
        each range's statements, ``pace`` is told how long they took (the throttle pauses)."""
        lower: KeyValue | None = None
        for _ in range(10**9):  # bounded by the table: each range starts after the last
            began = time.monotonic()
            upper = self._bound(column, lower, COUNT_WINDOW)
            yield lower, upper
            if pace is not None:
                pace(time.monotonic() - began)
            if upper is None:
                return
            lower = upper

    def count_stale(self, column: Column, current: HeaderMatch, *,
                    pace: Pace | None = None) -> int:
        """Rows whose non-NULL value is not under ``current`` (older kids, Fernet, junk).

        Counted `COUNT_WINDOW` rows per statement: on a large table no statement (and so no
        transaction, no snapshot holding back vacuum) runs long. Not one snapshot, then:
        rows the application changes meanwhile may count either way, as they would a moment
        later anyway. ``pace``: see `_ranges` (a throttled job paces its counts too).
        """
        return sum(self._count_range(column, lower, upper, current)
                   for lower, upper in self._ranges(column, pace))

    def census(self, column: Column, *, pace: Pace | None = None) -> dict[str, int]:
        """Rows per kid (8 hex digits), plus `LEGACY`, `MALFORMED` and `NULL` buckets.

        Counted window by window, like `count_stale`.
        """
        counts: dict[str, int] = {}
        for lower, upper in self._ranges(column, pace):
            for raw, count in self._census_range(column, lower, upper):
                bucket = raw
                if raw.startswith("b:"):
                    header = bytes.fromhex(raw[2:])
                    bucket = format_kid(int.from_bytes(header[1:5], "big"))
                elif raw.startswith("t:"):
                    kid = kid_of_text_head(raw[2:])
                    bucket = MALFORMED if kid is None else format_kid(kid)
                counts[bucket] = counts.get(bucket, 0) + count
        return counts

    # --- throttle signals (optional: an adapter without them runs unthrottled) ----------

    def probe(self, column: Column, *, interval: float) -> ProbeSampler | None:
        """Start a latency probe beside the job (a cheap indexed read of ``column``'s
        table), or None when the adapter has none (SQLite)."""
        return None

    def health(self) -> DatabaseHealth | None:
        """Lock waiters and replication positions, or None when not measurable."""
        return None

    def close(self) -> None:  # noqa: B027  (optional: adapters holding nothing skip it)
        """Close the connection."""

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def __getattr__(name: str) -> Any:
    # `open_database` lives in `keyroll.reencrypt.connect` (the contract does not import its
    # implementations); the old import path keeps working for callers not yet moved.
    if name == "open_database":
        from keyroll.reencrypt.connect import open_database

        return open_database
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
