"""`WebhookKeyRing`: Standard Webhooks signatures with every active secret.

Format (https://www.standardwebhooks.com, the spec Svix and others implement):

- headers ``webhook-id``, ``webhook-timestamp`` (epoch seconds), ``webhook-signature``;
- signed content ``{id}.{timestamp}.{body}`` (body as raw bytes);
- signature ``v1,`` + base64(HMAC-SHA256(secret, content)); the header holds one per secret,
  separated by spaces;
- secret: ``whsec_`` + base64 of the key bytes (the prefix is optional).

During a rotation the *sender* signs with every retained secret (current, previous, pending),
so a receiver holding either old or new verifies; the *receiver* accepts any one match
(constant-time compare) within a timestamp tolerance, and counts which secret matched (current
first), so the engine can see when nobody signs with the old one any more.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from keyroll.errors import InvalidToken, UsageError
from keyroll.runtime._clock import epoch_seconds
from keyroll.runtime.keysource import Key, KeySet, KeySource

__all__ = ["WebhookKeyRing", "webhook_key_bytes"]

_PREFIX = "whsec_"


def _invalid() -> NoReturn:
    raise InvalidToken("invalid webhook signature")


def webhook_key_bytes(key: Key) -> bytes:
    """The HMAC key of a Standard Webhooks secret (``whsec_`` + base64)."""
    text = key.value.reveal().strip().removeprefix(_PREFIX)
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) < 24:
        raise UsageError(
            f"{key.origin} (kid {key.kid_hex}) is not a webhook secret: expected whsec_ + base64 "
            "of 24+ random bytes (`keyroll generate`)"
        )
    return raw


@dataclass(frozen=True, slots=True, repr=False)
class _Ring:
    keyset: KeySet
    keys: tuple[tuple[int, bytes], ...]

    def __reduce__(self) -> NoReturn:
        raise TypeError("refuses to be pickled: holds keys")


_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_NAMES = ("webhook-id", "webhook-timestamp", "webhook-signature")


def _header_text(value: object) -> str | None:
    """A header value as text, or None. Senders control it: bytes are decoded (UTF-8), and
    anything unprintable or unencodable (NUL, a lone surrogate) is refused rather than raising."""
    if isinstance(value, bytes | bytearray):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or not value or len(value) > 8192 or not value.isprintable():
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _read_unverified_headers(headers: Mapping[Any, Any]) -> tuple[str, str, str]:
    """``(id, timestamp, signature)`` checked for shape only; `InvalidToken` if unusable."""
    found: dict[str, str | None] = {}
    try:
        for key, value in headers.items():
            name = _header_text(key)
            if name is not None and name.lower() in _NAMES:
                found[name.lower()] = _header_text(value)
    except (AttributeError, TypeError, ValueError):
        _invalid()
    msg_id, stamp, signature = (found.get(name) for name in _NAMES)
    if msg_id is None or stamp is None or signature is None or not _TIMESTAMP.fullmatch(stamp):
        _invalid()
    if not signature.isascii():  # base64 signatures; "v1,ÅÅÅÅ" would not encode below
        _invalid()
    return msg_id, stamp, signature


class WebhookKeyRing:
    """Signs webhooks with every retained secret; verifies against any of them.

    Args:
        source: the webhook secrets.
        tolerance: how far the timestamp may be from now, either way (default 5 minutes).
        clock: wall clock in epoch seconds (``time.time``); tests pass a frozen one.
    """

    def __init__(
        self,
        source: KeySource,
        *,
        tolerance: timedelta = timedelta(minutes=5),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.tolerance = tolerance.total_seconds()
        self._clock = clock
        self._ring: _Ring | None = None
        if not source.lazy:
            self._ring_for(source.snapshot())

    def _ring_for(self, keyset: KeySet) -> _Ring:
        ring = self._ring
        if ring is None or ring.keyset is not keyset:
            ring = _Ring(keyset, tuple((k.kid, webhook_key_bytes(k)) for k in keyset.keys))
            self._ring = ring
        return ring

    @staticmethod
    def _content(msg_id: str, timestamp: int, body: bytes) -> bytes:
        return f"{msg_id}.{timestamp}.".encode() + body

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The ``webhook-signature`` value: ``v1,<b64>`` per retained secret, space-separated."""
        content = self._content(msg_id, timestamp, body)
        ring = self._ring_for(self.source.snapshot())
        return " ".join(
            "v1," + base64.b64encode(hmac.digest(raw, content, hashlib.sha256)).decode()
            for _, raw in ring.keys
        )

    def sign(self, msg_id: str, body: bytes, *, now: float | datetime | None = None) -> dict[str, str]:
        """The three headers to send with ``body``.

        Args:
            msg_id: unique message id (the receiver's idempotency key).
            body: the exact bytes sent.
            now: override the clock.
        """
        timestamp = int(epoch_seconds(now, self._clock))
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": self.signature(msg_id, timestamp, body),
        }

    def verify(self, body: bytes, headers: Mapping[str, str], *, now: float | datetime | None = None) -> int:
        """Check a received webhook; return the kid of the secret that matched.

        Args:
            body: the raw request body, exactly as received.
            headers: the request headers (names are matched case-insensitively).
            now: override the clock.

        Raises:
            InvalidToken: headers missing or malformed, timestamp outside the tolerance, or no
                signature matches a retained secret (one message for all).
        """
        msg_id, stamp, sig_header = _read_unverified_headers(headers)
        timestamp = int(stamp)  # 1 to 12 ASCII digits: no overflow, no "²"
        if abs(epoch_seconds(now, self._clock) - timestamp) > self.tolerance:
            _invalid()
        offered: list[bytes] = []
        for item in sig_header.split(" "):
            version, _, text = item.partition(",")
            if version == "v1" and text:
                offered.append(text.encode("ascii"))
        if not offered:
            _invalid()
        content = self._content(msg_id, timestamp, body)
        ring = self._ring_for(self.source.snapshot())
        for kid, raw in ring.keys:
            expected = base64.b64encode(hmac.digest(raw, content, hashlib.sha256))
            matched = False
            for candidate in offered:  # compare all, so timing does not tell which one matched
                matched |= hmac.compare_digest(expected, candidate)
            if matched:
                self.source.usage.record(kid)
                return kid
        _invalid()

    def __repr__(self) -> str:
        return f"WebhookKeyRing(source={self.source!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("WebhookKeyRing refuses to be pickled: it holds keys")
