"""JWTKeyRing: kid lookup, PyJWT interoperability, claims, pinning, tamper resistance."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keyroll._compat import UTC
from keyroll.errors import InvalidToken, UsageError
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import Key, StaticKeySource, StoreKeySource
from keyroll.stores.base import Store
from tests.unit.runtime.conftest import FakeClock
from tests.unit.runtime.support import jwt_value, put, rotate

A, B, C = jwt_value(), jwt_value(), jwt_value()
NOW = 1_763_776_800.0
HOUR = timedelta(hours=1)


def ring(*values: SecretValue, **kwargs: object) -> JWTKeyRing:
    return JWTKeyRing(StaticKeySource.of(*values), clock=lambda: NOW, **kwargs)  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_sign_then_verify() -> None:
    r = ring(A)
    token = r.sign({"sub": "user-1"}, ttl=HOUR)
    claims = r.verify(token)
    assert claims["sub"] == "user-1"
    assert claims["exp"] == int(NOW) + 3600
    assert pyjwt.get_unverified_header(token)["kid"] == f"{r.current_kid:08x}"


def test_interoperates_with_plain_pyjwt_both_ways() -> None:
    r = ring(A)
    token = r.sign({"sub": "u"}, ttl=HOUR)
    decoded = pyjwt.decode(
        token, A.reveal(), algorithms=["HS256"], options={"verify_exp": False, "verify_iat": False}
    )
    assert decoded["sub"] == "u"
    theirs = pyjwt.encode(
        {"sub": "v", "exp": int(NOW) + 60},
        A.reveal(),
        algorithm="HS256",
        headers={"kid": f"{r.current_kid:08x}"},
    )
    assert r.verify(theirs)["sub"] == "v"


def test_previous_key_verifies_and_usage_is_counted_per_kid() -> None:
    old = ring(A)
    token = old.sign({"sub": "u"}, ttl=HOUR)
    new = ring(B, A)
    _, kid = new.verify_with_kid(token)
    assert kid == old.current_kid != new.current_kid
    usage = new.source.usage.snapshot()
    assert usage[kid].count == 1 and usage[kid].legacy == 0


def test_unknown_kid_is_rejected_not_tried() -> None:
    token = ring(C).sign({"sub": "u"}, ttl=HOUR)
    with pytest.raises(InvalidToken):
        ring(A, B).verify(token)


def test_kidless_token_accepted_while_one_key() -> None:
    token = pyjwt.encode({"sub": "u", "exp": int(NOW) + 60}, A.reveal(), algorithm="HS256")
    assert ring(A).verify(token)["sub"] == "u"


def test_kidless_token_refused_with_two_keys_unless_legacy_fallback() -> None:
    token = pyjwt.encode({"sub": "u", "exp": int(NOW) + 60}, A.reveal(), algorithm="HS256")
    with pytest.raises(InvalidToken):
        ring(B, A).verify(token)
    legacy = ring(B, A, legacy_kidless=True)
    _, kid = legacy.verify_with_kid(token)
    assert legacy.source.usage.snapshot()[kid].legacy == 1


def test_alg_is_pinned_per_key() -> None:
    r = ring(A)
    kid = f"{r.current_kid:08x}"
    for alg in ("HS512", "none"):
        header = b64(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
        body = b64(json.dumps({"sub": "u", "exp": int(NOW) + 60}).encode())
        with pytest.raises(InvalidToken):
            r.verify(f"{header}.{body}.")
    token = pyjwt.encode({"exp": int(NOW) + 60}, A.reveal(), algorithm="HS512", headers={"kid": kid})
    with pytest.raises(InvalidToken):
        r.verify(token)


def test_alg_from_store_metadata(store: Store) -> None:
    ref = SecretRef("prod", "jwt-refresh")
    version = store.put_version(ref, A, meta={"alg": "HS384"})
    store.set_labels(ref, expected={}, new={Label.CURRENT: version.number})
    r = JWTKeyRing(StoreKeySource(store, ref))
    token = r.sign({"sub": "u"}, ttl=HOUR)
    assert pyjwt.get_unverified_header(token)["alg"] == "HS384"
    assert r.verify(token)["sub"] == "u"


def test_eddsa_key_signs_and_verifies() -> None:
    pem = (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    r = JWTKeyRing(StaticKeySource([Key(9, SecretValue(pem))]), algorithm="EdDSA")
    assert r.verify(r.sign({"sub": "u"}, ttl=HOUR))["sub"] == "u"
    assert pem not in repr(r)


def test_short_hmac_key_is_refused_at_construction() -> None:
    with pytest.raises(UsageError, match="kid 00000001"):
        JWTKeyRing(StaticKeySource([Key(1, SecretValue("k" * 40))]), algorithm="HS512")


@pytest.mark.parametrize(
    ("claims", "kwargs"),
    [
        ({"exp": int(NOW) - 1}, {}),
        ({"exp": int(NOW)}, {}),
        ({"exp": int(NOW) + 60, "nbf": int(NOW) + 30}, {}),
        ({"exp": int(NOW) + 60, "iat": int(NOW) + 30}, {}),
        ({"exp": "soon"}, {}),
        ({}, {}),  # exp required by default
        ({"exp": int(NOW) + 60, "aud": "other"}, {"audience": "api"}),
        ({"exp": int(NOW) + 60, "aud": "api"}, {}),  # aud present, none expected
        ({"exp": int(NOW) + 60}, {"audience": "api"}),
        ({"exp": int(NOW) + 60, "iss": "evil"}, {"issuer": "auth"}),
    ],
)
def test_claims_rejected(claims: dict[str, object], kwargs: dict[str, object]) -> None:
    r = ring(A, **kwargs)
    token = pyjwt.encode(claims, A.reveal(), algorithm="HS256", headers={"kid": f"{r.current_kid:08x}"})
    with pytest.raises(InvalidToken, match=r"^invalid token$"):
        r.verify(token)


def test_leeway_and_audience_accepted() -> None:
    r = ring(A, leeway=timedelta(seconds=10), audience="api", issuer="auth")
    token = r.sign({"aud": ["web", "api"], "iss": "auth", "exp": int(NOW) - 5})
    assert r.verify(token)["iss"] == "auth"


def test_time_is_a_parameter() -> None:
    r = ring(A)
    token = r.sign({}, ttl=HOUR, now=datetime.fromtimestamp(NOW, UTC))
    r.verify(token, now=NOW + 3599)
    with pytest.raises(InvalidToken):
        r.verify(token, now=NOW + 3600)


def test_every_byte_flipped_is_rejected_with_one_error() -> None:
    r = ring(A, B)
    token = r.sign({"sub": "user-1", "role": "admin"}, ttl=HOUR)
    r.verify(token)
    for i in range(len(token)):
        flipped = token[:i] + chr(ord(token[i]) ^ 0x01) + token[i + 1 :]
        with pytest.raises(InvalidToken, match=r"^invalid token$"):
            r.verify(flipped)
    for cut in range(len(token)):
        with pytest.raises(InvalidToken):
            r.verify(token[:cut])


def test_non_canonical_signature_encoding_is_rejected() -> None:
    r = ring(A)
    token = r.sign({"sub": "u"}, ttl=HOUR)
    head, _, sig = token.rpartition(".")
    # the last char of a 43-char segment carries 4 spare bits: same bytes, other spelling
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    sibling = alphabet[last ^ 0x01]
    assert base64.urlsafe_b64decode(sig[:-1] + sibling + "=") == base64.urlsafe_b64decode(sig + "=")
    with pytest.raises(InvalidToken):
        r.verify(f"{head}.{sig[:-1]}{sibling}")


@pytest.mark.parametrize(
    "garbage",
    ["", ".", "..", "a.b.c", "a.b", "a.b.c.d", "é.é.é", b"\xff.\xff.\xff", "e30.e30.", "W10.e30.x"],
)
def test_garbage_is_rejected(garbage: str | bytes) -> None:
    with pytest.raises(InvalidToken):
        ring(A).verify(garbage)


def test_crit_header_is_rejected() -> None:
    r = ring(A)
    token = pyjwt.encode(
        {"exp": int(NOW) + 60},
        A.reveal(),
        algorithm="HS256",
        headers={"kid": f"{r.current_kid:08x}", "crit": ["exp"]},
    )
    with pytest.raises(InvalidToken):
        r.verify(token)


def test_ring_follows_store_rotation(store: Store, ref: SecretRef, clock: FakeClock) -> None:
    put(store, ref, A, Label.CURRENT)
    r = JWTKeyRing(StoreKeySource(store, ref, refresh_interval=5, clock=clock), clock=lambda: NOW)
    old_token = r.sign({"sub": "u"}, ttl=HOUR)
    v2 = rotate(store, ref, B)
    clock.advance(5)
    new_token = r.sign({"sub": "u"}, ttl=HOUR)
    assert pyjwt.get_unverified_header(new_token)["kid"] == v2.kid_hex
    assert r.verify(old_token)["sub"] == r.verify(new_token)["sub"] == "u"


def test_access_and_refresh_rings_do_not_cross(store: Store) -> None:
    access_ref, refresh_ref = SecretRef("prod", "jwt-access"), SecretRef("prod", "jwt-refresh")
    put(store, access_ref, A, Label.CURRENT)
    put(store, refresh_ref, B, Label.CURRENT)
    access = JWTKeyRing(StoreKeySource(store, access_ref))
    refresh = JWTKeyRing(StoreKeySource(store, refresh_ref))
    with pytest.raises(InvalidToken):
        access.verify(refresh.sign({"sub": "u"}, ttl=HOUR))


def test_signing_without_exp_is_refused_and_alg_header_cannot_override() -> None:
    r = ring(A)
    with pytest.raises(UsageError, match="without exp"):
        r.sign({"sub": "u"})
    token = r.sign({"sub": "u"}, ttl=HOUR, headers={"alg": "none", "typ": "JWT"})
    assert pyjwt.get_unverified_header(token)["alg"] == "HS256"
    assert r.verify(token)["sub"] == "u"
