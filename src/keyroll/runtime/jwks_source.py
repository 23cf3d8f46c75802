"""`JWKSKeySource`: verify another service's tokens with the public keys it publishes.

::

    source = JWKSKeySource("https://auth.internal/.well-known/jwks.json")
    ring = JWTKeyRing(source, audience="orders")      # verifies; refuses to sign
    claims = ring.verify(token)

What it does, and why (the outages other JWKS clients have had):

- **Fetches with a timeout** (``timeout`` seconds; httpx when installed, else urllib; no
  redirects; at most ``max_bytes``), at construction (a bad URL fails at startup) and again when
  the document's ``Cache-Control: max-age`` runs out (clamped to ``min_refresh`` …
  ``max_refresh``; ``default_max_age`` when the publisher sends none). It revalidates with
  ``If-None-Match`` when the publisher sent an ETag.
- **Refetches on an unknown kid**, at most once per ``unknown_kid_interval``: a key the
  publisher added since the last fetch verifies at once (PyJWT's ``PyJWKClient`` does this too),
  and a flood of tokens with made-up kids costs one request per interval, not one per token.
- **Keeps the last good key set when a refresh fails** (timeout, 5xx, bad JSON, a document
  with no usable key): it never empties its keys (PyJWT #1162: a failed refresh wiped the
  cache and caused a full outage). Failures are counted (`failures`) and logged without the
  body; the next attempt waits ``min_refresh``.
- **Pins each key's algorithm from its JWK** (``alg``, which must fit the key type; a JWK
  without ``alg`` gets the one its type implies, RSA RS256), never from the token's header:
  ``none``, HMAC, and ``alg`` confusion are refused by `JWTKeyRing`. Keys with ``use`` other
  than ``sig``, kids that are not keyroll's 8 hex digits, unsupported types, and keys published
  *with* private members (the publisher leaked them: such a key proves nothing) are skipped and
  counted (`skipped`).

The keys are public, so the snapshot's values are public PEMs; the ring verifies with them and
`JWTKeyRing.sign` refuses with a clear error. One key is labelled ``current`` only because a
`KeySet` needs one; it signs nothing.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from keyroll import jwk
from keyroll.errors import KeyrollError, UsageError
from keyroll.model import Label, SecretValue
from keyroll.runtime.keysource import Key, KeySet, KeySource

__all__ = ["JWKSFetchError", "JWKSKeySource"]

logger = logging.getLogger("keyroll.runtime")

_VERIFY_ALGS = frozenset({"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384",
                          "PS512", "EdDSA"})


class JWKSFetchError(KeyrollError):
    """The JWKS could not be fetched or read (the source keeps its last good keys)."""


def _max_age(cache_control: str | None) -> float | None:
    """Seconds from ``Cache-Control`` (``no-store``/``no-cache``: 0), or None if it says none."""
    if not cache_control:
        return None
    for part in cache_control.lower().split(","):
        name, _, value = part.strip().partition("=")
        if name in ("no-store", "no-cache"):
            return 0.0
        if name == "max-age":
            try:
                return max(0.0, float(int(value.strip().strip('"'))))
            except ValueError:
                return None
    return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class JWKSKeySource(KeySource):
    """Public keys from a JWKS URL, for verifying tokens another service signs.

    Args:
        url: ``https://…/.well-known/jwks.json`` (``http://`` for loopback and tests).
        timeout: seconds for one fetch (connect and read).
        default_max_age: cache lifetime when the response has no ``Cache-Control`` max-age.
        min_refresh: never refetch sooner than this (also the retry delay after a failure).
        max_refresh: refetch at least this often, whatever max-age says.
        unknown_kid_interval: at most one refetch per this many seconds for unknown kids.
        max_bytes: a larger response is refused (kept last good keys).
        algorithms: algorithms accepted from the JWKS (default: every asymmetric JWS one).
        headers: extra request headers (e.g. an authorization the publisher asks for).
        clock: monotonic seconds; tests pass a fake one.

    Raises:
        UsageError: the URL is not http(s), or a parameter is out of range.
        JWKSFetchError: the first fetch failed (later failures keep the last good keys).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        default_max_age: float = 300.0,
        min_refresh: float = 30.0,
        max_refresh: float = 86_400.0,
        unknown_kid_interval: float = 30.0,
        max_bytes: int = 1 << 20,
        algorithms: Iterable[str] | None = None,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise UsageError(f"JWKS URL must be https:// (or http:// on loopback), not {url[:40]!r}")
        if not (0 < timeout <= 120):
            raise UsageError("timeout must be between 0 and 120 seconds")
        if not (0 <= min_refresh <= max_refresh):
            raise UsageError("min_refresh must be >= 0 and <= max_refresh")
        if unknown_kid_interval < 0 or default_max_age < 0 or max_bytes <= 0:
            raise UsageError("unknown_kid_interval, default_max_age and max_bytes must be positive")
        self.url = url
        self.timeout = timeout
        self.default_max_age = default_max_age
        self.min_refresh = min_refresh
        self.max_refresh = max_refresh
        self.unknown_kid_interval = unknown_kid_interval
        self.max_bytes = max_bytes
        self.algorithms = frozenset(algorithms) if algorithms is not None else _VERIFY_ALGS
        unknown = self.algorithms - _VERIFY_ALGS
        if unknown:
            raise UsageError(f"algorithms {sorted(unknown)}: a JWKS verifier accepts only "
                             f"asymmetric ones ({', '.join(sorted(_VERIFY_ALGS))})")
        self.headers = dict(headers or {})
        #: fetches that failed (timeout, HTTP error, unreadable document); never reset
        self.failures = 0
        #: fetches made (200 and 304)
        self.fetches = 0
        #: refetches triggered by an unknown kid
        self.unknown_kid_refetches = 0
        #: JWKs skipped because they were unusable (wrong use, kid, type, private members)
        self.skipped = 0
        self._etag: str | None = None
        self._keys: tuple[Key, ...] = ()
        self._planned_interval = min_refresh
        self._unknown_kid_next = 0.0
        super().__init__(name=f"jwks:{url}", refresh_interval=min_refresh, clock=clock)
        self.refresh()

    # --- fetching -------------------------------------------------------------------------

    def _fetch(self) -> tuple[int, bytes, Mapping[str, str]]:
        """(status, body, lower-cased headers). Raises `JWKSFetchError` (no body in it)."""
        headers = {"Accept": "application/json", "User-Agent": "keyroll-jwks", **self.headers}
        if self._etag:
            headers["If-None-Match"] = self._etag
        try:
            import httpx
        except ImportError:
            return self._fetch_urllib(headers)
        try:
            with (
                httpx.Client(timeout=self.timeout, follow_redirects=False) as client,
                client.stream("GET", self.url, headers=headers) as response,
            ):
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise JWKSFetchError(f"{self.url}: response larger than {self.max_bytes} bytes")
                return response.status_code, bytes(body), {k.lower(): v for k, v in
                                                            response.headers.items()}
        except httpx.HTTPError as exc:
            raise JWKSFetchError(f"{self.url}: {type(exc).__name__}") from None

    def _fetch_urllib(self, headers: Mapping[str, str]) -> tuple[int, bytes, Mapping[str, str]]:
        opener = urllib.request.build_opener(_NoRedirect)
        request = urllib.request.Request(self.url, headers=dict(headers))  # noqa: S310  (http(s) checked)
        try:
            with opener.open(request, timeout=self.timeout) as response:
                body = response.read(self.max_bytes + 1)
                status, found = response.status, response.headers
        except urllib.error.HTTPError as exc:
            status, body, found = exc.code, b"", exc.headers
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise JWKSFetchError(f"{self.url}: {type(exc).__name__}") from None
        if len(body) > self.max_bytes:
            raise JWKSFetchError(f"{self.url}: response larger than {self.max_bytes} bytes")
        return status, body, {k.lower(): v for k, v in found.items()}

    def _parse(self, body: bytes) -> tuple[Key, ...]:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise JWKSFetchError(f"{self.url}: the response is not JSON") from None
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise JWKSFetchError(f"{self.url}: the response has no \"keys\" list")
        keys: list[Key] = []
        seen: set[str] = set()
        for entry in entries[:256]:
            key = self._key(entry, seen)
            if key is None:
                self.skipped += 1
                continue
            seen.add(key.kid_hex)
            keys.append(key)
        if not keys:
            raise JWKSFetchError(f"{self.url}: the JWKS holds no usable signing key")
        return tuple(keys)

    def _key(self, entry: object, seen: set[str]) -> Key | None:
        if not isinstance(entry, dict):
            return None
        kid = entry.get("kid")
        if not isinstance(kid, str) or len(kid) != 8 or any(c not in "0123456789abcdef" for c in kid):
            return None
        if kid in seen or entry.get("use", "sig") != "sig":
            return None
        if _has_private_member(entry):
            logger.warning("keyroll: %s publishes private key material for kid %s: skipped; "
                           "the publisher must rotate that key", self.url, kid)
            return None
        try:
            public = jwk.key_from_jwk(entry)
        except (ValueError, TypeError):
            return None
        alg = entry.get("alg")
        if alg is None:
            alg = jwk.default_algorithm(public)
        if not isinstance(alg, str) or alg not in self.algorithms:
            return None
        if not jwk.key_matches_algorithm(public, alg):
            return None
        label = Label.CURRENT if not seen else Label.PREVIOUS
        return Key(int(kid, 16), SecretValue(jwk.public_pem(public)), label,
                   origin=f"jwks:{self.url}#{kid}", meta=MappingProxyType({"alg": alg}))

    def _fetch_keys(self) -> tuple[tuple[Key, ...], Mapping[str, str]]:
        status, body, headers = self._fetch()
        if status == 304 and self._keys:
            return self._keys, headers
        if status != 200:
            raise JWKSFetchError(f"{self.url}: HTTP {status}")
        keys = self._parse(body)
        self._etag = headers.get("etag")
        return keys, headers

    def _load(self) -> Sequence[Key]:
        try:
            keys, headers = self._fetch_keys()
        except JWKSFetchError:
            self.failures += 1
            self._planned_interval = self.min_refresh
            raise
        self.fetches += 1
        age = _max_age(headers.get("cache-control"))
        wanted = self.default_max_age if age is None else age
        self._planned_interval = min(max(wanted, self.min_refresh), self.max_refresh)
        self._keys = keys
        return keys

    def _after_refresh(self) -> None:
        # the base class planned the next reload with the old interval; use what this fetch said
        self.refresh_interval = self._planned_interval
        self._next_refresh = self._clock() + self._planned_interval

    def refresh_for_unknown_kid(self, kid_hex: str) -> KeySet | None:
        """Refetch for a kid not in the snapshot, at most once per ``unknown_kid_interval``."""
        now = self._clock()
        if now < self._unknown_kid_next or not self._lock.acquire(blocking=False):
            return None
        try:
            if now < self._unknown_kid_next:
                return None
            self._unknown_kid_next = now + self.unknown_kid_interval
            self.unknown_kid_refetches += 1
            return self._reload(self._keyset)
        finally:
            self._lock.release()


def _has_private_member(entry: Mapping[str, Any]) -> bool:
    return any(member in entry for member in jwk.PRIVATE_MEMBERS)
