"""Re-encryption on SQLite (the standard library's ``sqlite3``).

SQLite types values, not columns, so a column may hold BLOBs (binary form) and text (``kr1.``
form) side by side: every predicate branches on ``typeof``. Identifiers are quoted the SQL way
(double quotes, embedded quotes doubled) by `quote_identifier`; values are parameters. A batch
is one ``BEGIN IMMEDIATE`` transaction of compare-and-set UPDATEs; ``busy_timeout`` makes it
wait (bounded) for an application writer instead of failing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from keyroll.errors import TargetError, UsageError
from keyroll.reencrypt.database import NULL, Column, Database, KeyValue, Update, Window
from keyroll.reencrypt.headers import (
    FERNET_PREFIX,
    LEGACY,
    MALFORMED,
    MIN_BINARY_LENGTH,
    MIN_TEXT_LENGTH,
    TEXT_HEAD,
    HeaderMatch,
)
from keyroll.scrub import scrub
from keyroll.urls import sqlite_url_path

__all__ = ["SQLiteDatabase", "quote_identifier", "sqlite_file"]

_BUSY_TIMEOUT_MS = 10_000


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier (safe for any name, including quotes)."""
    if "\x00" in name:
        raise UsageError("an identifier cannot contain a NUL character")
    return '"' + name.replace('"', '""') + '"'


def sqlite_file(dsn: str) -> Path:
    """The file an SQLite URL names (`keyroll.urls.sqlite_url_path`, SQLAlchemy's rule).

    ``sqlite:///app.db`` is relative, ``sqlite:////srv/app.db`` absolute; ``sqlite:app.db`` is
    accepted too. Query strings are ignored.

    Raises:
        UsageError: a host in the URL, or an in-memory database (nothing to re-encrypt).
    """
    return sqlite_url_path(dsn)


class SQLiteDatabase(Database):
    """A ``sqlite3`` connection (autocommit; batches open their own transactions)."""

    def __init__(self, conn: sqlite3.Connection, env_var: str) -> None:
        self.conn = conn
        self.env_var = env_var

    @classmethod
    def connect(cls, dsn: str, *, env_var: str) -> SQLiteDatabase:
        """Open the existing database file (never creates one).

        Raises:
            UsageError: the file does not exist.
            TargetError: it cannot be opened.
        """
        path = sqlite_file(dsn)
        if not path.is_file():
            raise UsageError(f"{env_var}: no SQLite database file at {path}")
        try:
            # opened in the caller's thread, used by the job's (`keyroll.reencrypt.priority`)
            conn = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True,
                                   isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        except sqlite3.Error as exc:
            raise TargetError(f"SQLite: cannot open the database in {env_var}: {scrub(str(exc))}") from None
        return cls(conn, env_var)

    def resolve(self, table: str, key: str, column: str) -> Column:
        """See `Database.resolve`."""
        label = f"{table}.{column}"
        info = self._query("SELECT name, type, pk FROM pragma_table_info(?)", (table,), label)
        if not info:
            raise UsageError(f"{label}: no table {table!r} in the database of {self.env_var}; "
                             "check columns in keyroll.toml")
        names = {str(name): (str(decl), int(pk)) for name, decl, pk in info}
        for name, what in ((key, "key column"), (column, "column")):
            if name not in names:
                raise UsageError(f"{label}: table {table!r} has no {what} {name!r}; check "
                                 "columns in keyroll.toml")
        if not self._unique(table, key, names, label):
            raise UsageError(f"{label}: key column {key!r} is not unique (no primary key or "
                             "unique index on it alone): re-encryption pages by a unique key")
        return Column(table, key, column, "mixed")

    def _unique(self, table: str, key: str, names: dict[str, tuple[str, int]], label: str) -> bool:
        if sum(1 for _, pk in names.values() if pk) == 1 and names[key][1]:
            return True
        for _, index, unique, _, partial in self._query(
            "SELECT seq, name, \"unique\", origin, partial FROM pragma_index_list(?)", (table,), label
        ):
            if not unique or partial:
                continue
            cols = self._query("SELECT name FROM pragma_index_info(?)", (index,), label)
            if [c for (c,) in cols] == [key]:
                return True
        return False

    def _stale(self, col: str, current: HeaderMatch) -> tuple[str, list[Any]]:
        """The predicate "``col`` (an SQL expression) holds a value not under ``current``"."""
        return (
            f"(CASE typeof({col}) WHEN 'blob' THEN substr({col}, 1, 5) <> ? "
            f"WHEN 'text' THEN substr({col}, 1, {TEXT_HEAD}) NOT IN (?, ?, ?, ?) "
            "WHEN 'null' THEN 0 ELSE 1 END)",
            [current.binary, *current.text],
        )

    def scan(self, column: Column, after: KeyValue | None, limit: int,
             current: HeaderMatch) -> Window:
        """See `Database.scan`."""
        key, col = quote_identifier(column.key), quote_identifier(column.column)
        table = quote_identifier(column.table)
        stale, params = self._stale("v", current)
        where = f"WHERE {key} > ? " if after is not None else ""
        query = (
            f"SELECT k, CASE WHEN {stale} THEN v END FROM "  # noqa: S608
            f"(SELECT {key} AS k, {col} AS v FROM {table} {where}ORDER BY {key} LIMIT ?) "
            "ORDER BY k"
        )
        args: list[Any] = ([after] if after is not None else []) + [limit]
        rows = self._query(query, (*params, *args), column.label)
        return Window([(k, v) for k, v in rows if v is not None],
                      rows[-1][0] if rows else None, len(rows))

    def compare_and_set(self, column: Column, updates: Sequence[Update]) -> int:
        """See `Database.compare_and_set`."""
        if not updates:
            return 0
        key, col = quote_identifier(column.key), quote_identifier(column.column)
        table = quote_identifier(column.table)
        query = f"UPDATE {table} SET {col} = ? WHERE {key} = ? AND {col} = ?"  # noqa: S608
        changed = 0
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for u in updates:
                    changed += self.conn.execute(query, (u.new, u.key, u.old)).rowcount
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise TargetError(f"SQLite: update of {column.label} failed: {scrub(str(exc))}") from None
        return changed

    def _range(self, column: Column, lower: KeyValue | None,
               upper: KeyValue | None) -> tuple[str, list[Any]]:
        key = quote_identifier(column.key)
        parts, params = ["1"], []
        if lower is not None:
            parts.append(f"{key} > ?")
            params.append(lower)
        if upper is not None:
            parts.append(f"{key} <= ?")
            params.append(upper)
        return " AND ".join(parts), params

    def _bound(self, column: Column, after: KeyValue | None, n: int) -> KeyValue | None:
        key = quote_identifier(column.key)
        where, params = self._range(column, after, None)
        rows = self._query(
            f"SELECT {key} FROM {quote_identifier(column.table)} WHERE {where} "  # noqa: S608
            f"ORDER BY {key} LIMIT 1 OFFSET ?", (*params, n - 1), column.label)
        return rows[0][0] if rows else None

    def _count_range(self, column: Column, lower: KeyValue | None, upper: KeyValue | None,
                     current: HeaderMatch) -> int:
        stale, stale_params = self._stale(quote_identifier(column.column), current)
        where, params = self._range(column, lower, upper)
        query = (f"SELECT count(*) FROM {quote_identifier(column.table)} "  # noqa: S608
                 f"WHERE {where} AND {stale}")
        return int(self._query(query, (*params, *stale_params), column.label)[0][0])

    def _census_range(self, column: Column, lower: KeyValue | None,
                      upper: KeyValue | None) -> Iterable[tuple[str, int]]:
        c = quote_identifier(column.column)
        bucket = (
            f"CASE WHEN {c} IS NULL THEN ? "
            f"WHEN typeof({c}) = 'blob' AND substr({c}, 1, 1) = x'01' AND length({c}) >= ? "
            f"THEN 'b:' || lower(hex(substr({c}, 1, 5))) "
            f"WHEN typeof({c}) = 'text' AND substr({c}, 1, 4) = 'kr1.' AND length({c}) >= ? "
            f"THEN 't:' || substr({c}, 1, ?) "
            f"WHEN typeof({c}) IN ('blob', 'text') AND substr({c}, 1, 6) IN (?, ?) THEN ? "
            "ELSE ? END"
        )
        where, range_params = self._range(column, lower, upper)
        query = (f"SELECT {bucket} AS b, count(*) FROM {quote_identifier(column.table)} "  # noqa: S608
                 f"WHERE {where} GROUP BY b")
        params = (NULL, MIN_BINARY_LENGTH, MIN_TEXT_LENGTH, TEXT_HEAD, FERNET_PREFIX,
                  FERNET_PREFIX.encode(), LEGACY, MALFORMED, *range_params)
        return [(str(b), int(n)) for b, n in self._query(query, params, column.label)]

    def _query(self, query: str, params: Sequence[Any], label: str) -> list[Any]:
        try:
            return self.conn.execute(query, params).fetchall()
        except sqlite3.Error as exc:
            raise TargetError(f"SQLite: query on {label} failed: {scrub(str(exc))}") from None

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
