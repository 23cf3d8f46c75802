"""The admin connection acting for others: ``SET ROLE`` to a grantor, temporary memberships.

Moving a privilege keeps its grantor: a grant that the owner (or a holder of the grant
option) made is re-made and revoked *as that role*, so the grant chain stays what it was. A
superuser may become anyone. A ``CREATEROLE`` admin (PostgreSQL 15) becomes a member of any
role that is not a superuser (``GRANT role TO admin``) for the length of the transaction and
gives the membership back before it commits; a role it may not become (a superuser, or on
PostgreSQL 16 a role it holds no ``ADMIN OPTION`` on) makes the move a refusal that names the
object. Each `Move` runs with the server's notices captured: PostgreSQL reports a ``GRANT``
that granted nothing as a warning (``01007``), never an error, and `Admin.run` turns it into
one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keyroll.targets._redact import target_error
from keyroll.targets.postgres._driver import SYSTEM, psycopg
from keyroll.targets.postgres._driver import sql as sql_module

if TYPE_CHECKING:
    import psycopg as psycopg_module

__all__ = ["Admin", "Move"]

_NOTHING_DONE = ("01007", "01006")  # privilege not granted / not revoked


@dataclass(frozen=True, slots=True)
class Move:
    """One change that moves something a role holds, and what it is called in messages.

    Attributes:
        what: the object and privilege, e.g. ``SELECT on table shop.orders (granted by
            'migrator')``.
        statements: ``psycopg.sql`` statements, run in order.
        as_role: ``SET ROLE`` to this role first (the grantor or owner), None to run as the
            admin.
        member_of: roles the admin must be a member of (``FOR ROLE``, ``REASSIGN OWNED``).
    """

    what: str
    statements: tuple[Any, ...]
    as_role: str | None = None
    member_of: tuple[str, ...] = ()


class Admin:
    """The admin's identity on one connection, inside the caller's transaction.

    Args:
        conn: the admin connection (in a transaction).
        place: ``host:port/db`` for messages.
        step: the operation, for messages.
    """

    def __init__(self, conn: psycopg_module.Connection[Any], place: str, step: str) -> None:
        row = conn.execute(
            "SELECT current_user, rolsuper, rolcreatedb FROM pg_roles "
            "WHERE rolname = current_user").fetchone()
        assert row is not None
        self.conn, self.place, self.step = conn, place, step
        self.name, self.superuser, self.createdb = str(row[0]), bool(row[1]), bool(row[2])
        self.version = conn.info.server_version
        self._temporary: list[str] = []

    def cannot_become(self, role: str, role_is_superuser: bool) -> str | None:
        """Why the admin may not act as ``role``, or None if it may."""
        if self.superuser or role == self.name or self._is_member(role):
            return None
        if role_is_superuser:
            return f"{role!r} is a superuser and the admin is not"
        if self.version >= 160000 and not self._has_admin_option(role):
            return (f"the admin holds no ADMIN OPTION on {role!r} (PostgreSQL 16: a CREATEROLE "
                    "role manages only the roles it created or was given ADMIN OPTION on)")
        return None

    def _is_member(self, role: str) -> bool:
        row = self.conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')",
                                (role,)).fetchone()
        return bool(row and row[0])

    def _has_admin_option(self, role: str) -> bool:
        row = self.conn.execute("SELECT pg_has_role(current_user, %s, 'USAGE WITH ADMIN OPTION')",
                                (role,)).fetchone()
        return bool(row and row[0])

    def become_member(self, role: str) -> None:
        """Make the admin a member of ``role`` until `release` (nothing for a superuser)."""
        if self.superuser or role == self.name or role in self._temporary \
                or self._is_member(role):
            return
        q = sql_module()
        options = q.SQL(" WITH INHERIT TRUE, SET TRUE" if self.version >= 160000 else "")
        self.conn.execute(q.SQL("GRANT {} TO {}{}").format(
            q.Identifier(role), q.Identifier(self.name), options))
        self._temporary.append(role)

    def release(self) -> None:
        """Give back every membership `become_member` took."""
        q = sql_module()
        while self._temporary:
            role = self._temporary.pop()
            self.conn.execute(q.SQL("REVOKE {} FROM {}").format(
                q.Identifier(role), q.Identifier(self.name)))

    def run(self, move: Move, hint: str) -> None:
        """Run ``move``; a server error or a grant that did nothing names the move.

        Raises:
            TargetError: the server refused, or granted or revoked nothing.
        """
        pg = psycopg()
        q = sql_module()
        notices: list[Any] = []

        def keep(diag: Any) -> None:
            notices.append(diag)

        for role in (*move.member_of, *((move.as_role,) if move.as_role else ())):
            self.become_member(role)
        self.conn.add_notice_handler(keep)
        try:
            if move.as_role is not None:
                self.conn.execute(q.SQL("SET ROLE {}").format(q.Identifier(move.as_role)))
            for statement in move.statements:
                self.conn.execute(statement)
            if move.as_role is not None:
                self.conn.execute(q.SQL("SET ROLE {}").format(q.Identifier(self.name)))
        except pg.Error as exc:
            raise target_error(SYSTEM, self.place, self.step,
                               f"could not move {move.what}; nothing was changed", hint,
                               cause=exc) from None
        finally:
            self.conn.remove_notice_handler(keep)
        for diag in notices:
            if diag.sqlstate in _NOTHING_DONE:
                raise target_error(
                    SYSTEM, self.place, self.step,
                    f"could not move {move.what}: the server granted or revoked nothing "
                    f"({diag.message_primary}); nothing was changed", hint)
