"""The OpenBao / HashiCorp Vault store: KV v2 through hvac, every change a check-and-set.

Layout under ``<mount>/<prefix>/`` (KV v2; ``prefix`` defaults to ``keyroll``)::

    <env>/<class>              one KV version per keyroll version: the value, with its kid,
                               fingerprint, creation time and meta (KV version N = keyroll
                               version N; destroy = KV destroy of that version)
    _index/<env>/<class>       the secret's label map and every version's metadata (kid,
                               fingerprint, created_at, meta, destroyed): one document
    _locks/<env>/<class>       the rotation lock {owner, expires_at, generation}
    _rotations/<id>            one rotation record
    _journal_head              the journal's layout and newest page (a hint)
    _journal_pages/<k>         audit entries k·100+1 … k·100+100, one document per page
                               (`keyroll.stores.openbao._journal`; ``_journal/<seq>``, one
                               document per entry, is the old layout, read until migrated)
    _meta/<key>                bookkeeping values
    _changes/state, /meta      a random marker rewritten after every write to versions,
                               labels, locks and rotations (``state``) or to bookkeeping
                               (``meta``): readers cache against them (`change_markers`)

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
  wins, as in the local store. Journal entry N goes into its page with
  ``cas=<the page's KV version>`` only when the page holds exactly entries up to N-1 (a new
  page: ``cas=0``, after the previous page is seen full), so the journal stays gapless and a
  seq can be taken once.

All value documents carry their own environment, name and number, and are checked against the
fingerprint on read, so a document copied elsewhere raises `StoreCorrupted`. Every secret's
``max_versions`` is raised (KV's default keeps only 10; the index and lock documents keep the
last 50 as a history) and ``cas_required`` is set on them, so any writer that forgets the
check-and-set is refused by the server itself.

The transport (failover, re-login, read-your-writes, every hvac and requests error translated
once) is `keyroll.stores.openbao._transport`; store URLs are `keyroll.stores.openbao._url`.
"""


from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar

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
from keyroll.stores.base import AuditEntry, Fence, LockInfo, RotationRecord, Store
from keyroll.stores.openbao._journal import PagedJournal
from keyroll.stores.openbao._transport import KV, CasMismatch, Connection
from keyroll.stores.openbao._url import default_url, parse_url

__all__ = ["OpenBaoStore"]

_T = TypeVar("_T")

#: How many times a lost check-and-set race is re-evaluated before giving up with `Conflict`.
_CAS_ATTEMPTS = 50
#: KV's default keeps 10 versions per document; a secret keeps every version.
_MAX_VERSIONS = 2**31 - 1
#: Label indexes and locks keep a short history (each move is a full copy of the document).
_HISTORY_VERSIONS = 50
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_KEY_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@=-]{0,127}$")
_EPOCH = "1970-01-01T00:00:00+00:00"


def _path_key(text: str) -> str:
    """A path segment for an id or key: itself when plain, else ``~`` + hex (injective)."""
    if _KEY_SAFE.match(text):
        return text
    return "~" + text.encode().hex()


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
        self.url = url or default_url(addresses, mount, prefix)
        self._conn = Connection(
            addresses, token=token, approle=approle, approle_mount=approle_mount,
            namespace=namespace, verify=verify, cert=cert, timeout=timeout,
            retry_seconds=retry_seconds,
        )
        self._kv = KV(self._conn, mount, self.url)
        #: the journal's pages (`keyroll.stores.openbao._journal`)
        self.journal_pages = PagedJournal(self._kv, self._path)

    # --- opening by URL -------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: str, *, environ: Mapping[str, str] | None = None) -> OpenBaoStore:
        """Open the store a URL names (the URL's rules: `keyroll.stores.openbao._url.parse_url`).

        Raises:
            UsageError: malformed URL, unknown option, or missing credentials.
        """
        o = parse_url(url, environ)
        return cls(
            o.addresses, token=o.token, approle=o.approle, approle_mount=o.approle_mount,
            mount=o.mount, prefix=o.prefix, namespace=o.namespace, verify=o.verify,
            cert=o.cert, timeout=o.timeout, retry_seconds=o.retry_seconds, url=o.url,
        )

    # --- layout under the prefix ---------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    def _value_path(self, ref: SecretRef) -> str:
        return self._path(ref.environment, ref.name)

    def _index_path(self, ref: SecretRef) -> str:
        return self._path("_index", ref.environment, ref.name)

    def _lock_path(self, ref: SecretRef) -> str:
        return self._path("_locks", ref.environment, ref.name)

    def _rotation_path(self, rotation_id: str) -> str:
        return self._path("_rotations", _path_key(rotation_id))

    # --- change markers --------------------------------------------------------------------

    def _changed(self, area: str) -> None:
        """Move ``area``'s marker (after the write it follows: a reader that saw the old
        marker re-reads at its next request). Last writer wins: any new text will do.

        Best effort: the write it follows has happened, so a marker the server refuses (a
        policy written before the markers existed) or misses (the server went away just
        then) does not turn it into an error; readers re-read what they kept after a
        bounded age anyway (`keyroll.dashboard.store_cache.MAX_AGE_SECONDS`)."""
        with contextlib.suppress(StoreForbidden, StoreUnavailable):
            self._kv.write(self._path("_changes", area), {"marker": secrets.token_hex(16)},
                           cas=None)

    def change_markers(self) -> tuple[str, str]:
        """The ``_changes/state`` and ``_changes/meta`` markers ("" before the first write)."""
        found = []
        for area in ("state", "meta"):
            stored = self._kv.read(self._path("_changes", area))
            found.append(str(stored[0].get("marker", "")) if stored is not None else "")
        return found[0], found[1]

    def secret_index(self, ref: SecretRef) -> tuple[dict[Label, int], list[Version]]:
        """Labels and versions from the one index document (one read)."""
        index, _ = self._read_index(ref)
        return self._labels_of(index), self._versions_of(index)

    # --- versions -------------------------------------------------------------------------

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
        return self._conn.identity()

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
            current = self._kv.current_version(path)
            if current is None:
                self._kv.configure(path, keep=_MAX_VERSIONS)
                current = 0
            doc = {
                "environment": ref.environment, "name": ref.name, "number": current + 1,
                "value": value.reveal(), "kid": kid, "fingerprint": value.fingerprint,
                "created_at": created.isoformat(), "meta": meta_doc,
            }
            try:
                number = self._kv.write(path, doc, cas=current)
            except CasMismatch:
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
        self._changed("state")
        return version

    def _recover_missing(self, ref: SecretRef, index: dict[str, Any], *, below: int) -> None:
        """Add to the index any KV version under ``below`` it lacks (a crash after the value
        write), from the value document, which carries the same metadata."""
        known = index["versions"]
        for number in range(1, below):
            if str(number) in known:
                continue
            stored = self._kv.read(self._value_path(ref), number)
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
        stored = self._kv.read(self._index_path(ref))
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
                self._kv.configure(path, keep=_HISTORY_VERSIONS)
            try:
                self._kv.write(path, index, cas=version)
            except CasMismatch:
                continue
            return result
        raise Conflict(f"{ref}: the label index keeps changing under concurrent writers; retry")

    def read_value(self, ref: SecretRef, number: int) -> SecretValue:
        stored = self._kv.read(self._value_path(ref), number) if number >= 1 else None
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
                f"{ref} version {number} in OpenBao ({self._kv.api('data', self._value_path(ref))})"
                " fails its integrity check: it was edited or copied from another secret. "
                "Restore it from an OpenBao snapshot"
            )
        return SecretValue(value)

    def list_versions(self, ref: SecretRef) -> list[Version]:
        index, _ = self._read_index(ref)
        return self._versions_of(index)

    @staticmethod
    def _versions_of(index: Mapping[str, Any]) -> list[Version]:
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
        self._changed("state")
        self._kv.destroy_versions(self._value_path(ref), [number])

    def list_secrets(self) -> list[SecretRef]:
        refs = []
        for env in self._kv.list_keys(self.prefix + "/"):
            if not env.endswith("/") or env.startswith("_"):
                continue
            for name in self._kv.list_keys(self._path(env)):
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
        return self._labels_of(index)

    @staticmethod
    def _labels_of(index: Mapping[str, Any]) -> dict[Label, int]:
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

        moved = self._update_index(ref, move)
        self._changed("state")
        return moved

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
            stored = self._kv.read(path)
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
                self._kv.configure(path, keep=_HISTORY_VERSIONS)
            try:
                self._kv.write(path, {"owner": owner, "expires_at": info.expires_at.isoformat(),
                                   "generation": info.generation}, cas=version)
            except CasMismatch:
                continue
            self._changed("state")
            return info
        raise Conflict(f"{ref}: the lock keeps changing under concurrent writers; retry")

    def release_lock(self, ref: SecretRef, owner: str) -> None:
        path = self._lock_path(ref)
        for _ in range(_CAS_ATTEMPTS):
            stored = self._kv.read(path)
            if stored is None or stored[0].get("owner") != owner:
                return
            try:
                # a KV delete has no check-and-set: an empty owner means "free"; the
                # generation stays for the next owner
                self._kv.write(path, {"owner": "", "expires_at": "",
                                   "generation": int(stored[0].get("generation") or 0)},
                            cas=stored[1])
            except CasMismatch:
                continue
            self._changed("state")
            return
        raise Conflict(f"{ref}: the lock keeps changing under concurrent writers; retry")

    def get_lock(self, ref: SecretRef, *, now: datetime | None = None) -> LockInfo | None:
        stored = self._kv.read(self._lock_path(ref))
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
        stored = self._kv.read(self._lock_path(fence.ref))
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
            self._kv.write(self._rotation_path(record.id), doc, cas=0)
        except CasMismatch:
            raise Conflict(f"rotation {record.id} exists already") from None
        self._changed("state")
        return self._rotation_from(doc)

    def save_rotation(
        self, record: RotationRecord, *, expected_revision: int, fence: Fence | None = None
    ) -> RotationRecord:
        self._check_fence(fence)
        path = self._rotation_path(record.id)
        stored = self._kv.read(path)
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
            self._kv.write(path, doc, cas=version)
        except CasMismatch:
            raise Conflict(
                f"rotation {record.id} was changed by another process while saving; re-read "
                "it and retry"
            ) from None
        self._changed("state")
        return self._rotation_from(doc)

    def get_rotation(self, rotation_id: str) -> RotationRecord:
        stored = self._kv.read(self._rotation_path(rotation_id))
        if stored is None:
            raise NotFound(f"no rotation {rotation_id}: list them with `keyroll rotations`")
        return self._rotation_from(stored[0])

    def list_rotations(self, ref: SecretRef | None = None) -> list[RotationRecord]:
        records = []
        for key in self._kv.list_keys(self._path("_rotations") + "/"):
            stored = self._kv.read(self._path("_rotations", key))
            if stored is None:
                continue
            record = self._rotation_from(stored[0])
            if ref is None or record.ref == ref:
                records.append(record)
        return sorted(records, key=lambda r: (r.created_at, r.id))

    # --- audit journal --------------------------------------------------------------------

    def audit_append(self, entry: AuditEntry, *, fence: Fence | None = None) -> None:
        self._check_fence(fence)
        self.journal_pages.append(entry)

    def audit_entries(self, start: int = 1, stop: int | None = None) -> Iterator[AuditEntry]:
        return self.journal_pages.entries(start, stop)

    def audit_tail(self) -> AuditEntry | None:
        return self.journal_pages.tail()

    def audit_migrate(self) -> int:
        """Copy an old-layout journal (one document per entry) into pages, verified
        (`keyroll.stores.openbao._journal`)."""
        return self.journal_pages.migrate()

    def audit_layout(self) -> str:
        return self.journal_pages.describe()

    # --- bookkeeping key/value ------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        stored = self._kv.read(self._path("_meta", _path_key(key)))
        return None if stored is None else str(stored[0]["value"])

    def list_meta(self) -> list[str]:
        """Every bookkeeping key, sorted."""
        keys = []
        for name in self._kv.list_keys(self._path("_meta") + "/"):
            if name.endswith("/"):
                continue
            keys.append(bytes.fromhex(name[1:]).decode() if name.startswith("~") else name)
        return sorted(keys)

    def put_meta(self, key: str, value: str | None, *, fence: Fence | None = None) -> None:
        self._check_fence(fence)
        path = self._path("_meta", _path_key(key))
        if value is not None:
            self._kv.write(path, {"value": value}, cas=None)
        else:
            self._kv.delete(path)
        self._changed("meta")
