"""The alternation's shape and the catalog reads and writes of its roles.

`RoleLayout` names the ``NOLOGIN`` group role and the two ``LOGIN`` roles; the functions take
an open psycopg connection and return plain values (the caller translates errors).

The group role is also the *owner* role: each login role carries the per-role setting
``role = <group>`` (``ALTER ROLE login SET role = group``), so every session it opens runs
``SET ROLE group`` at login and whatever it creates (a migration's tables, indexes, sequences)
belongs to the group, reachable by both login roles. ``RESET ROLE`` and PgBouncer's
``DISCARD ALL`` return to that setting; only an explicit ``SET ROLE NONE`` leaves it (the
plan step gives such objects back to the group: `keyroll.targets.postgres.handover`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keyroll.targets.postgres._driver import role_missing
from keyroll.targets.postgres._driver import sql as sql_module

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "RoleLayout", "creates_as", "grant_membership", "is_member", "require_role", "roles_named",
    "set_creates_as",
]


@dataclass(frozen=True, slots=True)
class RoleLayout:
    """The alternation: one privilege-holding group role and two login roles.

    Attributes:
        group: the ``NOLOGIN`` role that holds the grants.
        logins: the two ``LOGIN`` roles, members of ``group`` with ``INHERIT``.
    """

    group: str
    logins: tuple[str, str]

    def other(self, role: str) -> str:
        """The login role that is not ``role`` (the idle one when ``role`` is active).

        Raises:
            ValueError: ``role`` is not one of the two login roles.
        """
        first, second = self.logins
        if role == first:
            return second
        if role == second:
            return first
        raise ValueError(f"role {role!r} is not one of {self.logins!r}")


def roles_named(conn: psycopg.Connection[Any], names: Sequence[str]) -> dict[str, bool]:
    """Which of ``names`` exist, each with whether it may log in."""
    rows = conn.execute(
        "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s)", (list(names),)
    ).fetchall()
    return {str(name): bool(can_login) for name, can_login in rows}


def require_role(conn: psycopg.Connection[Any], role: str, where: str, step: str) -> None:
    """Raise `RoleMissing` unless ``role`` exists."""
    if role not in roles_named(conn, [role]):
        raise role_missing(where, step, "create the layout first (ensure_layout / keyroll adopt)")


def is_member(conn: psycopg.Connection[Any], member: str, group: str) -> bool:
    """Whether ``member`` is a member of ``group``."""
    row = conn.execute(
        "SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = %s AND u.rolname = %s",
        (group, member),
    ).fetchone()
    return row is not None


def grant_membership(conn: psycopg.Connection[Any], group: str, member: str) -> None:
    """Make ``member`` an inheriting member of ``group`` (nothing if it is one already)."""
    if is_member(conn, member, group):
        return
    sql = sql_module()
    inherit = sql.SQL(" WITH INHERIT TRUE" if conn.info.server_version >= 160000 else "")
    conn.execute(sql.SQL("GRANT {} TO {}{}").format(
        sql.Identifier(group), sql.Identifier(member), inherit))


def creates_as(conn: psycopg.Connection[Any], role: str) -> str | None:
    """The role ``role``'s sessions act as (its ``role`` setting for every database), or None."""
    rows = conn.execute(
        "SELECT c FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole, "
        "unnest(s.setconfig) c WHERE r.rolname = %s AND s.setdatabase = 0", (role,)
    ).fetchall()
    for (item,) in rows:
        name, _, value = str(item).partition("=")
        if name == "role":
            return value
    return None


def set_creates_as(conn: psycopg.Connection[Any], login: str, owner: str) -> bool:
    """``ALTER ROLE login SET role = owner`` unless it is set so already; True if it changed."""
    if creates_as(conn, login) == owner:
        return False
    sql = sql_module()
    conn.execute(sql.SQL("ALTER ROLE {} SET role = {}").format(
        sql.Identifier(login), sql.Identifier(owner)))
    return True
