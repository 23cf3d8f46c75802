"""The account statements keyroll sends, built in one place so tests can read them.

Every account and every password travels as a bind parameter (PyMySQL quotes it with the
server's escaping rules), never by string formatting. How a password is sent depends on the
server:

- **MariaDB** logs statements verbatim (the general query log and the slow log show
  ``IDENTIFIED BY 'plaintext'``), so keyroll computes the ``mysql_native_password`` hash itself
  (``*`` + SHA1(SHA1(password)), MariaDB's default plugin) and sends ``IDENTIFIED BY PASSWORD
  '*…'``: the plaintext never reaches the server, its logs or its binlog.
- **MySQL** rewrites passwords out of its logs and its default plugin (``caching_sha2_password``)
  salts its hashes on the server, so keyroll sends ``IDENTIFIED BY %s``; use TLS
  (``ssl_ca`` in the admin URL) when the server is not on this host.

Dual passwords (MySQL ≥ 8.0.14, `keyroll.targets.mysql.server`): `retain_current`,
`discard_old`, and `replace_primary` for a rollback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keyroll.model import SecretValue
from keyroll.targets.mysql._driver import Account
from keyroll.targets.mysql.server import ServerInfo

__all__ = [
    "AccountOptions",
    "Statement",
    "create_locked",
    "default_role_none",
    "discard_old",
    "drop_user",
    "kill",
    "native_password_hash",
    "replace_primary",
    "retain_current",
    "revoke_all",
    "set_account_options",
    "set_password",
]


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement and its bind parameters.

    Attributes:
        sql: the text, with ``%s`` for each parameter.
        args: the parameters (accounts, passwords, hashes).
        secret: the password or hash among ``args``, cut out of any error message.
    """

    sql: str
    args: tuple[Any, ...] = ()
    secret: SecretValue | None = None

    def __repr__(self) -> str:  # the args may hold a password or its hash
        return f"Statement({self.sql!r})"


def native_password_hash(password: SecretValue) -> SecretValue:
    """``mysql_native_password``'s stored form: ``*`` + upper-case hex SHA1(SHA1(password))."""
    stage1 = hashlib.sha1(password.reveal_bytes()).digest()  # noqa: S324  (the plugin's format)
    return SecretValue("*" + hashlib.sha1(stage1).hexdigest().upper())  # noqa: S324


def _identified(server: ServerInfo, password: SecretValue) -> tuple[str, SecretValue]:
    if server.is_mariadb:
        return "IDENTIFIED BY PASSWORD %s", native_password_hash(password)
    return "IDENTIFIED BY %s", password


def _lock(lock: bool | None) -> str:
    return "" if lock is None else (" ACCOUNT LOCK" if lock else " ACCOUNT UNLOCK")


def set_password(server: ServerInfo, account: Account, password: SecretValue, *,
                 lock: bool | None = None) -> Statement:
    """The account's only password becomes ``password`` (and it is locked or unlocked)."""
    clause, sent = _identified(server, password)
    return Statement(f"ALTER USER %s@%s {clause}{_lock(lock)}", (*account.args, sent.reveal()),
                     sent)


def create_locked(server: ServerInfo, account: Account, password: SecretValue) -> Statement:
    """Create the account if it is missing, locked, with a password nobody is given."""
    clause, sent = _identified(server, password)
    return Statement(f"CREATE USER IF NOT EXISTS %s@%s {clause} ACCOUNT LOCK",
                     (*account.args, sent.reveal()), sent)


def retain_current(account: Account, password: SecretValue) -> Statement:
    """Dual password: ``password`` becomes primary, the current one stays as the secondary."""
    return Statement("ALTER USER %s@%s IDENTIFIED BY %s RETAIN CURRENT PASSWORD",
                     (*account.args, password.reveal()), password)


def discard_old(account: Account) -> Statement:
    """Dual password: forget the secondary password (the primary is untouched)."""
    return Statement("ALTER USER %s@%s DISCARD OLD PASSWORD", account.args)


def replace_primary(account: Account, password: SecretValue) -> Statement:
    """Dual password: the primary becomes ``password``; the secondary is left as it is."""
    return Statement("ALTER USER %s@%s IDENTIFIED BY %s", (*account.args, password.reveal()),
                     password)


def drop_user(account: Account) -> Statement:
    return Statement("DROP USER IF EXISTS %s@%s", account.args)


def revoke_all(account: Account) -> Statement:
    """Every global, database, table, column and routine privilege (not roles: see grants)."""
    return Statement("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", account.args)


def default_role_none(server: ServerInfo, account: Account) -> Statement:
    word = "FOR" if server.is_mariadb else "TO"
    return Statement(f"SET DEFAULT ROLE NONE {word} %s@%s", account.args)


def kill(connection_id: int) -> Statement:
    return Statement("KILL CONNECTION %s", (int(connection_id),))


@dataclass(frozen=True, slots=True, order=True)
class AccountOptions:
    """What an account requires of its connections, besides grants (``mysql.user``).

    Attributes:
        ssl_type: ``''`` (none), ``ANY`` (REQUIRE SSL), ``X509`` or ``SPECIFIED``.
        ssl_cipher, x509_issuer, x509_subject: the SPECIFIED requirements.
        limits: MAX_QUERIES_PER_HOUR, MAX_UPDATES_PER_HOUR, MAX_CONNECTIONS_PER_HOUR,
            MAX_USER_CONNECTIONS.
    """

    ssl_type: str
    ssl_cipher: str
    x509_issuer: str
    x509_subject: str
    limits: tuple[int, int, int, int]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AccountOptions:
        def text(name: str) -> str:
            value = row.get(name)
            return value.decode() if isinstance(value, bytes) else str(value or "")

        limits = tuple(int(row.get(name) or 0) for name in (
            "max_questions", "max_updates", "max_connections", "max_user_connections"))
        return cls(text("ssl_type").upper(), text("ssl_cipher"), text("x509_issuer"),
                   text("x509_subject"), (limits[0], limits[1], limits[2], limits[3]))

    def as_evidence(self) -> dict[str, object]:
        return {"require": self.ssl_type or "NONE", "limits": list(self.limits)}


def set_account_options(account: Account, options: AccountOptions) -> Statement:
    """``ALTER USER … REQUIRE … WITH MAX_…``: the account's TLS requirement and limits."""
    args: list[Any] = list(account.args)
    if options.ssl_type == "ANY":
        require = "SSL"
    elif options.ssl_type == "X509":
        require = "X509"
    elif options.ssl_type == "SPECIFIED":
        parts = []
        for word, value in (("ISSUER", options.x509_issuer), ("SUBJECT", options.x509_subject),
                            ("CIPHER", options.ssl_cipher)):
            if value:
                parts.append(f"{word} %s")
                args.append(value)
        require = " AND ".join(parts) or "SSL"
    else:
        require = "NONE"
    args += list(options.limits)
    return Statement(
        f"ALTER USER %s@%s REQUIRE {require} WITH MAX_QUERIES_PER_HOUR %s "
        "MAX_UPDATES_PER_HOUR %s MAX_CONNECTIONS_PER_HOUR %s MAX_USER_CONNECTIONS %s",
        tuple(args),
    )
