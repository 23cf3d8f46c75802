"""PgBouncer as a rotation target: its ``auth_file`` and a ``RELOAD`` (seed 004 §5.4).

With ``auth_type = scram-sha-256`` PgBouncer checks clients against the verifiers in its
``auth_file`` (userlist.txt) and, when a verifier is byte-identical to the server's, logs in to
PostgreSQL on the client's behalf. So the apply step writes the verifier that
`keyroll.targets.postgres.PostgresTarget.set_password` returned for the idle role, keeping the
active role's line, *before* the application is told about the new role; then ``RELOAD`` on the
admin console makes PgBouncer read the file without dropping a connection.

Retiring a role behind PgBouncer takes three calls, in this order: `PgBouncerTarget.publish`
without the old role (``remove=[old]``), then ``PostgresTarget.retire(old)``, then
``PostgresTarget.terminate_sessions(old)``. PgBouncer checks clients against its own file and
hands them pooled server connections that are already logged in, so retiring the role in
PostgreSQL alone leaves the old password working through PgBouncer until
``server_idle_timeout`` (the integration tests show it). During the overlap, count the old
role's clients with `PgBouncerTarget.client_count`: ``pg_stat_activity`` also lists the idle
server connections PgBouncer keeps in its pool.

The file is replaced atomically (temporary file, fsync, rename; mode 0600, owner and group of
the file it replaces), so PgBouncer never reads half a file. Lines keyroll does not manage are
kept as they are.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from keyroll.errors import TargetError
from keyroll.files import write_private
from keyroll.model import SecretValue
from keyroll.targets._redact import target_error
from keyroll.targets.postgres._driver import psycopg as psycopg_module
from keyroll.targets.scram import ScramVerifier

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "ADMIN_URL_SHAPE", "PgBouncerTarget", "format_auth_line", "parse_admin_url", "parse_auth_file",
]

_SYSTEM = "PgBouncer"


def _psycopg() -> ModuleType:
    return psycopg_module(_SYSTEM)


#: What `parse_admin_url` accepts (for messages: the URL itself holds a password).
ADMIN_URL_SHAPE = "postgresql://ADMIN:PASSWORD@HOST:PORT/pgbouncer"


def parse_admin_url(url: str) -> tuple[str, int, str, SecretValue] | None:
    """Host, port (default 6432), admin user and password of an admin console URL.

    Returns None when ``url`` is not `ADMIN_URL_SHAPE` (the caller names the variable; the
    text itself is never shown: it holds a password).
    """
    try:
        parts = urlsplit(url)
        port = parts.port or 6432
    except ValueError:
        return None
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname \
            or not parts.username or parts.password is None:
        return None
    return parts.hostname, port, unquote(parts.username), SecretValue(unquote(parts.password))


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def format_auth_line(user: str, verifier: ScramVerifier) -> str:
    """One ``"user" "SCRAM-SHA-256$…"`` line (double quotes inside the name are doubled)."""
    if not user or any(ch in user for ch in "\r\n\x00"):
        raise TargetError(f"PgBouncer auth_file: user name {user!r} cannot be written")
    return f"{_quote(user)} {_quote(verifier.reveal())}\n"


def _parse_user(line: str) -> str | None:
    """The user name of an auth_file line, or None for comments and lines it cannot read."""
    text = line.strip()
    if not text.startswith('"'):
        return None
    name: list[str] = []
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == '"':
            if i + 1 < len(text) and text[i + 1] == '"':
                name.append('"')
                i += 2
                continue
            return "".join(name)
        name.append(ch)
        i += 1
    return None


def parse_auth_file(text: str) -> list[tuple[str | None, str]]:
    """Split an auth_file into ``(user or None, raw line)`` pairs, keeping every line."""
    return [(_parse_user(line), line) for line in text.splitlines(keepends=True)]


class PgBouncerTarget:
    """Maintains one PgBouncer's ``auth_file`` and reloads it through the admin console.

    Args:
        auth_file: path of the userlist PgBouncer reads (``auth_file`` in pgbouncer.ini).
        host: PgBouncer's address.
        port: PgBouncer's port.
        admin_user: a user in ``admin_users`` (or ``stats_users`` for read-only checks).
        admin_password: its password.
        connect_timeout: seconds per connection attempt.
    """

    def __init__(
        self,
        auth_file: str | os.PathLike[str],
        *,
        host: str,
        port: int,
        admin_user: str,
        admin_password: SecretValue,
        connect_timeout: int = 10,
    ) -> None:
        self.auth_file = Path(auth_file)
        self.host = host
        self.port = port
        self.admin_user = admin_user
        self._admin_password = admin_password
        self._timeout = connect_timeout
        self.where = f"{host}:{port}"

    def __repr__(self) -> str:
        return f"PgBouncerTarget({self.where!r}, auth_file={str(self.auth_file)!r})"

    # auth_file ----------------------------------------------------------------------------

    def write_auth_file(
        self, verifiers: Mapping[str, ScramVerifier], *, remove: Iterable[str] = ()
    ) -> None:
        """Set the lines of ``verifiers``' users, drop those in ``remove``, keep the rest.

        Atomic: a temporary file in the same folder is written, fsynced, given mode 0600 and
        the replaced file's owner and group, then renamed over the old one.

        Raises:
            TargetError: the file or its folder cannot be read or written.
        """
        step = "write auth_file"
        try:
            # several classes may share one auth_file: their read-modify-writes take turns
            with os.fdopen(os.open(self._lock_path(), os.O_RDWR | os.O_CREAT, 0o600)) as lock:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
                self._write_auth_file(verifiers, remove, step)
        except OSError as exc:
            raise self._file_error(step, exc) from None

    def _lock_path(self) -> Path:
        return self.auth_file.with_name(f".{self.auth_file.name}.keyroll-lock")

    def _write_auth_file(
        self, verifiers: Mapping[str, ScramVerifier], remove: Iterable[str], step: str
    ) -> None:
        lines_for = {user: format_auth_line(user, v) for user, v in verifiers.items()}
        dropped = set(remove) - set(lines_for)
        try:
            old = self.auth_file.read_text() if self.auth_file.exists() else ""
            st = self.auth_file.stat() if self.auth_file.exists() else None
        except OSError as exc:
            raise self._file_error(step, exc) from None
        out: list[str] = []
        written: set[str] = set()
        for user, line in parse_auth_file(old):
            if user is None:
                out.append(line if line.endswith("\n") else line + "\n")
            elif user in lines_for:
                if user not in written:
                    out.append(lines_for[user])
                    written.add(user)
            elif user not in dropped:
                out.append(line if line.endswith("\n") else line + "\n")
        out.extend(line for user, line in lines_for.items() if user not in written)
        try:
            self._replace("".join(out), st)
        except OSError as exc:
            raise self._file_error(step, exc) from None

    def _replace(self, text: str, st: os.stat_result | None) -> None:
        owner = (st.st_uid, st.st_gid) if st is not None else None
        write_private(self.auth_file, text, owner=owner)

    def _file_error(self, step: str, exc: OSError) -> TargetError:
        return target_error(
            _SYSTEM, self.where, step, f"cannot update {self.auth_file} ({exc.strerror})",
            "run keyroll as a user that may write the auth_file and its folder (and chown "
            "it to PgBouncer's user)",
        )

    def users_in_auth_file(self) -> list[str]:
        """User names the auth_file lists, in file order."""
        try:
            text = self.auth_file.read_text()
        except OSError as exc:
            raise self._file_error("read auth_file", exc) from None
        return [user for user, _ in parse_auth_file(text) if user is not None]

    # admin console ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _console(self, step: str) -> Iterator[psycopg.Connection[Any]]:
        pg = _psycopg()
        try:
            conn = pg.connect(
                host=self.host, port=self.port, dbname="pgbouncer", user=self.admin_user,
                password=self._admin_password.reveal(), autocommit=True,
                connect_timeout=self._timeout, cursor_factory=pg.ClientCursor,
            )
        except pg.Error as exc:
            raise target_error(
                _SYSTEM, self.where, step, "cannot reach the admin console",
                f"check that {self.admin_user!r} is in admin_users and its password is in the "
                "auth_file, and that PgBouncer runs", cause=exc,
                secrets=[self._admin_password.reveal()],
            ) from None
        try:
            with conn:
                yield conn
        except pg.Error as exc:
            raise target_error(
                _SYSTEM, self.where, step, "the admin console refused",
                "see PgBouncer's log", cause=exc, secrets=[self._admin_password.reveal()],
            ) from None

    def reload(self) -> None:
        """``RELOAD``: PgBouncer rereads its config and auth_file; connections stay open."""
        with self._console("RELOAD") as conn:
            conn.execute("RELOAD")

    def show_users(self) -> list[str]:
        """User names PgBouncer knows (``SHOW USERS``), e.g. to verify a reload."""
        with self._console("SHOW USERS") as conn:
            cur = conn.execute("SHOW USERS")
            names = [d.name for d in cur.description or []]
            col = names.index("name") if "name" in names else 0
            return [str(row[col]) for row in cur.fetchall()]

    def client_count(self, user: str) -> int:
        """Client connections PgBouncer holds for ``user`` (``SHOW CLIENTS``).

        Behind PgBouncer this is what measures the overlap: ``pg_stat_activity`` on the server
        also counts the idle pooled server connections PgBouncer keeps for the role until
        ``server_idle_timeout``, long after every client has moved on.
        """
        with self._console(f"SHOW CLIENTS for {user!r}") as conn:
            cur = conn.execute("SHOW CLIENTS")
            names = [d.name for d in cur.description or []]
            col = names.index("user")
            return sum(1 for row in cur.fetchall() if row[col] == user)

    def server_pids(self, user: str | None = None) -> set[int]:
        """Backend PIDs of PgBouncer's server connections (``SHOW SERVERS``, ``remote_pid``),
        of one user or all.

        ``PostgresTarget.session_pids(role)`` minus these are the role's sessions that do not
        come from this PgBouncer (apps or jobs connecting directly): with `client_count`, what
        the overlap waits for behind PgBouncer.
        """
        with self._console("SHOW SERVERS") as conn:
            cur = conn.execute("SHOW SERVERS")
            names = [d.name for d in cur.description or []]
            user_col, pid_col = names.index("user"), names.index("remote_pid")
            return {int(row[pid_col]) for row in cur.fetchall()
                    if (user is None or row[user_col] == user) and row[pid_col]}

    def publish(
        self, verifiers: Mapping[str, ScramVerifier], *, remove: Iterable[str] = ()
    ) -> None:
        """The apply step for PgBouncer: `write_auth_file`, then `reload`.

        Pass the verifiers of *both* login roles while an overlap runs, and ``remove`` the
        retired role afterwards (or publish its break-glass verifier).
        """
        self.write_auth_file(verifiers, remove=remove)
        self.reload()

    # test ---------------------------------------------------------------------------------

    def check_login(self, dbname: str, role: str, password: SecretValue) -> None:
        """Log in through PgBouncer as ``role`` and run ``SELECT 1`` (opens a server login).

        Raises:
            TargetError: PgBouncer or the server refused the credential.
        """
        pg = _psycopg()
        step = f"login through PgBouncer as role {role!r} to {dbname!r}"
        try:
            with pg.connect(
                host=self.host, port=self.port, dbname=dbname, user=role,
                password=password.reveal(), autocommit=True, connect_timeout=self._timeout,
            ) as conn:
                conn.execute("SELECT 1").fetchall()
        except pg.Error as exc:
            raise target_error(
                _SYSTEM, self.where, step, "login refused",
                "check that the auth_file holds the role's current verifier (publish, then "
                "RELOAD) and that it matches the server's", cause=exc,
                secrets=[password.reveal()],
            ) from None
