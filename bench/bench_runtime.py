"""Runtime benchmarks: one table, every case measured side by side in one run, with ratios.

    .venv/bin/python bench/bench_runtime.py          (``make bench``; about a minute)

Cases are interleaved round by round and the best round is kept, so a noisy neighbour on a
shared machine slows all cases alike rather than one. Nothing here asserts anything about time:
the tests assert correctness, this prints numbers for a person to read.

- JWT: verification of an HS256 token with ``exp``/``iat``, against plain PyJWT ``jwt.decode``
  with a single key (1.00x). "try-each" loops ``jwt.decode`` over the keys (the token is signed
  by the last); "header+decode" reads ``kid`` with ``get_unverified_header`` then decodes;
  keyroll looks the kid up in a ring of 10 keys.
- Field: decryption of a 64-byte value, against ``MultiFernet`` with one key (1.00x).
  "key 10" means the value was encrypted under the oldest of 10 retained keys.
- ES256 / EdDSA: verification of a token with ``exp``/``iat``, against PyJWT ``jwt.decode``
  with the public key object given directly (1.00x); keyroll looks the kid up in a ring of 10
  key pairs, and through a `JWKSKeySource` (public keys only) fetched once from a real local
  HTTP server.
- JWKS lookup: `JWKSKeySource` snapshot + kid lookup with 1, 10 and 100 published keys
  (vs 1 key): flat, a dict lookup whatever the number of keys.
- Redaction: one ``logger.info`` record through a handler, without and with `RedactingFilter`
  (10 secrets known, 5 spellings each, plus the bearer/DSN patterns).
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import jwt
from cryptography.fernet import Fernet, MultiFernet

from keyroll import jwk
from keyroll.generate import generate
from keyroll.model import Label, SecretValue
from keyroll.runtime.fields import FieldCipher
from keyroll.runtime.jwks import jwks_document
from keyroll.runtime.jwks_source import JWKSKeySource
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import Key, StaticKeySource
from keyroll.runtime.redaction import RedactingFilter, Redactor

ROUNDS = 7
ROUND_SECONDS = 0.25

Case = tuple[str, str, Callable[[], object]]  # group, label, one operation


def _calibrate(op: Callable[[], object]) -> int:
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            op()
        if time.perf_counter() - start > ROUND_SECONDS / 4 or n >= 1 << 22:
            return max(1, int(n * ROUND_SECONDS / max(time.perf_counter() - start, 1e-9)))
        n *= 4


def _measure(cases: list[Case]) -> list[float]:
    """Best seconds per operation of each case, rounds interleaved."""
    sizes = [_calibrate(op) for _, _, op in cases]
    best = [float("inf")] * len(cases)
    for _ in range(ROUNDS):
        for i, (_, _, op) in enumerate(cases):
            n = sizes[i]
            start = time.perf_counter()
            for _ in range(n):
                op()
            best[i] = min(best[i], (time.perf_counter() - start) / n)
    return best


def _ring_keys(values: list[str]) -> list[Key]:
    """Ten keys, kids 1..10, the first current."""
    labels = [Label.CURRENT] + [Label.PREVIOUS] * (len(values) - 1)
    return [Key(i, SecretValue(v), label) for i, (v, label) in enumerate(zip(values, labels, strict=True), 1)]


def jwt_cases() -> list[Case]:
    secrets = [generate("base64-48").reveal() for _ in range(10)]
    claims = {"sub": "user-1", "iat": int(time.time()), "exp": int(time.time()) + 3600}
    keys = _ring_keys(secrets)
    ring = JWTKeyRing(StaticKeySource(keys))
    first = jwt.encode(claims, secrets[0], algorithm="HS256", headers={"kid": keys[0].kid_hex})
    last = jwt.encode(claims, secrets[-1], algorithm="HS256", headers={"kid": keys[-1].kid_hex})
    single = jwt.encode(claims, secrets[0], algorithm="HS256")
    by_kid = {k.kid_hex: s for k, s in zip(keys, secrets, strict=True)}

    def try_each(n: int) -> Callable[[], object]:
        token = jwt.encode(claims, secrets[n - 1], algorithm="HS256")
        candidates = secrets[:n]

        def op() -> object:
            for secret in candidates:
                try:
                    return jwt.decode(token, secret, algorithms=["HS256"])
                except jwt.InvalidSignatureError:
                    continue
            raise AssertionError("no key verified")

        return op

    def header_then_decode() -> object:
        kid = jwt.get_unverified_header(last)["kid"]
        return jwt.decode(last, by_kid[kid], algorithms=["HS256"])

    return [
        ("jwt", "PyJWT jwt.decode, single key", lambda: jwt.decode(single, secrets[0], algorithms=["HS256"])),
        ("jwt", "PyJWT try-each, 2 keys (2nd)", try_each(2)),
        ("jwt", "PyJWT try-each, 5 keys (5th)", try_each(5)),
        ("jwt", "PyJWT try-each, 10 keys (10th)", try_each(10)),
        ("jwt", "PyJWT get_unverified_header + decode", header_then_decode),
        ("jwt", "keyroll JWTKeyRing, key 1 of 10", lambda: ring.verify(first)),
        ("jwt", "keyroll JWTKeyRing, key 10 of 10", lambda: ring.verify(last)),
    ]


@contextmanager
def _serve(body: bytes) -> Iterator[str]:
    """A real HTTP server on a free loopback port serving ``body`` as the JWKS."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "public, max-age=3600")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def _pairs(fmt: str, n: int) -> list[Key]:
    labels = [Label.CURRENT] + [Label.PREVIOUS] * (n - 1)
    return [Key(i, generate(fmt), label) for i, label in enumerate(labels, 1)]


def asymmetric_cases(group: str, fmt: str, alg: str) -> list[Case]:
    keys = _pairs(fmt, 10)
    ring = JWTKeyRing(StaticKeySource(keys))
    claims = {"sub": "user-1", "iat": int(time.time()), "exp": int(time.time()) + 3600}
    private = [jwk.load_pem_key(k.value.reveal()) for k in keys]
    public = [p.public_key() for p in private]
    first = jwt.encode(claims, private[0], algorithm=alg, headers={"kid": keys[0].kid_hex})
    last = jwt.encode(claims, private[-1], algorithm=alg, headers={"kid": keys[-1].kid_hex})
    single = jwt.encode(claims, private[0], algorithm=alg)
    with _serve(json.dumps(jwks_document(StaticKeySource(keys))).encode()) as url:
        remote = JWTKeyRing(JWKSKeySource(url, max_refresh=3600, min_refresh=3600))
    assert ring.verify(last) == remote.verify(last) == jwt.decode(single, public[0], algorithms=[alg])
    return [
        (group, f"PyJWT jwt.decode {alg}, key given directly",
         lambda: jwt.decode(single, public[0], algorithms=[alg])),
        (group, f"keyroll JWTKeyRing {alg}, key 1 of 10", lambda: ring.verify(first)),
        (group, f"keyroll JWTKeyRing {alg}, key 10 of 10", lambda: ring.verify(last)),
        (group, f"keyroll via JWKSKeySource {alg}, key 10 of 10", lambda: remote.verify(last)),
    ]


def jwks_lookup_cases() -> list[Case]:
    cases: list[Case] = []
    for n in (1, 10, 100):
        keys = _pairs("ed25519", n)
        with _serve(json.dumps(jwks_document(StaticKeySource(keys))).encode()) as url:
            source = JWKSKeySource(url, max_refresh=3600, min_refresh=3600)
        kid = keys[-1].kid

        def lookup(source: JWKSKeySource = source, kid: int = kid) -> object:
            return source.snapshot().by_kid[kid]

        cases.append(("jwks", f"JWKSKeySource snapshot + kid lookup, {n} key{'s' if n > 1 else ''}", lookup))
    return cases


def field_cases() -> list[Case]:
    plaintext = os.urandom(64)
    fernet_keys = [Fernet(Fernet.generate_key()) for _ in range(10)]
    one = MultiFernet(fernet_keys[:1])
    ten = MultiFernet(fernet_keys)
    token_one = one.encrypt(plaintext)
    token_oldest = fernet_keys[-1].encrypt(plaintext)
    values = [generate("key-32").reveal() for _ in range(10)]
    keys = _ring_keys(values)
    newest = FieldCipher(StaticKeySource(keys))
    oldest = FieldCipher(StaticKeySource([Key(keys[-1].kid, keys[-1].value)]))  # encrypts only
    ctx = ("users", "email", 42)
    blob_1 = newest.encrypt(plaintext, context=ctx)
    blob_10 = oldest.encrypt(plaintext, context=ctx)
    text_1 = newest.encrypt_text(plaintext, context=ctx)
    text_10 = oldest.encrypt_text(plaintext, context=ctx)
    assert newest.decrypt(blob_10, context=ctx) == plaintext
    return [
        ("field", "MultiFernet, 1 key", lambda: one.decrypt(token_one)),
        ("field", "MultiFernet, 10 keys (10th)", lambda: ten.decrypt(token_oldest)),
        ("field", "keyroll binary, key 1 of 10", lambda: newest.decrypt(blob_1, context=ctx)),
        ("field", "keyroll binary, key 10 of 10", lambda: newest.decrypt(blob_10, context=ctx)),
        ("field", "keyroll text, key 1 of 10", lambda: newest.decrypt_text_bytes(text_1, context=ctx)),
        ("field", "keyroll text, key 10 of 10", lambda: newest.decrypt_text_bytes(text_10, context=ctx)),
    ]


def redaction_cases() -> list[Case]:
    values = [generate("base64-48") for _ in range(5)] + [generate("key-32") for _ in range(5)]
    redactor = Redactor([StaticKeySource.of(values[0], *values[1:])])

    def logger_with(filtered: bool) -> logging.Logger:
        logger = logging.getLogger(f"bench.redaction.{filtered}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        handler = logging.StreamHandler(io.StringIO())
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        if filtered:
            handler.addFilter(RedactingFilter(redactor))
        logger.addHandler(handler)
        return logger

    plain, redacted = logger_with(False), logger_with(True)
    path = "/api/v1/datasources/42/test-connection?include=tables&limit=100"
    return [
        ("log", "logger.info, no filter", lambda: plain.info("GET %s 200 user=%s", path, "alice")),
        ("log", "logger.info, RedactingFilter", lambda: redacted.info("GET %s 200 user=%s", path, "alice")),
    ]


def main() -> None:
    cases = (jwt_cases() + asymmetric_cases("es256", "ec-p256", "ES256")
             + asymmetric_cases("eddsa", "ed25519", "EdDSA") + jwks_lookup_cases()
             + field_cases() + redaction_cases())
    started = time.perf_counter()
    seconds = _measure(cases)
    baseline: dict[str, float] = {}
    for (group, _, _), s in zip(cases, seconds, strict=True):
        baseline.setdefault(group, s)
    titles = {
        "jwt": "JWT verify (vs PyJWT jwt.decode, single key)",
        "es256": "ES256 verify (vs PyJWT jwt.decode, public key given directly)",
        "eddsa": "EdDSA verify (vs PyJWT jwt.decode, public key given directly)",
        "jwks": "JWKS kid lookup (vs 1 published key)",
        "field": "Field decrypt (vs MultiFernet, 1 key)",
        "log": "Log record (vs no filter)",
    }
    width = max(len(label) for _, label, _ in cases)
    print(f"{'case':<{width}}  {'µs/op':>8}  {'ops/s':>10}  {'ratio':>7}")
    last_group = ""
    for (group, label, _), s in zip(cases, seconds, strict=True):
        if group != last_group:
            print(f"-- {titles[group]}")
            last_group = group
        ratio = baseline[group] / s
        print(f"{label:<{width}}  {s * 1e6:8.2f}  {1 / s:10,.0f}  {ratio:6.2f}x")
    overhead = seconds[-1] - seconds[-2]
    print(f"redaction overhead per record: {overhead * 1e6:.2f} µs")
    print(f"python {sys.version.split()[0]}, PyJWT {jwt.__version__}, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
