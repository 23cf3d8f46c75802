"""Adopt: an existing single login role joins the alternation, its privileges verified.

`adopt_in` runs inside the caller's transaction (`PostgresTarget.adopt` opens it): the role's
direct grants and owned objects move to a new ``NOLOGIN`` group role, a new alternate joins the
group, and the effective privileges (`read_privileges`, as ``has_*_privilege`` and
``pg_has_role`` report them) are compared before and after; any difference raises and the
transaction rolls back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keyroll.errors import RoleMissing
from keyroll.targets._redact import target_error
from keyroll.targets.postgres._driver import SYSTEM, role_missing
from keyroll.targets.postgres._driver import sql as sql_module
from keyroll.targets.postgres.layout import RoleLayout, grant_membership, is_member, roles_named

if TYPE_CHECKING:
    import psycopg

__all__ = ["AdoptResult", "Privilege", "adopt_in", "read_privileges"]


@dataclass(frozen=True, slots=True, order=True)
class Privilege:
    """One effective privilege of a role, as ``has_*_privilege`` reports it.

    Attributes:
        kind: ``database``, ``schema``, ``table``, ``column``, ``sequence``, ``function`` or
            ``member-of``.
        target: the object, quoted as PostgreSQL would (``"public"."orders"``).
        privilege: ``SELECT``, ``USAGE``, ``CONNECT`` … (``USAGE`` for a membership).
    """

    kind: str
    target: str
    privilege: str



@dataclass(frozen=True, slots=True)
class AdoptResult:
    """What `PostgresTarget.adopt` did, for the audit evidence.

    Attributes:
        layout: the alternation the role now belongs to.
        moved_grants: direct grants copied to the group role and revoked from the role.
        privileges_verified: effective privileges compared before and after (role and
            alternate both hold exactly the role's former set).
        already_adopted: nothing was changed because the layout was already in place.
        warnings: things keyroll did not copy and a person should look at (per-role settings).
    """

    layout: RoleLayout
    moved_grants: int
    privileges_verified: int
    already_adopted: bool = False
    warnings: tuple[str, ...] = field(default=())



_PRIVILEGES_SQL = """
WITH r AS (SELECT %(role)s::oid AS oid),
rels AS (
  SELECT c.oid, c.relkind, format('%%I.%%I', n.nspname, c.relname) AS name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
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
    AND has_function_privilege(r.oid, f.oid, 'EXECUTE')
UNION ALL
SELECT 'member-of', quote_ident(o.rolname), 'USAGE' FROM pg_roles o, r
  WHERE o.oid <> r.oid AND NOT (o.oid = ANY(%(exclude)s::oid[]))
    AND pg_has_role(r.oid, o.oid, 'USAGE')
"""

# Direct grants held by a role, with what is needed to re-issue them through sql.Identifier.
_DIRECT_GRANTS_SQL = """
SELECT 'TABLE', n.nspname, c.relname, NULL::name, a.privilege_type, a.is_grantable
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
  aclexplode(c.relacl) a
  WHERE a.grantee = %(role)s AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
UNION ALL
SELECT 'SEQUENCE', n.nspname, c.relname, NULL, a.privilege_type, a.is_grantable
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
  aclexplode(c.relacl) a
  WHERE a.grantee = %(role)s AND c.relkind = 'S'
UNION ALL
SELECT 'COLUMN', n.nspname, c.relname, att.attname, a.privilege_type, a.is_grantable
  FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(att.attacl) a
  WHERE a.grantee = %(role)s AND att.attnum > 0 AND NOT att.attisdropped
UNION ALL
SELECT 'SCHEMA', NULL, n.nspname, NULL, a.privilege_type, a.is_grantable
  FROM pg_namespace n, aclexplode(n.nspacl) a WHERE a.grantee = %(role)s
UNION ALL
SELECT 'DATABASE', NULL, d.datname, NULL, a.privilege_type, a.is_grantable
  FROM pg_database d, aclexplode(d.datacl) a WHERE a.grantee = %(role)s
UNION ALL
SELECT 'ROLE', NULL, g.rolname, NULL, 'MEMBER', m.admin_option
  FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
  WHERE m.member = %(role)s AND NOT (m.roleid = ANY(%(exclude)s::oid[]))
ORDER BY 1, 2, 3, 4, 5
"""


def adopt_in(conn: psycopg.Connection[Any], layout: RoleLayout, place: str, step: str
             ) -> AdoptResult:
    """Adopt ``layout.logins[0]`` into ``layout`` on ``conn`` (inside its transaction).

    See `keyroll.targets.postgres.PostgresTarget.adopt`, which checks the names first.

    Raises:
        TargetError: the role is missing or cannot log in, a name is taken, or a privilege
            could not be carried over.
    """
    group, (role, alternate) = layout.group, layout.logins
    q = sql_module()
    existing = roles_named(conn, [role, group, alternate])
    if role not in existing or not existing[role]:
        raise target_error(SYSTEM, place, step, "the role is missing or NOLOGIN",
                           "name the login role the application uses today")
    exclude = [role, group, alternate]
    if group in existing and alternate in existing and is_member(conn, role, group) \
            and is_member(conn, alternate, group):
        mine = read_privileges(conn, role, exclude, place, step)
        theirs = read_privileges(conn, alternate, exclude, place, step)
        _compare(mine, theirs, alternate, place, step)
        return AdoptResult(layout, 0, len(mine), already_adopted=True)
    for name in (group, alternate):
        if name in existing:
            raise target_error(
                SYSTEM, place, step, f"role {name!r} already exists",
                "choose other names for the group and alternate roles")
    before = read_privileges(conn, role, exclude, place, step)
    role_oid = _role_oid(conn, role)
    exclude_oids = [role_oid]
    grants = conn.execute(
        _DIRECT_GRANTS_SQL, {"role": role_oid, "exclude": exclude_oids}
    ).fetchall()
    conn.execute(q.SQL("CREATE ROLE {} NOLOGIN").format(q.Identifier(group)))
    for kind, schema, name, column, priv, grantable in grants:
        target = _grant_target(kind, schema, name, column, priv)
        grant = q.SQL("GRANT {} TO {}{}").format(
            target, q.Identifier(group),
            q.SQL(" WITH ADMIN OPTION" if kind == "ROLE" else " WITH GRANT OPTION")
            if grantable else q.SQL(""))
        conn.execute(grant)
    conn.execute(q.SQL("REASSIGN OWNED BY {} TO {}").format(
        q.Identifier(role), q.Identifier(group)))
    conn.execute(q.SQL("ALTER ROLE {} INHERIT").format(q.Identifier(role)))
    grant_membership(conn, group, role)
    conn.execute(q.SQL("CREATE ROLE {} NOLOGIN INHERIT").format(
        q.Identifier(alternate)))
    grant_membership(conn, group, alternate)
    for kind, schema, name, column, priv, _ in grants:
        target = _grant_target(kind, schema, name, column, priv)
        conn.execute(q.SQL("REVOKE {} FROM {}").format(target, q.Identifier(role)))
    after = read_privileges(conn, role, exclude, place, step)
    _compare(before, after, role, place, step)
    alt = read_privileges(conn, alternate, exclude, place, step)
    _compare(before, alt, alternate, place, step)
    warnings = _role_settings_warnings(conn, role_oid, alternate)
    return AdoptResult(layout, len(grants), len(before), warnings=warnings)


def read_privileges(
    conn: psycopg.Connection[Any], role: str, exclude: Sequence[str], where: str, step: str
) -> frozenset[Privilege]:
    """Effective privileges of ``role`` (see `PostgresTarget.privileges`).

    Raises:
        RoleMissing: the role does not exist.
    """
    if role not in roles_named(conn, [role]):
        raise role_missing(where, step, "check the name")
    oid = _role_oid(conn, role)
    excluded = [oid for name, oid in conn.execute(
        "SELECT rolname, oid FROM pg_roles WHERE rolname = ANY(%s)", (list(exclude),)
    ).fetchall()]
    rows = conn.execute(_PRIVILEGES_SQL, {"role": oid, "exclude": excluded}).fetchall()
    return frozenset(Privilege(str(k), str(t), str(p)) for k, t, p in rows)


def _role_oid(conn: psycopg.Connection[Any], role: str) -> int:
    row = conn.execute("SELECT oid FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if row is None:
        raise RoleMissing(f"PostgreSQL role {role!r} does not exist")
    return int(row[0])


def _compare(
    expected: frozenset[Privilege], actual: frozenset[Privilege], role: str, where: str,
    step: str,
) -> None:
    if expected == actual:
        return
    missing = sorted(expected - actual)
    extra = sorted(actual - expected)

    def show(items: list[Privilege]) -> str:
        text = ", ".join(f"{p.privilege} on {p.kind} {p.target}" for p in items[:8])
        return text + (f" … ({len(items)} in all)" if len(items) > 8 else "")

    parts = []
    if missing:
        parts.append(f"{role!r} would lack {show(missing)}")
    if extra:
        parts.append(f"{role!r} would gain {show(extra)}")
    raise target_error(
        SYSTEM, where, step, "privileges differ after the change; nothing was changed ("
        + "; ".join(parts) + ")",
        "grant these to the role through the group by hand (keyroll moves table, sequence, "
        "column, schema, database and membership grants, and ownership in this database)",
    )


def _grant_target(kind: str, schema: str, name: str, column: str, priv: str) -> Any:
    """``<privilege> ON <kind> <object>`` (or a role name for memberships), identifiers quoted."""
    sql = sql_module()
    privilege = sql.SQL(priv)  # from aclexplode: one of PostgreSQL's own keywords
    if kind == "ROLE":
        return sql.Identifier(name)
    if kind == "COLUMN":
        return sql.SQL("{} ({}) ON TABLE {}").format(
            privilege, sql.Identifier(column), sql.Identifier(schema, name))
    if kind in ("TABLE", "SEQUENCE"):
        return sql.SQL("{} ON {} {}").format(
            privilege, sql.SQL(kind), sql.Identifier(schema, name))
    return sql.SQL("{} ON {} {}").format(privilege, sql.SQL(kind), sql.Identifier(name))


def _role_settings_warnings(
    conn: psycopg.Connection[Any], role_oid: int, alternate: str
) -> tuple[str, ...]:
    rows = conn.execute(
        "SELECT coalesce(d.datname, '(all databases)'), s.setconfig "
        "FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase "
        "WHERE s.setrole = %s", (role_oid,),
    ).fetchall()
    warnings = []
    for db, settings in rows:
        names = ", ".join(str(item).split("=", 1)[0] for item in settings or [])
        warnings.append(
            f"the role has per-role settings ({names}) in {db}: copy them to {alternate!r} "
            "with ALTER ROLE … SET before the first rotation"
        )
    return tuple(warnings)


# backup ---------------------------------------------------------------------------------------
