"""A real HTTP server on 127.0.0.1 (free port) that serves a JWKS, for verifier tests.

The document comes from a callable, called on every request, so a test can serve keyroll's
JWKS straight from the store (what a publishing service does) and watch it change step by
step. ``fail`` makes it answer 503 (a publisher outage); ``requests`` counts what it served.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class JWKSServer:
    body: Callable[[], bytes]
    cache_control: str | None = "public, max-age=300"
    fail: bool = False
    requests: int = 0
    not_modified: int = 0
    url: str = ""
    served: list[bytes] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        state = self.server.state
        state.requests += 1
        if state.fail:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = state.body()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            state.not_modified += 1
            self.send_response(304)
            self.send_header("ETag", etag)
            if state.cache_control:
                self.send_header("Cache-Control", state.cache_control)
            self.end_headers()
            return
        state.served.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        if state.cache_control:
            self.send_header("Cache-Control", state.cache_control)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: JWKSServer


@contextmanager
def serve_jwks(body: Callable[[], bytes], **kwargs: object) -> Iterator[JWKSServer]:
    """Serve ``body()`` at ``http://127.0.0.1:<free port>/.well-known/jwks.json``."""
    state = JWKSServer(body, **kwargs)  # type: ignore[arg-type]
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = state
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
