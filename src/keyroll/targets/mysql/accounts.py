"""MySQL and MariaDB as a rotation target: accounts, their passwords, grants and sessions.

Each step of a ``mysql-user`` rotation is one call on `MySQLTarget`:

================ ==================================================================
step             call
================ ==================================================================
plan             `server_info`, `check_admin`, `check_login` (current credential),
                 `ensure_locked` (alternating: the idle account exists, locked)
apply            `mirror_grants` then `set_password` (alternating) or
                 `add_secondary_password` (dual password)
test             `check_login` and `compare_privileges` from the new login's own session
overlap          `session_ids` of the old account's user (``information_schema.PROCESSLIST``)
retire           `lock` / `drop` (alternating) or `discard_old_password` (dual)
incident         `kill_sessions`
rollback         `lock` (alternating) or `restore_primary` (dual)
================ ==================================================================

PyMySQL is imported lazily; its exceptions become `TargetError` here and in `_driver` only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from keyroll.errors import TargetError
from keyroll.generate import generate
from keyroll.model import SecretValue
from keyroll.targets.mysql import grants as grant_lines
from keyroll.targets.mysql import statements as st
from keyroll.targets.mysql._driver import (
    Account,
    AdminURL,
    driver_error,
    hint_for,
    is_access_denied,
    pymysql,
)
from keyroll.targets.mysql.server import ServerInfo

__all__ = ["LoginCheck", "MirrorResult", "MySQLTarget", "PrivilegeReport", "RetireMode",
           "RetireResult"]


class RetireMode(StrEnum):
    """What retire does to the old account of an alternation.

    ``lock`` (default): a random password nobody is given, and ``ACCOUNT LOCK``.
    ``break-glass``: the random password only (an operator may set a new one to revive it).
    ``drop``: ``DROP USER`` (the next rotation creates it again, locked, and mirrors grants).
    """

    LOCK = "lock"
    BREAK_GLASS = "break-glass"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class RetireResult:
    account: Account
    mode: RetireMode
    break_glass_fingerprint: str | None


@dataclass(frozen=True, slots=True)
class MirrorResult:
    """What `MySQLTarget.mirror_grants` did: ``changed`` is False when nothing differed."""

    changed: bool
    statements: int
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PrivilegeReport:
    """Effective privileges of two accounts compared (normalised ``SHOW GRANTS`` + options)."""

    grants: grant_lines.GrantDiff
    options_reference: st.AccountOptions
    options_other: st.AccountOptions
    lines: int

    @property
    def identical(self) -> bool:
        return not self.grants and self.options_reference == self.options_other

    def describe(self) -> str:
        parts = [self.grants.describe()] if self.grants else []
        if self.options_reference != self.options_other:
            parts.append(f"account options {self.options_other.as_evidence()} instead of "
                         f"{self.options_reference.as_evidence()}")
        return " | ".join(parts) or "identical"


@dataclass(frozen=True, slots=True)
class LoginCheck:
    """A login that worked: the account the server matched, and its grant lines (normalised)."""

    account: Account
    grants: tuple[str, ...]


_OPTIONS_SQL = (
    "SELECT ssl_type, ssl_cipher, x509_issuer, x509_subject, max_questions, max_updates, "
    "max_connections, max_user_connections FROM mysql.user WHERE User = %s AND Host = %s"
)
_SESSIONS_SQL = (
    "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s AND ID <> CONNECTION_ID() "
    "ORDER BY ID"
)
_ADMIN_PRIVS_SQL = (
    "SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = "
    "CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', "
    "SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')"
)


class MySQLTarget:
    """Administers the login accounts of one application on a MySQL or MariaDB server.

    Args:
        admin: where and as whom to connect (`keyroll.targets.mysql.parse_url`): an account
            with CREATE USER, PROCESS (to see and end others' sessions), SELECT on ``mysql.*``
            and, WITH GRANT OPTION, every privilege it mirrors (root, or a DBA account).
        database: the database application logins open (default: the admin URL's).
        connect_timeout: seconds for each connection attempt.
    """

    def __init__(self, admin: AdminURL, *, database: str | None = None,
                 connect_timeout: int = 10) -> None:
        self._admin_url = admin
        self._database = database or admin.database
        self._timeout = connect_timeout
        self.where = admin.where
        self._server: ServerInfo | None = None

    def __repr__(self) -> str:
        return f"MySQLTarget({self.where!r})"

    # connections ---------------------------------------------------------------------------

    def _secrets(self, *values: SecretValue | None) -> list[str]:
        return [v.reveal() for v in (*values, self._admin_url.password) if v is not None]

    def _connect(self, user: str, password: SecretValue | None, step: str, hint: str,
                 database: str | None) -> Any:
        driver = pymysql()
        kwargs = self._admin_url.connect_kwargs()
        try:
            return driver.connect(
                user=user, password=password.reveal() if password is not None else "",
                database=database, connect_timeout=self._timeout, autocommit=True,
                charset="utf8mb4", cursorclass=driver.cursors.DictCursor,
                program_name="keyroll", **kwargs,
            )
        except driver.Error as exc:
            raise driver_error(self.where, step, "could not connect", hint, exc,
                               self._secrets(password)) from None

    @contextlib.contextmanager
    def _admin(self, step: str, *secrets: SecretValue | None) -> Iterator[Any]:
        """An autocommit admin connection; PyMySQL errors inside become `TargetError`."""
        driver = pymysql()
        conn = self._connect(self._admin_url.user, self._admin_url.password, step,
                             "check the admin URL and that the server is up",
                             self._admin_url.database)
        try:
            yield conn
        except driver.Error as exc:
            raise driver_error(self.where, step, "the server refused", hint_for(exc), exc,
                               self._secrets(*secrets)) from None
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    @staticmethod
    def _run(conn: Any, statement: st.Statement) -> None:
        with conn.cursor() as cur:
            cur.execute(statement.sql, statement.args or None)

    @staticmethod
    def _rows(conn: Any, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with conn.cursor() as cur:
            cur.execute(sql, tuple(args) or None)
            return list(cur.fetchall())

    @staticmethod
    def _grants(conn: Any, account: Account | None) -> list[str]:
        """``SHOW GRANTS FOR`` the account (None: the session's own account)."""
        with conn.cursor() as cur:
            if account is None:
                cur.execute("SHOW GRANTS FOR CURRENT_USER()")
            else:
                cur.execute("SHOW GRANTS FOR %s@%s", account.args)
            return [str(next(iter(row.values()))) for row in cur.fetchall()]

    def _exists(self, conn: Any, account: Account) -> bool:
        return bool(self._rows(conn, "SELECT 1 AS x FROM mysql.user WHERE User = %s AND "
                               "Host = %s", account.args))

    def _options(self, conn: Any, account: Account) -> st.AccountOptions:
        rows = self._rows(conn, _OPTIONS_SQL, account.args)
        if not rows:
            raise TargetError(f"MySQL {self.where}: account {account} does not exist")
        return st.AccountOptions.from_row({k.lower(): v for k, v in rows[0].items()})

    # plan ----------------------------------------------------------------------------------

    def server_info(self) -> ServerInfo:
        """The server's variant and version (`ServerInfo`), read once per target."""
        if self._server is None:
            with self._admin("read the server version") as conn:
                row = self._rows(conn, "SELECT VERSION() AS v, @@version_comment AS c")[0]
            try:
                self._server = ServerInfo.parse(str(row["v"]), str(row["c"] or ""))
            except ValueError as exc:
                raise TargetError(f"MySQL {self.where}: {exc}") from None
        return self._server

    def check_admin(self) -> list[str]:
        """Preflight: the admin logs in and holds CREATE USER and PROCESS; returns its global
        privileges (``ALL PRIVILEGES`` shows as the full list).

        Raises:
            TargetError: it cannot log in or lacks one of them.
        """
        step = "check the admin account"
        with self._admin(step) as conn:
            privileges = sorted(str(r["PRIVILEGE_TYPE"]) for r in self._rows(conn, _ADMIN_PRIVS_SQL))
        missing = [p for p in ("CREATE USER", "PROCESS") if p not in privileges]
        if missing:
            raise driver_error(self.where, step, f"the admin account lacks {', '.join(missing)}",
                               "grant it CREATE USER, PROCESS and SELECT on mysql.* (and the "
                               "privileges it mirrors WITH GRANT OPTION), or use root")
        server = self.server_info()
        if server.version < ((10, 4, 0) if server.is_mariadb else (5, 7, 6)):
            raise driver_error(self.where, step, f"{server.variant} {server.text} is too old",
                               "keyroll needs MariaDB 10.4+ or MySQL 5.7.6+ (ACCOUNT LOCK)")
        return privileges

    def check_login(self, account: Account, password: SecretValue, *,
                    probe_table: str | None = None) -> LoginCheck:
        """Log in as ``account`` with ``password``, check that the server matched that very
        account (not another host pattern of the same user) and, if asked, run the probe.

        Returns:
            The account and its grant lines as its own session sees them (normalised).

        Raises:
            TargetError: login refused, another account matched, or the probe failed (the
                message never holds the password).
        """
        driver = pymysql()
        step = f"login as {account}"
        conn = self._connect(
            account.user, password, step,
            "the credential does not work: do not rotate until the store and the server "
            "agree (check the account, its host part, its password and ACCOUNT LOCK)",
            self._database)
        try:
            matched = str(self._rows(conn, "SELECT CURRENT_USER() AS u")[0]["u"])
            if matched != account.current_user:
                raise driver_error(
                    self.where, step, f"the server matched account {matched!r}",
                    f"the login must match {account} exactly: set options.host to the host "
                    "part the application's account has, or remove the more specific account")
            lines = tuple(sorted(grant_lines.normalise(line, account)
                                 for line in self._grants(conn, None)))
            if probe_table is not None:
                schema, _, table = probe_table.rpartition(".")
                ident = ".".join(f"`{p.replace('`', '``')}`" for p in (schema, table) if p)
                with conn.cursor() as cur:
                    cur.execute(f"SELECT 1 FROM {ident} LIMIT 1")  # noqa: S608 (quoted identifier)
                    cur.fetchall()
        except driver.Error as exc:
            raise driver_error(self.where, f"{step}: privilege probe", "the query failed",
                               "grant the account what the application needs, or fix "
                               "options.probe_table", exc, self._secrets(password)) from None
        finally:
            with contextlib.suppress(Exception):
                conn.close()
        return LoginCheck(account, lines)

    def logs_in(self, account: Account, password: SecretValue) -> bool:
        """Whether ``password`` logs in as ``account`` now (a refusal is False, not an error).

        Raises:
            TargetError: the server could not be reached, or another account matched.
        """
        driver = pymysql()
        try:
            conn = driver.connect(user=account.user, password=password.reveal(),
                                  database=self._database, connect_timeout=self._timeout,
                                  program_name="keyroll", **self._admin_url.connect_kwargs())
        except driver.Error as exc:
            if is_access_denied(exc):
                return False
            raise driver_error(self.where, f"login as {account}", "could not connect",
                               hint_for(exc), exc, self._secrets(password)) from None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT CURRENT_USER()")
                row = cur.fetchone()
        finally:
            conn.close()
        return row is not None and str(row[0]) == account.current_user

    def exists(self, account: Account) -> bool:
        with self._admin(f"look up {account}") as conn:
            return self._exists(conn, account)

    def ensure_locked(self, account: Account) -> bool:
        """Create ``account`` if it is missing: locked, with a random password nobody is
        given. Returns whether it was created. Idempotent (``CREATE USER IF NOT EXISTS``)."""
        server = self.server_info()
        statement = st.create_locked(server, account, generate("password-32"))
        with self._admin(f"create {account} (locked)", statement.secret) as conn:
            if self._exists(conn, account):
                return False
            self._run(conn, statement)
        return True

    # apply / test --------------------------------------------------------------------------

    def grant_lines(self, account: Account) -> list[str]:
        """``account``'s grant lines, normalised (hash cut, grantee ``<user>``)."""
        with self._admin(f"show grants for {account}") as conn:
            return sorted(grant_lines.normalise(line, account)
                          for line in self._grants(conn, account))

    def mirror_grants(self, source: Account, target: Account) -> MirrorResult:
        """Give ``target`` exactly ``source``'s privileges, roles, default role, TLS
        requirement and limits. Nothing changes when they already match (a rerun).

        Otherwise ``target`` loses every privilege and role first, then receives each of
        ``source``'s ``SHOW GRANTS`` lines with the grantee replaced, then the account
        options; the result is compared again. Call it while ``target`` is locked.

        Raises:
            TargetError: a line could not be mirrored, or the result still differs.
        """
        server = self.server_info()
        step = f"mirror grants {source} -> {target}"
        with self._admin(step) as conn:
            raw = self._grants(conn, source)
            want = sorted(grant_lines.normalise(line, source) for line in raw)
            wanted_options = self._options(conn, source)
            have_raw = self._grants(conn, target)
            have = sorted(grant_lines.normalise(line, target) for line in have_raw)
            if not grant_lines.diff(want, have) and self._options(conn, target) == wanted_options:
                return MirrorResult(False, 0, tuple(want))
            count = 0
            for line in have_raw:
                revoke = grant_lines.revoke_roles(line, target)
                if revoke is not None:
                    self._run(conn, st.Statement(revoke))
                    count += 1
            for statement in (st.revoke_all(target), st.default_role_none(server, target)):
                self._run(conn, statement)
                count += 1
            for line in raw:
                self._run(conn, st.Statement(grant_lines.retarget(line, source, target)))
                count += 1
            self._run(conn, st.set_account_options(target, wanted_options))
            count += 1
            after = grant_lines.diff(want, [grant_lines.normalise(line, target)
                                            for line in self._grants(conn, target)])
            options_after = self._options(conn, target)
        if after or options_after != wanted_options:
            raise driver_error(self.where, step, "the mirrored account still differs",
                               f"{after.describe()}; grant it by hand or report the line")
        return MirrorResult(True, count, tuple(want))

    def compare_privileges(self, reference: Account, login: LoginCheck) -> PrivilegeReport:
        """Compare what ``login``'s own session reports (``SHOW GRANTS FOR CURRENT_USER()``)
        with ``reference``'s grants as the admin reads them, and their account options."""
        with self._admin(f"compare privileges of {login.account} with {reference}") as conn:
            want = [grant_lines.normalise(line, reference)
                    for line in self._grants(conn, reference)]
            options_ref = self._options(conn, reference)
            options_other = self._options(conn, login.account)
        return PrivilegeReport(grant_lines.diff(want, login.grants), options_ref,
                               options_other, len(want))

    def set_password(self, account: Account, password: SecretValue, *,
                     unlock: bool = True) -> None:
        """``account``'s only password becomes ``password`` (and it is unlocked).

        Raises:
            TargetError: the account does not exist or the server refused.
        """
        statement = st.set_password(self.server_info(), account, password,
                                    lock=False if unlock else None)
        with self._admin(f"set password of {account}", password, statement.secret) as conn:
            self._run(conn, statement)

    # dual password (MySQL >= 8.0.14) -------------------------------------------------------

    def _require_dual(self, step: str) -> ServerInfo:
        server = self.server_info()
        if not server.dual_password:
            raise driver_error(self.where, step, server.dual_password_note(),
                               "use mode = \"alternating-users\" (or \"auto\")")
        return server

    def add_secondary_password(self, account: Account, password: SecretValue) -> None:
        """``RETAIN CURRENT PASSWORD``: ``password`` becomes primary, the current one stays.

        Callers check first that ``password`` does not already log in: a second run would
        make the *new* password the secondary one and drop the old one.
        """
        step = f"add a password to {account} (RETAIN CURRENT PASSWORD)"
        self._require_dual(step)
        statement = st.retain_current(account, password)
        with self._admin(step, password) as conn:
            self._run(conn, statement)

    def discard_old_password(self, account: Account) -> None:
        """``DISCARD OLD PASSWORD``: only the primary password logs in. Idempotent."""
        step = f"discard the old password of {account}"
        self._require_dual(step)
        with self._admin(step) as conn:
            self._run(conn, st.discard_old(account))

    def restore_primary(self, account: Account, password: SecretValue) -> None:
        """Make ``password`` the only password again: primary replaced, secondary discarded
        (the rollback of `add_secondary_password`, and a rotation back's retire)."""
        step = f"restore the password of {account}"
        self._require_dual(step)
        with self._admin(step, password) as conn:
            self._run(conn, st.replace_primary(account, password))
            self._run(conn, st.discard_old(account))

    # overlap / retire / incident -----------------------------------------------------------

    def session_ids(self, account: Account) -> list[int]:
        """Connection ids of ``account``'s user name (``information_schema.PROCESSLIST``,
        keyroll's own excluded). PROCESSLIST names users, not accounts: sessions of the
        same user name under another host part are counted too (a longer wait, never a
        shorter one). Needs PROCESS to see other users' sessions."""
        with self._admin(f"list sessions of {account}") as conn:
            return [int(r["ID"]) for r in self._rows(conn, _SESSIONS_SQL, (account.user,))]

    def kill_sessions(self, account: Account) -> int:
        """``KILL CONNECTION`` every session of ``account``'s user; returns how many."""
        killed = 0
        with self._admin(f"end sessions of {account}") as conn:
            for connection_id in self._rows(conn, _SESSIONS_SQL, (account.user,)):
                try:
                    self._run(conn, st.kill(int(connection_id["ID"])))
                except pymysql().err.OperationalError as exc:
                    if exc.args and exc.args[0] == 1094:  # unknown thread id: it just left
                        continue
                    raise
                killed += 1
        return killed

    def lock(self, account: Account, mode: RetireMode | str = RetireMode.LOCK) -> RetireResult:
        """Make ``account`` stop accepting its password (`RetireMode`). A missing account
        counts as retired (a rerun after ``drop``)."""
        mode = RetireMode(mode)
        server = self.server_info()
        step = f"retire {account} ({mode})"
        if mode is RetireMode.DROP:
            with self._admin(step) as conn:
                self._run(conn, st.drop_user(account))
            return RetireResult(account, mode, None)
        breakglass = generate("password-32")
        statement = st.set_password(server, account, breakglass,
                                    lock=True if mode is RetireMode.LOCK else None)
        with self._admin(step, breakglass, statement.secret) as conn:
            if not self._exists(conn, account):
                return RetireResult(account, mode, None)
            self._run(conn, statement)
        return RetireResult(account, mode, breakglass.fingerprint)
