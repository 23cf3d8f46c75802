"""A *model* of MySQL 8's dual passwords, standing in for PyMySQL in the unit tests only.

No MySQL 8 server can run here (Debian ships MariaDB, which has no dual passwords), so the
``dual-password`` mode is exercised against this model: it records every statement keyroll
sends and applies the documented semantics of the four that matter (MySQL 8.0 reference,
"Dual Password Support"):

- ``ALTER USER u IDENTIFIED BY p RETAIN CURRENT PASSWORD``: the current primary becomes the
  secondary (an existing secondary is replaced), ``p`` becomes the primary;
- ``ALTER USER u IDENTIFIED BY p``: the primary becomes ``p``, the secondary is untouched;
- ``ALTER USER u DISCARD OLD PASSWORD``: the secondary is removed;
- a login succeeds with the primary or the secondary password.

It answers the few reads `MySQLTarget` makes (version, the admin's privileges, CURRENT_USER(),
SHOW GRANTS) and refuses any other statement, so a statement keyroll starts sending is noticed
here. It is a model of documented behaviour, not a server: the docs and the report say that the
mode was not run against a real MySQL 8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class ModelError(Exception):
    """PyMySQL's ``Error`` in the model (``args = (errno, message)``)."""


class OperationalError(ModelError):
    pass


@dataclass
class Passwords:
    primary: str
    secondary: str | None = None


@dataclass
class MySQL8Model:
    """The server: accounts with their passwords, and every statement it ran."""

    version: str = "8.0.36"
    comment: str = "MySQL Community Server - GPL"
    admin: tuple[str, str] = ("root", "admin-password-for-the-model")
    accounts: dict[tuple[str, str], Passwords] = field(default_factory=dict)
    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def module(self) -> SimpleNamespace:
        """What ``keyroll.targets.mysql._driver.pymysql()`` returns, for monkeypatching."""
        return SimpleNamespace(
            connect=self.connect, Error=ModelError,
            err=SimpleNamespace(OperationalError=OperationalError),
            cursors=SimpleNamespace(DictCursor="dict"),
        )

    def connect(self, *, user: str, password: str, cursorclass: Any = None,
                **_: Any) -> _Connection:
        if (user, password) == self.admin:
            return _Connection(self, user, "localhost", cursorclass == "dict")
        for (name, host), passwords in self.accounts.items():
            if name == user and password in (passwords.primary, passwords.secondary):
                return _Connection(self, name, host, cursorclass == "dict")
        raise OperationalError(1045, f"Access denied for user '{user}'@'127.0.0.1' "
                               "(using password: YES)")

    def sql(self) -> list[str]:
        """The account statements sent (reads left out), in order."""
        return [sql for sql, _ in self.statements if sql.startswith(("ALTER", "CREATE", "DROP"))]

    def execute(self, sql: str, args: tuple[Any, ...]) -> None:
        self.statements.append((sql, args))
        key = (str(args[0]), str(args[1])) if len(args) >= 2 else None
        if sql == "ALTER USER %s@%s IDENTIFIED BY %s RETAIN CURRENT PASSWORD":
            assert key is not None
            current = self.accounts[key]
            self.accounts[key] = Passwords(str(args[2]), current.primary)
        elif sql == "ALTER USER %s@%s IDENTIFIED BY %s":
            assert key is not None
            self.accounts[key].primary = str(args[2])
        elif sql == "ALTER USER %s@%s DISCARD OLD PASSWORD":
            assert key is not None
            self.accounts[key].secondary = None
        else:
            raise ModelError(1064, f"the model does not know {sql!r}")


class _Cursor:
    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.rows: list[Any] = []

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _row(self, **values: Any) -> Any:
        return values if self.conn.dicts else tuple(values.values())

    def execute(self, sql: str, args: tuple[Any, ...] | None = None) -> None:
        model, user, host = self.conn.model, self.conn.user, self.conn.host
        if sql.startswith("SELECT VERSION()"):
            self.rows = [self._row(v=model.version, c=model.comment)]
        elif "information_schema.USER_PRIVILEGES" in sql:
            self.rows = [self._row(PRIVILEGE_TYPE=p) for p in ("CREATE USER", "PROCESS")]
        elif sql.startswith("SELECT CURRENT_USER()"):
            self.rows = [self._row(u=f"{user}@{host}")]
        elif sql.startswith("SELECT 1 FROM `"):  # the privilege probe
            self.rows = [self._row(one=1)]
        elif sql == "SHOW GRANTS FOR CURRENT_USER()":
            self.rows = [self._row(g=f"GRANT USAGE ON *.* TO `{user}`@`{host}`")]
        else:
            model.execute(sql, tuple(args or ()))
            self.rows = []

    def fetchall(self) -> list[Any]:
        return list(self.rows)

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None


@dataclass
class _Connection:
    model: MySQL8Model
    user: str
    host: str
    dicts: bool

    def cursor(self) -> _Cursor:
        return _Cursor(self)

    def close(self) -> None:
        return None
