"""Two services on loopback: one signs ES256 tokens and publishes its JWKS, one verifies them.

    .venv/bin/python examples/jwks_services.py

The publishing service reads its key pair from keyroll's store (`StoreKeySource`) and serves
``/.well-known/jwks.json`` with `jwks_response` (FastAPI + uvicorn, a real HTTP server on a
free port). The verifying service knows only the URL (`JWKSKeySource`). The script then rotates
the key the way keyroll's engine does (create → publish → promote → retire) and shows what
the JWKS holds and which kid each token carries. Nothing private is printed: kids,
fingerprints and the public JWKS only.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import uvicorn
from fastapi import FastAPI, Request, Response

from keyroll import JWKSKeySource, JWTKeyRing, Label, SecretRef, StoreKeySource
from keyroll.errors import InvalidToken
from keyroll.generate import generate
from keyroll.runtime.jwks_starlette import jwks_response
from keyroll.stores.sqlite import SQLiteStore

REF = SecretRef("prod", "jwt-service")


def publishing_service(store: SQLiteStore) -> tuple[FastAPI, JWTKeyRing]:
    source = StoreKeySource(store, REF, refresh_interval=0)   # 5 s in a real service
    tokens = JWTKeyRing(source)
    app = FastAPI()

    @app.get("/.well-known/jwks.json")
    def jwks(request: Request) -> Response:
        return jwks_response(source, request, max_age=300)

    return app, tokens


def serve(app: FastAPI) -> tuple[uvicorn.Server, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    for _ in range(200):  # bounded: 10 s
        if server.started:
            break
        time.sleep(0.05)
    else:
        raise SystemExit("the publishing service did not start")
    return server, f"http://127.0.0.1:{port}/.well-known/jwks.json"


def published(url: str) -> list[str]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  (loopback)
        return [k["kid"] for k in json.load(response)["keys"]]


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "store.db", os.urandom(32))
        first = store.put_version(REF, generate("ec-p256"), meta={"alg": "ES256"})
        store.set_labels(REF, expected={}, new={Label.CURRENT: first.number})
        app, tokens = publishing_service(store)
        server, url = serve(app)

        # the verifying service: knows the URL, holds no secret
        clock = [0.0]
        verifier = JWTKeyRing(JWKSKeySource(url, clock=lambda: clock[0]))

        old = tokens.sign({"sub": "user-1"}, ttl=timedelta(minutes=15))
        print(f"key v1 kid {first.kid_hex} fingerprint {first.fingerprint} (RFC 7638 thumbprint)")
        print(f"JWKS: {published(url)}; verifier accepts the v1 token: {verifier.verify(old)['sub']}")

        second = store.put_version(REF, generate("ec-p256"), meta={"alg": "ES256"})
        store.set_labels(REF, expected={Label.PENDING: None}, new={Label.PENDING: second.number})
        print(f"create: v2 kid {second.kid_hex} published as next: JWKS {published(url)}")
        clock[0] += 300  # the verifier's cache runs out (max-age); keyroll waits this + margin
        verifier.verify(old)

        store.set_labels(REF, expected={Label.CURRENT: first.number, Label.PENDING: second.number},
                         new={Label.CURRENT: second.number, Label.PREVIOUS: first.number,
                              Label.PENDING: None})
        new = tokens.sign({"sub": "user-2"}, ttl=timedelta(minutes=15))
        print(f"promote: new tokens carry kid {json.loads(_header(new))['kid']}; JWKS {published(url)}")
        print(f"overlap: verifier accepts old {verifier.verify(old)['sub']} and new "
              f"{verifier.verify(new)['sub']}")

        store.set_labels(REF, expected={Label.PREVIOUS: first.number}, new={Label.PREVIOUS: None})
        clock[0] += 300
        print(f"retire: JWKS {published(url)}")
        try:
            verifier.verify(old)
        except InvalidToken:
            print("the verifier now refuses the v1 token; the v2 token still verifies: "
                  f"{verifier.verify(new)['sub']}")
        server.should_exit = True
        store.close()


def _header(token: str) -> bytes:
    head = token.split(".")[0]
    return base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))


if __name__ == "__main__":
    main()
