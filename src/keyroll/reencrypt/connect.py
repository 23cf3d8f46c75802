"""Opening a re-encryption adapter from a DSN: the one place that knows every implementation.

`keyroll.reencrypt.database` is the contract; `postgres` and `sqlite` implement it and import
it; this factory imports them (lazily: psycopg only for PostgreSQL DSNs).
"""

from __future__ import annotations

from keyroll.errors import UsageError
from keyroll.reencrypt.database import Database

__all__ = ["open_database"]


def open_database(dsn: str, *, env_var: str) -> Database:
    """Connect to the database a DSN names.

    ``postgresql://``/``postgres://`` URLs (also SQLAlchemy's ``postgresql+psycopg://``) and
    libpq ``key=value`` strings open PostgreSQL; ``sqlite:///relative.db``,
    ``sqlite:////absolute.db`` (SQLAlchemy's spelling) and ``sqlite:path.db`` open SQLite.

    Args:
        dsn: the connection string (never repeated in a message).
        env_var: the variable it came from, for messages.

    Raises:
        UsageError: a scheme keyroll cannot re-encrypt, or psycopg missing.
        TargetError: the database cannot be reached or refused the login.
    """
    scheme = dsn.split(":", 1)[0].lower() if "://" in dsn or dsn.startswith("sqlite:") else ""
    if scheme == "sqlite" or scheme.startswith("sqlite+"):
        from keyroll.reencrypt.sqlite import SQLiteDatabase

        return SQLiteDatabase.connect(dsn, env_var=env_var)
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+") or (
        not scheme and "=" in dsn
    ):
        from keyroll.reencrypt.postgres import PostgresDatabase

        return PostgresDatabase.connect(dsn, env_var=env_var)
    raise UsageError(
        f"{env_var} names a database keyroll cannot re-encrypt (scheme {scheme or 'unknown'!r}): "
        "use a postgresql:// or sqlite:/// URL"
    )

