"""What keyroll knows of the MySQL/MariaDB driver and rules, in one place.

PyMySQL (pure Python) is imported lazily (extra ``mysql``) and its exceptions are translated
here into keyroll's one message format (`driver_error`: system, place, step, what happened,
the driver's first line scrubbed of every secret, what to do); nothing above
``keyroll.targets.mysql`` sees a PyMySQL exception. The account rule (`account_problem`), the
admin URL (`parse_url`) and the quoting of an account as the server prints it (`quoted`) live
here too, so the inventory check, the target and the strategy agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from keyroll.errors import TargetError
from keyroll.model import SecretValue
from keyroll.net import is_loopback
from keyroll.scrub import dsn_secret_parts
from keyroll.targets._redact import target_error

__all__ = [
    "MAX_HOST_CHARS",
    "MAX_USER_CHARS",
    "SYSTEM",
    "URL_SHAPE",
    "Account",
    "AdminURL",
    "account_problem",
    "driver_error",
    "hint_for",
    "is_access_denied",
    "parse_url",
    "pymysql",
    "url_secrets",
]

SYSTEM = "MySQL"
#: MySQL 5.7+ and MariaDB 10.x allow 80 characters in a user name (older: 16, then 32).
MAX_USER_CHARS = 80
MAX_HOST_CHARS = 255
URL_SHAPE = "mysql://ADMIN:PASSWORD@HOST:PORT[/DATABASE][?unix_socket=PATH&ssl_ca=FILE]"
_HOST = re.compile(r"^[A-Za-z0-9_.:%/\-]+$")


def pymysql() -> ModuleType:
    """The PyMySQL module, or a `TargetError` that names the extra to install."""
    try:
        import pymysql
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise TargetError(f"{SYSTEM} targets need PyMySQL: pip install 'keyroll[mysql]'") from None
    return pymysql


@dataclass(frozen=True, slots=True, order=True)
class Account:
    """A MySQL account: a user name *and* the host part it logs in from (``'app'@'%'``).

    The server picks the account by both: ``'app'@'%'`` and ``'app'@'localhost'`` are two
    accounts with their own passwords and grants, so keyroll always names both parts.
    """

    user: str
    host: str = "%"

    def __str__(self) -> str:
        return f"'{self.user}'@'{self.host}'"

    @property
    def current_user(self) -> str:
        """How ``CURRENT_USER()`` spells this account (``app@%``)."""
        return f"{self.user}@{self.host}"

    @property
    def quoted(self) -> str:
        """The account as ``SHOW GRANTS`` prints it: backquoted, backquotes doubled."""
        return "`{}`@`{}`".format(self.user.replace("`", "``"), self.host.replace("`", "``"))

    @property
    def args(self) -> tuple[str, str]:
        """The two parts as bind parameters (``%s@%s`` in a statement)."""
        return self.user, self.host


def account_problem(user: object, host: object = "%") -> str | None:
    """Why (``user``, ``host``) cannot be an account keyroll manages, or None if it can."""
    if not isinstance(user, str) or not user:
        return "the user name must be a non-empty string"
    if len(user) > MAX_USER_CHARS:
        return f"user name {user!r} is longer than {MAX_USER_CHARS} characters"
    if any(c in user for c in "\x00'`\"\\@") or any(c.isspace() for c in user):
        return f"user name {user!r} holds a quote, backslash, '@', NUL or space"
    if not isinstance(host, str) or not host:
        return "the host part must be a non-empty string ('%' for any host)"
    if len(host) > MAX_HOST_CHARS or not _HOST.match(host):
        return (f"host part {host!r} must be a host name, an IP address, a netmask or a "
                "pattern with % and _ (no quotes or spaces)")
    return None


@dataclass(frozen=True, slots=True)
class AdminURL:
    """Where keyroll connects as the admin, parsed from `URL_SHAPE` (no password shown).

    Attributes:
        host, port: the server (``localhost`` with ``unix_socket`` uses the socket).
        user, password: the admin account's login.
        database: the database the connection opens (optional).
        unix_socket: a socket path instead of TCP.
        ssl_ca: a CA file: connect with TLS and verify the server.
    """

    host: str
    port: int
    user: str
    password: SecretValue | None
    database: str | None = None
    unix_socket: str | None = None
    ssl_ca: str | None = None

    @property
    def where(self) -> str:
        """``host:port`` or the socket path, never the password."""
        return self.unix_socket or f"{self.host}:{self.port}"

    def connect_kwargs(self) -> dict[str, Any]:
        """PyMySQL's keyword arguments for the server (without user and password).

        TLS: with ``ssl_ca``, required and verified (certificate and host name). Over a Unix
        socket or to a loopback address, off: nothing crosses a network, and PyMySQL 2's
        opportunistic TLS would build a fresh context (~0.1 s) per connection. Otherwise the
        driver's default (PyMySQL 2: TLS when the server offers it, unverified).
        """
        kwargs: dict[str, Any] = {"host": self.host, "port": self.port}
        if self.unix_socket:
            kwargs["unix_socket"] = self.unix_socket
        if self.ssl_ca:
            kwargs["ssl"] = {"ca": self.ssl_ca}
        elif self.unix_socket or is_loopback(self.host):
            kwargs["ssl_disabled"] = True
        return kwargs


def parse_url(url: str, what: str = "the MySQL admin URL") -> AdminURL:
    """`AdminURL` from ``mysql://`` or ``mariadb://`` (see `URL_SHAPE`).

    Raises:
        TargetError: the URL is malformed (its text, which may hold a password, is not shown).
    """
    bad = TargetError(f"{what} must be {URL_SHAPE} (its text is not shown: it may hold a "
                      "password; percent-encode special characters in the password)")
    try:
        parts = urlsplit(url)
        port = parts.port or 3306
    except ValueError:
        raise bad from None
    if parts.scheme not in ("mysql", "mariadb") or not parts.username:
        raise bad
    query = parse_qs(parts.query)
    unknown = set(query) - {"unix_socket", "ssl_ca"}
    if unknown:
        raise TargetError(f"{what}: unknown parameter {sorted(unknown)[0]!r} (known: "
                          "unix_socket, ssl_ca)")
    socket = query.get("unix_socket", [None])[0]
    if not parts.hostname and not socket:
        raise bad
    password = unquote(parts.password) if parts.password is not None else None
    return AdminURL(
        host=parts.hostname or "localhost", port=port, user=unquote(parts.username),
        password=SecretValue(password) if password is not None else None,
        database=unquote(parts.path.lstrip("/")) or None, unix_socket=socket,
        ssl_ca=query.get("ssl_ca", [None])[0],
    )


def url_secrets(url: str) -> list[str]:
    """The password of a URL and its pieces, for scrubbing (`keyroll.scrub.dsn_secret_parts`)."""
    return dsn_secret_parts(url)


# MySQL/MariaDB error numbers keyroll gives advice on
_ACCESS_DENIED = 1045
_NO_PRIVILEGE = (1044, 1142, 1143, 1227, 1370)
_OPERATION_FAILED = 1396  # CREATE/ALTER/DROP USER on an account that (does not) exist
_NO_SUCH_GRANT = (1141, 1147)
_CONNECTION = (2002, 2003, 2006, 2013)
_LOCKED = (3118, 4151)  # "Access denied, this account is locked": MySQL, MariaDB


def errno(exc: BaseException) -> int | None:
    """The server's error number of a PyMySQL exception, if it carries one."""
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def hint_for(exc: BaseException) -> str:
    """What to do about a server error, from its error number."""
    number = errno(exc)
    if number in _NO_PRIVILEGE:
        return ("the admin account lacks a privilege: it needs CREATE USER, PROCESS, SELECT on "
                "mysql.*, and every privilege it mirrors WITH GRANT OPTION")
    if number == _OPERATION_FAILED:
        return "the account does not exist (or already does): check options.users and host"
    if number in _CONNECTION:
        return "the connection broke: check the server and retry (the step is idempotent)"
    return "see the server's error log for details"


def driver_error(
    place: str, step: str, problem: str, hint: str, exc: BaseException | str | None = None,
    secrets: Iterable[str] = (),
) -> TargetError:
    """A PyMySQL exception as keyroll's `TargetError` (the message holds no secret)."""
    return target_error(SYSTEM, place, step, problem, hint, cause=exc, secrets=secrets)


def is_access_denied(exc: BaseException) -> bool:
    """The server refused the login (wrong password, unknown or locked account)."""
    return errno(exc) in (_ACCESS_DENIED, *_LOCKED)
