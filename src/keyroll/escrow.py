"""Key escrow: an encryption key sealed before it is destroyed, for backups taken under it.

A pre-rotation ``pg_dump`` holds ciphertexts under the key that ``retire`` later destroys. So
before the engine destroys an encryption key, its strategy seals the value to the escrow
**public** key named in keyroll.toml (``[escrow]``) and keeps the sealed record in the store's
bookkeeping (``escrow:<env>/<name>/<version>``) for ``escrow_days``. The keyroll host holds
no private key: it cannot open what it sealed. After a backup is restored, an operator brings
the key back with the private key (``keyroll escrow restore``), as a *decrypt-only* version:
accepted by every store key source (`Store.decrypt_only_versions`), never a label, so never
used to encrypt.

Two sealed forms, both through ``cryptography``:

- **X25519** (a sealed box): an ephemeral X25519 key agrees a secret with the recipient's;
  HKDF-SHA256 (salt = ephemeral public || recipient public) derives an AES-256-GCM key.
- **RSA-OAEP** (SHA-256, at least 2048 bits): a random AES-256-GCM key wrapped with OAEP.

The AAD binds the ciphertext to the environment, name, version, kid and fingerprint, so a
record cannot be moved to another secret or version. A record, a listing and the journal show
kid, fingerprint, recipient and dates: never the value.

Restores are two-person where the environment's policy says ``approvals >= 2``: the first call
records a request, another person approves it (`approve_restore`, self-approval refused), and
then the restore runs (`restore_version`). Requests expire after `REQUEST_TTL`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from keyroll.errors import NotFound, RotationRefused, UsageError
from keyroll.inventory import Inventory
from keyroll.model import SecretRef, SecretValue, Version, fingerprint, format_kid
from keyroll.stores.base import Store

__all__ = [
    "DEFAULT_ESCROW_DAYS",
    "ESCROW_PREFIX",
    "REQUEST_TTL",
    "EscrowRecord",
    "RestoreRequest",
    "approve_restore",
    "check_public_key",
    "escrow_key",
    "escrow_public_key",
    "find_restored",
    "get_record",
    "list_records",
    "purge_expired",
    "request_restore",
    "restore_version",
    "seal_version",
    "unseal",
]

#: Days a sealed key is kept when keyroll.toml declares neither ``[escrow] days`` nor any
#: class's ``backup_retention_days``.
DEFAULT_ESCROW_DAYS = 90
ESCROW_PREFIX = "escrow:"
REQUEST_PREFIX = "escrow-request:"
#: A restore request not approved within this long expires.
REQUEST_TTL = timedelta(days=7)

_X25519 = "X25519-HKDF-SHA256-AES256GCM"
_RSA = "RSA-OAEP-SHA256-AES256GCM"
_INFO = b"keyroll-escrow/v1 x25519"
_MIN_RSA_BITS = 2048


def escrow_key(ref: SecretRef, version: int) -> str:
    """The bookkeeping key of one version's escrow record."""
    return f"{ESCROW_PREFIX}{ref.environment}/{ref.name}/{version}"


def _request_key(ref: SecretRef, version: int) -> str:
    return f"{REQUEST_PREFIX}{ref.environment}/{ref.name}/{version}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode(), validate=True)


@dataclass(frozen=True, slots=True)
class EscrowRecord:
    """One sealed key (no value: a ciphertext only the escrow private key opens).

    Attributes:
        environment, name, version, kid, fingerprint: which key it is.
        algorithm: the sealed form (`_X25519` or `_RSA`).
        recipient: 16 hex digits of SHA-256 of the escrow public key (DER SubjectPublicKeyInfo).
        sealed_at, expires_at: ISO times; the record is purged after ``expires_at``.
        rotation: the rotation whose retire sealed it.
        encapsulated: the ephemeral X25519 public key, or the RSA-wrapped AES key (base64).
        nonce, ciphertext: AES-256-GCM (base64).
    """

    environment: str
    name: str
    version: int
    kid: int
    fingerprint: str
    algorithm: str
    recipient: str
    sealed_at: str
    expires_at: str
    rotation: str | None
    encapsulated: str = field(repr=False)
    nonce: str = field(repr=False)
    ciphertext: str = field(repr=False)

    @property
    def ref(self) -> SecretRef:
        return SecretRef(self.environment, self.name)

    @property
    def kid_hex(self) -> str:
        return format_kid(self.kid)

    def expired(self, now: datetime) -> bool:
        return now >= datetime.fromisoformat(self.expires_at)

    def aad(self) -> bytes:
        return (f"keyroll-escrow/v1\x00{self.environment}\x00{self.name}\x00{self.version}"
                f"\x00{self.kid_hex}\x00{self.fingerprint}").encode()

    def public_view(self) -> dict[str, Any]:
        """What the journal, listings and reports show: no sealed material."""
        return {"secret": str(self.ref), "version": self.version, "kid": self.kid_hex,
                "fingerprint": self.fingerprint, "algorithm": self.algorithm,
                "recipient": self.recipient, "sealed_at": self.sealed_at,
                "expires_at": self.expires_at, "rotation": self.rotation}

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, text: str) -> EscrowRecord:
        """Raises: ValueError for a record that is not one of ours."""
        try:
            doc = json.loads(text)
            return cls(**{k: doc[k] for k in cls.__dataclass_fields__})
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"unreadable escrow record: {type(exc).__name__}") from None


# --- keys -------------------------------------------------------------------------------------


def _recipient_id(public: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def check_public_key(pem: bytes, *, where: str) -> tuple[Any, str]:
    """Load the escrow public key: X25519 or RSA (>= 2048 bits). Returns (key, recipient id).

    Raises:
        UsageError: a private key (the keyroll host must not be able to open escrow), another
            key type, a short RSA key, or not a PEM public key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa, x25519

    if b"PRIVATE KEY" in pem:
        raise UsageError(f"{where} holds a private key: give keyroll only the escrow PUBLIC key "
                         "(the keyroll host must not be able to open what it escrows)")
    try:
        public = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise UsageError(f"{where} is not a PEM public key: generate one with `openssl genpkey "
                         "-algorithm X25519 -out escrow.pem` and `openssl pkey -in escrow.pem "
                         "-pubout`") from None
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < _MIN_RSA_BITS:
            raise UsageError(f"{where}: an RSA escrow key needs at least {_MIN_RSA_BITS} bits")
    elif not isinstance(public, x25519.X25519PublicKey):
        raise UsageError(f"{where}: the escrow key must be X25519 or RSA (OAEP), not "
                         f"{type(public).__name__}")
    return public, _recipient_id(public)


def escrow_public_key(inventory: Inventory, workdir: Path,
                      environ: Mapping[str, str] | None = None) -> tuple[bytes, str] | None:
    """The escrow public key's PEM and where it came from, or None without ``[escrow]``.

    Raises:
        UsageError: the file is unreadable or the variable unset.
    """
    config = inventory.escrow
    if config is None:
        return None
    env = os.environ if environ is None else environ
    if config.public_key_env is not None:
        text = env.get(config.public_key_env)
        if not text:
            raise UsageError(f"[escrow] public_key_env: {config.public_key_env} is not set")
        return text.encode(), config.public_key_env
    assert config.public_key is not None
    path = Path(config.public_key)
    path = path if path.is_absolute() else workdir / path
    try:
        return path.read_bytes(), f"[escrow] public_key {config.public_key}"
    except OSError as exc:
        raise UsageError(f"[escrow] public_key {config.public_key}: cannot read it "
                         f"({exc.strerror or type(exc).__name__})") from None


def _seal(value: bytes, public: Any, aad: bytes) -> tuple[str, bytes, bytes, bytes]:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, x25519
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    nonce = os.urandom(12)
    if isinstance(public, x25519.X25519PublicKey):
        ephemeral = x25519.X25519PrivateKey.generate()
        eph_pub = ephemeral.public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)
        rcpt = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        key = HKDF(hashes.SHA256(), 32, salt=eph_pub + rcpt, info=_INFO).derive(
            ephemeral.exchange(public))
        return _X25519, eph_pub, nonce, AESGCM(key).encrypt(nonce, value, aad)
    key = AESGCM.generate_key(bit_length=256)
    wrapped = public.encrypt(key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                               algorithm=hashes.SHA256(), label=None))
    return _RSA, wrapped, nonce, AESGCM(key).encrypt(nonce, value, aad)


def unseal(record: EscrowRecord, private_pem: bytes, *, passphrase: bytes | None = None
           ) -> SecretValue:
    """Open a record with the escrow private key; check the value's fingerprint.

    Raises:
        UsageError: not a PEM private key, a passphrase missing or wrong, the key is not the
            record's recipient, or the record does not open (tampered).
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa, x25519
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    try:
        private = serialization.load_pem_private_key(private_pem, password=passphrase)
    except TypeError:
        raise UsageError("the escrow private key is encrypted: give its passphrase "
                         "(--passphrase-env)" if passphrase is None else
                         "the escrow private key is not encrypted: drop --passphrase-env"
                         ) from None
    except ValueError:
        raise UsageError("the private key file is not a PEM private key, or its passphrase "
                         "is wrong") from None
    if not isinstance(private, (x25519.X25519PrivateKey, rsa.RSAPrivateKey)):
        raise UsageError("the escrow private key must be X25519 or RSA")
    got = _recipient_id(private.public_key())
    if got != record.recipient:
        raise UsageError(f"this private key (recipient {got}) is not the escrow key of version "
                         f"{record.version} of {record.ref} (sealed to {record.recipient})")
    try:
        encapsulated, nonce = _unb64(record.encapsulated), _unb64(record.nonce)
        sealed = _unb64(record.ciphertext)
        if isinstance(private, x25519.X25519PrivateKey):
            peer = x25519.X25519PublicKey.from_public_bytes(encapsulated)
            rcpt = private.public_key().public_bytes(serialization.Encoding.Raw,
                                                     serialization.PublicFormat.Raw)
            key = HKDF(hashes.SHA256(), 32, salt=encapsulated + rcpt, info=_INFO).derive(
                private.exchange(peer))
        else:
            key = private.decrypt(encapsulated, padding.OAEP(
                mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
        value = AESGCM(key).decrypt(nonce, sealed, record.aad())
    except (InvalidTag, ValueError):
        raise UsageError(f"the escrow record of version {record.version} of {record.ref} does "
                         "not open with this key (tampered or damaged)") from None
    if fingerprint(value) != record.fingerprint:
        raise UsageError(f"the escrow record of version {record.version} of {record.ref} does "
                         "not match its fingerprint")
    try:
        return SecretValue(value.decode())
    except UnicodeDecodeError:
        raise UsageError(f"the escrow record of version {record.version} of {record.ref} "
                         "holds no text value") from None


# --- records in the store ---------------------------------------------------------------------


def get_record(store: Store, ref: SecretRef, version: int) -> EscrowRecord | None:
    text = store.get_meta(escrow_key(ref, version))
    if not text:
        return None
    try:
        return EscrowRecord.parse(text)
    except ValueError:
        return None


def list_records(store: Store, ref: SecretRef | None = None) -> list[EscrowRecord]:
    """Every escrow record (of one secret, if given), by secret and version."""
    found = []
    prefix = ESCROW_PREFIX if ref is None else f"{ESCROW_PREFIX}{ref.environment}/{ref.name}/"
    for key in store.list_meta():
        if not key.startswith(prefix):
            continue
        text = store.get_meta(key)
        if not text:
            continue
        try:
            found.append(EscrowRecord.parse(text))
        except ValueError:
            continue
    return sorted(found, key=lambda r: (r.environment, r.name, r.version))


def seal_version(store: Store, ref: SecretRef, version: Version, value: SecretValue, *,
                 public_pem: bytes, where: str, days: int, now: datetime,
                 rotation: str | None) -> EscrowRecord:
    """Seal a version to the escrow public key and keep it for ``days``. Idempotent: a
    record already sealed for this version (by a run before a crash) is kept.

    Raises:
        UsageError: the public key is unusable (see `check_public_key`).
    """
    existing = get_record(store, ref, version.number)
    public, recipient = check_public_key(public_pem, where=where)
    if existing is not None and existing.fingerprint == version.fingerprint \
            and existing.recipient == recipient:
        return existing
    if fingerprint(value.reveal_bytes()) != version.fingerprint:
        raise UsageError(f"{ref} version {version.number} does not match its fingerprint")
    draft = EscrowRecord(ref.environment, ref.name, version.number, version.kid,
                         version.fingerprint, "", recipient, now.isoformat(),
                         (now + timedelta(days=days)).isoformat(), rotation, "", "", "")
    algorithm, encapsulated, nonce, sealed = _seal(value.reveal_bytes(), public, draft.aad())
    record = EscrowRecord(**{**asdict(draft), "algorithm": algorithm,
                             "encapsulated": _b64(encapsulated), "nonce": _b64(nonce),
                             "ciphertext": _b64(sealed)})
    store.put_meta(escrow_key(ref, version.number), record.to_json())
    return record


def purge_expired(store: Store, now: datetime) -> list[EscrowRecord]:
    """Delete every record past its ``expires_at``; return what was deleted."""
    gone = [r for r in list_records(store) if r.expired(now)]
    for record in gone:
        store.put_meta(escrow_key(record.ref, record.version), None)
    return gone


# --- two-person restore -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RestoreRequest:
    """A pending restore: who asked, when, who approved."""

    requested_by: str
    requested_at: str
    approvals: tuple[str, ...] = ()

    def expired(self, now: datetime) -> bool:
        return now >= datetime.fromisoformat(self.requested_at) + REQUEST_TTL

    def approved(self, required: int) -> bool:
        return 1 + len(self.approvals) >= required


def _get_request(store: Store, ref: SecretRef, version: int, now: datetime
                 ) -> RestoreRequest | None:
    text = store.get_meta(_request_key(ref, version))
    if not text:
        return None
    try:
        doc = json.loads(text)
        request = RestoreRequest(str(doc["requested_by"]), str(doc["requested_at"]),
                                 tuple(str(a) for a in doc["approvals"]))
    except (KeyError, TypeError, ValueError):
        return None
    return None if request.expired(now) else request


def _put_request(store: Store, ref: SecretRef, version: int, request: RestoreRequest | None
                 ) -> None:
    store.put_meta(_request_key(ref, version), None if request is None else json.dumps(
        {"requested_by": request.requested_by, "requested_at": request.requested_at,
         "approvals": list(request.approvals)}))


def _require_record(store: Store, ref: SecretRef, version: int) -> EscrowRecord:
    record = get_record(store, ref, version)
    if record is None:
        raise NotFound(f"no escrow record for version {version} of {ref}: `keyroll escrow "
                       "list` shows what is escrowed")
    return record


def request_restore(store: Store, ref: SecretRef, version: int, *, actor: str,
                    now: datetime) -> RestoreRequest:
    """Record (or return the open) request to restore a version. Raises `NotFound`."""
    _require_record(store, ref, version)
    request = _get_request(store, ref, version, now)
    if request is None:
        request = RestoreRequest(actor, now.isoformat())
        _put_request(store, ref, version, request)
    return request


def approve_restore(store: Store, ref: SecretRef, version: int, *, actor: str,
                    now: datetime) -> RestoreRequest:
    """Another person approves an open restore request.

    Raises:
        RotationRefused: no open request, or the requester (or an earlier approver) approving.
    """
    request = _get_request(store, ref, version, now)
    if request is None:
        raise RotationRefused(f"no open request to restore version {version} of {ref}: run "
                              "`keyroll escrow restore` first (requests expire after 7 days)")
    if actor == request.requested_by:
        raise RotationRefused(f"{actor} requested the restore of version {version} of {ref} "
                              "and cannot approve it: another person must (two-person rule)")
    if actor in request.approvals:
        raise RotationRefused(f"{actor} approved this restore already")
    request = RestoreRequest(request.requested_by, request.requested_at,
                             (*request.approvals, actor))
    _put_request(store, ref, version, request)
    return request


def find_restored(store: Store, ref: SecretRef, version: int) -> Version | None:
    """The live decrypt-only copy restored from ``version``'s escrow, if any."""
    for candidate in store.list_versions(ref):
        if candidate.meta.get("escrow_restored_from") == version and not candidate.destroyed:
            return candidate
    return None


def restore_version(store: Store, ref: SecretRef, version: int, private_pem: bytes, *,
                    actor: str, now: datetime, approvals_required: int,
                    passphrase: bytes | None = None) -> tuple[Version, EscrowRecord,
                                                              RestoreRequest | None]:
    """Bring an escrowed key back as a decrypt-only version (same kid, no label).

    Idempotent: a copy restored before is reused. Where ``approvals_required > 1`` an
    approved request must be open (see `request_restore`); it is consumed.

    Returns:
        The decrypt-only version, the record, and the request that approved it (if any).

    Raises:
        NotFound: no record. RotationRefused: approvals missing. UsageError: wrong key.
    """
    record = _require_record(store, ref, version)
    request = _get_request(store, ref, version, now)
    if approvals_required > 1 and (request is None or not request.approved(approvals_required)):
        have = 0 if request is None else 1 + len(request.approvals)
        raise RotationRefused(
            f"restoring version {version} of {ref} needs {approvals_required} people "
            f"({have} so far): another person runs `keyroll escrow approve {ref.name} --env "
            f"{ref.environment} --version {version}`")
    value = unseal(record, private_pem, passphrase=passphrase)
    restored = find_restored(store, ref, version)
    if restored is None:
        restored = store.put_version(ref, value, kid=record.kid, created_at=now, meta={
            "escrow_restored_from": version, "decrypt_only": True, "restored_by": actor})
    numbers = store.decrypt_only_versions(ref)
    if restored.number not in numbers:
        store.set_decrypt_only_versions(ref, [*numbers, restored.number])
    if request is not None:
        _put_request(store, ref, version, None)
    return restored, record, request
