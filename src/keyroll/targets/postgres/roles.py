"""PostgreSQL as a rotation target: alternating login roles under one group role.

PostgreSQL keeps one password per role, so a zero-downtime rotation alternates between two
login roles (seed 004 §5): a ``NOLOGIN`` group role holds every privilege, two ``LOGIN`` roles
(``<name>_a`` / ``<name>_b``) inherit it, the application's DSN names the active one, and the
idle one receives the next password. Each step of a rotation is one call on `PostgresTarget`:

============ ==================================================================
step         call
============ ==================================================================
plan         `PostgresTarget.check_login` with the current role and password
             (and `ensure_layout`, `reclaim`, `backup`)
apply        `PostgresTarget.set_password` on the idle role
test         `PostgresTarget.check_login` with ``probe_table`` and
             `PostgresTarget.privilege_diff` of the idle role against the active one
overlap      `PostgresTarget.session_count` of the old role
retire       `PostgresTarget.retire`
incident     `PostgresTarget.terminate_sessions`
adopt        `PostgresTarget.adopt` (an existing single role joins the scheme)
============ ==================================================================

Every identifier goes through `psycopg.sql.Identifier`. ``ALTER ROLE … PASSWORD`` takes no bind
parameter, so the password is turned into a SCRAM-SHA-256 verifier here (`keyroll.targets.scram`)
and sent as a quoted literal: the plaintext never reaches the server or its statement log.
psycopg is imported lazily; its exceptions are translated to `TargetError` in this package
(`_driver`: one message format, identifier rules, DSN parsing) and nowhere else; a role that does
not exist raises the typed `keyroll.errors.RoleMissing`. Adopt and its privilege introspection
are `adopt.py`, the ``pg_dump`` backup `backup.py`, the layout's catalog helpers `layout.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from keyroll.errors import TargetError
from keyroll.generate import generate
from keyroll.model import SecretValue
from keyroll.targets._redact import target_error
from keyroll.targets.postgres._driver import (
    SYSTEM,
    check_identifier,
    driver_error,
    dsn_params,
    hint_for,
    psycopg,
    where,
)
from keyroll.targets.postgres._driver import (
    sql as sql_module,
)
from keyroll.targets.postgres.acting import Admin
from keyroll.targets.postgres.adopt import AdoptResult, adopt_in
from keyroll.targets.postgres.handover import reclaim_ownership
from keyroll.targets.postgres.layout import (
    RoleLayout,
    grant_membership,
    require_role,
    roles_named,
    set_creates_as,
)
from keyroll.targets.postgres.privileges import Privilege, PrivilegeDiff, read_privileges, role_oid
from keyroll.targets.scram import ScramVerifier, scram_sha256_verifier

if TYPE_CHECKING:
    import psycopg as psycopg_module

__all__ = ["PostgresTarget", "RetireMode", "RetireResult"]


class RetireMode(StrEnum):
    """What `PostgresTarget.retire` does to a role that must stop accepting its password.

    ``break-glass`` (seed 004 option B, the default): a fresh random password that keyroll does
    not store; the role keeps its grants and can be revived by setting a new password.
    ``nologin``: the same random password, and the role may no longer log in.
    ``drop``: objects it owns go to the group role, then the role is dropped.
    """

    BREAK_GLASS = "break-glass"
    NOLOGIN = "nologin"
    DROP = "drop"



@dataclass(frozen=True, slots=True)
class RetireResult:
    """What `PostgresTarget.retire` did.

    Attributes:
        role: the retired role.
        mode: how.
        break_glass_fingerprint: fingerprint of the unstored random password (``break-glass``
            and ``nologin``), for the rotation ticket; None after ``drop``.
    """

    role: str
    mode: RetireMode
    break_glass_fingerprint: str | None



def _split_table(table: str | Sequence[str]) -> tuple[str, ...]:
    parts: tuple[str, ...]
    if isinstance(table, str):
        parts = tuple(table.split(".", 1)) if table.count(".") == 1 else (table,)
    else:
        parts = tuple(table)
    if not 1 <= len(parts) <= 2:
        raise TargetError(
            f"probe table {table!r}: give 'table', 'schema.table' or (schema, table)"
        )
    for part in parts:
        check_identifier(part, "table")
    return parts


# Client sessions of a role. Without superuser or pg_read_all_stats, backend_type of other
# roles' sessions reads NULL: count those too (an overlap then waits longer, never shorter).
_SESSIONS_SQL = """
SELECT count(*) FROM pg_stat_activity
WHERE usename = %s AND pid <> pg_backend_pid()
  AND coalesce(backend_type, 'client backend') = 'client backend'
"""

_SESSION_PIDS_SQL = """
SELECT pid FROM pg_stat_activity
WHERE usename = %s AND pid <> pg_backend_pid()
  AND coalesce(backend_type, 'client backend') = 'client backend'
ORDER BY pid
"""

_TERMINATE_SQL = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, %s)) FROM pg_stat_activity
WHERE usename = %s AND pid <> pg_backend_pid()
  AND coalesce(backend_type, 'client backend') = 'client backend'
"""


class PostgresTarget:
    """Administers the alternating roles of one application database.

    Args:
        dsn: conninfo or URL of a role that may manage the application's roles (superuser,
            or ``CREATEROLE`` with ``ADMIN OPTION`` on them), connected to the application's
            database (`adopt` and `retire` with ``drop`` act on that database's objects).
            It may omit the password and pass it as ``password``.
        password: the admin password, kept out of the DSN string.
        connect_timeout: seconds for each connection attempt.
        application_name: shows in ``pg_stat_activity`` so DBAs can see keyroll.
    """

    def __init__(
        self,
        dsn: str,
        *,
        password: SecretValue | None = None,
        connect_timeout: int = 10,
        application_name: str = "keyroll",
    ) -> None:
        self._dsn = dsn
        self._password = password
        self._timeout = connect_timeout
        self._app = application_name
        self.where = where(dsn)

    def __repr__(self) -> str:
        return f"PostgresTarget({self.where!r})"

    # connections -------------------------------------------------------------------------

    def _connect(
        self, dsn: str, step: str, *, user: str | None = None,
        password: SecretValue | None = None, hint: str,
    ) -> psycopg_module.Connection[Any]:
        pg = psycopg()
        kwargs: dict[str, Any] = {
            "connect_timeout": self._timeout,
            "application_name": self._app,
            "autocommit": True,
        }
        if user is not None:
            kwargs["user"] = user
        if password is not None:
            kwargs["password"] = password.reveal()
        secrets = self._secrets(password)
        inline = dsn_params(dsn, step).get("password")
        if inline:
            secrets.append(str(inline))
        try:
            conn: psycopg_module.Connection[Any] = pg.connect(dsn, **kwargs)
        except pg.Error as exc:
            raise driver_error(where(dsn), step, "could not connect", hint, exc, secrets) from None
        return conn

    def _secrets(self, *values: SecretValue | None) -> list[str]:
        return [v.reveal() for v in (*values, self._password) if v is not None]

    @contextlib.contextmanager
    def _admin(self, step: str, *secrets: str) -> Iterator[psycopg_module.Connection[Any]]:
        """An autocommit admin connection; psycopg errors inside become `TargetError`."""
        pg = psycopg()
        conn = self._connect(
            self._dsn, step, password=self._password,
            hint="check the admin DSN and that the server is up",
        )
        try:
            with conn:
                yield conn
        except pg.Error as exc:
            raise driver_error(
                self.where, step, "the server refused", hint_for(exc), exc,
                [*secrets, *self._secrets()],
            ) from None

    # plan / test --------------------------------------------------------------------------

    def check_admin(self) -> None:
        """Preflight: the admin DSN logs in and may manage roles (superuser or CREATEROLE).

        Raises:
            TargetError: it cannot log in, or has neither SUPERUSER nor CREATEROLE.
        """
        step = "check admin role"
        with self._admin(step) as conn:
            row = conn.execute(
                "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
        if row is None or not (row[0] or row[1]):
            raise target_error(
                SYSTEM, self.where, step, "the admin role may not manage roles",
                "use a superuser or a role with CREATEROLE (and pg_signal_backend to end "
                "sessions) in the admin DSN",
            )

    def check_login(
        self,
        dsn: str,
        role: str,
        password: SecretValue,
        *,
        probe_table: str | Sequence[str] | None = None,
    ) -> str:
        """Log in as ``role`` with ``password`` and, if asked, run the privilege probe.

        Used before a rotation changes anything (with the current credential: a refusal
        stops the rotation) and as the test step (with the new one).

        Args:
            dsn: where the application connects (host, port, database, TLS options); its
                user and password, if any, are overridden.
            role: the login role.
            password: the password to prove.
            probe_table: ``table``, ``schema.table`` or ``(schema, table)``: run
                ``SELECT 1 FROM <table> LIMIT 1`` as the role, to prove it holds the grants.

        Returns:
            The session's ``current_user``: the owner (group) role when the login role acts
            as it (its ``role`` setting), else ``role``.

        Raises:
            TargetError: login refused or probe failed (the message never holds the password).
        """
        check_identifier(role, "role")
        pg = psycopg()
        step = f"login as role {role!r}"
        conn = self._connect(
            dsn, step, user=role, password=password,
            hint="the credential does not work: do not rotate until the store and the "
            "database agree (check the role, its password and pg_hba.conf)",
        )
        with conn:
            row = conn.execute("SELECT current_user").fetchone()
            acting = str(row[0]) if row else role
            if probe_table is None:
                return acting
            parts = _split_table(probe_table)
            sql = sql_module()
            query = sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(*parts))
            try:
                conn.execute(query).fetchall()
            except pg.Error as exc:
                raise driver_error(
                    where(dsn), f"privilege probe on {'.'.join(parts)!r} as {role!r}",
                    "the probe failed", "grant the group role the privileges the application "
                    "needs, or fix probe_table in the inventory", exc, self._secrets(password),
                ) from None
        return acting

    # layout -------------------------------------------------------------------------------

    def ensure_layout(
        self, group: str, logins: tuple[str, str] | None = None
    ) -> RoleLayout:
        """Create what is missing of the alternation: group role and two login roles.

        Idempotent. The group role is ``NOLOGIN``; a new login role is created ``NOLOGIN``
        without password (`set_password` enables it); each login role is made ``INHERIT``, a
        member of the group, and acts as the group (``ALTER ROLE … SET role = group``), so
        the objects its sessions create belong to the group. Existing roles keep their
        passwords and grants.

        Args:
            group: the privilege-holding role (``goodgo_app``).
            logins: the two login role names; default ``<group>_a`` and ``<group>_b``.

        Raises:
            TargetError: a name is invalid, the group role can log in, or the server refused.
        """
        check_identifier(group, "group role")
        pair = logins if logins is not None else (f"{group}_a", f"{group}_b")
        for name in pair:
            check_identifier(name, "login role")
        if len({group, *pair}) != 3:
            raise TargetError(
                f"PostgreSQL role layout needs three distinct names, got {group!r}, {pair!r}"
            )
        sql = sql_module()
        with self._admin(f"ensure layout of group {group!r}") as conn, conn.transaction():
            existing = roles_named(conn, [group, *pair])
            if group not in existing:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
            elif existing[group]:
                raise target_error(
                    SYSTEM, self.where, f"ensure layout of group {group!r}",
                    "the group role can log in",
                    "the group must be NOLOGIN: use `adopt` to bring an existing login role "
                    "into the alternation", )
            for name in pair:
                if name not in existing:
                    conn.execute(
                        sql.SQL("CREATE ROLE {} NOLOGIN INHERIT").format(sql.Identifier(name))
                    )
                else:
                    conn.execute(sql.SQL("ALTER ROLE {} INHERIT").format(sql.Identifier(name)))
                grant_membership(conn, group, name)
                set_creates_as(conn, name, group)
        return RoleLayout(group, (pair[0], pair[1]))

    def reclaim(self, layout: RoleLayout) -> tuple[dict[str, int], list[str]]:
        """Give the group whatever a login role owns in this database (the plan step).

        A login role owns objects only if it created them before it acted as the group (a
        layout older than the ``role`` setting) or in a session that ran ``SET ROLE NONE``;
        after the next rotation the other login role could not reach them. Idempotent; with
        nothing to move it changes nothing.

        Returns:
            Objects moved per login role (only those that moved some), and warnings
            (objects in other databases, which keyroll does not move).

        Raises:
            TargetError: the server refused (nothing was changed).
        """
        step = f"give objects of the login roles to group {layout.group!r}"
        moved: dict[str, int] = {}
        warnings: list[str] = []
        with self._admin(step) as conn, conn.transaction():
            existing = roles_named(conn, [*layout.logins])
            admin = Admin(conn, self.where, step)
            for login in layout.logins:
                if login not in existing:
                    continue
                count, notes = reclaim_ownership(conn, admin, login, role_oid(conn, login),
                                                 layout.group)
                warnings += notes
                if count:
                    moved[login] = count
            admin.release()
        return moved, warnings

    # apply --------------------------------------------------------------------------------

    def set_password(self, role: str, password: SecretValue) -> ScramVerifier:
        """Give ``role`` a new password (and ``LOGIN``), sent as a SCRAM-SHA-256 verifier.

        The apply step: call it on the idle role. The returned verifier is what PgBouncer's
        ``auth_file`` needs (`keyroll.targets.pgbouncer.PgBouncerTarget.publish`).

        Raises:
            TargetError: the role does not exist (run `ensure_layout`) or the server refused.
        """
        check_identifier(role, "role")
        verifier = scram_sha256_verifier(password)
        text = verifier.reveal()
        sql = sql_module()
        step = f"set password of role {role!r}"
        with self._admin(step, password.reveal(), text) as conn, conn.transaction():
            require_role(conn, role, self.where, step)
            quiet_statement_log(conn)
            conn.execute(
                sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(text)
                )
            )
        return verifier

    def read_verifier(self, role: str) -> ScramVerifier | None:
        """The SCRAM verifier the server holds for ``role`` (superuser only), or None.

        Lets a resumed rotation rewrite PgBouncer's ``auth_file`` without the password.

        Raises:
            TargetError: not allowed to read ``pg_authid``, or the server refused.
        """
        check_identifier(role, "role")
        step = f"read verifier of role {role!r}"
        with self._admin(step) as conn:
            if conn.info.parameter_status("is_superuser") != "on":
                raise target_error(
                    SYSTEM, self.where, step, "only a superuser may read pg_authid",
                    "keep the verifier set_password returned, or publish a fresh password")
            row = conn.execute(
                "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)
            ).fetchone()
        if row is None or row[0] is None:
            return None
        try:
            return ScramVerifier.parse(row[0])
        except ValueError:
            return None

    # overlap / incident -------------------------------------------------------------------

    def session_count(self, role: str) -> int:
        """Client sessions of ``role`` now open (``pg_stat_activity``), keyroll's excluded.

        The overlap ends when this stays 0 for the settle period. Exact for a superuser or a
        member of ``pg_read_all_stats``; otherwise it may also count the role's parallel
        workers (never fewer sessions than there are). Behind PgBouncer it includes the idle
        pooled server connections: measure clients with ``PgBouncerTarget.client_count``.
        """
        check_identifier(role, "role")
        with self._admin(f"count sessions of role {role!r}") as conn:
            row = conn.execute(_SESSIONS_SQL, (role,)).fetchone()
        return int(row[0]) if row else 0

    def session_pids(self, role: str) -> list[int]:
        """Backend PIDs of ``role``'s client sessions (as `session_count` counts them).

        Behind PgBouncer, subtract ``PgBouncerTarget.server_pids`` to get the sessions opened
        directly, not through the pool.
        """
        check_identifier(role, "role")
        with self._admin(f"list sessions of role {role!r}") as conn:
            rows = conn.execute(_SESSION_PIDS_SQL, (role,)).fetchall()
        return [int(pid) for (pid,) in rows]

    def terminate_sessions(self, role: str, *, wait_ms: int = 5000) -> int:
        """Terminate every backend of ``role`` (incident mode); return how many.

        Call `retire` first so that the role cannot open new sessions meanwhile. Each
        termination waits up to ``wait_ms`` for the backend to exit.
        """
        check_identifier(role, "role")
        with self._admin(f"terminate sessions of role {role!r}") as conn:
            row = conn.execute(_TERMINATE_SQL, (wait_ms, role)).fetchone()
        return int(row[0]) if row else 0

    # retire -------------------------------------------------------------------------------

    def retire(
        self, role: str, mode: RetireMode | str = RetireMode.BREAK_GLASS, *,
        reassign_to: str | None = None,
    ) -> RetireResult:
        """Make ``role`` stop accepting its password.

        Args:
            role: the old login role.
            mode: `RetireMode`; ``break-glass`` by default.
            reassign_to: with ``drop``, who receives the objects the role owns in this
                database (the group role). Required for ``drop``.

        Returns:
            What was done, with the fingerprint of the unstored break-glass password.

        Raises:
            TargetError: the role is missing, or dropping it is blocked (objects in another
                database), or the server refused.
        """
        check_identifier(role, "role")
        mode = RetireMode(mode)
        sql = sql_module()
        ident = sql.Identifier(role)
        step = f"retire role {role!r} ({mode})"
        if mode is RetireMode.DROP:
            if reassign_to is None:
                raise TargetError(f"PostgreSQL {step}: give reassign_to (the group role)")
            check_identifier(reassign_to, "role")
            with self._admin(step) as conn, conn.transaction():
                if role not in roles_named(conn, [role]):
                    return RetireResult(role, mode, None)
                conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                    ident, sql.Identifier(reassign_to)))
                conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
                conn.execute(sql.SQL("DROP ROLE {}").format(ident))
            return RetireResult(role, mode, None)
        breakglass = generate("password-32")
        text = scram_sha256_verifier(breakglass).reveal()
        login = sql.SQL("NOLOGIN" if mode is RetireMode.NOLOGIN else "LOGIN")
        with self._admin(step, breakglass.reveal(), text) as conn, conn.transaction():
            require_role(conn, role, self.where, step)
            quiet_statement_log(conn)
            conn.execute(sql.SQL("ALTER ROLE {} WITH {} PASSWORD {}").format(
                ident, login, sql.Literal(text)))
        return RetireResult(role, mode, breakglass.fingerprint)

    # adopt (`keyroll.targets.postgres.adopt`) ----------------------------------------------

    def privileges(self, role: str, *, exclude: Sequence[str] = ()) -> frozenset[Privilege]:
        """Effective privileges of ``role`` in this database (and on every database).

        Covers tables, views, sequences, columns, schemas, databases, functions and role
        memberships (except in ``exclude``), as ``has_*_privilege`` and ``pg_has_role``
        report them: direct, through PUBLIC, through membership or by ownership.

        Raises:
            RoleMissing: the role does not exist.
            TargetError: the server refused.
        """
        check_identifier(role, "role")
        step = f"read privileges of role {role!r}"
        with self._admin(step) as conn:
            return read_privileges(conn, role, exclude, self.where, step)

    def privilege_diff(self, expected: str, actual: str, *, exclude: Sequence[str] = ()
                       ) -> PrivilegeDiff:
        """How ``actual``'s effective privileges differ from ``expected``'s (`privileges`).

        The test step compares the pending login role with the active one: every table,
        view, column, sequence, function, type, schema, database and membership the active
        role can use must be usable by the pending role, and nothing more.

        Raises:
            RoleMissing: a role does not exist.
            TargetError: the server refused.
        """
        check_identifier(expected, "role")
        check_identifier(actual, "role")
        step = f"compare privileges of role {actual!r} with {expected!r}"
        with self._admin(step) as conn:
            want = read_privileges(conn, expected, exclude, self.where, step)
            have = read_privileges(conn, actual, exclude, self.where, step)
        return PrivilegeDiff.of(want, have)

    def adopt(
        self, role: str, *, group: str | None = None, alternate: str | None = None
    ) -> AdoptResult:
        """Bring an existing login role (``goodgo_app``) into the alternation, in one transaction.

        The role keeps its name, password and sessions, so its current users notice nothing.
        A ``NOLOGIN`` group role receives what the role holds (`keyroll.targets.postgres.
        handover`: memberships, direct grants on every kind of object, ownership in this
        database, default privileges, policies), each grant re-made as its grantor; the role
        becomes an ``INHERIT`` member of the group and loses the direct grants; a new
        alternate login role (``NOLOGIN`` until `set_password`) joins the group and receives
        copies of the role's per-role settings; both login roles act as the group from their
        next login (``SET role``). Anything that cannot move is refused first, by name. Then
        the role's effective privileges are compared with those before, and the alternate's
        with the same set: any difference rolls everything back. Works with a superuser or a
        ``CREATEROLE`` admin (which borrows memberships for the transaction).

        Args:
            role: the existing login role.
            group: the group role to create; default ``<role>_group``.
            alternate: the second login role; default ``<role>_b``.

        Returns:
            The layout ``(group, (role, alternate))`` and what was moved and verified.

        Raises:
            TargetError: the role is missing or cannot log in, a name is taken by an
                unrelated role, a privilege could not be carried over (nothing changed), or
                the server refused.
        """
        check_identifier(role, "role")
        group = check_identifier(group or f"{role}_group", "group role")
        alternate = check_identifier(alternate or f"{role}_b", "login role")
        if len({role, group, alternate}) != 3:
            raise TargetError(f"PostgreSQL adopt: role, group and alternate must differ, got "
                              f"{role!r}, {group!r}, {alternate!r}")
        step = f"adopt role {role!r} into group {group!r}"
        with self._admin(step) as conn, conn.transaction():
            return adopt_in(conn, RoleLayout(group, (role, alternate)), self.where, step)


def quiet_statement_log(conn: psycopg_module.Connection[Any]) -> None:
    """Keep the verifier out of the server log when we may (superuser only).

    Covers the statement log and the ``STATEMENT:`` line an error would add. Without
    superuser the verifier (never the password) may be logged if ``log_statement`` is on.
    """
    if conn.info.parameter_status("is_superuser") == "on":
        conn.execute("SET LOCAL log_statement = 'none'")
        conn.execute("SET LOCAL log_min_error_statement = 'panic'")
