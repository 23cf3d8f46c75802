"""Secret store backends behind one contract (`Store`), opened by URL.

=================================================== =======================================
URL                                                  backend
=================================================== =======================================
``sqlite:rel.db``, ``sqlite:///rel.db``,            `SQLiteStore` (master key from
``sqlite:////abs/path/store.db``                     ``KEYROLL_MASTER_KEY`` or ``master.key``
                                                     beside the file; the URL rule is
                                                     `keyroll.urls`)
``openbao://host:port/<mount>?…`` (also ``vault://``) `keyroll.stores.openbao` (extra
                                                     ``openbao``)
=================================================== =======================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from keyroll.errors import UsageError
from keyroll.stores.base import AuditEntry as AuditEntry
from keyroll.stores.base import LockInfo as LockInfo
from keyroll.stores.base import RotationRecord as RotationRecord
from keyroll.stores.base import Store as Store
from keyroll.urls import sqlite_url_path

__all__ = ["AuditEntry", "LockInfo", "RotationRecord", "Store", "open_store", "sqlite_path"]


def sqlite_path(url: str, base: Path | None = None) -> Path:
    """The file a ``sqlite:`` URL names (`keyroll.urls.sqlite_url_path`: SQLAlchemy's rule,
    ``sqlite:///relative`` and ``sqlite:////absolute``), relative paths resolved against
    ``base``.

    Raises:
        UsageError: a host in the URL, or no file (in-memory).
    """
    path = sqlite_url_path(url)
    if not path.is_absolute() and base is not None:
        path = base / path
    return path


def open_store(
    url: str,
    *,
    base: Path | None = None,
    environ: Mapping[str, str] | None = None,
    create: bool = True,
) -> Store:
    """Open the store a URL names.

    Args:
        url: see the module docstring.
        base: directory that relative ``sqlite:`` paths are resolved against (the inventory's).
        environ: environment for credentials (default ``os.environ``).
        create: create a missing local store. The CLI passes False except in ``keyroll init``:
            a store file that vanished (or was truncated) beside an inventory is refused, not
            silently replaced by an empty one whose journal says "ok: 0 records".

    Raises:
        UsageError: an unknown scheme or malformed URL; a missing or empty local store file
            when ``create`` is False.
        MasterKeyError: the local store's master key is missing, malformed, or not the key
            the store was created with.
        StoreUnavailable: the store cannot be reached.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from keyroll.stores.masterkey import ENV_VAR, load_master_key
        from keyroll.stores.sqlite import SQLiteStore

        path = sqlite_path(url, base)
        key_file = path.parent / "master.key"
        env = os.environ if environ is None else environ
        source = ENV_VAR if env.get(ENV_VAR) else f"the master key file {key_file}"
        return SQLiteStore(
            path, load_master_key(key_file, environ), create=create, key_source=source
        )
    if scheme in ("openbao", "openbaos", "vault", "vaults"):
        try:
            from keyroll.stores.openbao import OpenBaoStore
        except ImportError as exc:
            raise UsageError(
                f"the OpenBao/Vault store needs hvac ({exc.name} is missing): "
                "pip install 'keyroll[openbao]'"
            ) from None
        return OpenBaoStore.from_url(url, environ=environ)
    raise UsageError(
        f"unknown store URL scheme {scheme!r} in {url!r}: use sqlite:path/store.db, "
        "sqlite:////absolute/path/store.db or "
        "openbao://host:port/mount"
    )
