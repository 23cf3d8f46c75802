"""Generate new secret values, from the operating system's CSPRNG only.

Formats follow seed 004 §2 (key-generation reference):

========== ==========================================================================
format      value
========== ==========================================================================
base64-48   48 random bytes, standard base64 (64 chars): ``openssl rand -base64 48``
key-32      32 random bytes (an AES-256 / HMAC key), carried as standard base64 (44
            chars) because env vars hold text: ``openssl rand -base64 32``
password-32 32 URL-safe alphanumeric chars (no ``/+=``): safe inside a DSN
hex-32      32 random bytes as 64 hex chars
========== ==========================================================================

Any format may take an identifiable prefix (``whsec_``, ``sk_live_``) so a leaked value can be
recognised by secret scanners.
"""

from __future__ import annotations

import base64
import secrets
import string
from collections.abc import Callable
from enum import StrEnum

from keyroll.model import SecretValue

__all__ = ["Format", "decode_key32", "generate"]


class Format(StrEnum):
    BASE64_48 = "base64-48"
    KEY_32 = "key-32"
    PASSWORD_32 = "password-32"  # noqa: S105  (a format name, not a password)
    HEX_32 = "hex-32"


_ALNUM = string.ascii_letters + string.digits


def _password(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


_MAKERS: dict[Format, Callable[[], str]] = {
    Format.BASE64_48: lambda: base64.b64encode(secrets.token_bytes(48)).decode(),
    Format.KEY_32: lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
    Format.PASSWORD_32: lambda: _password(32),
    Format.HEX_32: lambda: secrets.token_hex(32),
}


def generate(fmt: Format | str, *, prefix: str = "") -> SecretValue:
    """Make a fresh value in the given format.

    Args:
        fmt: one of `Format` (or its text).
        prefix: prepended verbatim, e.g. ``whsec_``.

    Raises:
        ValueError: the format is unknown (the inventory validates it before this point).
    """
    maker = _MAKERS[Format(fmt)]
    return SecretValue(prefix + maker())


def decode_key32(value: SecretValue, *, prefix: str = "") -> bytes:
    """The 32 raw key bytes of a ``key-32`` value.

    Raises:
        ValueError: the value is not base64 of exactly 32 bytes (message holds no value).
    """
    text = value.reveal()
    if prefix and text.startswith(prefix):
        text = text[len(prefix) :]
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError("key is not valid base64 (expected 32 bytes, key-32 format)") from None
    if len(raw) != 32:
        raise ValueError(f"key decodes to {len(raw)} bytes; AES-256 needs exactly 32")
    return raw
