"""Effective privileges of a role, and the difference between two roles' privileges.

`read_privileges` asks the server (``has_table_privilege``, ``has_sequence_privilege``,
``has_column_privilege``, ``has_schema_privilege``, ``has_database_privilege``,
``has_function_privilege``, ``has_type_privilege``, ``has_language_privilege``,
``has_foreign_data_wrapper_privilege``, ``has_server_privilege``,
``has_tablespace_privilege``, ``pg_has_role``) what a role may do on every object of the
connected database (and on every database and tablespace): directly, through ``PUBLIC``,
through membership or by ownership. `PrivilegeDiff` compares two such sets; adopt and the
rotation's test step both use it, and its `PrivilegeDiff.lines` name objects and privileges,
never a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keyroll.errors import RoleMissing
from keyroll.targets.postgres._driver import role_missing
from keyroll.targets.postgres.layout import roles_named

if TYPE_CHECKING:
    import psycopg

__all__ = ["Privilege", "PrivilegeDiff", "read_privileges", "role_oid"]


@dataclass(frozen=True, slots=True, order=True)
class Privilege:
    """One effective privilege of a role, as ``has_*_privilege`` reports it.

    Attributes:
        kind: ``database``, ``schema``, ``table``, ``column``, ``sequence``, ``function``,
            ``type``, ``language``, ``foreign-data-wrapper``, ``foreign-server``,
            ``tablespace`` or ``member-of``.
        target: the object, quoted as PostgreSQL would (``"public"."orders"``).
        privilege: ``SELECT``, ``USAGE``, ``CONNECT`` … (``USAGE`` for a membership).
    """

    kind: str
    target: str
    privilege: str

    def __str__(self) -> str:
        return f"{self.privilege} on {self.kind} {self.target}"


@dataclass(frozen=True, slots=True)
class PrivilegeDiff:
    """What ``actual`` lacks and gains compared with ``expected``.

    Attributes:
        compared: how many privileges ``expected`` holds.
        missing: held by ``expected``, not by ``actual``.
        extra: held by ``actual``, not by ``expected``.
    """

    compared: int
    missing: tuple[Privilege, ...]
    extra: tuple[Privilege, ...]

    @classmethod
    def of(cls, expected: frozenset[Privilege], actual: frozenset[Privilege]) -> PrivilegeDiff:
        """The difference of two sets from `read_privileges`."""
        return cls(len(expected), tuple(sorted(expected - actual)),
                   tuple(sorted(actual - expected)))

    @property
    def same(self) -> bool:
        """Whether both sets are equal."""
        return not self.missing and not self.extra

    def lines(self, limit: int = 50) -> list[str]:
        """``- SELECT on table public.x`` (missing) and ``+ …`` (extra), at most ``limit``."""
        lines = [f"- {p}" for p in self.missing] + [f"+ {p}" for p in self.extra]
        if len(lines) > limit:
            return [*lines[:limit], f"… ({len(lines)} differences in all)"]
        return lines

    def summary(self, role: str, limit: int = 8) -> str:
        """``'x' would lack …; 'x' would gain …`` for a one-line message."""

        def show(items: tuple[Privilege, ...]) -> str:
            text = ", ".join(str(p) for p in items[:limit])
            return text + (f" … ({len(items)} in all)" if len(items) > limit else "")

        parts = []
        if self.missing:
            parts.append(f"{role!r} would lack {show(self.missing)}")
        if self.extra:
            parts.append(f"{role!r} would gain {show(self.extra)}")
        return "; ".join(parts)

    def to_json(self, limit: int = 50) -> dict[str, Any]:
        """For the evidence: counts and the first ``limit`` differences (objects, no values)."""
        return {"compared": self.compared, "missing": len(self.missing),
                "extra": len(self.extra), "diff": self.lines(limit)}


_PRIVILEGES_SQL = """
WITH r AS (SELECT %(role)s::oid AS oid),
rels AS (
  SELECT c.oid, c.relkind, format('%%I.%%I', n.nspname, c.relname) AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
)
SELECT 'table', rels.name, p.priv FROM rels, r,
  unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE','REFERENCES','TRIGGER']) p(priv)
  WHERE rels.relkind <> 'S' AND has_table_privilege(r.oid, rels.oid, p.priv)
UNION ALL
SELECT 'sequence', rels.name, p.priv FROM rels, r, unnest(ARRAY['USAGE','SELECT','UPDATE']) p(priv)
  WHERE rels.relkind = 'S' AND has_sequence_privilege(r.oid, rels.oid, p.priv)
UNION ALL
SELECT 'column', rels.name || '.' || quote_ident(a.attname), p.priv
  FROM rels JOIN pg_attribute a ON a.attrelid = rels.oid, r,
  unnest(ARRAY['SELECT','INSERT','UPDATE','REFERENCES']) p(priv)
  WHERE rels.relkind <> 'S' AND a.attnum > 0 AND NOT a.attisdropped
    AND has_column_privilege(r.oid, rels.oid, a.attnum, p.priv)
UNION ALL
SELECT 'schema', quote_ident(n.nspname), p.priv FROM pg_namespace n, r,
  unnest(ARRAY['USAGE','CREATE']) p(priv)
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
    AND has_schema_privilege(r.oid, n.oid, p.priv)
UNION ALL
SELECT 'database', quote_ident(d.datname), p.priv FROM pg_database d, r,
  unnest(ARRAY['CONNECT','CREATE','TEMPORARY']) p(priv)
  WHERE has_database_privilege(r.oid, d.oid, p.priv)
UNION ALL
SELECT 'function', f.oid::regprocedure::text, 'EXECUTE' FROM pg_proc f
  JOIN pg_namespace n ON n.oid = f.pronamespace, r
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
    AND has_function_privilege(r.oid, f.oid, 'EXECUTE')
UNION ALL
SELECT 'type', format('%%I.%%I', n.nspname, t.typname), 'USAGE' FROM pg_type t
  JOIN pg_namespace n ON n.oid = t.typnamespace, r
  WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%' AND t.typcategory <> 'A'
    AND (t.typrelid = 0 OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')
    AND has_type_privilege(r.oid, t.oid, 'USAGE')
UNION ALL
SELECT 'language', quote_ident(l.lanname), 'USAGE' FROM pg_language l, r
  WHERE has_language_privilege(r.oid, l.oid, 'USAGE')
UNION ALL
SELECT 'foreign-data-wrapper', quote_ident(w.fdwname), 'USAGE' FROM pg_foreign_data_wrapper w, r
  WHERE has_foreign_data_wrapper_privilege(r.oid, w.oid, 'USAGE')
UNION ALL
SELECT 'foreign-server', quote_ident(s.srvname), 'USAGE' FROM pg_foreign_server s, r
  WHERE has_server_privilege(r.oid, s.oid, 'USAGE')
UNION ALL
SELECT 'tablespace', quote_ident(t.spcname), 'CREATE' FROM pg_tablespace t, r
  WHERE has_tablespace_privilege(r.oid, t.oid, 'CREATE')
UNION ALL
SELECT 'member-of', quote_ident(o.rolname), 'USAGE' FROM pg_roles o, r
  WHERE o.oid <> r.oid AND NOT (o.oid = ANY(%(exclude)s::oid[]))
    AND pg_has_role(r.oid, o.oid, 'USAGE')
"""


def read_privileges(
    conn: psycopg.Connection[Any], role: str, exclude: Sequence[str], where: str, step: str
) -> frozenset[Privilege]:
    """Effective privileges of ``role`` (see `PostgresTarget.privileges`).

    Args:
        exclude: roles whose membership is not counted (the alternation's own roles).

    Raises:
        RoleMissing: the role does not exist.
    """
    if role not in roles_named(conn, [role]):
        raise role_missing(where, step, "check the name")
    oid = role_oid(conn, role)
    excluded = [oid for name, oid in conn.execute(
        "SELECT rolname, oid FROM pg_roles WHERE rolname = ANY(%s)", (list(exclude),)
    ).fetchall()]
    rows = conn.execute(_PRIVILEGES_SQL, {"role": oid, "exclude": excluded}).fetchall()
    return frozenset(Privilege(str(k), str(t), str(p)) for k, t, p in rows)


def role_oid(conn: psycopg.Connection[Any], role: str) -> int:
    """The OID of ``role``.

    Raises:
        RoleMissing: it does not exist.
    """
    row = conn.execute("SELECT oid FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if row is None:
        raise RoleMissing(f"PostgreSQL role {role!r} does not exist")
    return int(row[0])
