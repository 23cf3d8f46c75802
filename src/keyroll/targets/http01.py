"""HTTP-01 challenge responders: how the CA finds the token that proves we control a name.

RFC 8555 §8.3: the CA fetches ``http://<name>/.well-known/acme-challenge/<token>`` and expects
the key authorization. Two ways, like certbot's ``--webroot`` and ``--standalone``:

- `WebrootResponder` writes one file per token under ``<webroot>/.well-known/acme-challenge/``
  (mode 0644: the token is public by design) for the site's own web server to serve, and
  removes it afterwards;
- `StandaloneResponder` serves the tokens itself from a small HTTP server bound to
  ``host:port`` for the duration of the order (nothing else is answered: 404).

Both are context managers; tokens are never secrets (the key authorization is the token and
the account key's public thumbprint).
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from keyroll.errors import TargetError, UsageError

__all__ = ["PREFIX", "Responder", "StandaloneResponder", "WebrootResponder", "parse_listen"]

PREFIX = "/.well-known/acme-challenge/"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def _check_token(token: str) -> str:
    if not _TOKEN.match(token):  # base64url only: never a path component with '/' or '..'
        raise TargetError("the ACME server sent a challenge token that is not base64url")
    return token


class Responder:
    """Where key authorizations are published while an order's challenges are validated."""

    def add(self, token: str, key_authorization: str) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Responder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.clear()


class WebrootResponder(Responder):
    """Token files under ``webroot`` for an existing web server (certbot's ``--webroot``)."""

    def __init__(self, webroot: Path) -> None:
        self.folder = webroot / PREFIX.strip("/")
        self._written: list[Path] = []

    def add(self, token: str, key_authorization: str) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / _check_token(token)
            path.write_text(key_authorization, encoding="ascii")
            path.chmod(0o644)
        except OSError as exc:
            raise TargetError(f"cannot write the HTTP-01 token under {self.folder}: "
                              f"{exc.strerror or type(exc).__name__}") from None
        self._written.append(path)

    def clear(self) -> None:
        for path in self._written:
            path.unlink(missing_ok=True)
        self._written.clear()


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:80`` for IPv6) of a standalone responder.

    Raises:
        UsageError: not ``host:port`` with a port 1-65535.
    """
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{text[:80]!r} is not host:port (e.g. 0.0.0.0:80)")
    return host, int(port)


class StandaloneResponder(Responder):
    """A small HTTP server answering only ``/.well-known/acme-challenge/<token>``, running in a
    thread while the context is open (certbot's ``--standalone``)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._tokens: dict[str, str] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        tokens = self._tokens

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                token = self.path[len(PREFIX):] if self.path.startswith(PREFIX) else ""
                answer = tokens.get(token)
                body = (answer or "not found").encode("ascii")
                self.send_response(200 if answer else 404)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # the CA's requests are not worth a line on stderr

        return Handler

    def __enter__(self) -> StandaloneResponder:
        try:
            self._server = ThreadingHTTPServer((self.host, self.port), self._handler())
        except OSError as exc:
            raise TargetError(f"cannot listen on {self.host}:{self.port} for HTTP-01: "
                              f"{exc.strerror or type(exc).__name__}") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def add(self, token: str, key_authorization: str) -> None:
        self._tokens[_check_token(token)] = key_authorization

    def clear(self) -> None:
        self._tokens.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
