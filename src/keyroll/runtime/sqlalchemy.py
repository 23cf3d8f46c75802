"""SQLAlchemy column types that encrypt with a `FieldCipher` (extra ``keyroll[sqlalchemy]``).

::

    cipher = FieldCipher(StoreKeySource(store, SecretRef("prod", "field-encryption")))

    class User(Base):
        email: Mapped[str] = mapped_column(EncryptedText(cipher, context=("users", "email")))

The context is fixed per column (table and column name): a TypeDecorator does not see the row,
so ciphertexts can be moved between rows of the same column but not between columns. Bind the
row id yourself (``cipher.encrypt_text(value, context=("users", "email", user.id))``) where
that matters.
"""

from __future__ import annotations

from typing import Any

try:
    from sqlalchemy.engine.interfaces import Dialect
    from sqlalchemy.types import LargeBinary, Text, TypeDecorator
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "keyroll.runtime.sqlalchemy needs SQLAlchemy: pip install 'keyroll[sqlalchemy]'"
    ) from exc

from keyroll.runtime.fields import Context, FieldCipher

__all__ = ["EncryptedBinary", "EncryptedText"]


class EncryptedText(TypeDecorator[str]):
    """A text column stored as ``kr1.…`` ciphertext; legacy Fernet values still read.

    Args:
        cipher: the field cipher (its key source refreshes on its own).
        context: AAD parts binding the ciphertext to this column, e.g. ``("users", "email")``.
    """

    impl = Text
    cache_ok = True

    def __init__(self, cipher: FieldCipher, context: Context = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cipher = cipher
        self.context = tuple(context) if isinstance(context, list) else context

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        """Encrypt on the way in."""
        if value is None:
            return None
        return self.cipher.encrypt_text(value, context=self.context)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        """Decrypt on the way out; `InvalidToken` if the stored value does not verify."""
        if value is None:
            return None
        return self.cipher.decrypt_text(value, context=self.context)


class EncryptedBinary(TypeDecorator[bytes]):
    """A binary column stored in keyroll's binary field format.

    Args:
        cipher: the field cipher.
        context: AAD parts binding the ciphertext to this column.
    """

    impl = LargeBinary
    cache_ok = True

    def __init__(self, cipher: FieldCipher, context: Context = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cipher = cipher
        self.context = tuple(context) if isinstance(context, list) else context

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        """Encrypt on the way in."""
        if value is None:
            return None
        return self.cipher.encrypt(value, context=self.context)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        """Decrypt on the way out."""
        if value is None:
            return None
        return self.cipher.decrypt(bytes(value), context=self.context)
