"""Start Debian's ``pebble`` ACME test CA on loopback, with its own DNS, for the TLS tests.

Two real binaries from the ``pebble`` package, each started by this module and stopped by the
PID it started:

- ``pebble-challtestsrv`` as a DNS server only (its HTTP-01, HTTPS and TLS-ALPN responders are
  switched off): it answers every A query with 127.0.0.1 and no AAAA, so pebble resolves
  ``app.keyroll.test`` to loopback;
- ``pebble`` itself, with a generated config: the ACME directory and the management interface
  on free 127.0.0.1 ports, served with a certificate this module makes for 127.0.0.1
  (`PebbleServer.listen_ca` trusts it), and ``httpPort`` pointed at a free port where the test
  runs its HTTP-01 challenge responder: pebble validates every challenge for real, by an HTTP
  request to 127.0.0.1:<http_port>. ``PEBBLE_VA_NOSLEEP=1`` (no random sleeps before a
  validation), ``PEBBLE_WFE_NONCEREJECT=0`` (no deliberately refused nonces: the acme client
  retries once, and a test must not be flaky).

Pebble makes a new root and intermediate at every start; `PebbleServer.root_pem` and
`PebbleServer.intermediate_pem` read them from the management endpoint (``/roots/0``,
``/intermediates/0``), so tests verify the served chain against the real root.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.servers import (
    POLL_INTERVAL,
    STARTUP_TIMEOUT,
    ServerUnavailable,
    _Server,
    _stop_process,
    _tail,
    find_binary,
    free_port,
)

__all__ = ["PebbleServer"]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listen_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and, signed by it, a certificate for 127.0.0.1 and localhost (pebble's
    HTTPS listener). Returns (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyroll test pebble listener CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (folder / "listen-ca.pem", folder / "listen-cert.pem", folder / "listen-key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    paths[2].chmod(0o600)
    return paths


class PebbleServer(_Server):
    """pebble + its DNS on 127.0.0.1 free ports, for one test session.

    Attributes:
        directory_url: the ACME directory (``https://127.0.0.1:<port>/dir``).
        management_url: the management interface (``https://127.0.0.1:<port>``).
        listen_ca: a PEM file that verifies pebble's HTTPS listener (pass as the ACME
            ``ca_bundle``); ``listen_cert``/``listen_key`` are that listener's pair (for a
            test's own HTTPS server on 127.0.0.1).
        http_port: the port pebble sends HTTP-01 validation requests to, on 127.0.0.1.
        dns_port: the UDP/TCP port of the DNS server pebble resolves names with.
    """

    prefix = "keyroll-pebble-"

    def __init__(self) -> None:
        self.pebble = find_binary("pebble", "pebble", (Path("/usr/bin"),))
        self.challtestsrv = find_binary("pebble-challtestsrv", "pebble", (Path("/usr/bin"),))
        super().__init__()
        self.user = None  # a Go binary that binds high ports only: runs as anyone
        self.dns_proc: subprocess.Popen[bytes] | None = None
        self.dns_log = self.dir / "dns.log"
        self.directory_url = ""
        self.management_url = ""
        self.http_port = 0
        self.dns_port = 0
        self.listen_ca = self.dir / "listen-ca.pem"
        self.listen_cert = self.dir / "listen-cert.pem"
        self.listen_key = self.dir / "listen-key.pem"

    def start(self) -> PebbleServer:
        """Start the DNS server and pebble; return when the ACME directory answers."""
        ca, cert, key = _listen_certificate(self.dir)
        self.listen_ca, self.listen_cert, self.listen_key = ca, cert, key
        for attempt in range(3):
            self.dns_port = _free_udp_port()
            self.port, management, tls_port = free_port(), free_port(), free_port()
            self.http_port = free_port()
            config = {"pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{management}",
                "certificate": str(cert), "privateKey": str(key),
                "httpPort": self.http_port, "tlsPort": tls_port,
                "ocspResponderURL": "", "externalAccountBindingRequired": False,
            }}
            (self.dir / "pebble-config.json").write_text(json.dumps(config, indent=2))
            self.directory_url = f"https://127.0.0.1:{self.port}/dir"
            self.management_url = f"https://127.0.0.1:{management}"
            with self.dns_log.open("ab") as dns_log:
                self.dns_proc = subprocess.Popen(
                    [str(self.challtestsrv), "-dns01", f"127.0.0.1:{self.dns_port}",
                     "-http01", "", "-https01", "", "-tlsalpn01", "",
                     "-management", f"127.0.0.1:{free_port()}",
                     "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
                    stdin=subprocess.DEVNULL, stdout=dns_log, stderr=subprocess.STDOUT,
                    cwd=self.dir, start_new_session=True)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PEBBLE_VA_NOSLEEP": "1",
                   "PEBBLE_WFE_NONCEREJECT": "0"}
            self._spawn([str(self.pebble), "-config", str(self.dir / "pebble-config.json"),
                         "-dnsserver", f"127.0.0.1:{self.dns_port}", "-strict=false"], env=env)
            try:
                self._wait_directory()
            except ServerUnavailable:
                self._stop_children()
                if attempt == 2:
                    raise
            else:
                return self
        raise AssertionError("unreachable")

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.listen_ca))

    def _get(self, url: str) -> bytes:
        with urllib.request.urlopen(url, context=self._context(), timeout=10) as response:  # noqa: S310  (https to our loopback pebble)
            body: bytes = response.read()
            return body

    def _wait_directory(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        for _ in range(int(STARTUP_TIMEOUT / POLL_INTERVAL) + 1):
            for proc, log, what in ((self.proc, self.log_path, "pebble"),
                                    (self.dns_proc, self.dns_log, "pebble-challtestsrv")):
                if proc is not None and proc.poll() is not None:
                    raise ServerUnavailable(f"{what} exited with code {proc.returncode} at "
                                            f"startup; its log:\n{_tail(log)}")
            with contextlib.suppress(OSError, ValueError):
                if b"newOrder" in self._get(self.directory_url):
                    return
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_INTERVAL)
        raise ServerUnavailable(f"pebble did not serve {self.directory_url} within "
                                f"{STARTUP_TIMEOUT}s:\n{_tail(self.log_path)}")

    def root_pem(self) -> bytes:
        """Pebble's root certificate (new at every start), from ``/roots/0``."""
        return self._get(f"{self.management_url}/roots/0")

    def intermediate_pem(self) -> bytes:
        """The intermediate that signs pebble's certificates, from ``/intermediates/0``."""
        return self._get(f"{self.management_url}/intermediates/0")

    def cert_status(self, serial: int) -> dict[str, object]:
        """``/cert-status-by-serial/<hex>``: ``Status`` is ``Valid`` or ``Revoked``."""
        status: dict[str, object] = json.loads(
            self._get(f"{self.management_url}/cert-status-by-serial/{serial:x}"))
        return status

    def _stop_children(self) -> None:
        _stop_process(self.proc, signal.SIGTERM)
        _stop_process(self.dns_proc, signal.SIGTERM)
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """SIGTERM to the pebble and DNS server we started (by PID), then remove the folder."""
        self._stop_children()
        self._cleanup()
