"""The embedded default store: one SQLite file, every value sealed with AES-256-GCM.

Each value is encrypted under the master key with a fresh 96-bit nonce; the associated data
binds the ciphertext to its environment, class name, version number and key id, so a row
copied to another secret or version fails to decrypt (`StoreCorrupted`) instead of handing
out the wrong key. Metadata (fingerprints, labels, rotation records, journal) is plain: none of
it is secret.

The file and its WAL companions are created with mode 0600. Writes run in ``BEGIN IMMEDIATE``
transactions, so two keyroll processes on one machine serialise cleanly; ``synchronous=FULL``
makes each committed step durable before the next side effect.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyroll.errors import Conflict, LockHeld, NotFound, StoreCorrupted, StoreUnavailable
from keyroll.model import Label, SecretRef, SecretValue, Version, new_kid, utcnow
from keyroll.recognise import derive_key
from keyroll.stores.base import RECOGNITION_KEY, AuditEntry, LockInfo, RotationRecord, Store

_RECOGNITION_AAD = b"keyroll recognition key"

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    environment TEXT NOT NULL, name TEXT NOT NULL, number INTEGER NOT NULL,
    kid INTEGER NOT NULL, fingerprint TEXT NOT NULL, created_at TEXT NOT NULL,
    meta TEXT NOT NULL, nonce BLOB, ciphertext BLOB,
    PRIMARY KEY (environment, name, number));
CREATE TABLE IF NOT EXISTS labels (
    environment TEXT NOT NULL, name TEXT NOT NULL, label TEXT NOT NULL, number INTEGER NOT NULL,
    PRIMARY KEY (environment, name, label));
CREATE TABLE IF NOT EXISTS locks (
    environment TEXT NOT NULL, name TEXT NOT NULL, owner TEXT NOT NULL, expires_at TEXT NOT NULL,
    PRIMARY KEY (environment, name));
CREATE TABLE IF NOT EXISTS rotations (
    id TEXT PRIMARY KEY, environment TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
    revision INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _aad(ref: SecretRef, number: int, kid: int) -> bytes:
    return f"keyroll/v1\x00{ref.environment}\x00{ref.name}\x00{number}\x00{kid:08x}".encode()


def _ts(moment: datetime) -> str:
    return moment.isoformat()


class SQLiteStore(Store):
    """The local store (see the module docstring).

    Args:
        path: the SQLite file; created (0600) with its schema when absent.
        master_key: the 32-byte AES-256 key (`keyroll.stores.masterkey.load_master_key`).

    Raises:
        StoreUnavailable: the file cannot be opened.
    """

    def __init__(self, path: Path, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("master key must be 32 bytes")
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._aead = AESGCM(master_key)
        self._recognition_key = derive_key(master_key)
        self._master_text = SecretValue(base64.b64encode(master_key).decode())
        self._mutex = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=30, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(
                f"cannot open the local store {self.path}: {exc.__class__.__name__}; check the "
                "path and its permissions"
            ) from None

    # --- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._mutex:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._mutex:
            self._db.close()

    # --- versions -------------------------------------------------------------------------

    def put_version(
        self,
        ref: SecretRef,
        value: SecretValue,
        *,
        kid: int | None = None,
        created_at: datetime | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Version:
        kid = new_kid() if kid is None else kid
        created = created_at or utcnow()
        with self._write() as db:
            (last,) = db.execute(
                "SELECT COALESCE(MAX(number), 0) FROM versions WHERE environment=? AND name=?",
                (ref.environment, ref.name),
            ).fetchone()
            number = int(last) + 1
            nonce = os.urandom(12)
            sealed = self._aead.encrypt(nonce, value.reveal_bytes(), _aad(ref, number, kid))
            db.execute(
                "INSERT INTO versions VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    ref.environment, ref.name, number, kid, value.fingerprint, _ts(created),
                    json.dumps(dict(meta or {}), sort_keys=True), nonce, sealed,
                ),
            )
        return Version(number, kid, value.fingerprint, created, False, dict(meta or {}))

    def read_value(self, ref: SecretRef, number: int) -> SecretValue:
        rows = self._query(
            "SELECT kid, nonce, ciphertext FROM versions WHERE environment=? AND name=? "
            "AND number=?",
            (ref.environment, ref.name, number),
        )
        if not rows or rows[0][2] is None:
            state = "was destroyed" if rows else "does not exist"
            raise NotFound(f"{ref} version {number} {state}: see `keyroll status`")
        kid, nonce, sealed = rows[0]
        try:
            plain = self._aead.decrypt(nonce, sealed, _aad(ref, number, int(kid)))
        except InvalidTag:
            raise StoreCorrupted(
                f"{ref} version {number} fails authentication: the master key is wrong, or the "
                "row was edited or copied from another secret. Restore the store from backup"
            ) from None
        return SecretValue(plain.decode())

    def list_versions(self, ref: SecretRef) -> list[Version]:
        rows = self._query(
            "SELECT number, kid, fingerprint, created_at, ciphertext IS NULL, meta FROM versions "
            "WHERE environment=? AND name=? ORDER BY number",
            (ref.environment, ref.name),
        )
        return [
            Version(int(n), int(k), fp, datetime.fromisoformat(c), bool(d), json.loads(m))
            for n, k, fp, c, d, m in rows
        ]

    def recognition_key(self) -> bytes:
        """HKDF of the master key (`keyroll.recognise.derive_key`), or the key a migration
        brought (`adopt_recognition_key`), kept sealed under the master key."""
        sealed = self.get_meta(RECOGNITION_KEY)
        if sealed is None:
            return self._recognition_key
        blob = base64.b64decode(sealed)
        try:
            return self._aead.decrypt(blob[:12], blob[12:], _RECOGNITION_AAD)
        except InvalidTag:
            raise StoreCorrupted(
                f"the recognition key in {self.path} does not open with this master key: "
                "check KEYROLL_MASTER_KEY"
            ) from None

    def adopt_recognition_key(self, key: bytes) -> None:
        """Keep ``key`` sealed (AES-256-GCM under the master key): the file alone lets nobody
        test guesses of a destroyed value."""
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, key, _RECOGNITION_AAD)
        self.put_meta(RECOGNITION_KEY, base64.b64encode(sealed).decode())

    def own_secrets(self) -> list[SecretValue]:
        """The master key, as the key file and ``KEYROLL_MASTER_KEY`` spell it (base64)."""
        return [self._master_text]

    def destroy_version(self, ref: SecretRef, number: int) -> None:
        self.remember_value(ref, number)
        with self._write() as db:
            labelled = db.execute(
                "SELECT label FROM labels WHERE environment=? AND name=? AND number=?",
                (ref.environment, ref.name, number),
            ).fetchall()
            if labelled:
                raise Conflict(
                    f"{ref} version {number} is still labelled {labelled[0][0]}; "
                    "move the label before destroying it"
                )
            cur = db.execute(
                "UPDATE versions SET nonce=NULL, ciphertext=NULL WHERE environment=? AND name=? "
                "AND number=?",
                (ref.environment, ref.name, number),
            )
            if cur.rowcount == 0:
                raise NotFound(f"{ref} has no version {number}")

    def list_secrets(self) -> list[SecretRef]:
        rows = self._query("SELECT DISTINCT environment, name FROM versions ORDER BY 1, 2")
        return [SecretRef(env, name) for env, name in rows]

    # --- labels ---------------------------------------------------------------------------

    def get_labels(self, ref: SecretRef) -> dict[Label, int]:
        rows = self._query(
            "SELECT label, number FROM labels WHERE environment=? AND name=?",
            (ref.environment, ref.name),
        )
        return {Label(label): int(number) for label, number in rows}

    def set_labels(
        self,
        ref: SecretRef,
        *,
        expected: Mapping[Label, int | None],
        new: Mapping[Label, int | None],
    ) -> dict[Label, int]:
        key = (ref.environment, ref.name)
        with self._write() as db:
            now = {
                Label(label): int(number)
                for label, number in db.execute(
                    "SELECT label, number FROM labels WHERE environment=? AND name=?", key
                )
            }
            for label, want in expected.items():
                if now.get(label) != want:
                    raise Conflict(
                        f"{ref}: label {label.value} moved (expected version {want}, found "
                        f"{now.get(label)}); re-read the secret and retry"
                    )
            for label, number in new.items():
                if number is None:
                    db.execute(
                        "DELETE FROM labels WHERE environment=? AND name=? AND label=?",
                        (*key, label.value),
                    )
                    now.pop(label, None)
                    continue
                alive = db.execute(
                    "SELECT 1 FROM versions WHERE environment=? AND name=? AND number=? "
                    "AND ciphertext IS NOT NULL",
                    (*key, number),
                ).fetchone()
                if alive is None:
                    raise NotFound(f"{ref} has no live version {number} to label {label.value}")
                db.execute(
                    "INSERT INTO labels VALUES (?,?,?,?) ON CONFLICT (environment, name, label) "
                    "DO UPDATE SET number=excluded.number",
                    (*key, label.value, number),
                )
                now[label] = number
        return now

    # --- lock -----------------------------------------------------------------------------

    def acquire_lock(
        self, ref: SecretRef, owner: str, *, ttl: timedelta, now: datetime | None = None
    ) -> LockInfo:
        moment = now or utcnow()
        key = (ref.environment, ref.name)
        with self._write() as db:
            row = db.execute(
                "SELECT owner, expires_at FROM locks WHERE environment=? AND name=?", key
            ).fetchone()
            if row and row[0] != owner and datetime.fromisoformat(row[1]) > moment:
                raise LockHeld(
                    f"{ref} is locked by {row[0]} until {row[1]}: wait for that rotation "
                    "(`keyroll rotations`) or roll it back"
                )
            info = LockInfo(owner, moment + ttl)
            db.execute(
                "INSERT INTO locks VALUES (?,?,?,?) ON CONFLICT (environment, name) "
                "DO UPDATE SET owner=excluded.owner, expires_at=excluded.expires_at",
                (*key, owner, _ts(info.expires_at)),
            )
        return info

    def release_lock(self, ref: SecretRef, owner: str) -> None:
        with self._write() as db:
            db.execute(
                "DELETE FROM locks WHERE environment=? AND name=? AND owner=?",
                (ref.environment, ref.name, owner),
            )

    def get_lock(self, ref: SecretRef, *, now: datetime | None = None) -> LockInfo | None:
        rows = self._query(
            "SELECT owner, expires_at FROM locks WHERE environment=? AND name=?",
            (ref.environment, ref.name),
        )
        if not rows:
            return None
        info = LockInfo(rows[0][0], datetime.fromisoformat(rows[0][1]))
        return info if info.expires_at > (now or utcnow()) else None

    # --- rotations ------------------------------------------------------------------------

    @staticmethod
    def _record(row: tuple[Any, ...]) -> RotationRecord:
        rid, env, name, state, revision, created, updated, body = row
        return RotationRecord(
            rid, SecretRef(env, name), state, int(revision),
            datetime.fromisoformat(created), datetime.fromisoformat(updated), json.loads(body),
        )

    def create_rotation(self, record: RotationRecord) -> RotationRecord:
        stored = RotationRecord(
            record.id, record.ref, record.state, 1, record.created_at, record.updated_at,
            record.body,
        )
        with self._write() as db:
            try:
                db.execute(
                    "INSERT INTO rotations VALUES (?,?,?,?,?,?,?,?)",
                    (
                        stored.id, stored.ref.environment, stored.ref.name, stored.state, 1,
                        _ts(stored.created_at), _ts(stored.updated_at),
                        json.dumps(dict(stored.body), sort_keys=True),
                    ),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"rotation {record.id} exists already") from None
        return stored

    def save_rotation(self, record: RotationRecord, *, expected_revision: int) -> RotationRecord:
        stored = RotationRecord(
            record.id, record.ref, record.state, expected_revision + 1, record.created_at,
            record.updated_at, record.body,
        )
        with self._write() as db:
            row = db.execute("SELECT revision FROM rotations WHERE id=?", (record.id,)).fetchone()
            if row is None:
                raise NotFound(f"no rotation {record.id}: list them with `keyroll rotations`")
            if int(row[0]) != expected_revision:
                raise Conflict(
                    f"rotation {record.id} was changed by another process (revision {row[0]}, "
                    f"expected {expected_revision}); re-read it and retry"
                )
            db.execute(
                "UPDATE rotations SET state=?, revision=?, updated_at=?, body=? WHERE id=?",
                (
                    stored.state, stored.revision, _ts(stored.updated_at),
                    json.dumps(dict(stored.body), sort_keys=True), stored.id,
                ),
            )
        return stored

    def get_rotation(self, rotation_id: str) -> RotationRecord:
        rows = self._query("SELECT * FROM rotations WHERE id=?", (rotation_id,))
        if not rows:
            raise NotFound(f"no rotation {rotation_id}: list them with `keyroll rotations`")
        return self._record(rows[0])

    def list_rotations(self, ref: SecretRef | None = None) -> list[RotationRecord]:
        if ref is None:
            rows = self._query("SELECT * FROM rotations ORDER BY created_at, id")
        else:
            rows = self._query(
                "SELECT * FROM rotations WHERE environment=? AND name=? ORDER BY created_at, id",
                (ref.environment, ref.name),
            )
        return [self._record(row) for row in rows]

    # --- audit ----------------------------------------------------------------------------

    def audit_append(self, entry: AuditEntry) -> None:
        with self._write() as db:
            (last,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()
            if entry.seq != int(last) + 1:
                raise Conflict(
                    f"journal moved on (last entry {last}, tried to append {entry.seq}); retry"
                )
            db.execute(
                "INSERT INTO audit VALUES (?,?,?,?)",
                (entry.seq, entry.payload, entry.prev_hash, entry.hash),
            )

    def audit_entries(self, start: int = 1) -> Iterator[AuditEntry]:
        rows = self._query(
            "SELECT seq, payload, prev_hash, hash FROM audit WHERE seq >= ? ORDER BY rowid",
            (start,),
        )
        for seq, payload, prev_hash, digest in rows:
            yield AuditEntry(int(seq), payload, prev_hash, digest)

    def audit_tail(self) -> AuditEntry | None:
        rows = self._query("SELECT seq, payload, prev_hash, hash FROM audit ORDER BY seq DESC "
                           "LIMIT 1")
        if not rows:
            return None
        seq, payload, prev_hash, digest = rows[0]
        return AuditEntry(int(seq), payload, prev_hash, digest)

    # --- bookkeeping ----------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key=?", (key,))
        return str(rows[0][0]) if rows else None

    def list_meta(self) -> list[str]:
        return [str(key) for (key,) in self._query("SELECT key FROM meta ORDER BY key")]

    def put_meta(self, key: str, value: str | None) -> None:
        with self._write() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key=?", (key,))
            else:
                db.execute(
                    "INSERT INTO meta VALUES (?,?) ON CONFLICT (key) DO UPDATE "
                    "SET value=excluded.value",
                    (key, value),
                )
