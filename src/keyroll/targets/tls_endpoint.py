"""What a TLS endpoint serves: connect, verify the chain, read the leaf's fingerprint.

The ``tls-certificate`` strategy asks each endpoint a class names (``options.serve_check``)
whether it serves the new certificate yet, and with a chain that verifies against the trust
(``options.serve_ca``, else the system's) for the certificate's name (SNI and hostname check).
A handshake that does not verify is repeated without verification, only to read which leaf is
served, so the message can say "serves the new certificate but its chain does not verify".
"""

from __future__ import annotations

import hashlib
import socket
import ssl
from dataclasses import dataclass

__all__ = ["Served", "probe"]


@dataclass(frozen=True, slots=True)
class Served:
    """One endpoint's answer.

    Attributes:
        endpoint: ``host:port``.
        leaf_sha256: SHA-256 of the served leaf's DER (hex), None when no handshake worked.
        verified: the chain verified against the trust for the server name.
        error: why not (one line), else None.
    """

    endpoint: str
    leaf_sha256: str | None
    verified: bool
    error: str | None


def _handshake(host: str, port: int, server_name: str, context: ssl.SSLContext,
               timeout: float) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        der = tls.getpeercert(binary_form=True)
        if not der:
            raise ssl.SSLError("the server sent no certificate")
        return der


def probe(host: str, port: int, *, server_name: str, cafile: str | None = None,
          timeout: float = 5.0) -> Served:
    """Connect to ``host:port`` with SNI ``server_name`` and report what it serves."""
    endpoint = f"{host}:{port}"
    verifying = ssl.create_default_context(cafile=cafile)
    try:
        der = _handshake(host, port, server_name, verifying, timeout)
        return Served(endpoint, hashlib.sha256(der).hexdigest(), True, None)
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or exc.reason or "verification failed"
    except (OSError, ssl.SSLError) as exc:
        return Served(endpoint, None, False, f"cannot connect: {type(exc).__name__}: "
                      f"{(getattr(exc, 'strerror', None) or str(exc))[:200]}")
    blind = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    blind.check_hostname = False
    blind.verify_mode = ssl.CERT_NONE  # only to name the leaf in the message; never trusted
    try:
        der = _handshake(host, port, server_name, blind, timeout)
    except (OSError, ssl.SSLError):
        return Served(endpoint, None, False, f"the chain does not verify: {reason}")
    return Served(endpoint, hashlib.sha256(der).hexdigest(), False,
                  f"the chain does not verify: {reason}")
