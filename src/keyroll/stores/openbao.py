"""The OpenBao / HashiCorp Vault store: KV v2 through hvac, every change a check-and-set.

Layout under ``<mount>/<prefix>/`` (KV v2; ``prefix`` defaults to ``keyroll``)::

    <env>/<class>              one KV version per keyroll version: the value, with its kid,
                               fingerprint, creation time and meta (KV version N = keyroll
                               version N; destroy = KV destroy of that version)
    _index/<env>/<class>       the secret's label map and every version's metadata (kid,
                               fingerprint, created_at, meta, destroyed): one document
    _locks/<env>/<class>       the rotation lock {owner, expires_at, generation}
    _rotations/<id>            one rotation record
    _journal/<seq>             one audit entry per document
    _meta/<key>                bookkeeping values

Class and environment names start with a letter or digit, so they never collide with the
``_``-folders.

Why every write is atomic across machines
-----------------------------------------
KV v2 has exactly one atomic primitive: a data write with ``cas=<N>`` succeeds only if the
document's current version is still N (``cas=0``: only if it does not exist). Custom metadata
updates have no check-and-set, so nothing that must move atomically lives there. Instead:

- ``put_version`` writes the value with ``cas=<current KV version>``; the KV version it gets is
  the keyroll version number, so two writers can never get the same number. It then adds the
  version's metadata to the index with a check-and-set (retried on a lost race: adding a version
  commutes with anything else). If the process dies between the two writes, the next
  ``put_version`` finds the KV version missing from the index and adds it from the value
  document, which carries the same metadata.
- ``set_labels`` reads the index (labels + versions), checks ``expected`` and that every target
  version exists and is not destroyed, and writes the whole document back with ``cas=<version
  read>``. A concurrent writer makes the write fail; the move is then re-evaluated against the
  fresh index, so a label that moved raises `Conflict` and nothing else is lost.
- ``destroy_version`` first marks the version destroyed in the index (check-and-set, refused
  while a label points at it, so no label can land on it afterwards), then destroys the KV
  version. A crash in between leaves the value readable until ``destroy_version`` is rerun;
  it is idempotent.
- the lock and rotation records are documents written with ``cas``; a release writes an
  empty lock (a KV delete has no check-and-set). Bookkeeping (meta) values are last writer
  wins, as in the local store. Journal entry N is created with ``cas=0`` only
  after entry N-1 is seen to exist, so the journal stays gapless and a seq can be taken once.

All value documents carry their own environment, name and number, and are checked against the
fingerprint on read, so a document copied elsewhere raises `StoreCorrupted`. Every secret's
``max_versions`` is raised (KV's default keeps only 10; the index and lock documents keep the
last 50 as a history) and ``cas_required`` is set on them, so any writer that forgets the
check-and-set is refused by the server itself.

Availability: the store URL may list several addresses (a raft cluster); when one is
unreachable, sealed or a standby without a leader, the call moves to the next, retrying for up
to ``retry`` seconds. A write whose response was lost and that is then refused by its
check-and-set is read back: if the stored document is exactly what was written, the write
counts as done. Every hvac and requests exception is translated here, once, into keyroll's
errors; nothing above this module sees one.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qs, urlsplit

import hvac
import hvac.exceptions
import requests

from keyroll.errors import (
    Conflict,
    LeaseLost,
    LockHeld,
    NotFound,
    StoreCorrupted,
    StoreForbidden,
    StoreUnavailable,
    UsageError,
)
from keyroll.model import Label, SecretRef, SecretValue, Version, fingerprint, new_kid, utcnow
from keyroll.net import is_loopback
from keyroll.stores.base import AuditEntry, Fence, LockInfo, RotationRecord, Store

__all__ = ["OpenBaoStore"]

_T = TypeVar("_T")

#: How many times a lost check-and-set race is re-evaluated before giving up with `Conflict`.
_CAS_ATTEMPTS = 50
#: Rounds over every address per operation, on top of one per second of ``retry``.
_MAX_ATTEMPTS_PER_ADDRESS = 100
#: KV's default keeps 10 versions per document; a secret keeps every version.
_MAX_VERSIONS = 2**31 - 1
#: Label indexes and locks keep a short history (each move is a full copy of the document).
_HISTORY_VERSIONS = 50
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_KEY_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@=-]{0,127}$")
_HTTP_SCHEMES = {"openbao": "http", "vault": "http", "openbaos": "https", "vaults": "https"}
_QUERY_KEYS = (
    "prefix", "namespace", "auth", "approle_mount", "ca", "verify", "cert", "key", "timeout",
    "retry", "plaintext",
)
_TOKEN_VARS = ("BAO_TOKEN", "VAULT_TOKEN")
_ROLE_ID_VARS = ("BAO_ROLE_ID", "VAULT_ROLE_ID")
_SECRET_ID_VARS = ("BAO_SECRET_ID", "VAULT_SECRET_ID")
_EPOCH = "1970-01-01T00:00:00+00:00"

_TRANSIENT_HTTP = (
    hvac.exceptions.InternalServerError,  # 500: e.g. "local node not active" during an election
    hvac.exceptions.VaultNotInitialized,  # 501
    hvac.exceptions.BadGateway,  # 502
    hvac.exceptions.VaultDown,  # 503: sealed, or standby without an active node
    hvac.exceptions.PreconditionFailed,  # 412: a standby that has not caught up yet
    hvac.exceptions.RateLimitExceeded,  # 429
)


class _CasMismatch(Conflict):
    """A check-and-set write lost (internal: callers turn it into the right `Conflict`)."""


class _Missing(NotFound):
    """Nothing stored at a path (internal: callers decide what absence means)."""


def _path_key(text: str) -> str:
    """A path segment for an id or key: itself when plain, else ``~`` + hex (injective)."""
    if _KEY_SAFE.match(text):
        return text
    return "~" + text.encode().hex()


def _default_url(addresses: Sequence[str], mount: str, prefix: str) -> str:
    tls = all(a.startswith("https://") for a in addresses)
    hosts = ",".join(a.split("://", 1)[-1] for a in addresses)
    return f"openbao{'s' if tls else ''}://{hosts}/{mount}?prefix={prefix}"


def _env_first(environ: Mapping[str, str], names: Sequence[str]) -> str | None:
    for name in names:
        value = environ.get(name)
        if value:
            return value
    return None


def _server_errors(exc: hvac.exceptions.VaultError) -> str:
    """The server's error strings, short (they never contain request data or tokens)."""
    errors = exc.errors if isinstance(exc.errors, list) else []
    text = "; ".join(str(e)[:200] for e in errors[:3])
    return f": {text}" if text else ""


class _Connection:
    """hvac clients for each address, with failover, re-login and error translation."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        token: str | None,
        approle: tuple[str, str] | None,
        approle_mount: str,
        namespace: str | None,
        verify: bool | str,
        cert: tuple[str, str] | None,
        timeout: int,
        retry_seconds: float,
    ) -> None:
        self.addresses = list(addresses)
        self._approle = approle
        self._approle_mount = approle_mount
        self._retry_seconds = retry_seconds
        self._active = 0
        self._probe = len(self.addresses) > 1
        self._identified: set[str] = set()
        self._timeout = timeout
        self._index: tuple[str, int] | None = None
        self._mutex = threading.RLock()
        self._session = requests.Session()
        self._session.verify = verify
        if cert is not None:
            self._session.cert = cert
        self._session.hooks["response"].append(self._track_index)
        # token="" rather than None: hvac would otherwise read VAULT_TOKEN or ~/.vault-token
        # behind our back, and the credentials must come only from what the URL says.
        self._clients = [
            hvac.Client(
                url=address, token=token or "", verify=verify, cert=cert, timeout=timeout,
                namespace=namespace, session=self._session,
            )
            for address in self.addresses
        ]
        if approle is not None:
            self._login()

    def _login(self) -> None:
        if self._approle is None:
            return
        role_id, secret_id = self._approle

        def login(client: hvac.Client) -> str:
            resp = client.auth.approle.login(
                role_id=role_id, secret_id=secret_id, mount_point=self._approle_mount,
                use_token=False,
            )
            return str(resp["auth"]["client_token"])

        token = self.call("log in with AppRole", f"auth/{self._approle_mount}/login", login,
                          relogin=False)
        for client in self._clients:
            client.token = token

    def close(self) -> None:
        self._session.close()

    def credentials(self) -> list[str]:
        """The token(s) the clients send and the AppRole secret id (to be masked)."""
        held = {str(client.token) for client in self._clients if client.token}
        if self._approle is not None:
            held.add(self._approle[1])
        return sorted(held)

    def _track_index(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Remember the newest storage index a response reports, and send it back from now on.

        OpenBao standbys serve reads from their own copy, which may lag the active node. A
        request carrying ``X-Vault-Index`` with ``X-Vault-Inconsistent: forward-active-node``
        is forwarded to the active node when the standby has not reached that index, so this
        handle always reads its own writes (and a lost check-and-set re-reads fresh data).
        """
        header = response.headers.get("X-Vault-Index")
        if not header:
            return
        try:
            parsed = json.loads(base64.b64decode(header, validate=True))
            position = (str(parsed["cluster"]), int(parsed["value"]))
        except (ValueError, KeyError, TypeError):
            position = None  # opaque after all: the latest one seen is the best guess
        known = self._index
        if position is not None and known is not None and position[0] == known[0] \
                and position[1] <= known[1]:
            return
        self._index = position
        self._session.headers["X-Vault-Index"] = header
        self._session.headers["X-Vault-Inconsistent"] = "forward-active-node"

    def _identify(self, address: str) -> None:
        """Refuse an address that is not an OpenBao/Vault API (a web server answering 404
        to everything would otherwise look like an empty store). Checked once per address;
        an unreachable address is left to the normal retry path."""
        if address in self._identified:
            return
        try:
            resp = self._session.get(f"{address}/v1/sys/seal-status", timeout=self._timeout)
        except requests.RequestException:
            return
        try:
            status = resp.json()
        except ValueError:
            status = None
        if not isinstance(status, dict) or "sealed" not in status:
            raise UsageError(
                f"{address} does not answer like OpenBao or Vault (GET /v1/sys/seal-status gave "
                f"HTTP {resp.status_code}): check the host and port in the store URL"
            )
        self._identified.add(address)

    def _pick_active(self) -> None:
        """Point at the active node if one answers (standbys may serve stale reads)."""
        for number, address in enumerate(self.addresses):
            try:
                resp = self._session.get(f"{address}/v1/sys/leader", timeout=self._timeout)
                status = resp.json() if resp.status_code == 200 else {}
            except (requests.RequestException, ValueError):
                continue
            if isinstance(status, dict) and status.get("is_self") is True:
                self._active = number
                return

    def call(
        self, what: str, api_path: str, fn: Callable[[hvac.Client], _T], *, relogin: bool = True
    ) -> _T:
        """Run ``fn`` against the active address; fail over and translate errors.

        Args:
            what: the operation, for messages ("read", "write", …).
            api_path: the API path it touches, for messages (``secret/data/keyroll/…``).
            fn: the hvac call.
            relogin: with AppRole, log in again once on 403 (the token may have expired).
        """
        with self._mutex:
            deadline = time.monotonic() + self._retry_seconds
            count = len(self._clients)
            reason = ""
            relogged = not (relogin and self._approle is not None)
            rounds = _MAX_ATTEMPTS_PER_ADDRESS + int(self._retry_seconds)  # >= 1 s per round
            for attempt in range(count * rounds):
                if self._probe:
                    self._probe = False
                    self._pick_active()
                address = self.addresses[self._active]
                client = self._clients[self._active]
                self._identify(address)
                try:
                    return fn(client)
                except requests.exceptions.SSLError:
                    raise StoreUnavailable(
                        f"TLS handshake with OpenBao at {address} failed while trying to {what} "
                        f"{api_path}: give the server's CA with ?ca=/path/ca.pem in the store "
                        "URL (or BAO_CACERT)"
                    ) from None
                except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                    reason = f"{address} unreachable ({exc.__class__.__name__})"
                except requests.RequestException as exc:
                    raise StoreUnavailable(
                        f"OpenBao at {address} gave an unusable answer while trying to {what} "
                        f"{api_path} ({exc.__class__.__name__}): is the address an OpenBao or "
                        "Vault API (not a proxy or UI page)?"
                    ) from None
                except _TRANSIENT_HTTP as exc:
                    status = (
                        "sealed or no active node"
                        if isinstance(exc, hvac.exceptions.VaultDown)
                        else exc.__class__.__name__
                    )
                    reason = f"{address} answered {status}{_server_errors(exc)}"
                except hvac.exceptions.Forbidden:
                    if not relogged:
                        relogged = True
                        self._login()
                        continue
                    raise StoreForbidden(
                        f"OpenBao refused to {what} {api_path} (403 permission denied): the "
                        "token's policy must grant it (see docs/openbao.md for the policy), or "
                        "the token expired: renew it or use AppRole"
                    ) from None
                except hvac.exceptions.Unauthorized:
                    raise StoreForbidden(
                        f"OpenBao rejected the credentials while trying to {what} {api_path} "
                        "(401): check BAO_TOKEN, or BAO_ROLE_ID/BAO_SECRET_ID for AppRole"
                    ) from None
                except hvac.exceptions.InvalidPath as exc:
                    if "no handler for route" in str(exc.errors):
                        raise UsageError(
                            f"no secrets engine answers {api_path}: check the mount in the store "
                            "URL; it must be a KV version 2 engine (`bao secrets enable "
                            "-path=<mount> kv-v2`)"
                        ) from None
                    raise _Missing(f"nothing stored at {api_path}") from None
                except hvac.exceptions.InvalidRequest as exc:
                    if "check-and-set" in str(exc.errors):
                        raise _CasMismatch(f"{api_path} changed since it was read") from None
                    if "Waiting for the primary to upgrade" not in str(exc.errors):
                        raise StoreUnavailable(
                            f"OpenBao refused to {what} {api_path} as malformed (400"
                            f"{_server_errors(exc)}): is the mount a KV version 2 engine?"
                        ) from None
                    # else a KV mount that a standby is still setting up: transient
                    reason = f"{address} answered{_server_errors(exc)}"
                except hvac.exceptions.VaultError as exc:
                    raise StoreUnavailable(
                        f"OpenBao failed to {what} {api_path} ({exc.__class__.__name__}"
                        f"{_server_errors(exc)})"
                    ) from None
                # a transient failure: next address (or the new active node); after a full
                # round, wait a little
                self._active = (self._active + 1) % count
                self._probe = count > 1
                if (attempt + 1) >= count and time.monotonic() >= deadline:
                    break
                if (attempt + 1) % count == 0:
                    time.sleep(min(0.2 * (attempt + 1) / count, 1.0))
            raise StoreUnavailable(
                f"OpenBao is unavailable: could not {what} {api_path} ({reason}). Start or "
                "unseal the server, or check the addresses in the store URL, then retry: a "
                "paused rotation resumes from its last saved step"
            )


class OpenBaoStore(Store):
    """A `Store` on OpenBao or HashiCorp Vault KV v2 (see the module docstring).

    Open it with `from_url` (``open_store`` does). The token is held by the hvac clients only;
    it never appears in ``url``, ``repr`` or any message.

    Args:
        addresses: base URLs (``http(s)://host:port``); several for a cluster (failover).
        token: a client token (or None with ``approle``).
        approle: ``(role_id, secret_id)`` to log in with AppRole instead of a token.
        approle_mount: where the AppRole auth method is mounted.
        mount: the KV v2 mount path.
        prefix: the folder under the mount that keyroll owns.
        namespace: OpenBao / Vault Enterprise namespace.
        verify: True, False, or a CA bundle path for TLS verification.
        cert: client certificate and key paths for mutual TLS.
        timeout: seconds per HTTP request.
        retry_seconds: how long to keep failing over when every address is down.
        url: the URL to report (defaults to one built from the addresses).

    Raises:
        UsageError: no credentials given.
        StoreUnavailable: AppRole login could not reach the server.
        StoreForbidden: AppRole login was refused.
    """

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        token: str | None = None,
        approle: tuple[str, str] | None = None,
        approle_mount: str = "approle",
        mount: str = "secret",
        prefix: str = "keyroll",
        namespace: str | None = None,
        verify: bool | str = True,
        cert: tuple[str, str] | None = None,
        timeout: int = 10,
        retry_seconds: float = 0.0,
        url: str | None = None,
    ) -> None:
        if not addresses:
            raise UsageError("the OpenBao store needs at least one address")
        if not token and approle is None:
            raise UsageError(
                "no OpenBao credentials: set BAO_TOKEN (or VAULT_TOKEN), or use "
                "?auth=approle with BAO_ROLE_ID and BAO_SECRET_ID"
            )
        for part in (*mount.split("/"), *prefix.split("/")):
            if not _SEGMENT.match(part):
                raise UsageError(
                    f"invalid OpenBao mount or prefix segment {part!r}: use letters, digits, "
                    "'-', '_' or '.', starting with a letter or digit"
                )
        self.mount = mount
        self.prefix = prefix
        self.url = url or _default_url(addresses, mount, prefix)
        self._conn = _Connection(
            addresses, token=token, approle=approle, approle_mount=approle_mount,
            namespace=namespace, verify=verify, cert=cert, timeout=timeout,
            retry_seconds=retry_seconds,
        )

    # --- opening by URL -------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, *, environ: Mapping[str, str] | None = None) -> OpenBaoStore:
        """Open the store a URL names.

        ``openbao://host:port[,host:port…]/<mount>?prefix=keyroll&auth=token|approle&…``
        (``openbaos://`` for TLS; ``vault://`` and ``vaults://`` are the same). Query keys:
        ``prefix`` (default ``keyroll``), ``namespace`` (or ``BAO_NAMESPACE``), ``auth``
        (``token``: ``BAO_TOKEN`` or ``VAULT_TOKEN``; ``approle``: ``BAO_ROLE_ID`` and
        ``BAO_SECRET_ID``), ``approle_mount`` (default ``approle``), ``ca`` (CA bundle, or
        ``BAO_CACERT``), ``verify=false`` (TLS without verification: tests only), ``cert`` and
        ``key`` (mutual TLS), ``timeout`` (seconds per request, default 10), ``retry``
        (seconds to keep failing over, default 0 for one address, 30 for several),
        ``plaintext=ok`` (allow ``openbao://`` to a non-loopback host).

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

        return cls(
            addresses,
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

    def __repr__(self) -> str:
        return f"OpenBaoStore(url={self.url!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("OpenBaoStore refuses to be pickled: it would copy its token out")

    def close(self) -> None:
        self._conn.close()

    def identity(self) -> tuple[str, tuple[str, ...]]:
        """The token's identity (``auth/token/lookup-self``): its entity's name and groups
        where the token may read them (``identity/entity/id/*``, ``identity/group/id/*``),
        else its display name (``token-alice``, ``userpass-alice``) and no groups. Never
        a name the caller declares, unlike ``KEYROLL_ACTOR``.

        Raises:
            StoreForbidden: the token cannot look itself up (it is expired or revoked).
        """
        me = self._conn.call("look up", "auth/token/lookup-self",
                             lambda client: client.auth.token.lookup_self())
        data = me.get("data") or {}
        display = str(data.get("display_name") or data.get("accessor") or "unknown-token")
        entity_id = data.get("entity_id")
        if not entity_id:
            return display, ()
        try:
            entity = self._conn.call(
                "read", f"identity/entity/id/{entity_id}",
                lambda client: client.secrets.identity.read_entity(entity_id), relogin=False)
            body = entity.get("data") or {}
            groups = []
            for group_id in body.get("group_ids") or ():
                def read_group(client: hvac.Client, gid: str = str(group_id)) -> Any:
                    return client.secrets.identity.read_group(gid)

                group = self._conn.call("read", f"identity/group/id/{group_id}", read_group,
                                        relogin=False)
                groups.append(str((group.get("data") or {}).get("name") or group_id))
            return str(body.get("name") or display), tuple(sorted(groups))
        except (StoreForbidden, NotFound):  # no right to read identities: the display name
            return display, ()

    # --- KV plumbing ----------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    def _api(self, kind: str, path: str) -> str:
        return f"{self.mount}/{kind}/{path}"

    def _value_path(self, ref: SecretRef) -> str:
        return self._path(ref.environment, ref.name)

    def _index_path(self, ref: SecretRef) -> str:
        return self._path("_index", ref.environment, ref.name)

    def _lock_path(self, ref: SecretRef) -> str:
        return self._path("_locks", ref.environment, ref.name)

    def _rotation_path(self, rotation_id: str) -> str:
        return self._path("_rotations", _path_key(rotation_id))

    def _journal_path(self, seq: int) -> str:
        return self._path("_journal", str(seq))

    def _read(self, path: str, version: int | None = None) -> tuple[dict[str, Any], int] | None:
        """The document at ``path`` (latest or one version) and its KV version; None if absent."""
        kv = self.mount

        def read(client: hvac.Client) -> Any:
            return client.secrets.kv.v2.read_secret_version(
                path, version=version, mount_point=kv, raise_on_deleted_version=True
            )

        try:
            resp = self._conn.call("read", self._api("data", path), read)
        except _Missing:
            return None
        try:
            data = resp["data"]
            return dict(data["data"] or {}), int(data["metadata"]["version"])
        except (KeyError, TypeError, ValueError):
            raise self._not_kv2() from None

    def _write(self, path: str, doc: Mapping[str, Any], *, cas: int | None) -> int:
        """Write a document (with check-and-set when ``cas`` is given); its new KV version.

        Raises:
            _CasMismatch: the document is no longer at version ``cas``.
        """
        kv = self.mount
        attempts = 0

        def write(client: hvac.Client) -> Any:
            nonlocal attempts
            attempts += 1
            return client.secrets.kv.v2.create_or_update_secret(
                path, secret=dict(doc), cas=cas, mount_point=kv
            )

        try:
            resp = self._conn.call("write", self._api("data", path), write)
        except _CasMismatch:
            if attempts > 1:
                # the first attempt may have landed before its response was lost
                stored = self._read(path)
                if stored is not None and stored[0] == json.loads(json.dumps(dict(doc))):
                    return stored[1]
            raise
        try:
            return int(resp["data"]["version"])
        except (KeyError, TypeError, ValueError):
            raise self._not_kv2() from None

    def _not_kv2(self) -> UsageError:
        return UsageError(
            f"the mount {self.mount!r} of {self.url} does not answer like a KV version 2 engine "
            "(a KV version 1 mount?): point the store URL at a KV v2 mount (`bao secrets "
            "enable -path=<mount> kv-v2`)"
        )

    def _list(self, path: str) -> list[str]:
        kv = self.mount

        def list_keys(client: hvac.Client) -> Any:
            return client.secrets.kv.v2.list_secrets(path, mount_point=kv)

        try:
            resp = self._conn.call("list", self._api("metadata", path), list_keys)
        except _Missing:
            return []
        return [str(key) for key in resp["data"]["keys"]]

    def _current_version(self, path: str) -> int | None:
        kv = self.mount

        def read_meta(client: hvac.Client) -> Any:
            return client.secrets.kv.v2.read_secret_metadata(path, mount_point=kv)

        try:
            resp = self._conn.call("read metadata of", self._api("metadata", path), read_meta)
        except _Missing:
            return None
        return int(resp["data"]["current_version"])

    def _configure(self, path: str, *, keep: int = _HISTORY_VERSIONS) -> None:
        """Keep ``keep`` versions of ``path`` and make the server refuse writes without cas."""
        kv = self.mount

        def configure(client: hvac.Client) -> Any:
            return client.secrets.kv.v2.update_metadata(
                path, max_versions=keep, cas_required=True, mount_point=kv
            )

        self._conn.call("configure", self._api("metadata", path), configure)

    # --- versions -------------------------------------------------------------------------

    def put_version(
        self,
        ref: SecretRef,
        value: SecretValue,
        *,
        kid: int | None = None,
        created_at: datetime | None = None,
        meta: Mapping[str, Any] | None = None,
        fence: Fence | None = None,
    ) -> Version:
        self._check_fence(fence)
        kid = new_kid() if kid is None else kid
        created = created_at or utcnow()
        meta_doc = json.loads(json.dumps(dict(meta or {})))
        path = self._value_path(ref)
        for _ in range(_CAS_ATTEMPTS):
            current = self._current_version(path)
            if current is None:
                self._configure(path, keep=_MAX_VERSIONS)
                current = 0
            doc = {
                "environment": ref.environment, "name": ref.name, "number": current + 1,
                "value": value.reveal(), "kid": kid, "fingerprint": value.fingerprint,
                "created_at": created.isoformat(), "meta": meta_doc,
            }
            try:
                number = self._write(path, doc, cas=current)
            except _CasMismatch:
                continue
            break
        else:
            raise Conflict(f"{ref}: too many concurrent writers adding versions; retry")
        version = Version(number, kid, value.fingerprint, created, False, meta_doc)
        entry = {
            "kid": kid, "fingerprint": value.fingerprint, "created_at": created.isoformat(),
            "meta": meta_doc, "destroyed": False,
        }

        def add(index: dict[str, Any]) -> None:
            self._recover_missing(ref, index, below=number)
            index["versions"][str(number)] = entry

        self._update_index(ref, add)
        return version

    def _recover_missing(self, ref: SecretRef, index: dict[str, Any], *, below: int) -> None:
        """Add to the index any KV version under ``below`` it lacks (a crash after the value
        write), from the value document, which carries the same metadata."""
        known = index["versions"]
        for number in range(1, below):
            if str(number) in known:
                continue
            stored = self._read(self._value_path(ref), number)
            if stored is not None and stored[0].get("number") == number:
                doc = stored[0]
                known[str(number)] = {
                    "kid": int(doc["kid"]), "fingerprint": str(doc["fingerprint"]),
                    "created_at": str(doc["created_at"]), "meta": doc.get("meta") or {},
                    "destroyed": False,
                }
            else:
                known[str(number)] = {
                    "kid": 0, "fingerprint": "", "created_at": _EPOCH,
                    "meta": {"recovered": "value missing"}, "destroyed": True,
                }

    def _read_index(self, ref: SecretRef) -> tuple[dict[str, Any], int]:
        stored = self._read(self._index_path(ref))
        if stored is None:
            return {"labels": {}, "versions": {}}, 0
        doc, version = stored
        doc.setdefault("labels", {})
        doc.setdefault("versions", {})
        return doc, version

    def _update_index(self, ref: SecretRef, change: Callable[[dict[str, Any]], _T]) -> _T:
        """Read the index, apply ``change`` and write it back with check-and-set; on a lost
        race re-read and re-apply (``change`` may raise to refuse)."""
        path = self._index_path(ref)
        for _ in range(_CAS_ATTEMPTS):
            index, version = self._read_index(ref)
            result = change(index)
            if version == 0:
                self._configure(path)
            try:
                self._write(path, index, cas=version)
            except _CasMismatch:
                continue
            return result
        raise Conflict(f"{ref}: the label index keeps changing under concurrent writers; retry")

    def read_value(self, ref: SecretRef, number: int) -> SecretValue:
        stored = self._read(self._value_path(ref), number) if number >= 1 else None
        if stored is None:
            raise NotFound(
                f"{ref} version {number} does not exist or was destroyed: see `keyroll status`"
            )
        doc, kv_version = stored
        value = doc.get("value")
        if (
            not isinstance(value, str)
            or (doc.get("environment"), doc.get("name"), doc.get("number"))
            != (ref.environment, ref.name, number)
            or kv_version != number
            or fingerprint(value) != doc.get("fingerprint")
        ):
            raise StoreCorrupted(
                f"{ref} version {number} in OpenBao ({self._api('data', self._value_path(ref))})"
                " fails its integrity check: it was edited or copied from another secret. "
                "Restore it from an OpenBao snapshot"
            )
        return SecretValue(value)

    def list_versions(self, ref: SecretRef) -> list[Version]:
        index, _ = self._read_index(ref)
        versions = [
            Version(
                int(number), int(entry["kid"]), str(entry["fingerprint"]),
                datetime.fromisoformat(entry["created_at"]), bool(entry["destroyed"]),
                dict(entry.get("meta") or {}),
            )
            for number, entry in index["versions"].items()
        ]
        return sorted(versions, key=lambda v: v.number)

    def own_secrets(self) -> list[SecretValue]:
        """The client token (and AppRole secret id) this store sends."""
        return [SecretValue(text) for text in self._conn.credentials()]

    def destroy_version(self, ref: SecretRef, number: int, *, fence: Fence | None = None) -> None:
        self.remember_value(ref, number)

        def mark(index: dict[str, Any]) -> None:
            self._check_fence(fence)
            entry = index["versions"].get(str(number))
            if entry is None:
                raise NotFound(f"{ref} has no version {number}")
            for label, labelled in index["labels"].items():
                if labelled == number:
                    raise Conflict(
                        f"{ref} version {number} is still labelled {label}; "
                        "move the label before destroying it"
                    )
            entry["destroyed"] = True

        self._update_index(ref, mark)
        path, kv = self._value_path(ref), self.mount

        def destroy(client: hvac.Client) -> Any:
            return client.secrets.kv.v2.destroy_secret_versions(path, [number], mount_point=kv)

        self._conn.call("destroy a version of", self._api("destroy", path), destroy)

    def list_secrets(self) -> list[SecretRef]:
        refs = []
        for env in self._list(self.prefix + "/"):
            if not env.endswith("/") or env.startswith("_"):
                continue
            for name in self._list(self._path(env)):
                if name.endswith("/"):
                    continue
                try:
                    refs.append(SecretRef(env.rstrip("/"), name))
                except UsageError:
                    continue  # not keyroll's: someone else's document under the prefix
        return sorted(refs)

    # --- labels ---------------------------------------------------------------------------

    def get_labels(self, ref: SecretRef) -> dict[Label, int]:
        index, _ = self._read_index(ref)
        return {Label(label): int(number) for label, number in index["labels"].items()}

    def set_labels(
        self,
        ref: SecretRef,
        *,
        expected: Mapping[Label, int | None],
        new: Mapping[Label, int | None],
        fence: Fence | None = None,
    ) -> dict[Label, int]:
        def move(index: dict[str, Any]) -> dict[Label, int]:
            self._check_fence(fence)
            labels: dict[str, int] = index["labels"]
            for label, want in expected.items():
                if labels.get(label.value) != want:
                    raise Conflict(
                        f"{ref}: label {label.value} moved (expected version {want}, found "
                        f"{labels.get(label.value)}); re-read the secret and retry"
                    )
            for label, number in new.items():
                if number is None:
                    labels.pop(label.value, None)
                    continue
                entry = index["versions"].get(str(number))
                if entry is None or entry["destroyed"]:
                    raise NotFound(f"{ref} has no live version {number} to label {label.value}")
                labels[label.value] = number
            return {Label(label): int(number) for label, number in labels.items()}

        return self._update_index(ref, move)

    # --- lock -----------------------------------------------------------------------------

    def acquire_lock(
        self,
        ref: SecretRef,
        owner: str,
        *,
        ttl: timedelta,
        now: datetime | None = None,
        generation: int | None = None,
    ) -> LockInfo:
        moment = now or utcnow()
        path = self._lock_path(ref)
        for _ in range(_CAS_ATTEMPTS):
            stored = self._read(path)
            doc, version = stored if stored is not None else ({}, 0)
            held_by = doc.get("owner") or ""
            last = int(doc.get("generation") or 0)
            if generation is not None and (held_by != owner or last != generation):
                raise LeaseLost(
                    f"{ref}: this process lost its lock (generation {generation}, the lock is "
                    f"at {last}): another process took the rotation over"
                )
            if held_by and held_by != owner:
                until = datetime.fromisoformat(doc["expires_at"])
                if until > moment:
                    raise LockHeld(
                        f"{ref} is locked by {held_by} until {until.isoformat()}: wait for that "
                        "rotation (`keyroll rotations`) or roll it back"
                    )
            info = LockInfo(owner, moment + ttl, last if held_by == owner else last + 1)
            if version == 0:
                self._configure(path)
            try:
                self._write(path, {"owner": owner, "expires_at": info.expires_at.isoformat(),
                                   "generation": info.generation}, cas=version)
            except _CasMismatch:
                continue
            return info
        raise Conflict(f"{ref}: the lock keeps changing under concurrent writers; retry")

    def release_lock(self, ref: SecretRef, owner: str) -> None:
        path = self._lock_path(ref)
        for _ in range(_CAS_ATTEMPTS):
            stored = self._read(path)
            if stored is None or stored[0].get("owner") != owner:
                return
            try:
                # a KV delete has no check-and-set: an empty owner means "free"; the
                # generation stays for the next owner
                self._write(path, {"owner": "", "expires_at": "",
                                   "generation": int(stored[0].get("generation") or 0)},
                            cas=stored[1])
            except _CasMismatch:
                continue
            return
        raise Conflict(f"{ref}: the lock keeps changing under concurrent writers; retry")

    def get_lock(self, ref: SecretRef, *, now: datetime | None = None) -> LockInfo | None:
        stored = self._read(self._lock_path(ref))
        if stored is None or not stored[0].get("owner"):
            return None
        info = LockInfo(str(stored[0]["owner"]), datetime.fromisoformat(stored[0]["expires_at"]),
                        int(stored[0].get("generation") or 0))
        return info if info.expires_at > (now or utcnow()) else None

    def _check_fence(self, fence: Fence | None) -> None:
        """The lock is still ``fence``'s. KV v2 cannot compare two paths in one write, so this
        read comes first and the write's own check-and-set second: a process that takes the
        lock over saves the record before any side effect, which makes a stale writer's
        record save fail even if it read the lock just before the takeover."""
        if fence is None:
            return
        stored = self._read(self._lock_path(fence.ref))
        doc = stored[0] if stored is not None else {}
        if doc.get("owner") != fence.owner or int(doc.get("generation") or 0) != fence.generation:
            raise LeaseLost(
                f"{fence.ref}: this process lost its lock (generation {fence.generation}): "
                "another process took the rotation over; nothing more was written"
            )

    # --- rotation records -----------------------------------------------------------------

    @staticmethod
    def _rotation_doc(record: RotationRecord, revision: int) -> dict[str, Any]:
        return {
            "id": record.id, "environment": record.ref.environment, "name": record.ref.name,
            "state": record.state, "revision": revision,
            "created_at": record.created_at.isoformat(),
            "updated_at": record.updated_at.isoformat(),
            "body": json.loads(json.dumps(dict(record.body))),
        }

    @staticmethod
    def _rotation_from(doc: Mapping[str, Any]) -> RotationRecord:
        return RotationRecord(
            str(doc["id"]), SecretRef(doc["environment"], doc["name"]), str(doc["state"]),
            int(doc["revision"]), datetime.fromisoformat(doc["created_at"]),
            datetime.fromisoformat(doc["updated_at"]), dict(doc["body"]),
        )

    def create_rotation(self, record: RotationRecord, *, fence: Fence | None = None
                        ) -> RotationRecord:
        self._check_fence(fence)
        doc = self._rotation_doc(record, 1)
        try:
            self._write(self._rotation_path(record.id), doc, cas=0)
        except _CasMismatch:
            raise Conflict(f"rotation {record.id} exists already") from None
        return self._rotation_from(doc)

    def save_rotation(
        self, record: RotationRecord, *, expected_revision: int, fence: Fence | None = None
    ) -> RotationRecord:
        self._check_fence(fence)
        path = self._rotation_path(record.id)
        stored = self._read(path)
        if stored is None:
            raise NotFound(f"no rotation {record.id}: list them with `keyroll rotations`")
        current, version = stored
        if int(current["revision"]) != expected_revision:
            raise Conflict(
                f"rotation {record.id} was changed by another process (revision "
                f"{current['revision']}, expected {expected_revision}); re-read it and retry"
            )
        doc = self._rotation_doc(record, expected_revision + 1)
        try:
            self._write(path, doc, cas=version)
        except _CasMismatch:
            raise Conflict(
                f"rotation {record.id} was changed by another process while saving; re-read "
                "it and retry"
            ) from None
        return self._rotation_from(doc)

    def get_rotation(self, rotation_id: str) -> RotationRecord:
        stored = self._read(self._rotation_path(rotation_id))
        if stored is None:
            raise NotFound(f"no rotation {rotation_id}: list them with `keyroll rotations`")
        return self._rotation_from(stored[0])

    def list_rotations(self, ref: SecretRef | None = None) -> list[RotationRecord]:
        records = []
        for key in self._list(self._path("_rotations") + "/"):
            stored = self._read(self._path("_rotations", key))
            if stored is None:
                continue
            record = self._rotation_from(stored[0])
            if ref is None or record.ref == ref:
                records.append(record)
        return sorted(records, key=lambda r: (r.created_at, r.id))

    # --- audit journal --------------------------------------------------------------------

    def audit_append(self, entry: AuditEntry, *, fence: Fence | None = None) -> None:
        self._check_fence(fence)
        if entry.seq < 1 or (entry.seq > 1 and self._read(self._journal_path(entry.seq - 1))
                             is None):
            raise Conflict(
                f"journal entry {entry.seq} does not follow the last entry; re-read the tail "
                "and retry"
            )
        doc = {"seq": entry.seq, "payload": entry.payload, "prev_hash": entry.prev_hash,
               "hash": entry.hash}
        try:
            self._write(self._journal_path(entry.seq), doc, cas=0)
        except _CasMismatch:
            raise Conflict(
                f"journal moved on (entry {entry.seq} exists already); re-read the tail and retry"
            ) from None

    def _journal_seqs(self) -> list[int]:
        seqs = []
        for key in self._list(self._path("_journal") + "/"):
            if key.isdigit():
                seqs.append(int(key))
        return sorted(seqs)

    def _journal_entry(self, seq: int) -> AuditEntry:
        stored = self._read(self._journal_path(seq))
        if stored is None:
            raise StoreCorrupted(f"journal entry {seq} vanished from OpenBao while reading")
        doc = stored[0]
        return AuditEntry(int(doc["seq"]), str(doc["payload"]), str(doc["prev_hash"]),
                          str(doc["hash"]))

    def audit_entries(self, start: int = 1) -> Iterator[AuditEntry]:
        for seq in self._journal_seqs():
            if seq >= start:
                yield self._journal_entry(seq)

    def audit_tail(self) -> AuditEntry | None:
        seqs = self._journal_seqs()
        return self._journal_entry(seqs[-1]) if seqs else None

    # --- bookkeeping key/value ------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        stored = self._read(self._path("_meta", _path_key(key)))
        return None if stored is None else str(stored[0]["value"])

    def list_meta(self) -> list[str]:
        """Every bookkeeping key, sorted."""
        keys = []
        for name in self._list(self._path("_meta") + "/"):
            if name.endswith("/"):
                continue
            keys.append(bytes.fromhex(name[1:]).decode() if name.startswith("~") else name)
        return sorted(keys)

    def put_meta(self, key: str, value: str | None) -> None:
        path = self._path("_meta", _path_key(key))
        if value is not None:
            self._write(path, {"value": value}, cas=None)
            return
        kv = self.mount

        def delete(client: hvac.Client) -> Any:
            return client.secrets.kv.v2.delete_metadata_and_all_versions(path, mount_point=kv)

        try:
            self._conn.call("delete", self._api("metadata", path), delete)
        except _Missing:
            return
