"""`FieldCipher`: encrypt database fields under the current key, decrypt under any retained one.

Format (version 1), binary::

    0x01 || kid (4 bytes, big-endian) || nonce (12 random bytes)
         || AES-256-GCM(plaintext) || tag (16)

Text form: ``"kr1."`` + base64url of the binary form, without padding. Only the canonical
encoding is accepted.

Associated data (authenticated, not stored)::

    AAD = 0x01 || kid(4)                      the 5 header bytes
          || for each context part:
             len(part) (4 bytes, big-endian) || part

Context parts are the caller's ``context`` (e.g. ``("users", "email", 42)``): ``str`` as UTF-8,
``int`` as decimal ASCII, ``bytes`` as is; a single ``str``/``bytes``/``int`` is one part; None
or ``()`` is no part. Length prefixes make the encoding unambiguous (``("ab", "c")`` and
``("a", "bc")`` differ), so a ciphertext copied to another row, column or table fails to decrypt.

The key is picked by the kid in the header (O(1), flat in the number of keys). Every failure
(malformed, unknown kid, wrong context, tampered) raises the same `InvalidToken`.

Key material: a ``key-32`` value (base64 or base64url of 32 bytes) or 64 hex digits
(``openssl rand -hex 32``, seed 001) is used as the AES-256 key directly; any other value of 32+
characters is stretched with HKDF-SHA256 (``info=b"keyroll/field/v1"``, no salt).

Nonces are random: keep each key under 2**32 encryptions (rotate; `needs_reencrypt` finds the
rows to rewrite).

Legacy: with ``legacy=`` a source of Fernet keys (e.g. ``EnvKeySource.secret_key()`` holding
``SECRET_KEY`` + ``OLD_SECRET_KEYS``), Fernet tokens still decrypt (each key tried in turn, as
MultiFernet does, each success counted as legacy under that key's kid) and `needs_reencrypt`
says True for them.
"""

from __future__ import annotations

import base64
import binascii
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken as FernetInvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keyroll.errors import InvalidToken, UsageError
from keyroll.model import SecretValue
from keyroll.runtime.keysource import Key, KeySet, KeySource

__all__ = ["FORMAT_VERSION", "TEXT_PREFIX", "Context", "FieldCipher", "field_key_bytes"]

FORMAT_VERSION = 0x01
TEXT_PREFIX = "kr1."
_VERSION_BYTE = bytes([FORMAT_VERSION])
_HEADER = 5
_NONCE = 12
_TAG = 16
_MIN_LEN = _HEADER + _NONCE + _TAG

#: A caller's context: one part or a sequence of parts (str, int, bytes).
Context = str | bytes | int | Sequence[str | bytes | int] | None


def _invalid() -> NoReturn:
    raise InvalidToken("invalid ciphertext")


def field_key_bytes(value: SecretValue) -> bytes:
    """The 32-byte AES key a value stands for (see the module docstring)."""
    text = value.reveal().strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    if len(text) in (43, 44):
        try:
            raw = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4))
        except (ValueError, binascii.Error):
            raw = b""
        if len(raw) == 32:
            return raw
    if len(text) < 32:
        raise UsageError("a field-encryption key needs 32+ characters (`openssl rand -base64 32`)")
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"keyroll/field/v1").derive(text.encode())


def _part(part: str | bytes | int) -> bytes:
    if isinstance(part, bytes):
        data = part
    elif isinstance(part, str):
        data = part.encode()
    elif isinstance(part, int) and not isinstance(part, bool):
        data = b"%d" % part
    else:
        raise TypeError("context parts are str, int or bytes")
    return len(data).to_bytes(4, "big") + data


_CONTEXT_CACHE: dict[object, bytes] = {}
_CONTEXT_CACHE_SIZE = 4096


def _context_bytes(context: Context) -> bytes:
    """The context's AAD encoding; memoised because most columns reuse a few contexts."""
    if context is None:
        return b""
    try:
        return _CONTEXT_CACHE[context]
    except KeyError:
        pass
    except TypeError:  # unhashable (a list): encode without caching
        return b"".join(_part(p) for p in context)  # type: ignore[union-attr]
    if isinstance(context, (str, bytes, int)):
        encoded = _part(context)
    else:
        encoded = b"".join(_part(p) for p in context)
    if len(_CONTEXT_CACHE) >= _CONTEXT_CACHE_SIZE:
        _CONTEXT_CACHE.clear()
    # Keyed by equality: a context equal to a cached one (True == 1) reuses its encoding.
    _CONTEXT_CACHE[context] = encoded
    return encoded


# base64url → standard alphabet; characters valid only in the standard alphabet (and padding)
# become "*", which strict decoding refuses: exactly one spelling decodes.
_URL_TO_STD = bytes.maketrans(b"-_+/=", b"+/***")
# the last character of a partial group may only use its data bits (spare bits zero)
_LAST_OF_2 = frozenset(b"AQgw")
_LAST_OF_3 = frozenset(b"AEIMQUYcgkosw048")


def _b64url_decode_canonical(text: str) -> bytes:
    """Decode unpadded base64url, refusing every non-canonical spelling.

    Raises:
        ValueError: not canonical unpadded base64url.
    """
    raw = text.encode("ascii")  # UnicodeEncodeError is a ValueError
    rest = len(raw) % 4
    if rest == 1:
        raise ValueError("truncated")
    raw = raw.translate(_URL_TO_STD)
    if rest == 2:
        if raw[-1] not in _LAST_OF_2:
            raise ValueError("spare bits")
        raw += b"=="
    elif rest == 3:
        if raw[-1] not in _LAST_OF_3:
            raise ValueError("spare bits")
        raw += b"="
    if sys.version_info >= (3, 11):
        return binascii.a2b_base64(raw, strict_mode=True)
    # Python 3.10 has no strict_mode: validate=True refuses what it refuses here (characters
    # outside the alphabet, padding anywhere but at the end)
    return base64.b64decode(raw, validate=True)  # pragma: no cover  (the 3.10 run)


@dataclass(frozen=True, slots=True, repr=False)
class _Ring:
    keyset: KeySet
    current_header: bytes
    current_kid: int
    ciphers: Mapping[bytes, tuple[int, AESGCM]]
    decryptors: Mapping[bytes, tuple[int, Callable[[bytes, bytes, bytes], bytes]]]

    def __reduce__(self) -> NoReturn:
        raise TypeError("refuses to be pickled: holds keys")


@dataclass(frozen=True, slots=True, repr=False)
class _LegacyRing:
    keyset: KeySet
    fernets: tuple[tuple[Key, Fernet], ...]

    def __reduce__(self) -> NoReturn:
        raise TypeError("refuses to be pickled: holds keys")


class FieldCipher:
    """Authenticated encryption of fields, with key ids for rotation.

    Args:
        source: the encryption keys; ``current`` encrypts, every retained key decrypts.
        legacy: optional source of Fernet keys whose tokens still decrypt (migration).
    """

    def __init__(self, source: KeySource, *, legacy: KeySource | None = None) -> None:
        self.source = source
        self.legacy = legacy
        self._ring: _Ring | None = None
        self._legacy_ring: _LegacyRing | None = None
        if not source.lazy:
            self._ring_for(source.snapshot())
        if legacy is not None and not legacy.lazy:
            self._legacy_for(legacy.snapshot())

    def _ring_for(self, keyset: KeySet) -> _Ring:
        ring = self._ring
        if ring is not None and ring.keyset is keyset:
            return ring
        ciphers = {
            _VERSION_BYTE + k.kid.to_bytes(4, "big"): (k.kid, AESGCM(field_key_bytes(k.value)))
            for k in keyset.keys
        }
        current = keyset.current
        decryptors = {h: (kid, aead.decrypt) for h, (kid, aead) in ciphers.items()}
        header = _VERSION_BYTE + current.kid.to_bytes(4, "big")
        ring = _Ring(keyset, header, current.kid, ciphers, decryptors)
        self._ring = ring
        return ring

    def _legacy_for(self, keyset: KeySet) -> _LegacyRing:
        ring = self._legacy_ring
        if ring is not None and ring.keyset is keyset:
            return ring
        fernets = []
        for key in keyset.keys:
            try:
                fernets.append((key, Fernet(key.value.reveal().strip())))
            except (ValueError, binascii.Error):
                raise UsageError(f"{key.origin} is not a Fernet key (url-safe base64 of 32 bytes)") from None
        ring = _LegacyRing(keyset, tuple(fernets))
        self._legacy_ring = ring
        return ring

    # --- binary form ----------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, *, context: Context = None) -> bytes:
        """Encrypt under the current key; binary form.

        Args:
            plaintext: the field's bytes.
            context: where the value lives (table, column, row id); needed again to decrypt.
        """
        return self._encrypt_from_parts(plaintext, context, os.urandom(_NONCE))

    def _encrypt_from_parts(self, plaintext: bytes, context: Context, nonce: bytes) -> bytes:
        # The nonce is a parameter only for known-answer tests: never reuse one with a key.
        ring = self._ring_for(self.source.snapshot())
        header = ring.current_header
        _, aead = ring.ciphers[header]
        return header + nonce + aead.encrypt(nonce, plaintext, header + _context_bytes(context))

    def decrypt(self, ciphertext: bytes, *, context: Context = None) -> bytes:
        """Decrypt a binary ciphertext (or a legacy Fernet token, if ``legacy`` is set).

        Raises:
            InvalidToken: malformed, unknown key, wrong context or tampered.
        """
        # The hot path of every read: kept flat, with the constants of the format inlined
        # (5 = header, 17 = header + nonce, 33 = header + nonce + tag).
        if type(ciphertext) is not bytes:  # memoryview (psycopg bytea), bytearray
            ciphertext = bytes(ciphertext)
        if len(ciphertext) < 33 or ciphertext[0] != 1:
            return self._decrypt_legacy(ciphertext)
        source = self.source
        keyset = source.snapshot()
        ring = self._ring
        if ring is None or ring.keyset is not keyset:
            ring = self._ring_for(keyset)
        header = ciphertext[:5]
        entry = ring.decryptors.get(header)
        if entry is None:
            _invalid()
        if context is None:
            aad = header
        else:
            try:
                aad = header + _CONTEXT_CACHE[context]
            except (KeyError, TypeError):
                aad = header + _context_bytes(context)
        try:
            plaintext = entry[1](ciphertext[5:17], ciphertext[17:], aad)
        except InvalidTag:
            _invalid()
        source.usage.record(entry[0])
        return plaintext

    def _decrypt_legacy(self, token: bytes) -> bytes:
        if self.legacy is None or token[:1] != b"g":  # also a too-short keyroll ciphertext
            _invalid()
        ring = self._legacy_for(self.legacy.snapshot())
        for key, fernet in ring.fernets:
            try:
                plaintext = fernet.decrypt(token)
            except FernetInvalidToken:
                continue
            self.legacy.usage.record(key.kid, legacy=True)
            return plaintext
        _invalid()

    # --- text form ------------------------------------------------------------------------

    def encrypt_text(self, plaintext: str | bytes, *, context: Context = None) -> str:
        """Encrypt under the current key; text form ``kr1.<base64url>`` (for text columns)."""
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        blob = self.encrypt(data, context=context)
        return TEXT_PREFIX + base64.urlsafe_b64encode(blob).rstrip(b"=").decode()

    def decrypt_text(self, token: str, *, context: Context = None) -> str:
        """Decrypt a text ciphertext (or a legacy Fernet token) to text (UTF-8).

        Raises:
            InvalidToken: malformed, unknown key, wrong context, tampered or not UTF-8.
        """
        try:
            return self.decrypt(self._unwrap(token), context=context).decode()
        except UnicodeDecodeError:
            _invalid()

    def decrypt_text_bytes(self, token: str, *, context: Context = None) -> bytes:
        """Decrypt a text ciphertext to bytes."""
        return self.decrypt(self._unwrap(token), context=context)

    def _unwrap(self, token: str) -> bytes:
        if not isinstance(token, str):
            _invalid()
        if not token.startswith(TEXT_PREFIX):
            if self.legacy is not None and token.startswith("gAAAAA"):
                return token.encode()
            _invalid()
        try:
            return _b64url_decode_canonical(token[4:])
        except ValueError:  # binascii.Error and UnicodeEncodeError are ValueErrors
            _invalid()

    # --- rotation helpers -----------------------------------------------------------------

    def kid_of(self, ciphertext: bytes | str) -> int | None:
        """The kid in a ciphertext's header without decrypting it; None for a Fernet token.

        Unverified: use it to find rows to re-encrypt, never to trust the data.
        """
        blob = self._unwrap(ciphertext) if isinstance(ciphertext, str) else ciphertext
        if blob[:1] == _VERSION_BYTE and len(blob) >= _MIN_LEN:
            return int.from_bytes(blob[1:_HEADER], "big")
        if self.legacy is not None and blob[:1] == b"g":
            return None
        _invalid()

    def needs_reencrypt(self, ciphertext: bytes | str) -> bool:
        """True if the ciphertext is not under the current key (older kid or Fernet)."""
        kid = self.kid_of(ciphertext)
        return kid != self._ring_for(self.source.snapshot()).current_kid

    def reencrypt(self, ciphertext: bytes | str, *, context: Context = None) -> bytes | str:
        """Decrypt under any retained key and encrypt under the current one, same form."""
        if isinstance(ciphertext, str):
            plaintext = self.decrypt_text_bytes(ciphertext, context=context)
            return self.encrypt_text(plaintext, context=context)
        return self.encrypt(self.decrypt(ciphertext, context=context), context=context)

    def reencrypt_many(self, items: Sequence[tuple[bytes | str, Context]]
                       ) -> list[bytes | str | None]:
        """`reencrypt` of many values, each with its own context, in one call: one key
        snapshot and one read of the system's randomness (all the nonces) for the batch, as a
        re-encryption job needs. Each value gets its own random nonce.

        Returns:
            each value under the current key, in its own form, in order; None where
            `reencrypt` would raise `InvalidToken` (malformed, unknown key, wrong context,
            tampered), so one bad row does not stop the batch.
        """
        source = self.source
        ring = self._ring_for(source.snapshot())
        header = ring.current_header
        encrypt = ring.ciphers[header][1].encrypt
        decryptors = ring.decryptors
        nonces = os.urandom(_NONCE * len(items))
        out: list[bytes | str | None] = []
        used: dict[int, int] = {}
        for i, (value, context) in enumerate(items):
            if type(value) is not bytes or len(value) < _MIN_LEN or value[0] != FORMAT_VERSION:
                try:  # text form, legacy Fernet, bytearray: the one-by-one path
                    out.append(self.reencrypt(value, context=context))
                except InvalidToken:
                    out.append(None)
                continue
            entry = decryptors.get(value[:_HEADER])
            if entry is None:
                out.append(None)
                continue
            aad = _context_bytes(context)
            try:
                plaintext = entry[1](value[_HEADER:17], value[17:], value[:_HEADER] + aad)
            except InvalidTag:
                out.append(None)
                continue
            used[entry[0]] = used.get(entry[0], 0) + 1
            nonce = nonces[i * _NONCE:(i + 1) * _NONCE]
            out.append(header + nonce + encrypt(nonce, plaintext, header + aad))
        for kid, count in used.items():
            source.usage.record(kid, count=count)
        return out

    @property
    def current_kid(self) -> int:
        """The kid new ciphertexts are written under."""
        return self._ring_for(self.source.snapshot()).current_kid

    def __repr__(self) -> str:
        return f"FieldCipher(source={self.source!r}, legacy={self.legacy!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("FieldCipher refuses to be pickled: it holds keys")
