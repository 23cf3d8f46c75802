"""Start the real servers keyroll rotates against: PostgreSQL, PgBouncer, Redis and MariaDB.

Each server runs from its own binary, on a free loopback port (127.0.0.1), in a temporary
folder that `stop` removes. Each is stopped by the PID this module started, never by name.
Every wait is bounded in attempts and in time.

PostgreSQL and PgBouncer refuse to run as root, so when the tests run as root both run as an
unprivileged system user (``postgres`` when it exists, else ``nobody``) and their folder is
handed to that user; MariaDB likewise runs as ``mysql`` (the account Debian's package creates).

A missing binary raises `ServerUnavailable` with the package to install: fixtures turn it into
a test failure, never a silent skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

__all__ = [
    "MariaDBServer",
    "PgBouncerServer",
    "PostgresServer",
    "RedisServer",
    "ServerUnavailable",
    "free_port",
    "service_user",
]

# Debian/Ubuntu keep server binaries per major version; prefer 15, then the newest installed.
PG_BIN_DIRS = (
    Path("/usr/lib/postgresql/15/bin"),
    *sorted(Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True),
    Path("/usr/local/bin"),
    Path("/usr/bin"),
)
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
POLL_INTERVAL = 0.1


class ServerUnavailable(RuntimeError):
    """A server binary is missing or the server did not start. The message says what to do."""


@dataclass(frozen=True, slots=True)
class ServiceUser:
    """The unprivileged account a server runs as (only used when the tests run as root)."""

    name: str
    uid: int
    gid: int


def service_user() -> ServiceUser | None:
    """The account to run PostgreSQL/PgBouncer as, or None when not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return ServiceUser(name, entry.pw_uid, entry.pw_gid)
    raise ServerUnavailable(
        "running as root and neither the 'postgres' nor the 'nobody' account exists: "
        "create one (useradd --system postgres) or run the tests as a normal user"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_binary(
    name: str, package: str, dirs: tuple[Path, ...] = (), *, search_path: bool = True
) -> Path:
    """Locate a server binary, or raise `ServerUnavailable` naming the apt package.

    Looks in ``dirs`` first, then (unless ``search_path`` is false) PATH and the sbin folders.
    """
    for folder in dirs:
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    if search_path:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if found:
            return Path(found)
    where = ", ".join(map(str, dirs)) + (" and PATH" if search_path else "")
    raise ServerUnavailable(
        f"'{name}' not found (looked in {where}): install it with "
        f"`apt-get install -y {package}` (`make test` does this)"
    )


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    for _ in range(int(STARTUP_TIMEOUT / POLL_INTERVAL) + 1):
        if proc.poll() is not None:
            raise ServerUnavailable(
                f"{what} exited with code {proc.returncode} at startup; its log:\n"
                + _tail(log)
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_INTERVAL)
    raise ServerUnavailable(f"{what} did not listen on port {port} within {STARTUP_TIMEOUT}s:\n"
                            + _tail(log))


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
    """Signal our own child by PID, wait (bounded), then SIGKILL if it is still there."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)


class _Server:
    """Common plumbing: a temporary folder, a log file, one child process."""

    prefix = "keyroll-server-"

    def __init__(self) -> None:
        self.user = service_user()
        self.dir = Path(tempfile.mkdtemp(prefix=self.prefix))
        self.log_path = self.dir / "server.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def _give_to_service_user(self, *paths: Path) -> None:
        if self.user is None:
            return
        for path in paths:
            os.chown(path, self.user.uid, self.user.gid)

    def _run_as(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        return {"user": self.user.uid, "group": self.user.gid, "extra_groups": []}

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            env=env,
            start_new_session=True,
            **self._run_as(),
        )

    def log_text(self) -> str:
        """Everything the server wrote to its log so far."""
        return self.log_path.read_text(errors="replace")

    def _cleanup(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer(_Server):
    """A throwaway PostgreSQL cluster: initdb, then ``postgres`` on 127.0.0.1:<free port>.

    Host connections use ``scram-sha-256``; the superuser ``postgres`` has a random password.
    Every statement is logged (``log_statement = all``) so tests can grep the server log for
    planted passwords.

    Attributes:
        superuser: the superuser's name.
        password: the superuser's password.
        port: the TCP port (after `start`).
    """

    prefix = "keyroll-pg-"

    def __init__(self, bin_dir: Path | None = None) -> None:
        """Find the binaries (in ``bin_dir`` only, when given) or raise `ServerUnavailable`."""
        if bin_dir is not None:
            self.initdb = find_binary("initdb", "postgresql", (bin_dir,), search_path=False)
        else:
            self.initdb = find_binary("initdb", "postgresql", PG_BIN_DIRS)
        self.postgres = find_binary("postgres", "postgresql", (self.initdb.parent,),
                                    search_path=False)
        self.bin_dir = self.initdb.parent
        super().__init__()
        self.superuser = "postgres"
        self.password = secrets.token_urlsafe(24)
        self.data = self.dir / "data"

    def start(self) -> PostgresServer:
        """Create the cluster and start the server; return when it accepts logins."""
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._give_to_service_user(self.dir, pwfile)
        init = subprocess.run(
            [str(self.initdb), "-D", str(self.data), "-U", self.superuser,
             f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
             "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
            capture_output=True, cwd=self.dir, timeout=120, check=False, **self._run_as(),
        )
        pwfile.unlink()
        if init.returncode != 0:
            raise ServerUnavailable(
                "initdb failed: " + init.stderr.decode(errors="replace")[-2000:]
            )
        (self.data / "postgresql.auto.conf").write_text("password_encryption = 'scram-sha-256'\n")
        self._give_to_service_user(self.data / "postgresql.auto.conf")
        for attempt in range(3):
            self.port = free_port()
            self._spawn(self._argv())
            try:
                self._wait_ready()
            except ServerUnavailable:
                _stop_process(self.proc, signal.SIGKILL)
                if attempt == 2 or "could not bind" not in self.log_text():
                    raise
            else:
                return self
        raise AssertionError("unreachable")

    def pause(self) -> None:
        """Stop the postmaster (fast shutdown) but keep the cluster, for `resume`."""
        _stop_process(self.proc, signal.SIGINT)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def resume(self) -> PostgresServer:
        """Start the paused cluster again on the same port."""
        self._spawn(self._argv())
        self._wait_ready()
        return self

    def _argv(self) -> list[str]:
        return [
            str(self.postgres), "-D", str(self.data), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.dir}",
            "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=200", "-c", "shared_buffers=32MB",
            "-c", "log_statement=all", "-c", "log_connections=on",
            "-c", "log_min_error_statement=error",
            "-c", "logging_collector=off",
        ]

    def _wait_ready(self) -> None:
        assert self.proc is not None
        _wait_port(self.port, self.proc, "postgres", self.log_path)
        import psycopg

        deadline = time.monotonic() + STARTUP_TIMEOUT
        last: Exception | None = None
        for _ in range(int(STARTUP_TIMEOUT / POLL_INTERVAL) + 1):
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
            except psycopg.OperationalError as exc:  # starting up: "the database system is..."
                last = exc
            else:
                return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                break
            time.sleep(POLL_INTERVAL)
        raise ServerUnavailable(f"postgres did not accept logins: {last}\n" + _tail(self.log_path))

    def dsn(self, dbname: str = "postgres", user: str | None = None,
            password: str | None = None) -> str:
        """A libpq conninfo string (defaults: the superuser and its password)."""
        from psycopg.conninfo import make_conninfo

        if user is None:
            user, password = self.superuser, self.password
        params: dict[str, Any] = {"host": "127.0.0.1", "port": self.port, "dbname": dbname,
                                  "user": user}
        if password is not None:
            params["password"] = password
        return make_conninfo("", **params)

    @property
    def superuser_dsn(self) -> str:
        """The superuser's conninfo to the ``postgres`` database."""
        return self.dsn()

    def base_dsn(self, dbname: str = "postgres") -> str:
        """Host, port and database only: callers add the user and password."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo("", host="127.0.0.1", port=self.port, dbname=dbname)

    def stop(self) -> None:
        """Fast shutdown (SIGINT) of the postmaster we started, then remove the folder."""
        _stop_process(self.proc, signal.SIGINT)
        self._cleanup()


class PgBouncerServer(_Server):
    """PgBouncer in front of a `PostgresServer`, ``auth_type = scram-sha-256``.

    Every database name is forwarded to the PostgreSQL server (``* =`` fallback). The admin
    user ``kr_pgb_admin`` (in ``admin_users``, with a random password) reaches the admin console
    (database ``pgbouncer``). ``auth_file`` holds only the admin user at start: the adapter
    under test adds the application roles.

    Attributes:
        auth_file: the userlist.txt PgBouncer reads (owned by the service user, mode 0600).
        admin_user: the admin console user.
        admin_password: its password.
    """

    prefix = "keyroll-pgb-"

    def __init__(self, postgres: PostgresServer, binary: Path | None = None) -> None:
        """Find the binary (exactly ``binary``, when given) or raise `ServerUnavailable`."""
        self.binary = (
            find_binary(binary.name, "pgbouncer", (binary.parent,), search_path=False)
            if binary else find_binary("pgbouncer", "pgbouncer", (Path("/usr/sbin"),))
        )
        super().__init__()
        self.postgres = postgres
        self.admin_user = "kr_pgb_admin"
        self.admin_password = secrets.token_urlsafe(24)
        self.auth_file = self.dir / "userlist.txt"
        self.ini = self.dir / "pgbouncer.ini"

    def start(self) -> PgBouncerServer:
        """Write the config and auth file, start PgBouncer, return when it accepts logins."""
        self.auth_file.write_text(f'"{self.admin_user}" "{self.admin_password}"\n')
        self.auth_file.chmod(0o600)
        self.port = free_port()
        self.ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.postgres.port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.dir}\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {self.auth_file}\n"
            f"admin_users = {self.admin_user}\n"
            "pool_mode = session\n"
            "max_client_conn = 500\n"
            "default_pool_size = 20\n"
            "server_reset_query = DISCARD ALL\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        self._give_to_service_user(self.dir, self.auth_file, self.ini)
        self._spawn([str(self.binary), str(self.ini)])
        assert self.proc is not None
        _wait_port(self.port, self.proc, "pgbouncer", self.log_path)
        self._wait_admin()
        return self

    def _wait_admin(self) -> None:
        import psycopg

        assert self.proc is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last: Exception | None = None
        for _ in range(int(STARTUP_TIMEOUT / POLL_INTERVAL) + 1):
            try:
                with psycopg.connect(self.admin_dsn(), autocommit=True,
                                     cursor_factory=psycopg.ClientCursor,
                                     connect_timeout=2) as conn:
                    conn.execute("SHOW VERSION")
            except psycopg.OperationalError as exc:
                last = exc
            else:
                return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                break
            time.sleep(POLL_INTERVAL)
        raise ServerUnavailable(f"pgbouncer admin console refused: {last}\n"
                                + _tail(self.dir / "pgbouncer.log"))

    def admin_dsn(self) -> str:
        """Conninfo of the admin console (database ``pgbouncer``)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo("", host="127.0.0.1", port=self.port, dbname="pgbouncer",
                             user=self.admin_user, password=self.admin_password)

    def base_dsn(self, dbname: str = "postgres") -> str:
        """Host, port and database through PgBouncer: callers add the user and password."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo("", host="127.0.0.1", port=self.port, dbname=dbname)

    def log_text(self) -> str:
        """PgBouncer's own log file plus anything it wrote to stdout/stderr."""
        own = self.dir / "pgbouncer.log"
        text = own.read_text(errors="replace") if own.exists() else ""
        return text + super().log_text()

    def stop(self) -> None:
        """SIGTERM (immediate shutdown: a test may leave clients connected) to the PgBouncer
        we started, then remove the folder."""
        _stop_process(self.proc, signal.SIGTERM)
        self._cleanup()


class RedisServer(_Server):
    """A throwaway ``redis-server`` on 127.0.0.1:<free port>, no persistence of data.

    With ``aclfile=True`` (default) users live in ``users.acl`` so ``ACL SAVE`` works; the
    ``default`` user has a random password and every permission (the admin the adapter uses).

    Attributes:
        admin_user: ``default``.
        password: its password.
        aclfile: the ACL file path, or None.
    """

    prefix = "keyroll-redis-"

    def __init__(self, *, aclfile: bool = True, binary: Path | None = None,
                 cmdline: bool = False) -> None:
        """Find the binary (exactly ``binary``, when given) or raise `ServerUnavailable`.

        ``cmdline``: no config file and no ACL file, ``--requirepass`` on the command line
        (a Compose ``command: redis-server --requirepass …``): users live in memory only.
        """
        self.binary = (
            find_binary(binary.name, "redis-server", (binary.parent,), search_path=False)
            if binary else find_binary("redis-server", "redis-server", (Path("/usr/bin"),))
        )
        super().__init__()
        self.user = None  # redis-server runs fine as root; keep it simple
        self.admin_user = "default"
        self.password = secrets.token_urlsafe(24)
        self.cmdline = cmdline
        self.aclfile: Path | None = self.dir / "users.acl" if aclfile and not cmdline else None
        self._argv: list[str] = []

    def _settings(self) -> list[str]:
        lines = [
            "bind 127.0.0.1", "protected-mode yes", f"dir {self.dir}", 'save ""',
            "appendonly no", "daemonize no",
        ]
        if self.aclfile is not None:
            self.aclfile.write_text(f"user default on >{self.password} ~* &* +@all\n")
            lines.append(f"aclfile {self.aclfile}")
        else:
            lines.append(f"requirepass {self.password}")
        return lines

    def _argv_for(self, lines: list[str]) -> list[str]:
        if self.cmdline:
            argv = [str(self.binary)]
            for line in [*lines, f"port {self.port}"]:
                name, _, value = line.partition(" ")
                argv += [f"--{name}", value.strip('"')]
            return argv
        conf = self.dir / "redis.conf"
        conf.write_text("\n".join([*lines, f"port {self.port}"]) + "\n")
        return [str(self.binary), str(conf)]

    def start(self) -> RedisServer:
        """Start the server; return when it answers an authenticated PING."""
        lines = self._settings()
        for attempt in range(3):
            self.port = free_port()
            self._argv = self._argv_for(lines)
            self._spawn(self._argv)
            assert self.proc is not None
            try:
                _wait_port(self.port, self.proc, "redis-server", self.log_path)
                self._wait_ping()
            except ServerUnavailable:
                _stop_process(self.proc, signal.SIGKILL)
                if attempt == 2:
                    raise
            else:
                return self
        raise AssertionError("unreachable")

    def restart(self, password: str | None = None) -> None:
        """Stop (SIGTERM) and start the same server again on the same port, the way a
        container restart does: whatever it did not persist is gone. ``password``: the
        ``default`` user's password after the restart, for the readiness PING."""
        _stop_process(self.proc, signal.SIGTERM)
        if self._log is not None:
            self._log.close()
            self._log = None
        if password is not None:
            self.password = password
        self._spawn(self._argv)
        assert self.proc is not None
        _wait_port(self.port, self.proc, "redis-server", self.log_path)
        self._wait_ping()

    def _wait_ping(self) -> None:
        import redis

        assert self.proc is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        for _ in range(int(STARTUP_TIMEOUT / POLL_INTERVAL) + 1):
            client = redis.Redis(host="127.0.0.1", port=self.port, username=self.admin_user,
                                 password=self.password, socket_timeout=2)
            try:
                if client.ping():
                    return
            except redis.exceptions.ConnectionError:
                pass
            finally:
                client.close()
            if time.monotonic() > deadline or self.proc.poll() is not None:
                break
            time.sleep(POLL_INTERVAL)
        raise ServerUnavailable("redis-server did not answer PING:\n" + _tail(self.log_path))

    def stop(self) -> None:
        """SIGTERM to the redis-server we started, then remove the folder."""
        _stop_process(self.proc, signal.SIGTERM)
        self._cleanup()


class MariaDBServer(_Server):
    """A throwaway MariaDB: ``mariadb-install-db`` into a temp datadir, then ``mariadbd
    --no-defaults`` on 127.0.0.1:<free port> with its socket in the same folder.

    ``--no-defaults`` keeps /etc/mysql out of it (the packaged service's socket, datadir and
    plugins). The install's passwordless root accounts are replaced: ``root@localhost`` (socket
    only) gets a random password, the TCP root accounts are dropped, and ``kr_admin@'%'`` (all
    privileges, WITH GRANT OPTION, random password) is the admin the tests give keyroll. Every
    statement goes to the general query log (``general.log``) so tests can grep it for planted
    passwords.

    Attributes:
        admin_user, admin_password: the admin account's login (TCP).
        root_password: root@localhost's password (socket).
        socket: the server's Unix socket.
        general_log: the general query log.
    """

    prefix = "keyroll-mariadb-"

    def __init__(self) -> None:
        """Find the binaries or raise `ServerUnavailable`."""
        self.install_db = find_binary("mariadb-install-db", "mariadb-server", (Path("/usr/bin"),))
        self.mariadbd = find_binary("mariadbd", "mariadb-server", (Path("/usr/sbin"),))
        super().__init__()
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam("mysql")
                self.user = ServiceUser("mysql", entry.pw_uid, entry.pw_gid)
            except KeyError:
                pass  # keep service_user()'s choice
        self.data = self.dir / "data"
        self.socket = self.dir / "mysqld.sock"
        self.general_log = self.dir / "general.log"
        self.admin_user = "kr_admin"
        self.admin_password = secrets.token_urlsafe(24)
        self.root_password = secrets.token_urlsafe(24)

    def start(self) -> MariaDBServer:
        """Install the system tables, start the server, secure it; return when it answers."""
        self._give_to_service_user(self.dir)
        init = subprocess.run(
            [str(self.install_db), "--no-defaults", f"--datadir={self.data}",
             "--auth-root-authentication-method=normal", "--skip-test-db",
             "--skip-name-resolve", "--innodb-buffer-pool-size=16M"],
            capture_output=True, cwd=self.dir, timeout=180, check=False, **self._run_as(),
        )
        if init.returncode != 0:
            raise ServerUnavailable("mariadb-install-db failed: "
                                    + (init.stdout + init.stderr).decode(errors="replace")[-2000:])
        for attempt in range(3):
            self.port = free_port()
            self._spawn(self._argv())
            assert self.proc is not None
            try:
                _wait_port(self.port, self.proc, "mariadbd", self.log_path)
                self._secure()
            except ServerUnavailable:
                _stop_process(self.proc, signal.SIGKILL)
                if attempt == 2 or "Do you already have another" not in self.log_text():
                    raise
            else:
                return self
        raise AssertionError("unreachable")

    def _argv(self) -> list[str]:
        return [
            str(self.mariadbd), "--no-defaults", f"--datadir={self.data}",
            f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket}",
            f"--pid-file={self.dir / 'mariadbd.pid'}", f"--log-error={self.log_path}",
            "--skip-name-resolve", "--innodb-buffer-pool-size=16M",
            "--innodb-flush-log-at-trx-commit=0", "--max-connections=300",
            "--general-log=1", f"--general-log-file={self.general_log}",
        ]

    def _secure(self) -> None:
        import pymysql

        assert self.proc is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last: Exception | None = None
        for _ in range(int(STARTUP_TIMEOUT / POLL_INTERVAL) + 1):
            try:
                conn = pymysql.connect(unix_socket=str(self.socket), user="root", password="",
                                       autocommit=True, connect_timeout=2)
            except pymysql.err.OperationalError as exc:
                last = exc
            else:
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise ServerUnavailable(f"mariadbd did not accept logins: {last}\n"
                                        + _tail(self.log_path))
            time.sleep(POLL_INTERVAL)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION sql_log_off = 1")  # the fixture's own passwords
                cur.execute("SELECT User, Host FROM mysql.user WHERE User = 'root' AND "
                            "Host <> 'localhost'")
                for user, host in cur.fetchall():
                    cur.execute("DROP USER %s@%s", (user, host))
                cur.execute("DELETE FROM mysql.proxies_priv WHERE Host <> 'localhost'")
                cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s",
                            (self.admin_user, self.admin_password))
                cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION",
                            (self.admin_user,))
                cur.execute("ALTER USER 'root'@'localhost' IDENTIFIED BY %s", (self.root_password,))
                cur.execute("FLUSH PRIVILEGES")
        finally:
            conn.close()

    def connect(self, user: str | None = None, password: str | None = None,
                database: str | None = None) -> Any:
        """A PyMySQL connection over TCP (default: the admin account), autocommit."""
        import pymysql

        if user is None:
            user, password = self.admin_user, self.admin_password
        return pymysql.connect(host="127.0.0.1", port=self.port, user=user,
                               password=password or "", database=database, autocommit=True,
                               connect_timeout=5, ssl_disabled=True)

    def admin_url(self, database: str | None = None) -> str:
        """``mysql://kr_admin:PASSWORD@127.0.0.1:PORT[/database]`` (password URL-encoded)."""
        from urllib.parse import quote

        path = f"/{quote(database, safe='')}" if database else ""
        return (f"mysql://{self.admin_user}:{quote(self.admin_password, safe='')}@127.0.0.1:"
                f"{self.port}{path}")

    def log_text(self) -> str:
        """The error log plus the general query log (every statement the server ran)."""
        general = self.general_log.read_text(errors="replace") if self.general_log.exists() else ""
        return super().log_text() + general

    def stop(self) -> None:
        """SIGTERM (a clean shutdown) to the mariadbd we started, then remove the folder."""
        _stop_process(self.proc, signal.SIGTERM)
        self._cleanup()
