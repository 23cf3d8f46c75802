"""A real TLS server on loopback that serves the ``tls.crt``/``tls.key`` a delivery hook wrote,
and reloads them when they change (like ``nginx -s reload`` on a certificate watcher).

Python's `ssl` in a thread: every accepted connection first checks the files' modification
times and builds a new `ssl.SSLContext` when they moved; a pair that does not load (a key
written before its certificate) is skipped and the previous context kept, as a server that
fails its reload keeps serving. Each connection gets ``ok\\n`` after the handshake.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path

__all__ = ["ReloadingTLSServer"]


class ReloadingTLSServer:
    """Serves ``folder/tls.crt`` + ``folder/tls.key`` on 127.0.0.1:<free port>.

    Attributes:
        port: the port (after `start`).
        reloads: how many times a new pair was loaded.
        failed_reloads: pairs that did not load (kept the old one).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = 0
        self.reloads = 0
        self.failed_reloads = 0
        self._stamp: tuple[int, int] | None = None
        self._context: ssl.SSLContext | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _maybe_reload(self) -> None:
        crt, key = self.folder / "tls.crt", self.folder / "tls.key"
        try:
            stamp = (crt.stat().st_mtime_ns, key.stat().st_mtime_ns)
        except OSError:
            return
        if stamp == self._stamp:
            return
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(str(crt), str(key))
        except (ssl.SSLError, OSError):
            self.failed_reloads += 1
            return
        self._stamp, self._context = stamp, context
        self.reloads += 1

    def start(self) -> ReloadingTLSServer:
        self._maybe_reload()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.settimeout(0.2)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                self._maybe_reload()
                if self._context is None:
                    continue
                with contextlib.suppress(OSError, ssl.SSLError), \
                        self._context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok\n")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
