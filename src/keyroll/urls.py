"""The one rule for ``sqlite:`` URLs, shared by the store (`keyroll.stores.open_store`) and the
re-encryption adapter (`keyroll.reencrypt.sqlite`). Standard library only.

keyroll follows SQLAlchemy, whose URLs applications already put in ``DATABASE_URL``:

========================== ===================================================
URL                        file
========================== ===================================================
``sqlite:///app.db``       ``app.db``, relative (three slashes: an empty host, then the path)
``sqlite:////srv/app.db``  ``/srv/app.db``, absolute (four slashes)
``sqlite:app.db``          ``app.db``, relative (keyroll's short form, as in ``keyroll.toml``)
========================== ===================================================

A driver suffix (``sqlite+pysqlite:``) and a query string (``?timeout=5``) are accepted and
ignored. A host (``sqlite://host/app.db``) and the in-memory database (``sqlite://``,
``:memory:``) are refused: neither names a file. Relative paths are resolved by the caller (the
store against the inventory's folder, re-encryption against the current folder).
"""

from __future__ import annotations

from pathlib import Path

from keyroll.errors import UsageError

__all__ = ["sqlite_url_path"]


def sqlite_url_path(url: str) -> Path:
    """The file a ``sqlite:`` URL names, by SQLAlchemy's rule (see the module docstring).

    Raises:
        UsageError: not a ``sqlite:`` URL, a host in it, or no file (in-memory).
    """
    scheme, sep, rest = url.partition(":")
    if not sep or not (scheme.lower() == "sqlite" or scheme.lower().startswith("sqlite+")):
        raise UsageError(f"{url!r} is not a sqlite: URL")
    rest = rest.split("?", 1)[0]
    if rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        if authority:
            raise UsageError(
                "a sqlite: URL names no host: use sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db"
            )
        rest = path if slash else ""
    if not rest or rest == ":memory:":
        raise UsageError(
            "an in-memory SQLite database names no file: use sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db"
        )
    return Path(rest)
