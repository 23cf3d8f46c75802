"""Re-encryption on PostgreSQL (psycopg 3, extra ``keyroll[postgres]``).

Every identifier goes through `psycopg.sql.Identifier`; values through parameters. The
connection is in autocommit mode, so each statement is its own short transaction:

- a scan window reads at most ``limit`` keys in key order (the primary key index) and returns
  ciphertexts only for the rows whose header is not the current one;
- a batch is written by one ``UPDATE … FROM unnest(keys, olds, news) … WHERE t.key = v.key AND
  t.col = v.old``: compare-and-set, so a row the application changed meanwhile is left alone.
  Arrays are cast to the columns' own array types (read from the catalog, quoted as
  identifiers), so the key index is used whatever the key's type (int, bigint, uuid, text),
  and sent in binary (``%b``): text-mode escaping of bytea arrays cost more than the UPDATE.

``lock_timeout`` bounds how long a batch waits behind an application transaction holding a
row: on timeout the batch is skipped (its rows are found again by the next pass).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

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
from keyroll.reencrypt.throttle import DatabaseHealth, ProbeSampler

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise UsageError(
        f"re-encrypting PostgreSQL needs psycopg ({exc.name} is missing): "
        "pip install 'keyroll[postgres]'"
    ) from None

from keyroll.targets.postgres import driver_error, hint_for, where

__all__ = ["PostgresDatabase"]

_TEXT_TYPES = frozenset({"text", "varchar", "citext"})
_PROBE_KEYS = 10_000
_LOCK_TIMEOUT = "2s"
_STATEMENT_TIMEOUT = "120s"


def _conninfo(dsn: str) -> str:
    """SQLAlchemy spells ``postgresql+psycopg://``; libpq wants ``postgresql://``."""
    head, sep, rest = dsn.partition("://")
    if sep and head.lower().startswith("postgresql+"):
        return "postgresql://" + rest
    return dsn


def _password(dsn: str) -> list[str]:
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return []
    password = params.get("password")
    return [str(password)] if password else []


class PostgresDatabase(Database):
    """A psycopg connection (autocommit) to the application's database."""

    def __init__(self, conn: psycopg.Connection[Any], env_var: str, place: str = "",
                 conninfo: str | None = None) -> None:
        self.conn = conn
        self.env_var = env_var
        self.where = place or f"({env_var})"
        self._conninfo = conninfo  # for the probe's own connection; never shown

    @classmethod
    def connect(cls, dsn: str, *, env_var: str) -> PostgresDatabase:
        """Connect with the DSN in ``env_var``.

        Raises:
            UsageError: the DSN is malformed.
            TargetError: connecting failed (the message never holds the password).
        """
        conninfo = _conninfo(dsn)
        secrets = _password(conninfo)
        try:
            conninfo_to_dict(conninfo)
        except psycopg.Error:
            raise UsageError(f"{env_var} is not a valid PostgreSQL URL or conninfo string") from None
        try:
            conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10,
                                   application_name="keyroll-reencrypt")
        except psycopg.Error as exc:
            raise driver_error(
                where(conninfo), f"connect to the database in {env_var}", "cannot connect",
                "check the server and the credentials", exc, secrets,
            ) from None
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(_LOCK_TIMEOUT)))
        conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(_STATEMENT_TIMEOUT)))
        # a batch lost in a server crash leaves its rows stale, and the pass's final count
        # finds them again: the job need not wait for each commit's WAL flush
        conn.execute("SET synchronous_commit = off")
        return cls(conn, env_var, where(conninfo), conninfo)

    # --- catalog --------------------------------------------------------------------------

    def _table(self, table: str) -> sql.Identifier:
        return sql.Identifier(*table.split(".", 1))

    def resolve(self, table: str, key: str, column: str) -> Column:
        """See `Database.resolve`."""
        label = f"{table}.{column}"
        regclass = self._table(table).as_string(self.conn)
        row = self.conn.execute("SELECT to_regclass(%s)::oid", (regclass,)).fetchone()
        if row is None or row[0] is None:
            raise UsageError(f"{label}: no table {table!r} in the database of {self.env_var}; "
                             "check columns in keyroll.toml")
        oid = row[0]
        attrs = {
            name: (attnum, typnsp, typname, arrnsp, arrname)
            for name, attnum, typnsp, typname, arrnsp, arrname in self.conn.execute(
                "SELECT a.attname, a.attnum, tn.nspname, t.typname, an.nspname, at.typname "
                "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                "JOIN pg_namespace tn ON tn.oid = t.typnamespace "
                "LEFT JOIN pg_type at ON at.oid = t.typarray "
                "LEFT JOIN pg_namespace an ON an.oid = at.typnamespace "
                "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped "
                "AND a.attname = ANY(%s::text[])",
                (oid, [key, column]),
            ).fetchall()
        }
        for name, what in ((key, "key column"), (column, "column")):
            if name not in attrs:
                raise UsageError(f"{label}: table {table!r} has no {what} {name!r}; check "
                                 "columns in keyroll.toml")
        key_num, _, _, key_arr_nsp, key_arr = attrs[key]
        _, _, value_type, value_arr_nsp, value_arr = attrs[column]
        unique = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = %s AND i.indisunique "
            "AND i.indnkeyatts = 1 AND i.indkey[0] = %s AND i.indpred IS NULL)",
            (oid, key_num),
        ).fetchone()
        if unique is None or not unique[0]:
            raise UsageError(f"{label}: key column {key!r} is not unique (no unique index on it "
                             "alone): re-encryption pages by a primary or unique key")
        if value_type == "bytea":
            form = "binary"
        elif value_type in _TEXT_TYPES:
            form = "text"
        else:
            raise UsageError(f"{label}: column type {value_type!r} cannot hold keyroll "
                             "ciphertexts: use bytea (binary form) or text (kr1. form)")
        if key_arr is None or value_arr is None:
            raise UsageError(f"{label}: the key or column type has no array type")
        return Column(table, key, column, form,  # type: ignore[arg-type]
                      (key_arr_nsp, key_arr), (value_arr_nsp, value_arr))

    # --- predicates -----------------------------------------------------------------------

    def _stale(self, column: Column, current: HeaderMatch) -> tuple[sql.Composed, list[Any]]:
        col = sql.Identifier(column.column)
        if column.form == "binary":
            return sql.SQL("substring({} from 1 for 5) <> %s").format(col), [current.binary]
        return sql.SQL("left({}, %s) NOT IN (%s, %s, %s, %s)").format(col), [
            TEXT_HEAD, *current.text
        ]

    # --- the job's queries ----------------------------------------------------------------

    def scan(self, column: Column, after: KeyValue | None, limit: int,
             current: HeaderMatch) -> Window:
        """See `Database.scan`."""
        key, col = sql.Identifier(column.key), sql.Identifier(column.column)
        stale, params = self._stale(column, current)
        where = sql.SQL("WHERE {} > %s ").format(key) if after is not None else sql.SQL("")
        query = sql.SQL(
            "WITH w AS (SELECT {key}, {col} FROM {table} {where}ORDER BY {key} LIMIT %s) "
            "SELECT {key}, CASE WHEN {col} IS NOT NULL AND {stale} THEN {col} END "
            "FROM w ORDER BY {key}"
        ).format(key=key, col=col, table=self._table(column.table), where=where, stale=stale)
        args: list[Any] = ([after] if after is not None else []) + [limit] + params
        rows = self._run(column, "scan", query, args).fetchall()
        return Window([(k, v) for k, v in rows if v is not None],
                      rows[-1][0] if rows else None, len(rows))

    def compare_and_set(self, column: Column, updates: Sequence[Update]) -> int:
        """See `Database.compare_and_set`."""
        if not updates:
            return 0
        assert column.key_array is not None
        assert column.value_array is not None
        key, col = sql.Identifier(column.key), sql.Identifier(column.column)
        karr, varr = sql.Identifier(*column.key_array), sql.Identifier(*column.value_array)
        query = sql.SQL(
            "UPDATE {table} AS t SET {col} = v.new "
            "FROM unnest(%b::{karr}, %b::{varr}, %b::{varr}) AS v(key, old, new) "
            "WHERE t.{key} = v.key AND t.{col} = v.old"
        ).format(table=self._table(column.table), col=col, key=key, karr=karr, varr=varr)
        keys = [u.key if isinstance(u.key, (int, bytes)) else str(u.key) for u in updates]
        try:
            cursor = self.conn.execute(
                query, ([*keys], [u.old for u in updates], [u.new for u in updates]))
        except psycopg.errors.LockNotAvailable:
            return 0  # an application transaction holds rows: the next pass finds them
        except psycopg.Error as exc:
            raise self._error(column, "update", exc) from None
        return max(cursor.rowcount, 0)

    def _range(self, column: Column, lower: KeyValue | None,
               upper: KeyValue | None) -> tuple[sql.Composed, list[Any]]:
        key = sql.Identifier(column.key)
        parts: list[sql.Composable] = [sql.SQL("TRUE")]
        params: list[Any] = []
        if lower is not None:
            parts.append(sql.SQL("{} > %s").format(key))
            params.append(lower)
        if upper is not None:
            parts.append(sql.SQL("{} <= %s").format(key))
            params.append(upper)
        return sql.SQL(" AND ").join(parts), params

    def _bound(self, column: Column, after: KeyValue | None, n: int) -> KeyValue | None:
        where, params = self._range(column, after, None)
        query = sql.SQL("SELECT {key} FROM {table} WHERE {where} ORDER BY {key} "
                        "OFFSET %s LIMIT 1").format(
            key=sql.Identifier(column.key), table=self._table(column.table), where=where)
        row = self._run(column, "count", query, [*params, n - 1]).fetchone()
        return None if row is None else row[0]

    def _count_range(self, column: Column, lower: KeyValue | None, upper: KeyValue | None,
                     current: HeaderMatch) -> int:
        stale, stale_params = self._stale(column, current)
        where, params = self._range(column, lower, upper)
        query = sql.SQL(
            "SELECT count(*) FROM {table} WHERE {where} AND {col} IS NOT NULL AND {stale}"
        ).format(table=self._table(column.table), where=where,
                 col=sql.Identifier(column.column), stale=stale)
        row = self._run(column, "count", query, [*params, *stale_params]).fetchone()
        return int(row[0]) if row else 0

    def _census_range(self, column: Column, lower: KeyValue | None,
                      upper: KeyValue | None) -> Iterable[tuple[str, int]]:
        col = sql.Identifier(column.column)
        if column.form == "binary":
            bucket = sql.SQL(
                "CASE WHEN {c} IS NULL THEN %s "
                "WHEN substring({c} from 1 for 1) = '\\x01'::bytea AND length({c}) >= %s "
                "THEN 'b:' || encode(substring({c} from 1 for 5), 'hex') "
                "WHEN substring({c} from 1 for 6) = %s THEN %s ELSE %s END"
            ).format(c=col)
            params: list[Any] = [NULL, MIN_BINARY_LENGTH, FERNET_PREFIX.encode(), LEGACY, MALFORMED]
        else:
            bucket = sql.SQL(
                "CASE WHEN {c} IS NULL THEN %s "
                "WHEN left({c}, 4) = 'kr1.' AND length({c}) >= %s THEN 't:' || left({c}, %s) "
                "WHEN left({c}, 6) = %s THEN %s ELSE %s END"
            ).format(c=col)
            params = [NULL, MIN_TEXT_LENGTH, TEXT_HEAD, FERNET_PREFIX, LEGACY, MALFORMED]
        where, range_params = self._range(column, lower, upper)
        query = sql.SQL("SELECT {b} AS bucket, count(*) FROM {table} WHERE {where} "
                        "GROUP BY 1").format(b=bucket, table=self._table(column.table),
                                             where=where)
        rows = self._run(column, "count", query, [*params, *range_params]).fetchall()
        return [(str(b), int(n)) for b, n in rows]

    def _run(self, column: Column, what: str, query: sql.Composed,
             params: Sequence[Any]) -> psycopg.Cursor[Any]:
        try:
            return self.conn.execute(query, params)
        except psycopg.Error as exc:
            raise self._error(column, what, exc) from None

    def _error(self, column: Column, what: str, exc: psycopg.Error) -> TargetError:
        return driver_error(self.where, f"{what} of {column.label}", "failed", hint_for(exc), exc)

    # --- throttle signals -----------------------------------------------------------------

    def probe(self, column: Column, *, interval: float) -> ProbeSampler | None:
        """See `Database.probe`: point reads of the table's rows by its key index, in a child
        process (`keyroll.reencrypt.probe`), going round a sample of `_PROBE_KEYS` keys spread
        over the table (``TABLESAMPLE SYSTEM``, a few pages read once), in random order. Each
        read visits the row itself (``column IS NULL``: never the value), as an application
        read does, not only the index (an index-only read of the key would not feel the
        buffer evictions and page writes the job causes)."""
        if self._conninfo is None:
            return None
        from keyroll.reencrypt.probe import ProcessProbe

        key, table = sql.Identifier(column.key), self._table(column.table)
        keys = self._sample_keys(column)
        if keys:
            query = sql.SQL("SELECT {col} IS NULL FROM {table} WHERE {key} = %s").format(
                col=sql.Identifier(column.column), key=key, table=table)
        else:  # an empty table: its first key, as before
            query = sql.SQL("SELECT {key} FROM {table} ORDER BY {key} LIMIT 1").format(
                key=key, table=table)
        return ProcessProbe(self._conninfo, query.as_string(self.conn), interval=interval,
                            keys=keys)

    def _sample_keys(self, column: Column) -> list[Any]:
        """Up to `_PROBE_KEYS` keys from pages all over the table (never its values)."""
        table = self._table(column.table)
        row = self._run(column, "probe", sql.SQL(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = {}::regclass"
        ).format(sql.Literal(table.as_string(self.conn))), []).fetchone()
        estimate = int(row[0]) if row else 0
        # pages for about 1.2 x the keys wanted, so the LIMIT (pages come in table order)
        # rarely stops the sample before the end of the table
        percent = 100.0 if estimate <= 0 else min(100.0, max(0.01, 120.0 * _PROBE_KEYS / estimate))
        keys = [k for (k,) in self._run(column, "probe", sql.SQL(
            "SELECT {key} FROM {table} TABLESAMPLE SYSTEM (%s) LIMIT %s").format(
                key=sql.Identifier(column.key), table=table),
            [percent, 4 * _PROBE_KEYS]).fetchall()]
        return random.sample(keys, min(len(keys), _PROBE_KEYS))

    def health(self) -> DatabaseHealth | None:
        """See `Database.health`: ``pg_stat_activity`` lock waiters of this database, the WAL
        position, and ``pg_stat_replication``'s slowest replay position."""
        try:
            row = self.conn.execute(
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database() AND pid <> pg_backend_pid()), "
                "CASE WHEN pg_is_in_recovery() THEN NULL "
                "ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint END, "
                "(SELECT count(*) FROM pg_stat_replication), "
                "(SELECT min(pg_wal_lsn_diff(replay_lsn, '0/0'))::bigint "
                "FROM pg_stat_replication)"
            ).fetchone()
        except psycopg.Error:
            return None  # not measurable (privileges, an old server): run on the probe alone
        if row is None:
            return None
        waiting, position, replicas, replayed = row
        return DatabaseHealth(int(waiting), None if position is None else int(position),
                              int(replicas), None if replayed is None else int(replayed))

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
