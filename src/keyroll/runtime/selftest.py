"""Round trips that prove a key works before anyone depends on it (the engine's ``test`` step).

::

    source = StoreKeySource(store, ref, primary=Label.PENDING, accept=(Label.CURRENT,))
    kid = round_trip(source, Kind.JWT_SIGNING)      # raises if the pending key is unusable

The round trip goes through the same key ring an application uses, so a key that passes here is
one every app can sign, encrypt or verify with.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from keyroll.errors import InvalidToken, UsageError
from keyroll.model import Kind
from keyroll.runtime.fields import FieldCipher
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import KeySource
from keyroll.runtime.webhooks import WebhookKeyRing

__all__ = ["RUNTIME_KINDS", "round_trip"]

#: Kinds whose values a runtime key ring uses (others are tested against their target).
RUNTIME_KINDS = frozenset({Kind.JWT_SIGNING, Kind.ENCRYPTION_KEY, Kind.WEBHOOK_HMAC})


def round_trip(source: KeySource, kind: Kind | str, *, algorithm: str = "HS256") -> int:
    """Sign and verify (or encrypt and decrypt) once with the source's current key.

    Args:
        source: the keys to test; its ``current`` role is the key under test.
        kind: what the secret is for: ``jwt-signing``, ``encryption-key`` or ``webhook-hmac``.
        algorithm: the JWT algorithm for keys whose metadata names none.

    Returns:
        The kid of the key that was tested.

    Raises:
        UsageError: the kind has no runtime round trip, or the value is not a valid key for it
            (the message names the version and kid, never the value).
        InvalidToken: the round trip failed.
    """
    kind = Kind(kind)
    probe = secrets.token_hex(8)
    if kind is Kind.JWT_SIGNING:
        jwt_ring = JWTKeyRing(source, algorithm=algorithm)
        claims, kid = jwt_ring.verify_with_kid(
            jwt_ring.sign({"sub": "keyroll-self-test", "jti": probe}, ttl=timedelta(minutes=1))
        )
        ok = claims.get("jti") == probe
    elif kind is Kind.ENCRYPTION_KEY:
        cipher = FieldCipher(source)
        blob = cipher.encrypt(probe.encode(), context="keyroll-self-test")
        ok = cipher.decrypt(blob, context="keyroll-self-test") == probe.encode()
        kid = cipher.kid_of(blob) or 0
    elif kind is Kind.WEBHOOK_HMAC:
        hooks = WebhookKeyRing(source)
        kid = hooks.verify(probe.encode(), hooks.sign(f"msg_{probe}", probe.encode()))
        ok = True
    else:
        raise UsageError(
            f"{kind.value} keys are not used by a runtime key ring: test them against their target"
        )
    if not ok or kid != source.snapshot().current.kid:
        raise InvalidToken("self-test round trip failed")
    return kid
