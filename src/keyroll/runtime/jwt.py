"""`JWTKeyRing`: sign with the current key, verify with any retained key, picked by ``kid``.

Tokens are ordinary JWS compact tokens, interoperable with PyJWT both ways: keyroll signs
through `jwt.encode` with ``kid`` (8 hex digits) in the header; a token PyJWT signed with a
``kid`` header verifies here.

Verification parses the token once: header → key by kid (O(1), flat in the number of keys) →
``alg`` must be the key's pinned algorithm → signature through PyJWT's own algorithm object
with a key prepared once per key-set generation → claims. It does not call `jwt.decode`: that
would parse the header a second time and re-prepare the key on every call (the issue measures
``get_unverified_header`` + ``decode`` at 0.62× of a single-key decode). The signature check
itself stays PyJWT's (``Algorithm.verify``); the bench shows it is not the bottleneck, so
keyroll has no HMAC code of its own. Claims (``exp``, ``nbf``, ``iat``, ``aud``, ``iss``,
required claims) are checked here because PyJWT reads the wall clock itself and keyroll takes
time as a parameter; the rules follow PyJWT's.

Asymmetric keys (ES256, RS256, PS256, EdDSA) come as PEM: a private key signs and verifies; a
public key (from a `JWKSKeySource`, or a public PEM) only verifies, and `sign` refuses with a
`UsageError`. The algorithm is pinned per key: from the key's metadata (``alg``, which the store
and the JWKS carry), else the ring's ``algorithm`` if it fits the key, else the one the key
implies (an EC P-256 key is ES256); it must fit the key (ES256 only with P-256, EdDSA only with
Ed25519/Ed448), and the token header's ``alg`` must equal it, so no ``alg`` confusion
(``none``, or HS256 "signed" with a published public key) gets through: PyJWT's HMAC refuses a
PEM as a secret, and an asymmetric key never meets an HMAC algorithm.

A ``kid`` the ring does not hold is offered to the source once (`KeySource.refresh_for_unknown_kid`):
a `JWKSKeySource` refetches, rate-limited, so a key published after the last fetch verifies.

Tokens without ``kid`` verify only while the ring holds a single key, or with
``legacy_kidless=True`` (every key tried, current first, each success counted as legacy in the
usage counters). A ``kid`` the ring does not know is rejected, never tried against other keys.

Use separate rings (separate secrets) for access and refresh tokens (seed 004 §3): a refresh
token then never verifies as an access token.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

import jwt as pyjwt
from jwt.algorithms import Algorithm

from keyroll import jwk
from keyroll.errors import InvalidToken, UsageError
from keyroll.runtime._clock import epoch_seconds
from keyroll.runtime.keysource import Key, KeySet, KeySource

__all__ = ["JWTKeyRing"]

_HMAC_ALGS = frozenset({"HS256", "HS384", "HS512"})
_SUPPORTED = _HMAC_ALGS | {
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
}  # fmt: skip


def _invalid() -> NoReturn:
    # One error, one message: the caller must not learn which check failed.
    raise InvalidToken("invalid token")


def _is_kid(text: str) -> bool:
    return len(text) == 8 and all(c in "0123456789abcdef" for c in text)


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@dataclass(frozen=True, slots=True, repr=False)
class _Prepared:
    kid: int
    kid_hex: str
    alg_name: str
    alg: Algorithm
    sign_key: Any
    verify_key: Any

    def __reduce__(self) -> NoReturn:
        raise TypeError("refuses to be pickled: holds a key")


def _algorithm_of(key: Key, default_alg: str, text: str) -> str:
    if "alg" in key.meta:
        return str(key.meta["alg"])
    if not jwk.looks_like_pem_key(text):
        return default_alg
    try:
        loaded = jwk.load_pem_key(text, validate=False)
    except ValueError:
        return default_alg  # reported below as "not a valid key"
    if default_alg not in _HMAC_ALGS and jwk.key_matches_algorithm(loaded, default_alg):
        return default_alg
    try:
        return jwk.default_algorithm(loaded)
    except ValueError:
        return default_alg


def _prepare(key: Key, default_alg: str) -> _Prepared:
    text = key.value.reveal()
    alg_name = _algorithm_of(key, default_alg, text)
    if alg_name not in _SUPPORTED:
        raise UsageError(f"{key.origin}: unsupported JWT algorithm {alg_name!r}")
    alg = pyjwt.get_algorithm_by_name(alg_name)
    try:
        prepared = alg.prepare_key(text)
    except Exception:  # noqa: BLE001  (PyJWT and cryptography raise many types for a bad key)
        raise UsageError(f"{key.origin} (kid {key.kid_hex}) is not a valid {alg_name} key") from None
    if alg_name not in _HMAC_ALGS and not jwk.key_matches_algorithm(prepared, alg_name):
        raise UsageError(f"{key.origin} (kid {key.kid_hex}): its key type does not fit {alg_name}")
    short = alg.check_key_length(prepared)
    if short:
        raise UsageError(f"{key.origin} (kid {key.kid_hex}): {short}")
    if alg_name in _HMAC_ALGS:
        return _Prepared(key.kid, key.kid_hex, alg_name, alg, prepared, prepared)
    if jwk.is_private(prepared):
        return _Prepared(key.kid, key.kid_hex, alg_name, alg, prepared, prepared.public_key())
    # a public key: verifies, never signs
    return _Prepared(key.kid, key.kid_hex, alg_name, alg, None, prepared)


@dataclass(frozen=True, slots=True, repr=False)
class _Ring:
    keyset: KeySet
    current: _Prepared
    by_kid_hex: Mapping[str, _Prepared]
    ordered: tuple[_Prepared, ...]


class JWTKeyRing:
    """Signs JWTs with the current key and verifies them with any retained key.

    Args:
        source: where the keys come from (`StoreKeySource`, `EnvKeySource` …).
        algorithm: the algorithm pinned to keys whose store metadata names none (``alg``).
            HS256/384/512 take the secret as is; RS/PS/ES/EdDSA take a PEM key (private to
            sign; public keys only verify). A PEM key under the default HS256 gets the
            algorithm its type implies (P-256: ES256, Ed25519: EdDSA, RSA: RS256).
        audience: if set, ``aud`` must contain it; if None, a token with ``aud`` is refused
            (as in PyJWT).
        issuer: if set, ``iss`` must equal it.
        leeway: clock skew tolerated on ``exp``/``nbf``/``iat``.
        require: claims that must be present (default: ``exp``, so no token lives forever).
        legacy_kidless: accept tokens without ``kid`` while several keys are retained, trying
            each (counted as legacy). Off by default; meant for the migration from single-key.
        clock: wall clock in epoch seconds (``time.time``); tests pass a frozen one.
    """

    def __init__(
        self,
        source: KeySource,
        *,
        algorithm: str = "HS256",
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float | timedelta = 0,
        require: Iterable[str] = ("exp",),
        legacy_kidless: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm not in _SUPPORTED:
            raise UsageError(f"unsupported JWT algorithm {algorithm!r}: use one of {sorted(_SUPPORTED)}")
        self.source = source
        self.algorithm = algorithm
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway.total_seconds() if isinstance(leeway, timedelta) else float(leeway)
        self.require = tuple(require)
        self.legacy_kidless = legacy_kidless
        self._clock = clock
        self._ring: _Ring | None = None
        if not source.lazy:
            self._ring_for(source.snapshot())  # fail at construction on a bad key

    def _ring_for(self, keyset: KeySet) -> _Ring:
        ring = self._ring
        if ring is not None and ring.keyset is keyset:
            return ring
        prepared = tuple(_prepare(k, self.algorithm) for k in keyset.keys)
        ring = _Ring(keyset, prepared[0], {p.kid_hex: p for p in prepared}, prepared)
        self._ring = ring
        return ring

    # --- signing --------------------------------------------------------------------------

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        ttl: timedelta | None = None,
        headers: Mapping[str, Any] | None = None,
        now: float | datetime | None = None,
    ) -> str:
        """A token for ``claims``, signed with the current key, ``kid`` in its header.

        Args:
            claims: the payload. ``iat`` is set to now; ``exp`` to now + ``ttl`` if given.
            ttl: lifetime; required unless ``claims`` has ``exp`` already.
            headers: extra JOSE header fields (``kid`` and ``alg`` are always the key's).
            now: override the clock (epoch seconds or aware datetime).

        Raises:
            UsageError: a claim the ring requires on verify (``exp`` by default) is missing.
        """
        ring = self._ring_for(self.source.snapshot())
        key = ring.current
        if key.sign_key is None:
            raise UsageError(
                f"{self.source.name}: kid {key.kid_hex} is a public key: this ring verifies "
                "tokens but cannot sign them; sign where the private key is (StoreKeySource)"
            )
        moment = epoch_seconds(now, self._clock)
        payload = dict(claims)
        payload.setdefault("iat", int(moment))
        if ttl is not None:
            payload["exp"] = int(moment + ttl.total_seconds())
        missing = [c for c in self.require if payload.get(c) is None]
        if missing:
            raise UsageError(
                f"cannot sign a token without {', '.join(missing)}: this ring refuses such "
                "tokens on verify; pass ttl= or the claim"
            )
        header = dict(headers or {})
        header.pop("alg", None)  # PyJWT lets a header "alg" override the pinned algorithm
        header["kid"] = key.kid_hex
        return pyjwt.encode(payload, key.sign_key, algorithm=key.alg_name, headers=header)

    # --- verification ---------------------------------------------------------------------

    def verify(
        self,
        token: str | bytes,
        *,
        audience: str | None = None,
        now: float | datetime | None = None,
    ) -> dict[str, Any]:
        """The claims of a valid token.

        Args:
            token: a compact JWS.
            audience: overrides the ring's ``audience`` for this call.
            now: override the clock (epoch seconds or aware datetime).

        Raises:
            InvalidToken: for every failure (malformed, unknown kid, wrong alg, bad signature,
                expired, not yet valid, wrong audience/issuer, missing claim), one message.
        """
        claims, _ = self.verify_with_kid(token, audience=audience, now=now)
        return claims

    def verify_with_kid(
        self,
        token: str | bytes,
        *,
        audience: str | None = None,
        now: float | datetime | None = None,
    ) -> tuple[dict[str, Any], int]:
        """Like `verify`, and also the kid of the key that verified it."""
        if isinstance(token, bytes):
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError:
                _invalid()
        parts = token.split(".")
        if len(parts) != 3:
            _invalid()
        header_b64, payload_b64, sig_b64 = parts
        try:
            header = json.loads(_b64decode(header_b64))
            signature = _b64decode(sig_b64)
        except (ValueError, binascii.Error, RecursionError):
            _invalid()
        if not isinstance(header, dict) or "crit" in header:
            _invalid()
        # Only a canonical encoding verifies: base64 ignores the spare bits of the last
        # character, which would make one signature valid under several spellings.
        if base64.urlsafe_b64encode(signature).rstrip(b"=").decode() != sig_b64:
            _invalid()
        signing_input = f"{header_b64}.{payload_b64}".encode()
        ring = self._ring_for(self.source.snapshot())
        kid_hex = header.get("kid")
        legacy = False
        if kid_hex is None:
            if len(ring.ordered) == 1:
                candidates: tuple[_Prepared, ...] = ring.ordered
            elif self.legacy_kidless:
                candidates, legacy = ring.ordered, True
            else:
                _invalid()
        else:
            found = ring.by_kid_hex.get(kid_hex) if isinstance(kid_hex, str) else None
            if found is None and isinstance(kid_hex, str) and _is_kid(kid_hex):
                # a key published after the source's last load (a JWKS): refetch, rate-limited
                fresh = self.source.refresh_for_unknown_kid(kid_hex)
                if fresh is not None:
                    ring = self._ring_for(fresh)
                    found = ring.by_kid_hex.get(kid_hex)
            if found is None:
                _invalid()
            candidates = (found,)
        alg_name = header.get("alg")
        for key in candidates:
            if alg_name == key.alg_name and key.alg.verify(signing_input, key.verify_key, signature):
                break
        else:
            _invalid()
        try:
            payload = json.loads(_b64decode(payload_b64))
        except (ValueError, binascii.Error, RecursionError):
            _invalid()
        if not isinstance(payload, dict):
            _invalid()
        self._check_claims(payload, epoch_seconds(now, self._clock), audience or self.audience)
        self.source.usage.record(key.kid, legacy=legacy)
        return payload, key.kid

    def _check_claims(self, payload: dict[str, Any], now: float, audience: str | None) -> None:
        for claim in self.require:
            if payload.get(claim) is None:
                _invalid()
        leeway = self.leeway
        try:
            if "exp" in payload and int(payload["exp"]) <= now - leeway:
                _invalid()
            if "nbf" in payload and int(payload["nbf"]) > now + leeway:
                _invalid()
            if "iat" in payload and int(payload["iat"]) > now + leeway:
                _invalid()
        except (TypeError, ValueError, OverflowError):
            _invalid()
        if "aud" in payload or audience is not None:
            aud = payload.get("aud")
            auds = [aud] if isinstance(aud, str) else aud
            if (
                audience is None
                or not isinstance(auds, list)
                or not all(isinstance(a, str) for a in auds)
                or audience not in auds
            ):
                _invalid()
        if self.issuer is not None and payload.get("iss") != self.issuer:
            _invalid()

    # --- introspection --------------------------------------------------------------------

    @property
    def current_kid(self) -> int:
        """The kid new tokens are signed with."""
        return self._ring_for(self.source.snapshot()).current.kid

    def __repr__(self) -> str:
        return f"JWTKeyRing(source={self.source!r}, algorithm={self.algorithm!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("JWTKeyRing refuses to be pickled: it holds keys")
