"""Encrypted model fields on `keyroll.FieldCipher`.

::

    # settings.py
    KEYROLL_FIELD_CIPHER = FieldCipher(StoreKeySource(store, SecretRef("prod", "field-encryption")))

    # models.py
    from keyroll.django.fields import EncryptedTextField

    class Datasource(models.Model):
        password = EncryptedTextField()

Values are stored as ``kr1.`` text (kid in the header, so `needs_reencrypt` and
``keyroll_reencrypt`` find stale rows without decrypting), with the table and column as AAD
context: a ciphertext copied to another column does not decrypt. The row's primary key is not
part of the context, because Django decodes a column without its row (``from_db_value``) and
assigns an automatic key only after the insert. In keyroll.toml the column's ``context`` is
``"<db_table>,<column>"``; ``keyroll_reencrypt`` derives it by itself.

The cipher is named by a setting (``cipher="KEYROLL_FIELD_CIPHER"``, the default), so
migrations serialise a string, never a key. Encrypted columns cannot be filtered on (each
encryption is randomised).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from keyroll.errors import UsageError
from keyroll.runtime.fields import FieldCipher

__all__ = ["DEFAULT_SETTING", "EncryptedTextField", "encrypted_fields"]

DEFAULT_SETTING = "KEYROLL_FIELD_CIPHER"


class EncryptedTextField(models.TextField):
    """A text column whose values are `FieldCipher` ciphertexts.

    Args:
        cipher: the name of the setting holding the `FieldCipher`.
    """

    description = "Text encrypted with a keyroll FieldCipher"

    def __init__(self, *args: Any, cipher: str = DEFAULT_SETTING, **kwargs: Any) -> None:
        self.cipher_setting = cipher
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.cipher_setting != DEFAULT_SETTING:
            kwargs["cipher"] = self.cipher_setting
        return name, path, args, kwargs

    @property
    def cipher(self) -> FieldCipher:
        cipher = getattr(settings, self.cipher_setting, None)
        if not isinstance(cipher, FieldCipher):
            raise UsageError(f"settings.{self.cipher_setting} must be a keyroll FieldCipher")
        return cipher

    @property
    def context(self) -> tuple[str, str]:
        """The AAD context: ``(db_table, column)``."""
        return (self.model._meta.db_table, str(self.column))

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None:
            return None
        return self.cipher.encrypt_text(str(value), context=self.context)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None:
            return None
        return self.cipher.decrypt_text(str(value), context=self.context)


def encrypted_fields() -> list[EncryptedTextField]:
    """Every `EncryptedTextField` of every installed (concrete, managed) model."""
    from django.apps import apps

    found = []
    for model in apps.get_models():
        if model._meta.abstract or model._meta.proxy or not model._meta.managed:
            continue
        found += [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
    return found
