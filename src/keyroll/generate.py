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
ec-p256     an ECDSA P-256 private key, PKCS#8 PEM (ES256)
rsa-2048    an RSA 2048-bit private key, PKCS#8 PEM (RS256, PS256)
rsa-3072    an RSA 3072-bit private key, PKCS#8 PEM (RS256, PS256)
ed25519     an Ed25519 private key, PKCS#8 PEM (EdDSA)
========== ==========================================================================

Any secret format may take an identifiable prefix (``whsec_``, ``sk_live_``) so a leaked value
can be recognised by secret scanners; key-pair formats take none (a PEM must stay a PEM). The
key pairs come from `keyroll.jwk`, which also gives their public JWK and fingerprint.
"""

from __future__ import annotations

import base64
import secrets
import string
from collections.abc import Callable

from keyroll._compat import StrEnum
from keyroll.jwk import generate_private_pem
from keyroll.model import SecretValue

__all__ = ["Format", "decode_key32", "generate"]


class Format(StrEnum):
    BASE64_48 = "base64-48"
    KEY_32 = "key-32"
    PASSWORD_32 = "password-32"  # noqa: S105  (a format name, not a password)
    HEX_32 = "hex-32"
    EC_P256 = "ec-p256"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"
    ED25519 = "ed25519"

    @property
    def is_keypair(self) -> bool:
        """True for the asymmetric formats (a private key PEM, see `keyroll.jwk`)."""
        return self in (Format.EC_P256, Format.RSA_2048, Format.RSA_3072, Format.ED25519)


_ALNUM = string.ascii_letters + string.digits


def _password(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


_MAKERS: dict[Format, Callable[[], str]] = {
    Format.BASE64_48: lambda: base64.b64encode(secrets.token_bytes(48)).decode(),
    Format.KEY_32: lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
    Format.PASSWORD_32: lambda: _password(32),
    Format.HEX_32: lambda: secrets.token_hex(32),
    Format.EC_P256: lambda: generate_private_pem("ec-p256"),
    Format.RSA_2048: lambda: generate_private_pem("rsa-2048"),
    Format.RSA_3072: lambda: generate_private_pem("rsa-3072"),
    Format.ED25519: lambda: generate_private_pem("ed25519"),
}


def generate(fmt: Format | str, *, prefix: str = "") -> SecretValue:
    """Make a fresh value in the given format.

    Args:
        fmt: one of `Format` (or its text).
        prefix: prepended verbatim, e.g. ``whsec_`` (not for key-pair formats).

    Raises:
        ValueError: the format is unknown, or a prefix was given for a key pair (the
            inventory validates both before this point).
    """
    fmt = Format(fmt)
    if prefix and fmt.is_keypair:
        raise ValueError(f"{fmt.value} makes a PEM key: it takes no prefix")
    maker = _MAKERS[fmt]
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
