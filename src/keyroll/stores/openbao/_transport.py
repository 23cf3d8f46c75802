"""The OpenBao / Vault transport: hvac clients with failover, re-login, read-your-writes and
error translation, and the KV version 2 calls the store is built from.

Availability: the store URL may list several addresses (a raft cluster); when one is
unreachable, sealed or a standby without a leader, the call moves to the next, retrying for up
to ``retry`` seconds. A write whose response was lost and that is then refused by its
check-and-set is read back: if the stored document is exactly what was written, the write
counts as done. Every hvac and requests exception is translated here, once, into keyroll's
errors; nothing above this module sees one (`CasMismatch` and `Missing` are keyroll errors the
store turns into the right `Conflict` or `NotFound`).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from keyroll.errors import Conflict, NotFound, StoreForbidden, StoreUnavailable, UsageError

__all__ = ["KV", "CasMismatch", "Connection", "Missing"]

_T = TypeVar("_T")

#: Rounds over every address per operation, on top of one per second of ``retry``.
_MAX_ATTEMPTS_PER_ADDRESS = 100

_TRANSIENT_HTTP = (
    hvac.exceptions.InternalServerError,  # 500: e.g. "local node not active" during an election
    hvac.exceptions.VaultNotInitialized,  # 501
    hvac.exceptions.BadGateway,  # 502
    hvac.exceptions.VaultDown,  # 503: sealed, or standby without an active node
    hvac.exceptions.PreconditionFailed,  # 412: a standby that has not caught up yet
    hvac.exceptions.RateLimitExceeded,  # 429
)


class CasMismatch(Conflict):
    """A check-and-set write lost (internal: callers turn it into the right `Conflict`)."""


class Missing(NotFound):
    """Nothing stored at a path (internal: callers decide what absence means)."""


def _server_errors(exc: hvac.exceptions.VaultError) -> str:
    """The server's error strings, short (they never contain request data or tokens)."""
    errors = exc.errors if isinstance(exc.errors, list) else []
    text = "; ".join(str(e)[:200] for e in errors[:3])
    return f": {text}" if text else ""


class Connection:
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

    def identity(self) -> tuple[str, tuple[str, ...]]:
        """The token's entity name and groups, else its display name (`OpenBaoStore.identity`)."""
        me = self.call("look up", "auth/token/lookup-self",
                       lambda client: client.auth.token.lookup_self())
        data = me.get("data") or {}
        display = str(data.get("display_name") or data.get("accessor") or "unknown-token")
        entity_id = data.get("entity_id")
        if not entity_id:
            return display, ()
        try:
            entity = self.call(
                "read", f"identity/entity/id/{entity_id}",
                lambda client: client.secrets.identity.read_entity(entity_id), relogin=False)
            body = entity.get("data") or {}
            groups = []
            for group_id in body.get("group_ids") or ():
                def read_group(client: hvac.Client, gid: str = str(group_id)) -> Any:
                    return client.secrets.identity.read_group(gid)

                group = self.call("read", f"identity/group/id/{group_id}", read_group,
                                  relogin=False)
                groups.append(str((group.get("data") or {}).get("name") or group_id))
            return str(body.get("name") or display), tuple(sorted(groups))
        except (StoreForbidden, NotFound):  # no right to read identities: the display name
            return display, ()

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
                    raise Missing(f"nothing stored at {api_path}") from None
                except hvac.exceptions.InvalidRequest as exc:
                    if "check-and-set" in str(exc.errors):
                        raise CasMismatch(f"{api_path} changed since it was read") from None
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


class KV:
    """The KV version 2 calls the store makes on one mount, through a `Connection`.

    Args:
        conn: the transport.
        mount: the KV v2 mount path.
        describe: how messages name the store (its URL, never with credentials).
    """

    def __init__(self, conn: Connection, mount: str, describe: str) -> None:
        self.conn = conn
        self.mount = mount
        self._describe = describe

    def api(self, kind: str, path: str) -> str:
        """The API path of ``path`` under ``kind`` (``data``, ``metadata``, ``destroy``)."""
        return f"{self.mount}/{kind}/{path}"

    def read(self, path: str, version: int | None = None) -> tuple[dict[str, Any], int] | None:
        """The document at ``path`` (latest or one version) and its KV version; None if absent."""
        kv = self.mount

        def read(client: hvac.Client) -> Any:
            return client.secrets.kv.v2.read_secret_version(
                path, version=version, mount_point=kv, raise_on_deleted_version=True
            )

        try:
            resp = self.conn.call("read", self.api("data", path), read)
        except Missing:
            return None
        try:
            data = resp["data"]
            return dict(data["data"] or {}), int(data["metadata"]["version"])
        except (KeyError, TypeError, ValueError):
            raise self.not_kv2() from None

    def write(self, path: str, doc: Mapping[str, Any], *, cas: int | None) -> int:
        """Write a document (with check-and-set when ``cas`` is given); its new KV version.

        Raises:
            CasMismatch: the document is no longer at version ``cas``.
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
            resp = self.conn.call("write", self.api("data", path), write)
        except CasMismatch:
            if attempts > 1:
                # the first attempt may have landed before its response was lost
                stored = self.read(path)
                if stored is not None and stored[0] == json.loads(json.dumps(dict(doc))):
                    return stored[1]
            raise
        try:
            return int(resp["data"]["version"])
        except (KeyError, TypeError, ValueError):
            raise self.not_kv2() from None

    def not_kv2(self) -> UsageError:
        return UsageError(
            f"the mount {self.mount!r} of {self._describe} does not answer like a KV version 2 engine "
            "(a KV version 1 mount?): point the store URL at a KV v2 mount (`bao secrets "
            "enable -path=<mount> kv-v2`)"
        )

    def list_keys(self, path: str) -> list[str]:
        kv = self.mount

        def list_keys(client: hvac.Client) -> Any:
            return client.secrets.kv.v2.list_secrets(path, mount_point=kv)

        try:
            resp = self.conn.call("list", self.api("metadata", path), list_keys)
        except Missing:
            return []
        return [str(key) for key in resp["data"]["keys"]]

    def current_version(self, path: str) -> int | None:
        kv = self.mount

        def read_meta(client: hvac.Client) -> Any:
            return client.secrets.kv.v2.read_secret_metadata(path, mount_point=kv)

        try:
            resp = self.conn.call("read metadata of", self.api("metadata", path), read_meta)
        except Missing:
            return None
        return int(resp["data"]["current_version"])

    def configure(self, path: str, *, keep: int) -> None:
        """Keep ``keep`` versions of ``path`` and make the server refuse writes without cas."""
        kv = self.mount

        def configure(client: hvac.Client) -> Any:
            return client.secrets.kv.v2.update_metadata(
                path, max_versions=keep, cas_required=True, mount_point=kv
            )

        self.conn.call("configure", self.api("metadata", path), configure)

    def destroy_versions(self, path: str, numbers: Sequence[int]) -> None:
        """Destroy KV versions of ``path`` for good (their data is gone, the metadata stays)."""
        kv = self.mount

        def destroy(client: hvac.Client) -> Any:
            return client.secrets.kv.v2.destroy_secret_versions(path, list(numbers), mount_point=kv)

        self.conn.call("destroy a version of", self.api("destroy", path), destroy)

    def delete(self, path: str) -> None:
        """Delete ``path`` with every version and its metadata; nothing there is fine."""
        kv = self.mount

        def delete(client: hvac.Client) -> Any:
            return client.secrets.kv.v2.delete_metadata_and_all_versions(path, mount_point=kv)

        try:
            self.conn.call("delete", self.api("metadata", path), delete)
        except Missing:
            return
