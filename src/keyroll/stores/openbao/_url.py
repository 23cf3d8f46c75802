"""Store URLs for OpenBao / Vault: ``openbao://host:port[,host:port…]/<mount>?…``.

`parse_url` turns a URL and the environment (tokens, AppRole ids, CA paths never sit in the URL)
into the `OpenBaoOptions` the store is built from; it refuses what it cannot honour (unknown
options, credentials in the URL, plaintext to a non-loopback host) before anything connects.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from keyroll.errors import UsageError
from keyroll.net import is_loopback

__all__ = ["OpenBaoOptions", "default_url", "parse_url"]

_HTTP_SCHEMES = {"openbao": "http", "vault": "http", "openbaos": "https", "vaults": "https"}
_QUERY_KEYS = (
    "prefix", "namespace", "auth", "approle_mount", "ca", "verify", "cert", "key", "timeout",
    "retry", "plaintext",
)
_TOKEN_VARS = ("BAO_TOKEN", "VAULT_TOKEN")
_ROLE_ID_VARS = ("BAO_ROLE_ID", "VAULT_ROLE_ID")
_SECRET_ID_VARS = ("BAO_SECRET_ID", "VAULT_SECRET_ID")


@dataclass(frozen=True, repr=False)
class OpenBaoOptions:
    """What a store URL says, with the credentials the environment gives (never printed)."""

    addresses: list[str]
    token: str | None
    approle: tuple[str, str] | None
    approle_mount: str
    mount: str
    prefix: str
    namespace: str | None
    verify: bool | str
    cert: tuple[str, str] | None
    timeout: int
    retry_seconds: float
    url: str

    def __repr__(self) -> str:
        return f"OpenBaoOptions(url={self.url!r})"


def default_url(addresses: Sequence[str], mount: str, prefix: str) -> str:
    """The URL that names a store built from addresses (for messages and ``Store.url``)."""
    tls = all(a.startswith("https://") for a in addresses)
    hosts = ",".join(a.split("://", 1)[-1] for a in addresses)
    return f"openbao{'s' if tls else ''}://{hosts}/{mount}?prefix={prefix}"


def _env_first(environ: Mapping[str, str], names: Sequence[str]) -> str | None:
    for name in names:
        value = environ.get(name)
        if value:
            return value
    return None


def parse_url(url: str, environ: Mapping[str, str] | None = None) -> OpenBaoOptions:
    """The options a store URL names.

    ``openbao://host:port[,host:port…]/<mount>?prefix=keyroll&auth=token|approle&…``
    (``openbaos://`` for TLS; ``vault://`` and ``vaults://`` are the same). Query keys:
    ``prefix`` (default ``keyroll``), ``namespace`` (or ``BAO_NAMESPACE``), ``auth``
    (``token``: ``BAO_TOKEN`` or ``VAULT_TOKEN``; ``approle``: ``BAO_ROLE_ID`` and
    ``BAO_SECRET_ID``), ``approle_mount`` (default ``approle``), ``ca`` (CA bundle, or
    ``BAO_CACERT``), ``verify=false`` (TLS without verification: tests only), ``cert`` and
    ``key`` (mutual TLS), ``timeout`` (seconds per request, default 10), ``retry``
    (seconds to keep failing over, default 0 for one address, 30 for several),
    ``plaintext=ok`` (allow ``openbao://`` to a non-loopback host).

    Args:
        url: the store URL.
        environ: where credentials are read (default ``os.environ``).

    Raises:
        UsageError: malformed URL, unknown option, or missing credentials.
    """
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    if parts.scheme not in _HTTP_SCHEMES:
        raise UsageError(f"store URL {url!r}: the scheme must be openbao(s):// or vault(s)://")
    http = _HTTP_SCHEMES[parts.scheme]
    if "@" in parts.netloc:
        raise UsageError(
            "store URL: never put credentials in the URL; set BAO_TOKEN (or VAULT_TOKEN), "
            "or BAO_ROLE_ID and BAO_SECRET_ID with ?auth=approle"
        )
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise UsageError(f"store URL {url!r}: malformed query string") from None
    unknown = sorted(set(query) - set(_QUERY_KEYS))
    if unknown:
        raise UsageError(
            f"store URL {url!r}: unknown option(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(_QUERY_KEYS)}"
        )

    def opt(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    hosts = [h.strip() for h in parts.netloc.split(",") if h.strip()]
    if not hosts:
        raise UsageError(f"store URL {url!r}: name at least one host:port")
    addresses = []
    for host in hosts:
        try:
            probe = urlsplit(f"//{host}")
            hostname, port = probe.hostname, probe.port
        except ValueError:
            raise UsageError(f"store URL {url!r}: bad host:port {host!r}") from None
        if not hostname:
            raise UsageError(f"store URL {url!r}: bad host:port {host!r}")
        if http == "http" and not is_loopback(hostname) and opt("plaintext") != "ok":
            raise UsageError(
                f"store URL {url!r}: {parts.scheme}:// sends the token unencrypted to "
                f"{hostname}; use {parts.scheme}s:// (TLS), or add plaintext=ok if the "
                "network is trusted"
            )
        netloc = f"[{hostname}]" if ":" in hostname else hostname
        addresses.append(f"{http}://{netloc}:{port or 8200}")

    mount = parts.path.strip("/") or "secret"
    prefix = (opt("prefix") or "keyroll").strip("/")
    auth = opt("auth") or "token"
    token: str | None = None
    approle: tuple[str, str] | None = None
    if auth == "token":
        token = _env_first(env, _TOKEN_VARS)
        if token is None:
            raise UsageError(
                f"the OpenBao store {url} needs a token: set BAO_TOKEN (or VAULT_TOKEN), or "
                "use ?auth=approle with BAO_ROLE_ID and BAO_SECRET_ID"
            )
    elif auth == "approle":
        role_id = _env_first(env, _ROLE_ID_VARS)
        secret_id = _env_first(env, _SECRET_ID_VARS)
        if role_id is None or secret_id is None:
            raise UsageError(
                f"the OpenBao store {url} uses AppRole: set BAO_ROLE_ID and BAO_SECRET_ID "
                "(or VAULT_ROLE_ID and VAULT_SECRET_ID)"
            )
        approle = (role_id, secret_id)
    else:
        raise UsageError(f"store URL {url!r}: auth must be token or approle, not {auth!r}")

    verify: bool | str = True
    ca = opt("ca") or _env_first(env, ("BAO_CACERT", "VAULT_CACERT"))
    if ca:
        verify = ca
    verify_opt = opt("verify")
    if verify_opt is not None:
        if verify_opt.lower() not in ("true", "false"):
            raise UsageError(f"store URL {url!r}: verify must be true or false")
        if verify_opt.lower() == "false":
            verify = False
    cert_path, key_path = opt("cert"), opt("key")
    if (cert_path is None) != (key_path is None):
        raise UsageError(f"store URL {url!r}: give both cert= and key= for mutual TLS")
    cert = (cert_path, key_path) if cert_path and key_path else None

    def seconds(name: str, default: float) -> float:
        text = opt(name)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 <= value <= 3600:
            raise UsageError(f"store URL {url!r}: {name} must be seconds between 0 and 3600")
        return value

    return OpenBaoOptions(
        addresses=addresses,
        token=token,
        approle=approle,
        approle_mount=(opt("approle_mount") or "approle").strip("/"),
        mount=mount,
        prefix=prefix,
        namespace=opt("namespace") or _env_first(env, ("BAO_NAMESPACE", "VAULT_NAMESPACE")),
        verify=verify,
        cert=cert,
        timeout=max(1, round(seconds("timeout", 10.0))),
        retry_seconds=seconds("retry", 30.0 if len(addresses) > 1 else 0.0),
        url=url,
    )
