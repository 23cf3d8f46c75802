"""JWKS: the published document, the Starlette endpoint, and `JWKSKeySource` against a real
local HTTP server (fetch, max-age, unknown-kid refetch, failures, tampering)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import sys
import warnings
from collections.abc import Iterator
from datetime import timedelta

import jwt as pyjwt
import pytest
from fastapi import FastAPI, Request, Response
from starlette.exceptions import StarletteDeprecationWarning

from keyroll import jwk
from keyroll.errors import InvalidToken, UsageError
from keyroll.generate import generate
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.runtime.jwks import jwks_body, jwks_document
from keyroll.runtime.jwks_source import JWKSFetchError, JWKSKeySource
from keyroll.runtime.jwks_starlette import jwks_response
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import Key, StaticKeySource, StoreKeySource
from keyroll.stores.base import Store
from tests.jwks_server import JWKSServer, serve_jwks
from tests.leaks import assert_no_leak
from tests.unit.runtime.conftest import FakeClock
from tests.unit.runtime.support import promote, put

with warnings.catch_warnings():  # as tests/unit/dashboard/conftest.py: httpx, not httpx2
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

HOUR = timedelta(hours=1)
NOW = 1_763_776_800.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def keyset_source(*formats: str, alg: str | None = None) -> tuple[StaticKeySource, list[SecretValue]]:
    values = [generate(f) for f in formats]
    labels = [Label.CURRENT, Label.PREVIOUS, Label.PENDING][: len(values)]
    meta = {"alg": alg} if alg else {}
    pairs = enumerate(zip(values, labels, strict=True))
    keys = [Key(0x1000 + i, v, label, meta=meta) for i, (v, label) in pairs]
    return StaticKeySource(keys), values


class Published:
    """What a publishing service serves: the JWKS of a static set that the test changes."""

    def __init__(self, source: StaticKeySource) -> None:
        self.source = source

    def __call__(self) -> bytes:
        return json.dumps(jwks_document(self.source)).encode()


@pytest.fixture
def published() -> Iterator[tuple[JWKSServer, Published, list[SecretValue]]]:
    source, values = keyset_source("ec-p256", "ec-p256")
    body = Published(source)
    with serve_jwks(body) as server:
        yield server, body, values


def signer(value: SecretValue, kid: int, alg: str | None = None) -> JWTKeyRing:
    meta = {"alg": alg} if alg else {}
    return JWTKeyRing(StaticKeySource([Key(kid, value, meta=meta)]), clock=lambda: NOW)


# --- the document ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["ec-p256", "rsa-2048", "ed25519"])
def test_the_jwks_holds_next_current_previous_and_nothing_private(fmt: str) -> None:
    source, values = keyset_source(fmt, fmt, fmt)
    document = jwks_document(source)
    keys = document["keys"]
    # pending (next) first, then current, then previous
    assert [k["kid"] for k in keys] == ["00001002", "00001000", "00001001"]
    for entry, value in zip(keys, [values[2], values[0], values[1]], strict=True):
        assert not jwk.PRIVATE_MEMBERS & set(entry), entry.keys()
        assert entry["use"] == "sig"
        assert entry["alg"] == {"ec-p256": "ES256", "rsa-2048": "RS256", "ed25519": "EdDSA"}[fmt]
        assert jwk.thumbprint(entry).hex()[:16] == value.fingerprint
    body, etag = jwks_body(source)
    assert_no_leak([body, etag], [v.reveal() for v in values], where="the JWKS")
    for value in values:  # nor any private number of any key, in any encoding
        private = json.loads(pyjwt.algorithms.get_default_algorithms()[
            keys[0]["alg"] if fmt != "ed25519" else "EdDSA"].to_jwk(
            jwk.load_pem_key(value.reveal())))
        secrets = [private[m] for m in jwk.PRIVATE_MEMBERS if m in private]
        assert secrets
        assert_no_leak([body], secrets, where="the JWKS")


def test_the_algorithm_comes_from_the_key_metadata() -> None:
    source, _ = keyset_source("rsa-2048", alg="PS256")
    assert jwks_document(source)["keys"][0]["alg"] == "PS256"
    wrong, _ = keyset_source("ed25519", alg="ES256")
    with pytest.raises(UsageError, match="does not fit ES256"):
        jwks_document(wrong)


def test_an_hmac_secret_is_never_published() -> None:
    secret = generate("base64-48")
    with pytest.raises(UsageError, match="a JWKS publishes only public keys") as caught:
        jwks_document(StaticKeySource([Key(7, secret)]))
    assert_no_leak([str(caught.value)], [secret.reveal()])


def test_store_source_publishes_pending_current_previous(store: Store) -> None:
    ref = SecretRef("prod", "jwt-api")
    first = put(store, ref, generate("ec-p256"), Label.CURRENT)
    second = put(store, ref, generate("ec-p256"), Label.PENDING)
    source = StoreKeySource(store, ref, refresh_interval=0)
    assert [k["kid"] for k in jwks_document(source)["keys"]] == [second.kid_hex, first.kid_hex]
    promote(store, ref)
    assert [k["kid"] for k in jwks_document(source)["keys"]] == [second.kid_hex, first.kid_hex]
    store.set_labels(ref, expected={Label.PREVIOUS: first.number}, new={Label.PREVIOUS: None})
    assert [k["kid"] for k in jwks_document(source)["keys"]] == [second.kid_hex]


def test_jwks_response_has_cache_control_and_etag() -> None:
    source, values = keyset_source("ec-p256", "ed25519")
    app = FastAPI()

    @app.get("/.well-known/jwks.json")
    def jwks(request: Request) -> Response:
        return jwks_response(source, request, max_age=120)

    with TestClient(app) as client:
        first = client.get("/.well-known/jwks.json")
        assert first.status_code == 200
        assert first.headers["cache-control"] == "public, max-age=120"
        assert first.headers["content-type"] == "application/json"
        assert first.json() == jwks_document(source)
        etag = first.headers["etag"]
        again = client.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
        other = client.get("/.well-known/jwks.json", headers={"If-None-Match": '"x"'})
        assert other.status_code == 200
    assert_no_leak([first.content], [v.reveal() for v in values])
    with pytest.raises(UsageError, match="max_age"):
        jwks_response(source, max_age=-1)


# --- public-key-only rings ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["ec-p256", "rsa-2048", "ed25519"])
def test_a_public_key_ring_verifies_and_refuses_to_sign(fmt: str) -> None:
    private = generate(fmt)
    public = SecretValue(jwk.public_pem(jwk.load_pem_key(private.reveal())))
    token = signer(private, 5).sign({"sub": "u"}, ttl=HOUR)
    ring = JWTKeyRing(StaticKeySource([Key(5, public)]), clock=lambda: NOW)
    assert ring.verify(token)["sub"] == "u"
    with pytest.raises(UsageError, match="public key: this ring verifies tokens but cannot sign"):
        ring.sign({"sub": "u"}, ttl=HOUR)


# --- JWKSKeySource against a real server ----------------------------------------------------


def test_verifies_tokens_with_published_keys(
    published: tuple[JWKSServer, Published, list[SecretValue]],
) -> None:
    server, _, values = published
    source = JWKSKeySource(server.url, clock=FakeClock())
    ring = JWTKeyRing(source, clock=lambda: NOW)
    for kid, value in ((0x1000, values[0]), (0x1001, values[1])):
        assert ring.verify(signer(value, kid, "ES256").sign({"sub": "u"}, ttl=HOUR))["sub"] == "u"
    assert server.requests == 1 and source.fetches == 1 and source.failures == 0
    with pytest.raises(UsageError, match="cannot sign"):
        ring.sign({"sub": "u"}, ttl=HOUR)
    assert "BEGIN" not in repr(source)


def test_honours_max_age_and_revalidates_with_the_etag(
    published: tuple[JWKSServer, Published, list[SecretValue]],
) -> None:
    server, _, _ = published
    server.cache_control = "public, max-age=120"
    clock = FakeClock(0)
    source = JWKSKeySource(server.url, clock=clock, min_refresh=10)
    generation = source.snapshot().generation
    clock.advance(119)
    source.snapshot()
    assert server.requests == 1  # still fresh
    clock.advance(2)
    assert source.snapshot().generation == generation
    assert server.requests == 2 and server.not_modified == 1  # 304: same keys, nothing rebuilt
    server.cache_control = "no-cache"
    clock.advance(121)
    source.snapshot()
    assert server.requests == 3
    clock.advance(9)
    source.snapshot()
    assert server.requests == 3  # no-cache: min_refresh, never a fetch per call
    clock.advance(1)
    source.snapshot()
    assert server.requests == 4


def test_no_cache_control_uses_the_default_max_age(
    published: tuple[JWKSServer, Published, list[SecretValue]],
) -> None:
    server, _, _ = published
    server.cache_control = None
    clock = FakeClock(0)
    source = JWKSKeySource(server.url, clock=clock, default_max_age=60, min_refresh=1)
    clock.advance(59)
    source.snapshot()
    assert server.requests == 1
    clock.advance(1)
    source.snapshot()
    assert server.requests == 2


def test_an_unknown_kid_refetches_at_most_once_per_interval(
    published: tuple[JWKSServer, Published, list[SecretValue]],
) -> None:
    server, body, values = published
    clock = FakeClock(0)
    source = JWKSKeySource(server.url, clock=clock, unknown_kid_interval=30)
    ring = JWTKeyRing(source, clock=lambda: NOW)
    # the publisher adds a key after the verifier's fetch; its first token triggers a refetch
    newest = generate("ec-p256")
    body.source = StaticKeySource([*body.source.snapshot().keys, Key(0x2000, newest, Label.PENDING)])
    assert ring.verify(signer(newest, 0x2000, "ES256").sign({"sub": "n"}, ttl=HOUR))["sub"] == "n"
    assert server.requests == 2 and source.unknown_kid_refetches == 1
    # made-up kids: rejected; within the interval no further request, however many arrive
    forged = generate("ec-p256")
    for kid in range(0x3000, 0x3000 + 50):
        with pytest.raises(InvalidToken):
            ring.verify(signer(forged, kid, "ES256").sign({"sub": "x"}, ttl=HOUR))
    assert server.requests == 2
    clock.advance(30)
    with pytest.raises(InvalidToken):
        ring.verify(signer(forged, 0x3000, "ES256").sign({"sub": "x"}, ttl=HOUR))
    assert server.requests == 3 and source.unknown_kid_refetches == 2
    # a kid that is not keyroll's 8 hex digits never triggers a fetch
    clock.advance(30)
    token = pyjwt.encode({"exp": NOW + 60}, forged.reveal(), algorithm="ES256", headers={"kid": "zz"})
    with pytest.raises(InvalidToken):
        ring.verify(token)
    assert server.requests == 3
    assert values


def test_a_failed_refresh_keeps_the_last_good_keys(
    published: tuple[JWKSServer, Published, list[SecretValue]],
) -> None:
    server, body, values = published
    clock = FakeClock(0)
    source = JWKSKeySource(server.url, clock=clock, min_refresh=10)
    ring = JWTKeyRing(source, clock=lambda: NOW)
    token = signer(values[0], 0x1000, "ES256").sign({"sub": "u"}, ttl=HOUR)
    server.fail = True
    clock.advance(301)
    assert ring.verify(token)["sub"] == "u"  # 503: still the last good set
    assert source.failures == 1 and server.requests == 2
    clock.advance(5)
    assert ring.verify(token)["sub"] == "u"
    assert server.requests == 2  # the retry waits min_refresh
    # a document with no usable key is a failure too, never an empty set
    server.fail = False
    body.source = StaticKeySource([Key(9, generate("base64-48"))])  # would raise when published
    served = server.body
    server.body = lambda: b'{"keys": []}'
    clock.advance(10)
    assert ring.verify(token)["sub"] == "u"
    assert source.failures == 2
    server.body = lambda: b"<html>oops</html>"
    clock.advance(10)
    assert ring.verify(token)["sub"] == "u"
    assert source.failures == 3
    server.body = served
    assert len(source.snapshot().keys) == 2


def test_the_first_fetch_failing_is_a_clear_error() -> None:
    with serve_jwks(lambda: b"{}", fail=True) as server, pytest.raises(JWKSFetchError, match="HTTP 503"):
        JWKSKeySource(server.url)
    with pytest.raises(UsageError, match="must be https"):
        JWKSKeySource("file:///etc/passwd")
    with pytest.raises(UsageError, match="asymmetric"):
        JWKSKeySource("https://x.invalid/jwks", algorithms=["HS256"])


def test_a_silent_server_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts the connection in the backlog, never answers
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/jwks.json"
        with pytest.raises(JWKSFetchError, match=r"[Tt]imeout"):
            JWKSKeySource(url, timeout=0.3)


def test_an_oversized_response_is_refused() -> None:
    source, _ = keyset_source("ec-p256")
    big = json.dumps({**jwks_document(source), "pad": "x" * 5000}).encode()
    with serve_jwks(lambda: big) as server, pytest.raises(JWKSFetchError, match="larger than"):
        JWKSKeySource(server.url, max_bytes=4096)


def test_works_without_httpx(
    published: tuple[JWKSServer, Published, list[SecretValue]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _, values = published
    monkeypatch.setitem(sys.modules, "httpx", None)  # import httpx raises ImportError
    clock = FakeClock(0)
    source = JWKSKeySource(server.url, clock=clock)
    ring = JWTKeyRing(source, clock=lambda: NOW)
    assert ring.verify(signer(values[1], 0x1001, "ES256").sign({"sub": "u"}, ttl=HOUR))
    clock.advance(301)
    source.snapshot()
    assert server.not_modified == 1  # 304 through urllib too
    server.fail = True
    clock.advance(301)
    source.snapshot()
    assert source.failures == 1 and len(source.snapshot().keys) == 2


def test_unusable_jwks_entries_are_skipped_and_counted() -> None:
    ec = jwk.load_pem_key(generate("ec-p256").reveal())
    ed = jwk.load_pem_key(generate("ed25519").reveal())
    good = {**jwk.public_jwk(ec), "kid": "0000000a", "alg": "ES256", "use": "sig"}
    leaked = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(ec))
    entries = [
        good,
        {**good, "kid": "0000000b", "use": "enc"},
        {**good, "kid": "not-hex!"},
        {**good, "kid": "0000000a"},  # duplicate
        {**jwk.public_jwk(ed), "kid": "0000000c", "alg": "ES256"},  # alg does not fit
        {**jwk.public_jwk(ed), "kid": "0000000d", "alg": "HS256"},
        {**leaked, "kid": "0000000e", "alg": "ES256"},  # private member published
        {"kty": "oct", "k": "c2VjcmV0", "kid": "0000000f", "alg": "HS256"},
        "not an object",
        {**jwk.public_jwk(ed), "kid": "00000010"},  # no alg: EdDSA from the key
    ]
    with serve_jwks(lambda: json.dumps({"keys": entries}).encode()) as server:
        source = JWKSKeySource(server.url)
    assert sorted(k.kid_hex for k in source.snapshot().keys) == ["0000000a", "00000010"]
    assert {k.kid_hex: k.meta["alg"] for k in source.snapshot().keys}["00000010"] == "EdDSA"
    assert source.skipped == 8


# --- tampering ------------------------------------------------------------------------------


def _verifier(server: JWKSServer) -> JWTKeyRing:
    return JWTKeyRing(JWKSKeySource(server.url, clock=FakeClock(0)), clock=lambda: NOW)


@pytest.mark.parametrize(("fmt", "alg"), [("ec-p256", "ES256"), ("ed25519", "EdDSA")])
def test_every_byte_flipped_is_rejected(fmt: str, alg: str) -> None:
    source, values = keyset_source(fmt, fmt)
    with serve_jwks(Published(source)) as server:
        ring = _verifier(server)
        token = signer(values[0], 0x1000, alg).sign({"sub": "user-1", "role": "admin"}, ttl=HOUR)
        assert ring.verify(token)["role"] == "admin"
        for i in range(len(token)):
            flipped = token[:i] + chr(ord(token[i]) ^ 0x01) + token[i + 1 :]
            with pytest.raises(InvalidToken, match=r"^invalid token$"):
                ring.verify(flipped)
        for cut in range(len(token)):
            with pytest.raises(InvalidToken):
                ring.verify(token[:cut])


def test_alg_confusion_none_and_hmac_with_the_public_key_are_rejected(
    published: tuple[JWKSServer, Published, list[SecretValue]],
) -> None:
    server, body, values = published
    ring = _verifier(server)
    kid = "00001000"
    entry = next(k for k in jwks_document(body.source)["keys"] if k["kid"] == kid)
    public_pem = jwk.public_pem(jwk.key_from_jwk(entry))
    payload = b64(json.dumps({"sub": "admin", "exp": int(NOW) + 60}).encode())
    for alg in ("HS256", "HS384", "HS512"):
        header = b64(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
        for secret in (public_pem, public_pem.strip(), json.dumps(entry)):
            digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
            mac = hmac.new(secret.encode(), f"{header}.{payload}".encode(), digest).digest()
            with pytest.raises(InvalidToken):
                ring.verify(f"{header}.{payload}.{b64(mac)}")
    for header_doc in ({"alg": "none", "kid": kid}, {"alg": "None", "kid": kid}, {"kid": kid}):
        header = b64(json.dumps(header_doc).encode())
        for signature in ("", b64(b"x")):
            with pytest.raises(InvalidToken):
                ring.verify(f"{header}.{payload}.{signature}")
    # the same key under another ECDSA size, and an RSA-PSS header on an EC key
    genuine = signer(values[0], 0x1000, "ES256").sign({"sub": "u"}, ttl=HOUR)
    _, rest = genuine.split(".", 1)
    for alg in ("ES384", "ES512", "PS256", "RS256", "EdDSA"):
        forged_head = b64(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
        with pytest.raises(InvalidToken):
            ring.verify(f"{forged_head}.{rest}")
    assert ring.verify(genuine)["sub"] == "u"


def test_a_kid_from_another_environment_is_rejected(store: Store) -> None:
    dev, prod = SecretRef("dev", "jwt-api"), SecretRef("prod", "jwt-api")
    dev_version = put(store, dev, generate("ec-p256"), Label.CURRENT)
    prod_version = put(store, prod, generate("ec-p256"), Label.CURRENT)
    dev_ring = JWTKeyRing(StoreKeySource(store, dev), clock=lambda: NOW)
    prod_source = StoreKeySource(store, prod)
    with serve_jwks(lambda: json.dumps(jwks_document(prod_source)).encode()) as server:
        ring = _verifier(server)
        dev_token = dev_ring.sign({"sub": "u"}, ttl=HOUR)
        with pytest.raises(InvalidToken):
            ring.verify(dev_token)  # its kid is not published by prod (one refetch, then no)
        # a dev signature under prod's kid
        dev_value = store.read_value(dev, dev_version.number)
        relabelled = signer(dev_value, prod_version.kid, "ES256").sign({"sub": "u"}, ttl=HOUR)
        with pytest.raises(InvalidToken):
            ring.verify(relabelled)
        prod_ring = JWTKeyRing(prod_source, clock=lambda: NOW)
        assert ring.verify(prod_ring.sign({"sub": "p"}, ttl=HOUR))["sub"] == "p"
