"""What keyroll knows of PostgreSQL's driver and rules, in one place.

psycopg is imported lazily (extra ``postgres``) and its exceptions are translated here, into one
message format (`target_error`: system, place, step, what happened, the driver's first line
scrubbed of every secret, what to do); nothing above ``keyroll.targets.postgres`` sees a psycopg
exception. Identifier rules (`identifier_problem`) and DSN parsing (`dsn_params`, `where`,
`dbname`) live here too, so the inventory check, the targets and the strategy agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from keyroll.errors import RoleMissing, TargetError
from keyroll.targets._redact import target_error

__all__ = [
    "MAX_IDENTIFIER_BYTES",
    "SYSTEM",
    "check_identifier",
    "dbname",
    "driver_error",
    "dsn_params",
    "hint_for",
    "identifier_problem",
    "psycopg",
    "role_missing",
    "sql",
    "where",
]

SYSTEM = "PostgreSQL"
MAX_IDENTIFIER_BYTES = 63  # NAMEDATALEN - 1: longer names are silently truncated by the server


def psycopg(system: str = SYSTEM) -> ModuleType:
    """The psycopg module, or a `TargetError` that names the extra to install.

    Args:
        system: who needs it, for the message (``PostgreSQL``, ``PgBouncer``).
    """
    try:
        import psycopg
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise TargetError(
            f"{system} targets need psycopg: pip install 'keyroll[postgres]'"
        ) from None
    return psycopg


def sql() -> Any:
    """``psycopg.sql``: every identifier keyroll sends goes through its ``Identifier``."""
    return psycopg().sql


def identifier_problem(name: object) -> str | None:
    """Why ``name`` cannot be a PostgreSQL identifier keyroll uses, or None if it can."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if "\x00" in name:
        return f"{name!r} contains a NUL byte"
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        return (f"{name!r} is longer than {MAX_IDENTIFIER_BYTES} bytes: the server would "
                "truncate it; choose a shorter name in the inventory")
    return None


def check_identifier(name: str, what: str) -> str:
    """``name``, if it is a usable identifier.

    Raises:
        TargetError: it is empty, holds a NUL byte or is too long (`identifier_problem`).
    """
    problem = identifier_problem(name)
    if problem is not None:
        raise TargetError(f"PostgreSQL {what} name {problem}")
    return name


def dsn_params(dsn: str, step: str) -> dict[str, Any]:
    """The parameters of a conninfo string or ``postgresql://`` URL.

    Raises:
        TargetError: it is neither (the text is not shown: it may hold a password).
    """
    pg = psycopg()
    try:
        return dict(pg.conninfo.conninfo_to_dict(dsn))
    except pg.Error:
        # The parser quotes the text it chokes on, which may be a password: drop it.
        raise TargetError(
            f"PostgreSQL {step}: the DSN is neither libpq conninfo nor a postgresql:// "
            "URL (its text is not shown: it may hold a password); fix it in the inventory"
        ) from None


def where(dsn: str) -> str:
    """``host:port/dbname`` from a conninfo or URL, without user or password."""
    try:
        params = psycopg().conninfo.conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - a malformed DSN must not leak through its message
        return "(unparseable DSN)"
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or '?'}"


def dbname(dsn: str, step: str) -> str:
    """The database a DSN names (``postgres`` when it names none).

    Raises:
        TargetError: the DSN is malformed (`dsn_params`).
    """
    return str(dsn_params(dsn, step).get("dbname") or "postgres")


def hint_for(exc: Exception) -> str:
    """What to do about a server error, from its SQLSTATE."""
    state = getattr(exc, "sqlstate", None) or ""
    if state == "42501":
        return "the admin role lacks a privilege: use a superuser or a CREATEROLE role"
    if state.startswith("08"):
        return "the connection broke: check the server and retry (the step is idempotent)"
    if state == "2BP01":
        return "the role still owns objects or holds grants in another database: run " \
            "REASSIGN OWNED / DROP OWNED there, or retire with break-glass instead"
    return "see the PostgreSQL server log for details"


def driver_error(
    place: str, step: str, problem: str, hint: str, exc: BaseException | str | None = None,
    secrets: Iterable[str] = (),
) -> TargetError:
    """A psycopg exception (or a client tool's stderr) as keyroll's `TargetError`."""
    return target_error(SYSTEM, place, step, problem, hint, cause=exc, secrets=secrets)


def role_missing(place: str, step: str, hint: str) -> RoleMissing:
    """The typed error for a role that does not exist (callers may treat it as done)."""
    error = target_error(SYSTEM, place, step, "the role does not exist", hint)
    return RoleMissing(str(error))
