"""Which key a stored ciphertext is under, decided from its first bytes, without decrypting.

A binary ciphertext starts with the 5-byte header ``0x01 || kid(4)`` (`keyroll.runtime.fields`).
The text form is ``"kr1."`` + unpadded base64url of the binary form, so its header is not a
whole number of characters: 5 bytes are 40 bits and base64 carries 6 bits a character. The 7
characters after ``kr1.`` carry 42 bits: the 40 header bits and the top 2 bits of the nonce.
So a text ciphertext is under kid K exactly when its first 11 characters are one of the 4
strings `text_prefixes` computes (one per value of those 2 nonce bits).

That lets a database decide "not under the current key" with plain byte and string
comparisons, identical on PostgreSQL and SQLite, and never fail on a malformed value (a decode
in SQL would raise on the first row that is not base64). The decision is unverified (nothing is
authenticated): it only picks the rows to rewrite or count; rewriting decrypts and verifies.

Legacy Fernet tokens (seed 001's ``SECRET_KEY``/``OLD_SECRET_KEYS``) start with ``gAAAAA``
(version byte 0x80 and the high bytes of a timestamp), in bytes or in text.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from keyroll.model import format_kid
from keyroll.runtime.fields import FORMAT_VERSION, TEXT_PREFIX

__all__ = [
    "FERNET_PREFIX",
    "LEGACY",
    "MALFORMED",
    "MIN_BINARY_LENGTH",
    "MIN_TEXT_LENGTH",
    "TEXT_HEAD",
    "HeaderMatch",
    "binary_header",
    "kid_of_text_head",
    "text_prefixes",
]

#: The first characters (and bytes) of every Fernet token.
FERNET_PREFIX = "gAAAAA"
#: Census bucket of legacy Fernet values.
LEGACY = "legacy-fernet"
#: Census bucket of values that are neither keyroll ciphertexts nor Fernet tokens.
MALFORMED = "malformed"
#: Header + nonce + tag: no binary ciphertext is shorter.
MIN_BINARY_LENGTH = 5 + 12 + 16
#: ``kr1.`` + base64url of the shortest binary ciphertext (33 bytes = 44 characters).
MIN_TEXT_LENGTH = len(TEXT_PREFIX) + 44
#: How many leading characters of a text ciphertext decide its kid.
TEXT_HEAD = len(TEXT_PREFIX) + 7

_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def binary_header(kid: int) -> bytes:
    """The 5 header bytes of every binary ciphertext under ``kid``."""
    return bytes([FORMAT_VERSION]) + kid.to_bytes(4, "big")


def text_prefixes(kid: int) -> tuple[str, str, str, str]:
    """The 4 possible first `TEXT_HEAD` characters of a text ciphertext under ``kid``.

    The 7th character after ``kr1.`` holds the kid's last 4 bits and 2 nonce bits.
    """
    header = binary_header(kid)
    # 6 bytes = 8 characters; the 6th byte (nonce) is free, so take its 4 top-bit variants
    stems = []
    for top in range(4):
        encoded = base64.urlsafe_b64encode(header + bytes([top << 6])).decode()
        stems.append(TEXT_PREFIX + encoded[:7])
    return (stems[0], stems[1], stems[2], stems[3])


def kid_of_text_head(head: str) -> int | None:
    """The kid named by the first `TEXT_HEAD` characters of a text ciphertext, or None.

    None when the characters are not base64url or the version byte is not keyroll's.
    """
    if len(head) != TEXT_HEAD or not head.startswith(TEXT_PREFIX):
        return None
    chars = head[len(TEXT_PREFIX):]
    if any(c not in _B64URL for c in chars):
        return None
    try:
        raw = base64.urlsafe_b64decode(chars + "A")  # 8 characters -> 6 bytes
    except (ValueError, binascii.Error):
        return None
    if raw[0] != FORMAT_VERSION:
        return None
    return int.from_bytes(raw[1:5], "big")


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """What a value under one kid starts with, in both forms (for SQL predicates).

    Attributes:
        kid: the key id.
        binary: the 5 header bytes.
        text: the 4 possible first 11 characters of the text form.
    """

    kid: int
    binary: bytes
    text: tuple[str, str, str, str]

    @classmethod
    def for_kid(cls, kid: int) -> HeaderMatch:
        """The match for ``kid``."""
        return cls(kid, binary_header(kid), text_prefixes(kid))

    @property
    def kid_hex(self) -> str:
        """The kid as 8 hex digits (as `keyroll status` shows it)."""
        return format_kid(self.kid)
