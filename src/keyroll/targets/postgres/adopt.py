"""Adopt: an existing single login role joins the alternation, its privileges verified.

`adopt_in` runs inside the caller's transaction (`PostgresTarget.adopt` opens it). A new
``NOLOGIN`` owner (group) role receives what the role holds (`keyroll.targets.postgres.handover`:
memberships, direct grants, ownership, default privileges, policies); a new alternate login
role joins the group; the role's per-role settings are copied to the alternate; both login
roles get ``role = <group>`` so that what they create belongs to the group. The effective
privileges (`keyroll.targets.postgres.privileges`) are compared before and after; any
difference raises and the transaction rolls back. Anything that cannot move is refused before
the first change, each refusal naming its object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from keyroll.targets._redact import target_error
from keyroll.targets.postgres._driver import SYSTEM
from keyroll.targets.postgres._driver import sql as sql_module
from keyroll.targets.postgres.acting import Admin, Move
from keyroll.targets.postgres.handover import SUPERUSER_HINT, plan_handover
from keyroll.targets.postgres.layout import (
    RoleLayout,
    grant_membership,
    is_member,
    roles_named,
    set_creates_as,
)
from keyroll.targets.postgres.privileges import (
    Privilege,
    PrivilegeDiff,
    read_privileges,
    role_oid,
)

if TYPE_CHECKING:
    import psycopg

__all__ = ["AdoptResult", "Privilege", "adopt_in", "read_privileges"]


@dataclass(frozen=True, slots=True)
class AdoptResult:
    """What `PostgresTarget.adopt` did, for the audit evidence.

    Attributes:
        layout: the alternation the role now belongs to.
        moved_grants: memberships and direct grants re-made for the group role and revoked
            from the role.
        privileges_verified: effective privileges compared before and after (role and
            alternate both hold exactly the role's former set).
        already_adopted: the layout was already in place (only a missing ``role`` setting
            may have been added).
        warnings: things a person should look at.
        owned_objects: objects whose ownership moved to the group role.
        default_privileges: default-privilege entries moved or copied to the group.
        policies: row-level security policies that now name the group.
        settings_copied: per-role settings copied to the alternate.
        moved: one line per move, naming the object (no values).
    """

    layout: RoleLayout
    moved_grants: int
    privileges_verified: int
    already_adopted: bool = False
    warnings: tuple[str, ...] = field(default=())
    owned_objects: int = 0
    default_privileges: int = 0
    policies: int = 0
    settings_copied: int = 0
    moved: tuple[str, ...] = field(default=())


_HINT = ("fix what the message names and run adopt again (keyroll moves memberships, direct "
         "grants, ownership, default privileges, policies and per-role settings in the admin "
         "DSN's database)")

_SETTINGS_SQL = """
SELECT d.datname, c FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase,
  unnest(s.setconfig) c WHERE s.setrole = %s ORDER BY 1 NULLS FIRST, 2
"""


def adopt_in(conn: psycopg.Connection[Any], layout: RoleLayout, place: str, step: str
             ) -> AdoptResult:
    """Adopt ``layout.logins[0]`` into ``layout`` on ``conn`` (inside its transaction).

    See `keyroll.targets.postgres.PostgresTarget.adopt`, which checks the names first.

    Raises:
        TargetError: the role is missing or cannot log in, a name is taken, something cannot
            be moved (each named), or a privilege differs afterwards.
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
        added = [name for name in (role, alternate) if set_creates_as(conn, name, group)]
        warnings = tuple(f"{name!r} now creates objects as {group!r} (role setting added)"
                         for name in added)
        return AdoptResult(layout, 0, len(mine), already_adopted=True, warnings=warnings)
    for name in (group, alternate):
        if name in existing:
            raise target_error(
                SYSTEM, place, step, f"role {name!r} already exists",
                "choose other names for the group and alternate roles")
    admin = Admin(conn, place, step)
    before = read_privileges(conn, role, exclude, place, step)
    role_id = role_oid(conn, role)
    settings, refusals = _settings(conn, role_id, role, alternate, group)
    handover = plan_handover(conn, admin, role, role_id, group, exclude)
    refusals += handover.refusals
    if refusals:
        shown = "; ".join(refusals[:10]) + (f" … ({len(refusals)} in all)"
                                            if len(refusals) > 10 else "")
        hint = SUPERUSER_HINT if any("superuser" in r for r in refusals) else _HINT
        raise target_error(SYSTEM, place, step, f"{len(refusals)} thing(s) cannot be moved "
                           f"to {group!r}, so nothing was changed: {shown}", hint)
    conn.execute(q.SQL("CREATE ROLE {} NOLOGIN").format(q.Identifier(group)))
    for move in handover.moves:
        admin.run(move, _HINT)
    conn.execute(q.SQL("ALTER ROLE {} INHERIT").format(q.Identifier(role)))
    grant_membership(conn, group, role)
    conn.execute(q.SQL("CREATE ROLE {} NOLOGIN INHERIT").format(q.Identifier(alternate)))
    grant_membership(conn, group, alternate)
    for move in settings:
        admin.run(move, _HINT)
    for name in (role, alternate):
        set_creates_as(conn, name, group)
    admin.release()
    after = read_privileges(conn, role, exclude, place, step)
    _compare(before, after, role, place, step)
    alt = read_privileges(conn, alternate, exclude, place, step)
    _compare(before, alt, alternate, place, step)
    moves = (*handover.moves, *settings)
    return AdoptResult(
        layout, len(handover.grants), len(before), owned_objects=handover.owned,
        default_privileges=len(handover.defaults), policies=len(handover.policies),
        settings_copied=len(settings), moved=tuple(m.what for m in moves))


def _compare(
    expected: frozenset[Privilege], actual: frozenset[Privilege], role: str, where: str,
    step: str,
) -> None:
    diff = PrivilegeDiff.of(expected, actual)
    if diff.same:
        return
    raise target_error(
        SYSTEM, where, step, "privileges differ after the change; nothing was changed ("
        + diff.summary(role) + ")",
        "grant these to the role through the group by hand (see docs/database-rotation.md "
        "for what adopt moves)",
    )


def _settings(conn: psycopg.Connection[Any], role_id: int, role: str, alternate: str,
              group: str) -> tuple[list[Move], list[str]]:
    """Moves copying the role's per-role settings to the alternate, and refusals.

    Each value is set in this transaction with ``set_config`` (which parses it as the server
    does, lists included) and stored with ``ALTER ROLE … SET … FROM CURRENT``; the session's
    own value is put back at once.
    """
    q = sql_module()
    moves: list[Move] = []
    refusals: list[str] = []
    for database, item in conn.execute(_SETTINGS_SQL, (role_id,)).fetchall():
        name, _, value = str(item).partition("=")
        scope = f" in database {database}" if database is not None else ""
        if name == "role":
            refusals.append(f"the per-role setting role{scope} of {role!r}: the alternation "
                            f"sets role = {group!r}; remove it (ALTER ROLE … RESET role)")
            continue
        row = conn.execute("SELECT pg_catalog.current_setting(%s, true)", (name,)).fetchone()
        old = row[0] if row and row[0] is not None else ""
        target = q.SQL("ALTER ROLE {}").format(q.Identifier(alternate))
        if database is not None:
            target = q.SQL("{} IN DATABASE {}").format(target, q.Identifier(database))
        moves.append(Move(f"setting {name}{scope} of {role!r} (copied to {alternate!r})", (
            q.SQL("SELECT pg_catalog.set_config({}, {}, true)").format(
                q.Literal(name), q.Literal(value)),
            q.SQL("{} SET {} FROM CURRENT").format(
                target, q.Identifier(*name.split("."))),
            q.SQL("SELECT pg_catalog.set_config({}, {}, true)").format(
                q.Literal(name), q.Literal(old)),
        )))
    explicit = any(m.what.startswith("setting search_path ") for m in moves)
    row = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (role,)).fetchone()
    if row is not None and not explicit:
        refusals.append(
            f"schema {role} is named after the role: sessions will run as {group!r}, so "
            f"\"$user\" in search_path would stop finding it; set search_path explicitly "
            f"first (ALTER ROLE {role} SET search_path = {role}, public)")
    return moves, refusals
