"""PostgreSQL as a rotation target: alternating login roles under one group role.

PostgreSQL keeps one password per role, so a zero-downtime rotation alternates between two
login roles (seed 004 §5): a ``NOLOGIN`` group role holds every privilege, two ``LOGIN`` roles
(``<name>_a`` / ``<name>_b``) inherit it, the application's DSN names the active one, and the
idle one receives the next password. Each step of a rotation is one call on `PostgresTarget`:

============ ==================================================================
step         call
============ ==================================================================
plan         `PostgresTarget.check_login` with the current role and password
             (and `ensure_layout`, `backup`)
apply        `PostgresTarget.set_password` on the idle role
test         `PostgresTarget.check_login` with ``probe_table``
overlap      `PostgresTarget.session_count` of the old role
retire       `PostgresTarget.retire`
incident     `PostgresTarget.terminate_sessions`
adopt        `PostgresTarget.adopt` (an existing single role joins the scheme)
============ ==================================================================

Every identifier goes through `psycopg.sql.Identifier`. ``ALTER ROLE … PASSWORD`` takes no bind
parameter, so the password is turned into a SCRAM-SHA-256 verifier here (`keyroll.targets.scram`)
and sent as a quoted literal: the plaintext never reaches the server or its statement log.
psycopg is imported lazily; its exceptions are translated to `TargetError` in this module and
nowhere else.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from keyroll.errors import TargetError
from keyroll.generate import generate
from keyroll.model import SecretValue
from keyroll.targets._redact import target_error
from keyroll.targets.scram import ScramVerifier, scram_sha256_verifier

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "AdoptResult",
    "BackupResult",
    "PostgresTarget",
    "Privilege",
    "RetireMode",
    "RetireResult",
    "RoleLayout",
    "backup",
]

_SYSTEM = "PostgreSQL"
_MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1: longer names are silently truncated by the server


def _psycopg() -> ModuleType:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise TargetError(
            "PostgreSQL targets need psycopg: pip install 'keyroll[postgres]'"
        ) from None
    return psycopg


def _sql() -> Any:
    return _psycopg().sql


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


@dataclass(frozen=True, slots=True)
class BackupResult:
    """A verified ``pg_dump -Fc`` archive (seed 000 §3.1): evidence for the audit journal.

    Attributes:
        path: where the archive is.
        sha256: hex SHA-256 of the file.
        size: bytes.
        entries: table-of-contents entries ``pg_restore --list`` read back.
    """

    path: Path
    sha256: str
    size: int
    entries: int


def _check_identifier(name: str, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise TargetError(f"PostgreSQL {what} name must be a non-empty string")
    if "\x00" in name:
        raise TargetError(f"PostgreSQL {what} name {name!r} contains a NUL byte")
    if len(name.encode()) > _MAX_IDENTIFIER_BYTES:
        raise TargetError(
            f"PostgreSQL {what} name {name!r} is longer than {_MAX_IDENTIFIER_BYTES} bytes: "
            "the server would truncate it; choose a shorter name in the inventory"
        )
    return name


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
        _check_identifier(part, "table")
    return parts


def _where(dsn: str) -> str:
    """``host:port/dbname`` from a conninfo or URL, without user or password."""
    try:
        params = _psycopg().conninfo.conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - a malformed DSN must not leak through its message
        return "(unparseable DSN)"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or '?'}"


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
        self.where = _where(dsn)

    def __repr__(self) -> str:
        return f"PostgresTarget({self.where!r})"

    # connections -------------------------------------------------------------------------

    def _connect(
        self, dsn: str, step: str, *, user: str | None = None,
        password: SecretValue | None = None, hint: str,
    ) -> psycopg.Connection[Any]:
        pg = _psycopg()
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
        try:
            inline = pg.conninfo.conninfo_to_dict(dsn).get("password")
        except pg.Error:
            # The parser quotes the text it chokes on, which may be a password: drop it.
            raise TargetError(
                f"PostgreSQL {step}: the DSN is neither libpq conninfo nor a postgresql:// "
                "URL (its text is not shown: it may hold a password); fix it in the inventory"
            ) from None
        if inline:
            secrets.append(str(inline))
        try:
            conn: psycopg.Connection[Any] = pg.connect(dsn, **kwargs)
        except pg.Error as exc:
            raise target_error(
                _SYSTEM, _where(dsn), step, "could not connect", hint, cause=exc,
                secrets=secrets,
            ) from None
        return conn

    def _secrets(self, *values: SecretValue | None) -> list[str]:
        return [v.reveal() for v in (*values, self._password) if v is not None]

    @contextlib.contextmanager
    def _admin(self, step: str, *secrets: str) -> Iterator[psycopg.Connection[Any]]:
        """An autocommit admin connection; psycopg errors inside become `TargetError`."""
        pg = _psycopg()
        conn = self._connect(
            self._dsn, step, password=self._password,
            hint="check the admin DSN and that the server is up",
        )
        try:
            with conn:
                yield conn
        except pg.Error as exc:
            raise target_error(
                _SYSTEM, self.where, step, "the server refused", _hint_for(exc), cause=exc,
                secrets=[*secrets, *self._secrets()],
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
                _SYSTEM, self.where, step, "the admin role may not manage roles",
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
    ) -> None:
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

        Raises:
            TargetError: login refused or probe failed (the message never holds the password).
        """
        _check_identifier(role, "role")
        pg = _psycopg()
        step = f"login as role {role!r}"
        conn = self._connect(
            dsn, step, user=role, password=password,
            hint="the credential does not work: do not rotate until the store and the "
            "database agree (check the role, its password and pg_hba.conf)",
        )
        with conn:
            if probe_table is None:
                return
            parts = _split_table(probe_table)
            sql = _sql()
            query = sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(*parts))
            try:
                conn.execute(query).fetchall()
            except pg.Error as exc:
                raise target_error(
                    _SYSTEM, _where(dsn), f"privilege probe on {'.'.join(parts)!r} as {role!r}",
                    "the probe failed", "grant the group role the privileges the application "
                    "needs, or fix probe_table in the inventory", cause=exc,
                    secrets=self._secrets(password),
                ) from None

    # layout -------------------------------------------------------------------------------

    def ensure_layout(
        self, group: str, logins: tuple[str, str] | None = None
    ) -> RoleLayout:
        """Create what is missing of the alternation: group role and two login roles.

        Idempotent. The group role is ``NOLOGIN``; a new login role is created ``NOLOGIN``
        without password (`set_password` enables it); each login role is made ``INHERIT`` and
        a member of the group. Existing roles keep their passwords and grants.

        Args:
            group: the privilege-holding role (``goodgo_app``).
            logins: the two login role names; default ``<group>_a`` and ``<group>_b``.

        Raises:
            TargetError: a name is invalid, the group role can log in, or the server refused.
        """
        _check_identifier(group, "group role")
        pair = logins if logins is not None else (f"{group}_a", f"{group}_b")
        for name in pair:
            _check_identifier(name, "login role")
        if len({group, *pair}) != 3:
            raise TargetError(
                f"PostgreSQL role layout needs three distinct names, got {group!r}, {pair!r}"
            )
        sql = _sql()
        with self._admin(f"ensure layout of group {group!r}") as conn, conn.transaction():
            existing = _roles(conn, [group, *pair])
            if group not in existing:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
            elif existing[group]:
                raise target_error(
                    _SYSTEM, self.where, f"ensure layout of group {group!r}",
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
                _grant_membership(conn, group, name)
        return RoleLayout(group, (pair[0], pair[1]))

    # apply --------------------------------------------------------------------------------

    def set_password(self, role: str, password: SecretValue) -> ScramVerifier:
        """Give ``role`` a new password (and ``LOGIN``), sent as a SCRAM-SHA-256 verifier.

        The apply step: call it on the idle role. The returned verifier is what PgBouncer's
        ``auth_file`` needs (`keyroll.targets.pgbouncer.PgBouncerTarget.publish`).

        Raises:
            TargetError: the role does not exist (run `ensure_layout`) or the server refused.
        """
        _check_identifier(role, "role")
        verifier = scram_sha256_verifier(password)
        text = verifier.reveal()
        sql = _sql()
        step = f"set password of role {role!r}"
        with self._admin(step, password.reveal(), text) as conn, conn.transaction():
            _require_role(conn, role, self.where, step)
            _quiet_statement_log(conn)
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
        _check_identifier(role, "role")
        step = f"read verifier of role {role!r}"
        with self._admin(step) as conn:
            if conn.info.parameter_status("is_superuser") != "on":
                raise target_error(
                    _SYSTEM, self.where, step, "only a superuser may read pg_authid",
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
        _check_identifier(role, "role")
        with self._admin(f"count sessions of role {role!r}") as conn:
            row = conn.execute(_SESSIONS_SQL, (role,)).fetchone()
        return int(row[0]) if row else 0

    def session_pids(self, role: str) -> list[int]:
        """Backend PIDs of ``role``'s client sessions (as `session_count` counts them).

        Behind PgBouncer, subtract ``PgBouncerTarget.server_pids`` to get the sessions opened
        directly, not through the pool.
        """
        _check_identifier(role, "role")
        with self._admin(f"list sessions of role {role!r}") as conn:
            rows = conn.execute(_SESSION_PIDS_SQL, (role,)).fetchall()
        return [int(pid) for (pid,) in rows]

    def terminate_sessions(self, role: str, *, wait_ms: int = 5000) -> int:
        """Terminate every backend of ``role`` (incident mode); return how many.

        Call `retire` first so that the role cannot open new sessions meanwhile. Each
        termination waits up to ``wait_ms`` for the backend to exit.
        """
        _check_identifier(role, "role")
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
        _check_identifier(role, "role")
        mode = RetireMode(mode)
        sql = _sql()
        ident = sql.Identifier(role)
        step = f"retire role {role!r} ({mode})"
        if mode is RetireMode.DROP:
            if reassign_to is None:
                raise TargetError(f"PostgreSQL {step}: give reassign_to (the group role)")
            _check_identifier(reassign_to, "role")
            with self._admin(step) as conn, conn.transaction():
                if role not in _roles(conn, [role]):
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
            _require_role(conn, role, self.where, step)
            _quiet_statement_log(conn)
            conn.execute(sql.SQL("ALTER ROLE {} WITH {} PASSWORD {}").format(
                ident, login, sql.Literal(text)))
        return RetireResult(role, mode, breakglass.fingerprint)

    # adopt --------------------------------------------------------------------------------

    def privileges(self, role: str, *, exclude: Sequence[str] = ()) -> frozenset[Privilege]:
        """Effective privileges of ``role`` in this database (and on every database).

        Covers tables, views, sequences, columns, schemas, databases, functions and role
        memberships (except in ``exclude``), as ``has_*_privilege`` and ``pg_has_role``
        report them: direct, through PUBLIC, through membership or by ownership.

        Raises:
            TargetError: the role does not exist or the server refused.
        """
        _check_identifier(role, "role")
        step = f"read privileges of role {role!r}"
        with self._admin(step) as conn:
            return _privileges(conn, role, exclude, self.where, step)

    def adopt(
        self, role: str, *, group: str | None = None, alternate: str | None = None
    ) -> AdoptResult:
        """Bring an existing login role (``goodgo_app``) into the alternation, in one transaction.

        The role keeps its name, password and sessions, so its current users notice nothing.
        A ``NOLOGIN`` group role receives the role's direct grants (tables, sequences,
        columns, schemas, databases, role memberships) and the objects it owns in this
        database; the role becomes an ``INHERIT`` member of the group and loses the direct
        grants; a new alternate login role (``NOLOGIN`` until `set_password`) joins the group.
        Then the role's effective privileges are compared with those before, and the
        alternate's with the same set: any difference rolls everything back.

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
        _check_identifier(role, "role")
        group = _check_identifier(group or f"{role}_group", "group role")
        alternate = _check_identifier(alternate or f"{role}_b", "login role")
        if len({role, group, alternate}) != 3:
            raise TargetError(f"PostgreSQL adopt: role, group and alternate must differ, got "
                              f"{role!r}, {group!r}, {alternate!r}")
        layout = RoleLayout(group, (role, alternate))
        sql = _sql()
        step = f"adopt role {role!r} into group {group!r}"
        with self._admin(step) as conn, conn.transaction():
            existing = _roles(conn, [role, group, alternate])
            if role not in existing or not existing[role]:
                raise target_error(_SYSTEM, self.where, step, "the role is missing or NOLOGIN",
                                   "name the login role the application uses today")
            exclude = [role, group, alternate]
            if group in existing and alternate in existing and _is_member(conn, role, group) \
                    and _is_member(conn, alternate, group):
                mine = _privileges(conn, role, exclude, self.where, step)
                theirs = _privileges(conn, alternate, exclude, self.where, step)
                _compare(mine, theirs, alternate, self.where, step)
                return AdoptResult(layout, 0, len(mine), already_adopted=True)
            for name in (group, alternate):
                if name in existing:
                    raise target_error(
                        _SYSTEM, self.where, step, f"role {name!r} already exists",
                        "choose other names for the group and alternate roles")
            before = _privileges(conn, role, exclude, self.where, step)
            role_oid = _role_oid(conn, role)
            exclude_oids = [role_oid]
            grants = conn.execute(
                _DIRECT_GRANTS_SQL, {"role": role_oid, "exclude": exclude_oids}
            ).fetchall()
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
            for kind, schema, name, column, priv, grantable in grants:
                target = _grant_target(kind, schema, name, column, priv)
                grant = sql.SQL("GRANT {} TO {}{}").format(
                    target, sql.Identifier(group),
                    sql.SQL(" WITH ADMIN OPTION" if kind == "ROLE" else " WITH GRANT OPTION")
                    if grantable else sql.SQL(""))
                conn.execute(grant)
            conn.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                sql.Identifier(role), sql.Identifier(group)))
            conn.execute(sql.SQL("ALTER ROLE {} INHERIT").format(sql.Identifier(role)))
            _grant_membership(conn, group, role)
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN INHERIT").format(
                sql.Identifier(alternate)))
            _grant_membership(conn, group, alternate)
            for kind, schema, name, column, priv, _ in grants:
                target = _grant_target(kind, schema, name, column, priv)
                conn.execute(sql.SQL("REVOKE {} FROM {}").format(target, sql.Identifier(role)))
            after = _privileges(conn, role, exclude, self.where, step)
            _compare(before, after, role, self.where, step)
            alt = _privileges(conn, alternate, exclude, self.where, step)
            _compare(before, alt, alternate, self.where, step)
            warnings = _role_settings_warnings(conn, role_oid, alternate)
        return AdoptResult(layout, len(grants), len(before), warnings=warnings)


# helpers (psycopg objects in, plain values out) -----------------------------------------------


def _hint_for(exc: Exception) -> str:
    state = getattr(exc, "sqlstate", None) or ""
    if state == "42501":
        return "the admin role lacks a privilege: use a superuser or a CREATEROLE role"
    if state.startswith("08"):
        return "the connection broke: check the server and retry (the step is idempotent)"
    if state == "2BP01":
        return "the role still owns objects or holds grants in another database: run " \
            "REASSIGN OWNED / DROP OWNED there, or retire with break-glass instead"
    return "see the PostgreSQL server log for details"


def _roles(conn: psycopg.Connection[Any], names: Sequence[str]) -> dict[str, bool]:
    rows = conn.execute(
        "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s)", (list(names),)
    ).fetchall()
    return {str(name): bool(can_login) for name, can_login in rows}


def _role_oid(conn: psycopg.Connection[Any], role: str) -> int:
    row = conn.execute("SELECT oid FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if row is None:
        raise TargetError(f"PostgreSQL role {role!r} does not exist")
    return int(row[0])


def _require_role(conn: psycopg.Connection[Any], role: str, where: str, step: str) -> None:
    if role not in _roles(conn, [role]):
        raise target_error(_SYSTEM, where, step, "the role does not exist",
                           "create the layout first (ensure_layout / keyroll adopt)")


def _is_member(conn: psycopg.Connection[Any], member: str, group: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = %s AND u.rolname = %s",
        (group, member),
    ).fetchone()
    return row is not None


def _grant_membership(conn: psycopg.Connection[Any], group: str, member: str) -> None:
    if _is_member(conn, member, group):
        return
    sql = _sql()
    inherit = sql.SQL(" WITH INHERIT TRUE" if conn.info.server_version >= 160000 else "")
    conn.execute(sql.SQL("GRANT {} TO {}{}").format(
        sql.Identifier(group), sql.Identifier(member), inherit))


def _quiet_statement_log(conn: psycopg.Connection[Any]) -> None:
    """Keep the verifier out of the server log when we may (superuser only).

    Covers the statement log and the ``STATEMENT:`` line an error would add. Without
    superuser the verifier (never the password) may be logged if ``log_statement`` is on.
    """
    if conn.info.parameter_status("is_superuser") == "on":
        conn.execute("SET LOCAL log_statement = 'none'")
        conn.execute("SET LOCAL log_min_error_statement = 'panic'")


def _privileges(
    conn: psycopg.Connection[Any], role: str, exclude: Sequence[str], where: str, step: str
) -> frozenset[Privilege]:
    if role not in _roles(conn, [role]):
        raise target_error(_SYSTEM, where, step, "the role does not exist", "check the name")
    oid = _role_oid(conn, role)
    excluded = [oid for name, oid in conn.execute(
        "SELECT rolname, oid FROM pg_roles WHERE rolname = ANY(%s)", (list(exclude),)
    ).fetchall()]
    rows = conn.execute(_PRIVILEGES_SQL, {"role": oid, "exclude": excluded}).fetchall()
    return frozenset(Privilege(str(k), str(t), str(p)) for k, t, p in rows)


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
        _SYSTEM, where, step, "privileges differ after the change; nothing was changed ("
        + "; ".join(parts) + ")",
        "grant these to the role through the group by hand (keyroll moves table, sequence, "
        "column, schema, database and membership grants, and ownership in this database)",
    )


def _grant_target(kind: str, schema: str, name: str, column: str, priv: str) -> Any:
    """``<privilege> ON <kind> <object>`` (or a role name for memberships), identifiers quoted."""
    sql = _sql()
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


def backup(
    dsn: str,
    path: str | os.PathLike[str],
    *,
    password: SecretValue | None = None,
    pg_dump: str | None = None,
    pg_restore: str | None = None,
    timeout: float = 3600.0,
) -> BackupResult:
    """``pg_dump -Fc`` the database to ``path``, verify it with ``pg_restore --list``.

    The archive is written next to ``path`` under a temporary name and renamed only once it
    verifies, so ``path`` never holds a partial dump. The password travels in the child's
    environment (``PGPASSWORD``), never on its command line.

    Args:
        dsn: conninfo or URL of a role that can read the whole database.
        path: where the archive goes (created or replaced).
        password: the password, if not in ``dsn`` (a password in ``dsn`` is moved to the
            environment as well).
        pg_dump: path of ``pg_dump`` (at least the server's major version); default: PATH.
        pg_restore: path of ``pg_restore``; default: next to ``pg_dump`` or PATH.
        timeout: seconds each command may take.

    Returns:
        The archive's path, SHA-256, size and number of table-of-contents entries.

    Raises:
        TargetError: a binary is missing, the dump failed or the archive does not verify.
    """
    pg = _psycopg()
    target = Path(path)
    where = _where(dsn)
    step = "backup (pg_dump -Fc)"
    dump_bin = pg_dump or shutil.which("pg_dump")
    if dump_bin is None:
        raise TargetError("pg_dump not found: install the PostgreSQL client "
                          "(apt-get install postgresql-client) or pass pg_dump=")
    restore_bin = pg_restore or str(Path(dump_bin).with_name("pg_restore"))
    if not Path(restore_bin).exists():
        restore_bin = shutil.which("pg_restore") or restore_bin
    try:
        params = pg.conninfo.conninfo_to_dict(dsn)
    except pg.Error:
        raise TargetError(f"PostgreSQL {step}: the DSN is not valid conninfo or URL") from None
    secret = params.pop("password", None)
    if password is not None:
        secret = password.reveal()
    secrets = [secret] if secret else []
    env = dict(os.environ)
    if secret:
        env["PGPASSWORD"] = str(secret)
    conninfo = pg.conninfo.make_conninfo("", **params)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial",
                                        dir=target.parent)
    os.close(fd)
    partial = Path(partial_name)
    try:
        _run([dump_bin, "-Fc", "-f", str(partial), "--dbname", conninfo], env, timeout, where,
             step, secrets)
        listing = _run([restore_bin, "--list", str(partial)], env, timeout, where,
                       "verify backup (pg_restore --list)", secrets)
        entries = sum(1 for line in listing.splitlines() if line and not line.startswith(";"))
        if entries == 0:
            raise target_error(_SYSTEM, where, "verify backup", "the archive lists no entries",
                               "check that the DSN names the application database")
        digest = hashlib.sha256()
        with partial.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
            os.fsync(fh.fileno())
        partial.chmod(0o600)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return BackupResult(target, digest.hexdigest(), target.stat().st_size, entries)


def _run(argv: list[str], env: dict[str, str], timeout: float, where: str, step: str,
         secrets: list[str]) -> str:
    try:
        done = subprocess.run(argv, env=env, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise TargetError(f"PostgreSQL {where}: {step}: {argv[0]} not found: install the "
                          "PostgreSQL client tools") from None
    except subprocess.TimeoutExpired:
        raise TargetError(f"PostgreSQL {where}: {step}: timed out after {timeout:.0f}s: "
                          "raise the timeout or dump a smaller database") from None
    if done.returncode != 0:
        raise target_error(
            _SYSTEM, where, step, f"exit code {done.returncode}",
            "check the DSN, the role's read privileges and that pg_dump is at least the "
            "server's major version",
            cause=done.stderr.decode(errors="replace") or "no output", secrets=secrets,
        )
    return done.stdout.decode(errors="replace")
