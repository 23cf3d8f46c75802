"""A loopback HTTPS front for pebble that refuses new orders with ``rateLimited``.

Pebble enforces no rate limits (its README says so), yet a CA that does (Let's Encrypt: 50
certificates per registered domain per week) answers ``newOrder`` with HTTP 429 and an RFC 8555
problem document of type ``urn:ietf:params:acme:error:rateLimited``. This front serves pebble's
real directory with ``newOrder`` pointed at itself and answers that one request the way such a
CA does; every other URL in the directory still points at the real pebble, so the account is
really registered and nonces are real. It is a fault injector owned by the tests, not a CA.
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.pebble_server import PebbleServer

__all__ = ["RateLimitingFront"]

DETAIL = "too many certificates (5) already issued for \"keyroll.test\" in the last 168h0m0s"


class RateLimitingFront:
    """HTTPS on 127.0.0.1:<port>: ``/dir`` (pebble's, newOrder rewritten), ``/new-order``
    (429 rateLimited). Counts the refused orders."""

    def __init__(self, pebble: PebbleServer) -> None:
        self.pebble = pebble
        self.refused = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def directory_url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}/dir"

    def _directory(self) -> bytes:
        context = ssl.create_default_context(cafile=str(self.pebble.listen_ca))
        with urllib.request.urlopen(self.pebble.directory_url, context=context,  # noqa: S310  (loopback pebble)
                                    timeout=10) as response:
            directory: dict[str, Any] = json.loads(response.read())
        directory["newOrder"] = self.directory_url.replace("/dir", "/new-order")
        return json.dumps(directory).encode()

    def start(self) -> RateLimitingFront:
        front = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, body: bytes, kind: str, extra: dict[str, str]) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/dir":
                    self._send(200, front._directory(), "application/json", {})
                else:
                    self._send(404, b"{}", "application/json", {})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                front.refused += 1
                problem = {"type": "urn:ietf:params:acme:error:rateLimited", "detail": DETAIL,
                           "status": 429}
                self._send(429, json.dumps(problem).encode(), "application/problem+json",
                           {"Retry-After": "3600"})

            def log_message(self, format: str, *args: object) -> None:
                return

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.pebble.listen_cert), str(self.pebble.listen_key))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
