"""Hand what one role holds to the alternation's owner role, or say exactly what cannot move.

`plan_handover` reads the catalogs and returns the `Move` list (each grant re-made and revoked
as its grantor, keeping grant options and chains) and the refusals, every one naming its
object: a privilege granted by a superuser when the admin is not one, grants the role made
onward with its grant option, ``GRANT SET ON PARAMETER``, objects or grants in another
database, a database it owns when the admin may not give databases away, an owner's own
default-privilege entry keyroll cannot reproduce. Moved, in this order:

1. role memberships (``GRANT g TO owner``, admin option kept), then direct grants on tables,
   views, sequences, columns, schemas, databases, functions and procedures, types and
   domains, languages, foreign-data wrappers and servers, tablespaces and large objects;
2. ownership of everything the role owns in this database (``REASSIGN OWNED``);
3. default privileges (``pg_default_acl``) that any role's ``ALTER DEFAULT PRIVILEGES``
   grants *to* the role (``FOR ROLE x … TO role`` becomes ``… TO owner``), and those *of* the
   role (``FOR ROLE role … TO y`` is copied to ``FOR ROLE owner``: the owner creates the
   objects now);
4. row-level security policies that name the role (``ALTER POLICY … TO``).

Per-role settings are adopt's (`keyroll.targets.postgres.adopt`): they belong to login roles.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keyroll.targets.postgres._driver import sql as sql_module
from keyroll.targets.postgres.acting import Admin, Move

if TYPE_CHECKING:
    import psycopg

__all__ = ["SUPERUSER_HINT", "Handover", "plan_handover", "reclaim_ownership"]

# Every ACL item that names the role as grantee (held) or as grantor (given onward).
_GRANTS_SQL = """
WITH acl AS (
  SELECT 'TABLE' AS kind, n.nspname AS schema, c.relname AS name, NULL::name AS col,
         NULL::oid AS fn, c.relowner AS owner, c.relacl AS acl
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f')
  UNION ALL SELECT 'SEQUENCE', n.nspname, c.relname, NULL, NULL, c.relowner, c.relacl
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S'
  UNION ALL SELECT 'COLUMN', n.nspname, c.relname, a.attname, NULL, c.relowner, a.attacl
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
  UNION ALL SELECT 'SCHEMA', NULL, n.nspname, NULL, NULL, n.nspowner, n.nspacl
    FROM pg_namespace n
  UNION ALL SELECT 'DATABASE', NULL, d.datname, NULL, NULL, d.datdba, d.datacl
    FROM pg_database d
  UNION ALL SELECT 'ROUTINE', n.nspname, p.proname, NULL, p.oid, p.proowner, p.proacl
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  UNION ALL SELECT CASE WHEN t.typtype = 'd' THEN 'DOMAIN' ELSE 'TYPE' END, n.nspname,
         t.typname, NULL, NULL, t.typowner, t.typacl
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  UNION ALL SELECT 'LANGUAGE', NULL, l.lanname, NULL, NULL, l.lanowner, l.lanacl
    FROM pg_language l
  UNION ALL SELECT 'FOREIGN DATA WRAPPER', NULL, w.fdwname, NULL, NULL, w.fdwowner, w.fdwacl
    FROM pg_foreign_data_wrapper w
  UNION ALL SELECT 'FOREIGN SERVER', NULL, s.srvname, NULL, NULL, s.srvowner, s.srvacl
    FROM pg_foreign_server s
  UNION ALL SELECT 'TABLESPACE', NULL, t.spcname, NULL, NULL, t.spcowner, t.spcacl
    FROM pg_tablespace t
  UNION ALL SELECT 'LARGE OBJECT', NULL, m.oid::text, NULL, NULL, m.lomowner, m.lomacl
    FROM pg_largeobject_metadata m
)
SELECT acl.kind, acl.schema, acl.name, acl.col,
  ARRAY(SELECT tn.nspname FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, i)
        JOIN pg_type ty ON ty.oid = u.t JOIN pg_namespace tn ON tn.oid = ty.typnamespace
        ORDER BY u.i),
  ARRAY(SELECT ty.typname FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY u(t, i)
        JOIN pg_type ty ON ty.oid = u.t ORDER BY u.i),
  x.privilege_type, x.is_grantable, g.rolname, g.rolsuper, o.rolname,
  coalesce(e.rolname, 'PUBLIC'), x.grantee = %(role)s
FROM acl CROSS JOIN LATERAL aclexplode(acl.acl) x LEFT JOIN pg_proc p ON p.oid = acl.fn
  JOIN pg_roles g ON g.oid = x.grantor JOIN pg_roles o ON o.oid = acl.owner
  LEFT JOIN pg_roles e ON e.oid = x.grantee
WHERE acl.acl IS NOT NULL AND acl.owner <> %(role)s
  AND (x.grantee = %(role)s OR (x.grantor = %(role)s AND x.grantee <> %(role)s))
ORDER BY 1, 2, 3, 4, 7
"""

_MEMBERSHIPS_SQL = """
SELECT g.rolname, g.rolsuper, m.admin_option FROM pg_auth_members m
  JOIN pg_roles g ON g.oid = m.roleid
  WHERE m.member = %(role)s AND NOT (g.rolname = ANY(%(exclude)s)) ORDER BY 1
"""

_DEFAULT_ACL_SQL = """
SELECT d.defaclrole = %(role)s, r.rolname, r.rolsuper, n.nspname, d.defaclobjtype,
  x.grantee = %(role)s, coalesce(e.rolname, 'PUBLIC'), x.privilege_type, x.is_grantable
FROM pg_default_acl d JOIN pg_roles r ON r.oid = d.defaclrole
  LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace, aclexplode(d.defaclacl) x
  LEFT JOIN pg_roles e ON e.oid = x.grantee
WHERE d.defaclrole = %(role)s OR x.grantee = %(role)s
ORDER BY 2, 4 NULLS FIRST, 5, 7, 8
"""

_DEFAULT_ACL_PUBLIC_SQL = """
SELECT d.defaclobjtype FROM pg_default_acl d
WHERE d.defaclrole = %(role)s AND d.defaclnamespace = 0 AND d.defaclobjtype IN ('f', 'T')
  AND NOT EXISTS (SELECT 1 FROM aclexplode(d.defaclacl) x WHERE x.grantee = 0)
"""

_POLICIES_SQL = """
SELECT p.polname, n.nspname, c.relname, o.rolname, o.rolsuper,
  ARRAY(SELECT coalesce(r.rolname, 'PUBLIC') FROM unnest(p.polroles) WITH ORDINALITY u(id, i)
        LEFT JOIN pg_roles r ON r.oid = u.id ORDER BY u.i)
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles o ON o.oid = c.relowner
WHERE %(role)s = ANY(p.polroles) ORDER BY 2, 3, 1
"""

# What the role owns, or holds privileges on, by database (pg_shdepend: 0 = shared objects).
# A default-privilege entry FOR ROLE x is recorded as owned by x: it counts as a privilege
# here (REASSIGN OWNED does not move it; `_default_moves` does).
_SHDEPEND_SQL = """
SELECT coalesce(d.datname, ''), s.dbid = 0 OR d.datname = current_database(),
  count(*) FILTER (WHERE s.deptype = 'o' AND s.classid <> 'pg_default_acl'::regclass),
  count(*) FILTER (WHERE s.deptype <> 'o' OR s.classid = 'pg_default_acl'::regclass)
FROM pg_shdepend s LEFT JOIN pg_database d ON d.oid = s.dbid
WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = %(role)s
GROUP BY 1, 2 ORDER BY 1
"""

_OWNED_DATABASES_SQL = "SELECT datname FROM pg_database WHERE datdba = %(role)s ORDER BY 1"

_OBJTYPES = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS"}
_OWNER_DEFAULTS = {
    "r": {"SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"},
    "S": {"USAGE", "SELECT", "UPDATE"}, "f": {"EXECUTE"}, "T": {"USAGE"},
    "n": {"USAGE", "CREATE"},
}
SUPERUSER_HINT = ("run this adopt once with a superuser admin DSN (rotations afterwards need "
                   "only CREATEROLE), or make a non-superuser role the owner of those objects")


@dataclass(frozen=True, slots=True)
class Handover:
    """What moving a role's holdings to the owner role takes.

    Attributes:
        grants: memberships and direct grants, each re-made for the owner and revoked.
        ownership: the ``REASSIGN OWNED`` move (None when the role owns nothing here).
        owned: how many objects the role owns here (``pg_shdepend``).
        defaults: default-privilege entries moved or copied.
        policies: policies that will name the owner instead of the role.
        refusals: what cannot be moved, each naming its object (empty: everything can).
    """

    grants: tuple[Move, ...]
    ownership: Move | None
    owned: int
    defaults: tuple[Move, ...]
    policies: tuple[Move, ...]
    refusals: tuple[str, ...]

    @property
    def moves(self) -> tuple[Move, ...]:
        """Every move, in the order they must run."""
        own = (self.ownership,) if self.ownership is not None else ()
        return (*self.grants, *own, *self.defaults, *self.policies)


def plan_handover(conn: psycopg.Connection[Any], admin: Admin, role: str, role_id: int,
                  owner: str, exclude: list[str]) -> Handover:
    """The moves that give ``owner`` everything ``role`` holds, and what cannot move.

    Args:
        role: the role that hands over (``goodgo_app``).
        role_id: its OID.
        owner: the alternation's NOLOGIN owner role (it may not exist yet: it is created by
            the caller before the moves run).
        exclude: roles whose membership is the alternation's own (not moved).
    """
    refusals: list[str] = []
    args = {"role": role_id, "exclude": exclude}
    grants = _membership_moves(conn, admin, role, owner, args, refusals)
    grants += _grant_moves(conn, admin, role, owner, args, refusals)
    refusals += _other_databases(conn, role, args)
    if conn.info.server_version >= 150000:
        for (name,) in conn.execute(
                "SELECT p.parname FROM pg_parameter_acl p, aclexplode(p.paracl) x "
                "WHERE x.grantee = %(role)s ORDER BY 1", args).fetchall():
            refusals.append(f"a GRANT … ON PARAMETER {name} to {role!r} (grant it to {owner!r} "
                            "by hand: keyroll does not move parameter privileges)")
    ownership, owned = _ownership_move(conn, admin, role, owner, args, refusals)
    defaults = _default_moves(conn, admin, role, owner, args, refusals)
    policies = _policy_moves(conn, admin, role, owner, args, refusals)
    return Handover(tuple(grants), ownership, owned, tuple(defaults), tuple(policies),
                    tuple(refusals))


def reclaim_ownership(conn: psycopg.Connection[Any], admin: Admin, role: str, role_id: int,
                      owner: str) -> tuple[int, list[str]]:
    """Give ``owner`` what login role ``role`` owns in this database (a plan-time repair).

    Objects a login role created before it acted as the owner, or after a session's
    ``SET ROLE NONE``, would be out of reach of the other login role after a rotation.

    Returns:
        How many objects moved, and warnings (objects in other databases, refusals).
    """
    refusals: list[str] = []
    args = {"role": role_id, "exclude": []}
    warnings = _other_databases(conn, role, args)
    move, owned = _ownership_move(conn, admin, role, owner, args, refusals)
    if refusals or move is None:
        return 0, warnings + refusals
    admin.run(move, "give the objects to the owner role by hand (ALTER … OWNER TO)")
    return owned, warnings


def _who(admin: Admin, grantor: str, grantor_super: bool, object_owner: str, what: str,
         refusals: list[str]) -> tuple[bool, str | None]:
    """(possible, role to SET ROLE to) for re-making and revoking a grant of ``grantor``."""
    if grantor == admin.name or (admin.superuser and grantor == object_owner):
        return True, None
    why = admin.cannot_become(grantor, grantor_super)
    if why is not None:
        refusals.append(f"{what}: {why}")
        return False, None
    return True, grantor


def _membership_moves(conn: psycopg.Connection[Any], admin: Admin, role: str, owner: str,
                      args: dict[str, Any], refusals: list[str]) -> list[Move]:
    q = sql_module()
    moves = []
    for group, group_super, admin_option in conn.execute(_MEMBERSHIPS_SQL, args).fetchall():
        what = f"membership in {group!r}"
        why = admin.cannot_become(group, group_super) if not admin.superuser else None
        if why is not None:
            refusals.append(f"{what}: {why}")
            continue
        moves.append(Move(what, (
            q.SQL("GRANT {} TO {}{}").format(q.Identifier(group), q.Identifier(owner),
                                             q.SQL(" WITH ADMIN OPTION" if admin_option else "")),
            q.SQL("REVOKE {} FROM {}").format(q.Identifier(group), q.Identifier(role)),
        )))
    return moves


def _grant_moves(conn: psycopg.Connection[Any], admin: Admin, role: str, owner: str,
                 args: dict[str, Any], refusals: list[str]) -> list[Move]:
    q = sql_module()
    moves = []
    for (kind, schema, name, column, arg_schemas, arg_types, priv, grantable, grantor,
         grantor_super, object_owner, grantee, held) in conn.execute(_GRANTS_SQL, args).fetchall():
        target = _grant_target(kind, schema, name, column, list(zip(arg_schemas, arg_types, strict=True)),
                               priv)
        shown = _show(kind, schema, name, column)
        if not held:
            refusals.append(
                f"{priv} on {shown} that {role!r} granted to {grantee!r} with its grant option "
                f"(revoke it, or have the owner {object_owner!r} grant it, then adopt again)")
            continue
        what = f"{priv} on {shown} (granted by {grantor!r})"
        possible, as_role = _who(admin, grantor, grantor_super, object_owner, what, refusals)
        if not possible:
            continue
        option = q.SQL(" WITH GRANT OPTION" if grantable else "")
        moves.append(Move(what, (
            q.SQL("GRANT {} TO {}{}").format(target, q.Identifier(owner), option),
            q.SQL("REVOKE {} FROM {}").format(target, q.Identifier(role)),
        ), as_role=as_role))
    return moves


def _grant_target(kind: str, schema: str | None, name: str, column: str | None,
                  args: list[tuple[str, str]], priv: str) -> Any:
    """``<privilege> ON <kind> <object>``, every identifier through ``sql.Identifier``."""
    q = sql_module()
    privilege = q.SQL(priv)  # from aclexplode: one of PostgreSQL's own keywords
    if kind == "COLUMN":
        return q.SQL("{} ({}) ON TABLE {}").format(
            privilege, q.Identifier(column), q.Identifier(schema, name))
    if kind == "ROUTINE":
        signature = q.SQL(", ").join(q.Identifier(s, t) for s, t in args)
        return q.SQL("{} ON ROUTINE {}({})").format(privilege, q.Identifier(schema, name),
                                                    signature)
    if kind == "LARGE OBJECT":
        return q.SQL("{} ON LARGE OBJECT {}").format(privilege, q.Literal(int(name)))
    ident = q.Identifier(schema, name) if schema is not None else q.Identifier(name)
    return q.SQL("{} ON {} {}").format(privilege, q.SQL(kind), ident)


def _show(kind: str, schema: str | None, name: str, column: str | None) -> str:
    text = f"{schema}.{name}" if schema is not None else name
    return f"{kind.lower()} {text}" + (f" column {column}" if column is not None else "")


def _other_databases(conn: psycopg.Connection[Any], role: str, args: dict[str, Any]
                     ) -> list[str]:
    problems = []
    for database, here, owned, granted in conn.execute(_SHDEPEND_SQL, args).fetchall():
        if not here:
            problems.append(
                f"{role!r} owns {owned} object(s) and holds {granted} privilege(s) or default "
                f"privilege(s) in database {database!r}: keyroll moves them only in the "
                "database of the admin DSN (REASSIGN OWNED / move the grants there first)")
    return problems


def _ownership_move(conn: psycopg.Connection[Any], admin: Admin, role: str, owner: str,
                    args: dict[str, Any], refusals: list[str]) -> tuple[Move | None, int]:
    q = sql_module()
    owned = 0
    for _, here, count, _ in conn.execute(_SHDEPEND_SQL, args).fetchall():
        if here:
            owned += int(count)
    if owned == 0:
        return None, 0
    if not admin.superuser:
        if not admin.createdb:
            for (database,) in conn.execute(_OWNED_DATABASES_SQL, args).fetchall():
                refusals.append(
                    f"ownership of database {database}: an admin without SUPERUSER needs "
                    f"CREATEDB to give a database to {owner!r} (ALTER DATABASE … OWNER TO)")
        why = admin.cannot_become(role, False)
        if why is not None:
            refusals.append(f"ownership of {owned} object(s) of {role!r}: {why}")
            return None, owned
    move = Move(f"ownership of {owned} object(s) of {role!r} (REASSIGN OWNED)", (
        q.SQL("REASSIGN OWNED BY {} TO {}").format(q.Identifier(role), q.Identifier(owner)),
    ), member_of=(role, owner))
    return move, owned


def _default_moves(conn: psycopg.Connection[Any], admin: Admin, role: str, owner: str,
                   args: dict[str, Any], refusals: list[str]) -> list[Move]:
    """Default privileges granted *to* the role (any FOR ROLE) and *of* the role."""
    q = sql_module()
    # (for_role, schema, objtype, grantee, grantable) -> privileges
    to_role: dict[tuple[str, bool, str | None, str, bool], list[str]] = defaultdict(list)
    of_role: dict[tuple[str | None, str, str, bool], list[str]] = defaultdict(list)
    owner_entry: dict[tuple[str | None, str], set[str]] = defaultdict(set)
    for (is_own, for_role, for_super, schema, objtype, to_self, grantee, priv,
         grantable) in conn.execute(_DEFAULT_ACL_SQL, args).fetchall():
        if is_own and to_self:
            owner_entry[(schema, objtype)].add(priv)
        elif is_own:
            of_role[(schema, objtype, grantee, grantable)].append(priv)
        else:
            to_role[(for_role, for_super, schema, objtype, grantable)].append(priv)
    moves: list[Move] = []

    def scope(for_role: str, schema: str | None) -> Any:
        text = q.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {}").format(q.Identifier(for_role))
        if schema is not None:
            text = q.SQL("{} IN SCHEMA {}").format(text, q.Identifier(schema))
        return text

    def grantee_sql(name: str) -> Any:
        return q.SQL("PUBLIC") if name == "PUBLIC" else q.Identifier(name)

    for (for_role, for_super, schema, objtype, grantable), privs in to_role.items():
        where = f" in schema {schema}" if schema is not None else ""
        what = (f"default privileges {', '.join(privs)} on {_OBJTYPES[objtype].lower()}{where} "
                f"that {for_role!r} creates")
        why = admin.cannot_become(for_role, for_super)
        if why is not None:
            refusals.append(f"{what}: {why}")
            continue
        listed = q.SQL(", ").join(q.SQL(p) for p in privs)
        kind = q.SQL(_OBJTYPES[objtype])
        option = q.SQL(" WITH GRANT OPTION" if grantable else "")
        moves.append(Move(what, (
            q.SQL("{} GRANT {} ON {} TO {}{}").format(scope(for_role, schema), listed, kind,
                                                      q.Identifier(owner), option),
            q.SQL("{} REVOKE {} ON {} FROM {}").format(scope(for_role, schema), listed, kind,
                                                       q.Identifier(role)),
        ), member_of=(for_role,)))
    for (schema, objtype), own in owner_entry.items():
        if own != _OWNER_DEFAULTS[objtype] and schema is None:
            refusals.append(
                f"the default privileges of {role!r} on its own new "
                f"{_OBJTYPES[objtype].lower()} ({', '.join(sorted(own)) or 'none'}): set "
                f"them for {owner!r} by hand (ALTER DEFAULT PRIVILEGES FOR ROLE …)")
    for (schema, objtype, grantee, grantable), privs in of_role.items():
        where = f" in schema {schema}" if schema is not None else ""
        what = (f"default privileges {', '.join(privs)} to {grantee!r} on "
                f"{_OBJTYPES[objtype].lower()}{where} that {role!r} creates")
        listed = q.SQL(", ").join(q.SQL(p) for p in privs)
        option = q.SQL(" WITH GRANT OPTION" if grantable else "")
        moves.append(Move(what, (
            q.SQL("{} GRANT {} ON {} TO {}{}").format(
                scope(owner, schema), listed, q.SQL(_OBJTYPES[objtype]), grantee_sql(grantee),
                option),
        ), member_of=(owner,)))
    for (objtype,) in conn.execute(_DEFAULT_ACL_PUBLIC_SQL, args).fetchall():
        kind = _OBJTYPES[objtype]
        privilege = "EXECUTE" if objtype == "f" else "USAGE"
        moves.append(Move(
            f"the revoked PUBLIC default {privilege} on {kind.lower()} that {role!r} creates",
            (q.SQL("{} REVOKE {} ON {} FROM PUBLIC").format(
                scope(owner, None), q.SQL(privilege), q.SQL(kind)),),
            member_of=(owner,)))
    return moves


def _policy_moves(conn: psycopg.Connection[Any], admin: Admin, role: str, owner: str,
                  args: dict[str, Any], refusals: list[str]) -> list[Move]:
    q = sql_module()
    moves = []
    for name, schema, table, table_owner, owner_super, roles in conn.execute(
            _POLICIES_SQL, args).fetchall():
        what = f"policy {name} on table {schema}.{table}"
        possible, as_role = _who(admin, table_owner, owner_super, table_owner, what, refusals)
        if not possible:
            continue
        names: list[str] = []
        for member in roles:
            replaced = owner if member == role else str(member)
            if replaced not in names:
                names.append(replaced)
        listed = q.SQL(", ").join(
            q.SQL("PUBLIC") if n == "PUBLIC" else q.Identifier(n) for n in names)
        moves.append(Move(what, (
            q.SQL("ALTER POLICY {} ON {} TO {}").format(
                q.Identifier(name), q.Identifier(schema, table), listed),
        ), as_role=as_role))
    return moves
