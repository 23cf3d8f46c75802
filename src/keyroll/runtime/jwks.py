"""The JWKS a signing service publishes: the public half of every key its source retains.

::

    source = StoreKeySource(store, SecretRef("prod", "jwt-access"))   # current, previous, pending
    document = jwks_document(source)          # {"keys": [{"kty": "EC", "kid": …, "alg": "ES256", …}]}

The document holds the *next* (pending), *current* and *previous* keys, in that order of
labels' lifetimes (Auth0's "next, current, previous"): a verifier that fetched it before a
promotion already knows the key that signs after it, and one that fetches it during the overlap
still knows the key older tokens carry. Each entry has ``kid`` (8 hex digits, as in the tokens'
headers), ``alg`` (pinned, as the key's metadata says), ``use: "sig"`` and the public members
only: it is built from the public key object (`keyroll.jwk.public_jwk`), so no private member
(``d``, ``p``, ``q``, ``dp``, ``dq``, ``qi``) can appear. A source holding an HMAC secret is
refused: a symmetric key has no public half, and publishing it would publish the secret.

The same function feeds ``keyroll export --format jwks``, the ``write_jwks`` deploy hook and
`keyroll.runtime.jwks_starlette.jwks_response`, so every published copy says the same thing.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from keyroll import jwk
from keyroll.errors import UsageError
from keyroll.model import Label
from keyroll.runtime.keysource import Key, KeySet, KeySource

__all__ = ["jwks_body", "jwks_document", "public_entry"]

_ORDER = {Label.PENDING: 0, Label.CURRENT: 1, Label.PREVIOUS: 2}


def public_entry(key: Key, *, algorithm: str | None = None) -> dict[str, str]:
    """The public JWK of one retained key: ``kid``, ``alg``, ``use`` and public members.

    Args:
        key: a key whose value is a PEM key (private or public).
        algorithm: the algorithm for a key whose metadata names none (else: what it implies).

    Raises:
        UsageError: the key is not an asymmetric PEM key (message names the key, not its value).
    """
    text = key.value.reveal()
    if not jwk.looks_like_pem_key(text):
        raise UsageError(
            f"{key.origin} (kid {key.kid_hex}) is not a key pair: a JWKS publishes only public "
            "keys (set options.algorithm to ES256, RS256, PS256 or EdDSA)"
        )
    try:
        loaded = jwk.load_pem_key(text, validate=False)
        members = jwk.public_jwk(loaded)
    except ValueError:
        raise UsageError(f"{key.origin} (kid {key.kid_hex}) is not a readable PEM key") from None
    alg = str(key.meta.get("alg") or "")
    if not alg:
        fits = algorithm is not None and jwk.key_matches_algorithm(loaded, algorithm)
        alg = algorithm if fits and algorithm else jwk.default_algorithm(loaded)
    if not jwk.key_matches_algorithm(loaded, alg):
        raise UsageError(f"{key.origin} (kid {key.kid_hex}): its key type does not fit {alg}")
    return {**members, "kid": key.kid_hex, "alg": alg, "use": "sig"}


def jwks_document(source: KeySource | KeySet, *, algorithm: str | None = None) -> dict[str, Any]:
    """``{"keys": [...]}``: the public keys of every key the source retains, pending first.

    Raises:
        UsageError: a key is not an asymmetric key (an HMAC secret is never published).
    """
    keyset = source.snapshot() if isinstance(source, KeySource) else source
    keys = sorted(keyset.keys, key=lambda k: _ORDER[k.label])
    return {"keys": [public_entry(k, algorithm=algorithm) for k in keys]}


_cache_lock = threading.Lock()
_cache: dict[int, tuple[KeySource, KeySet, bytes, str]] = {}
_CACHE_SIZE = 64


def jwks_body(source: KeySource, *, algorithm: str | None = None) -> tuple[bytes, str]:
    """The JWKS as compact JSON bytes and its strong ETag (quoted SHA-256 prefix).

    Built once per key-set snapshot of the source (parsing PEM keys costs more than a request
    should), then served from memory until the source reloads a different set.
    """
    keyset = source.snapshot()
    with _cache_lock:
        hit = _cache.get(id(source))
    if hit is not None and hit[0] is source and hit[1] is keyset:
        return hit[2], hit[3]
    body = json.dumps(jwks_document(keyset, algorithm=algorithm), separators=(",", ":")).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            _cache.clear()
        _cache[id(source)] = (source, keyset, body, etag)
    return body, etag
