"""The keys a re-encryption job uses: the class's store versions, plus legacy Fernet keys.

``current`` encrypts; ``previous`` and ``pending`` decrypt (`StoreKeySource`). The key set is
read once and pinned for the run (an infinite refresh interval), so every row is written
under one kid even if a rotation is promoted meanwhile; the next run picks that up.

Legacy Fernet keys (seed 001: ``SECRET_KEY`` + ``OLD_SECRET_KEYS``) come from environment
variables named in the class's options, since keyroll never held them::

    [classes.field-encryption]
    options = { legacy_fernet_env = ["SECRET_KEY", "OLD_SECRET_KEYS"] }

The first variable holds one Fernet key, the optional second a comma-separated list (as seed
001 writes it). A single name (``legacy_fernet_env = "SECRET_KEY"``) is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping

from keyroll.errors import SecretRejected, UsageError
from keyroll.inventory import SecretClass
from keyroll.model import Kind, SecretRef
from keyroll.runtime.fields import FieldCipher
from keyroll.runtime.keysource import EnvKeySource, StoreKeySource
from keyroll.stores.base import Store

__all__ = ["LEGACY_OPTION", "cipher_for_class", "legacy_env_vars"]

#: The class option naming the legacy Fernet key variables.
LEGACY_OPTION = "legacy_fernet_env"


def legacy_env_vars(cls: SecretClass) -> tuple[str, str | None] | None:
    """The (key, list) variable names of the class's legacy Fernet keys, or None.

    Raises:
        UsageError: the option is neither a name nor a list of one or two names.
    """
    raw = cls.options.get(LEGACY_OPTION)
    if raw is None:
        return None
    names = [raw] if isinstance(raw, str) else raw
    if (not isinstance(names, list) or not 1 <= len(names) <= 2
            or not all(isinstance(n, str) and n for n in names)):
        raise UsageError(
            f"class {cls.name!r}: options.{LEGACY_OPTION} must be a variable name or a list of "
            'one or two, e.g. ["SECRET_KEY", "OLD_SECRET_KEYS"]'
        )
    return names[0], names[1] if len(names) == 2 else None


def cipher_for_class(store: Store, ref: SecretRef, cls: SecretClass, *,
                     environ: Mapping[str, str] | None = None) -> FieldCipher:
    """A `FieldCipher` over the class's retained versions (and legacy keys), pinned.

    Raises:
        UsageError: the class is not an ``encryption-key`` or has no columns; bad options.
        NotFound: the secret has no current version.
        StoreCorrupted: the store cannot decrypt the keys (wrong master key): nothing is
            touched in any database.
        SecretRejected: a legacy variable is unset or fails validation.
    """
    if cls.kind is not Kind.ENCRYPTION_KEY:
        raise UsageError(f"class {cls.name!r} is {cls.kind.value}, not encryption-key: only "
                         "encryption keys have data to re-encrypt")
    if not cls.columns:
        raise UsageError(f"class {cls.name!r} lists no columns: add columns = [{{ table = ..., "
                         "column = ... }}] to keyroll.toml")
    source = StoreKeySource(store, ref, refresh_interval=float("inf"))
    names = legacy_env_vars(cls)
    legacy = None
    if names is not None:
        try:
            legacy = EnvKeySource(names[0], names[1], separator=",", environ=environ,
                                  refresh_interval=float("inf"))
        except SecretRejected as exc:
            raise SecretRejected(
                f"class {cls.name!r}: legacy Fernet keys (options.{LEGACY_OPTION}): {exc}; "
                "set them, or remove the option once `keyroll reencrypt --dry-run` shows no "
                "legacy-fernet rows"
            ) from None
    return FieldCipher(source, legacy=legacy)
