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
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keyroll.errors import (
    Conflict,
    LeaseLost,
    LockHeld,
    MasterKeyError,
    NotFound,
    StoreCorrupted,
    StoreError,
    StoreForbidden,
    StoreUnavailable,
    UsageError,
)
from keyroll.model import Label, SecretRef, SecretValue, Version, new_kid, utcnow
from keyroll.recognise import derive_key
from keyroll.stores.base import RECOGNITION_KEY, AuditEntry, Fence, LockInfo, RotationRecord, Store

_RECOGNITION_AAD = b"keyroll recognition key"
#: Journal rows per range query (`SQLiteStore.audit_entries`).
_AUDIT_BATCH = 2000

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
    generation INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (environment, name));
CREATE TABLE IF NOT EXISTS rotations (
    id TEXT PRIMARY KEY, environment TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
    revision INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
    body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keycheck (
    id INTEGER PRIMARY KEY CHECK (id = 1), nonce BLOB NOT NULL, sealed BLOB NOT NULL);
"""
# The key-check value: a constant sealed under the master key when the store is created (or, for
# a store older than it, the first time one of its values opens). A wrong key fails here, at
# open, instead of writing rows no one can read. Kept out of `meta`: bookkeeping migrates
# between stores, a key check belongs to one store's key.
_KEYCHECK_PLAIN = b"keyroll key check v1"
_KEYCHECK_AAD = b"keyroll/v1\x00keycheck"


def _aad(ref: SecretRef, number: int, kid: int) -> bytes:
    return f"keyroll/v1\x00{ref.environment}\x00{ref.name}\x00{number}\x00{kid:08x}".encode()


def _ts(moment: datetime) -> str:
    return moment.isoformat()


# SQLite's primary result codes (stable since SQLite 3); the sqlite3 module names them only from
# Python 3.11, and the runtime's StoreKeySource opens this store on 3.10 too (issue 11 §7)
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 8, 11, 26
_BUSY = {_SQLITE_BUSY, _SQLITE_LOCKED}
_BY_MESSAGE = (("locked", _SQLITE_BUSY), ("readonly", _SQLITE_READONLY),
               ("malformed", _SQLITE_CORRUPT), ("not a database", _SQLITE_NOTADB))


def _translate(exc: sqlite3.Error, path: Path) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary is None:  # Python 3.10: no error code on the exception, only SQLite's message
        text = str(exc).lower()
        primary = next((number for word, number in _BY_MESSAGE if word in text), None)
    if primary in _BUSY:
        return StoreUnavailable(
            f"the local store {path} is busy: another keyroll process holds its write lock; "
            "retry when it has finished (nothing was changed)"
        )
    if primary == _SQLITE_READONLY:
        return StoreForbidden(
            f"the local store {path} is read-only for this process: check the permissions of "
            "the file and its folder (nothing was changed)"
        )
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return StoreCorrupted(
            f"the local store {path} is damaged or not a keyroll store: restore it from backup"
        )
    return StoreUnavailable(
        f"the local store {path} failed ({exc.__class__.__name__}, SQLite code "
        f"{getattr(exc, 'sqlite_errorname', 'unknown')}): check the disk and retry"
    )


class SQLiteStore(Store):
    """The local store (see the module docstring).

    Args:
        path: the SQLite file; created (0600) with its schema when absent.
        master_key: the 32-byte AES-256 key (`keyroll.stores.masterkey.load_master_key`).
        create: create the file when it is missing (the CLI passes False outside `init`).
        key_source: how to name the key in a "wrong key" message (env var or key file).
        busy_timeout: seconds to wait for another process's write lock before the store
            reports itself unavailable.

    Raises:
        StoreUnavailable: the file cannot be opened, or stays locked past ``busy_timeout``.
        UsageError: ``create`` is False and the file is missing or empty.
        MasterKeyError: the key is not the one this store was created with.
    """

    def __init__(
        self,
        path: Path,
        master_key: bytes,
        *,
        create: bool = True,
        key_source: str = "the master key",
        busy_timeout: float = 30.0,
    ) -> None:
        if len(master_key) != 32:
            raise ValueError("master key must be 32 bytes")
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.notices: list[str] = []
        self._aead = AESGCM(master_key)
        self._recognition_key = derive_key(master_key)
        self._master_text = SecretValue(base64.b64encode(master_key).decode())
        self._mutex = threading.RLock()
        if not create and (not self.path.exists() or self.path.stat().st_size == 0):
            state = "is empty (0 bytes)" if self.path.exists() else "does not exist"
            raise UsageError(
                f"the local store {self.path} {state}: restore it from backup, or run "
                "`keyroll init` to create a new store (keyroll never re-creates one silently)"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            self._db = sqlite3.connect(
                self.path, isolation_level=None, timeout=busy_timeout, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(locks)")}
            if "generation" not in columns:  # a store written before fencing generations
                self._db.execute(
                    "ALTER TABLE locks ADD COLUMN generation INTEGER NOT NULL DEFAULT 0"
                )
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot open the local store {self.path}: {exc.__class__.__name__}; check the "
                "path and its permissions"
            ) from None
        try:
            with self._translated():
                self._check_key(key_source)
        except BaseException:
            self._db.close()
            raise
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            self.notices.append(
                f"warning: the local store {self.path} has mode {mode:04o}; others can read its "
                f"metadata and ciphertexts: run `chmod 600 {self.path}`"
            )

    def _check_key(self, key_source: str) -> None:
        """Open the key-check value, or write it when the store has none yet (see above).

        Raises:
            MasterKeyError: the key does not open this store. Nothing was written.
        """
        wrong = MasterKeyError(
            f"{key_source} does not open the local store {self.path}: it is not the key this "
            "store was created with; set the right KEYROLL_MASTER_KEY or key file (nothing was "
            "written)"
        )
        row = self._db.execute("SELECT nonce, sealed FROM keycheck WHERE id = 1").fetchone()
        if row is not None:
            try:
                self._aead.decrypt(row[0], row[1], _KEYCHECK_AAD)
            except InvalidTag:
                raise wrong from None
            return
        sample = self._db.execute(
            "SELECT environment, name, number, kid, nonce, ciphertext FROM versions "
            "WHERE ciphertext IS NOT NULL ORDER BY rowid LIMIT 1"
        ).fetchone()
        if sample is not None:
            env, name, number, kid, nonce, sealed = sample
            try:
                self._aead.decrypt(nonce, sealed, _aad(SecretRef(env, name), int(number), int(kid)))
            except InvalidTag:
                raise wrong from None
        nonce = os.urandom(12)
        try:
            with self._write() as db:
                db.execute(
                    "INSERT OR IGNORE INTO keycheck VALUES (1, ?, ?)",
                    (nonce, self._aead.encrypt(nonce, _KEYCHECK_PLAIN, _KEYCHECK_AAD)),
                )
        except StoreForbidden:
            pass  # a read-only copy (a dashboard, a restore check): the next writer adds it

    # --- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Turn SQLite's errors into the store's (once, here: nothing above sees sqlite3).

        Busy or locked (another process holds the write lock past the timeout) is
        `StoreUnavailable`, which the engine treats as a pause, never as a failed step; a
        read-only file is `StoreForbidden`. The driver's message is not repeated: it may quote
        a statement.
        """
        try:
            yield
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._mutex, self._translated():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._mutex, self._translated():
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
        fence: Fence | None = None,
    ) -> Version:
        kid = new_kid() if kid is None else kid
        created = created_at or utcnow()
        with self._write() as db:
            self._fenced(db, fence)
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
            "SELECT kid, nonce, ciphertext, fingerprint FROM versions WHERE environment=? "
            "AND name=? AND number=?",
            (ref.environment, ref.name, number),
        )
        if not rows or rows[0][2] is None:
            state = "was destroyed" if rows else "does not exist"
            raise NotFound(f"{ref} version {number} {state}: see `keyroll status`")
        kid, nonce, sealed, stored_fingerprint = rows[0]
        try:
            plain = self._aead.decrypt(nonce, sealed, _aad(ref, number, int(kid)))
        except InvalidTag:
            raise StoreCorrupted(
                f"{ref} version {number} fails authentication: the master key is wrong, or the "
                "row was edited or copied from another secret. Restore the store from backup"
            ) from None
        value = SecretValue(plain.decode())
        if value.fingerprint != stored_fingerprint:
            # the value is authentic but its listed fingerprint was edited: audit records,
            # scans and status would name a different value than the one handed out
            raise StoreCorrupted(
                f"{ref} version {number}: the stored fingerprint does not match the value; the "
                "row's metadata was edited. Restore the store from backup"
            )
        return value

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

    def destroy_version(self, ref: SecretRef, number: int, *, fence: Fence | None = None) -> None:
        self.remember_value(ref, number)
        with self._write() as db:
            self._fenced(db, fence)
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
        fence: Fence | None = None,
    ) -> dict[Label, int]:
        key = (ref.environment, ref.name)
        with self._write() as db:
            self._fenced(db, fence)
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
        self,
        ref: SecretRef,
        owner: str,
        *,
        ttl: timedelta,
        now: datetime | None = None,
        generation: int | None = None,
    ) -> LockInfo:
        moment = now or utcnow()
        key = (ref.environment, ref.name)
        with self._write() as db:
            row = db.execute(
                "SELECT owner, expires_at, generation FROM locks WHERE environment=? AND name=?",
                key,
            ).fetchone()
            held_by, until, last = (row[0], row[1], int(row[2])) if row else ("", "", 0)
            if generation is not None and (held_by != owner or last != generation):
                raise LeaseLost(
                    f"{ref}: this process lost its lock (generation {generation}, the lock is "
                    f"at {last}): another process took the rotation over"
                )
            if held_by and held_by != owner and datetime.fromisoformat(until) > moment:
                raise LockHeld(
                    f"{ref} is locked by {held_by} until {until}: wait for that rotation "
                    "(`keyroll rotations`) or roll it back"
                )
            info = LockInfo(owner, moment + ttl, last if held_by == owner else last + 1)
            db.execute(
                "INSERT INTO locks VALUES (?,?,?,?,?) ON CONFLICT (environment, name) "
                "DO UPDATE SET owner=excluded.owner, expires_at=excluded.expires_at, "
                "generation=excluded.generation",
                (*key, owner, _ts(info.expires_at), info.generation),
            )
        return info

    def release_lock(self, ref: SecretRef, owner: str) -> None:
        with self._write() as db:  # the row stays: it keeps the generation for the next owner
            db.execute(
                "UPDATE locks SET owner='', expires_at='' WHERE environment=? AND name=? "
                "AND owner=?",
                (ref.environment, ref.name, owner),
            )

    def get_lock(self, ref: SecretRef, *, now: datetime | None = None) -> LockInfo | None:
        rows = self._query(
            "SELECT owner, expires_at, generation FROM locks WHERE environment=? AND name=?",
            (ref.environment, ref.name),
        )
        if not rows or not rows[0][0]:
            return None
        info = LockInfo(rows[0][0], datetime.fromisoformat(rows[0][1]), int(rows[0][2]))
        return info if info.expires_at > (now or utcnow()) else None

    @staticmethod
    def _fenced(db: sqlite3.Connection, fence: Fence | None) -> None:
        """Inside the write's transaction: the fence is still the secret's lock."""
        if fence is None:
            return
        row = db.execute(
            "SELECT owner, generation FROM locks WHERE environment=? AND name=?",
            (fence.ref.environment, fence.ref.name),
        ).fetchone()
        if row is None or row[0] != fence.owner or int(row[1]) != fence.generation:
            raise LeaseLost(
                f"{fence.ref}: this process lost its lock (generation {fence.generation}): "
                "another process took the rotation over; nothing more was written"
            )

    # --- rotations ------------------------------------------------------------------------

    @staticmethod
    def _record(row: tuple[Any, ...]) -> RotationRecord:
        rid, env, name, state, revision, created, updated, body = row
        return RotationRecord(
            rid, SecretRef(env, name), state, int(revision),
            datetime.fromisoformat(created), datetime.fromisoformat(updated), json.loads(body),
        )

    def create_rotation(self, record: RotationRecord, *, fence: Fence | None = None
                        ) -> RotationRecord:
        stored = RotationRecord(
            record.id, record.ref, record.state, 1, record.created_at, record.updated_at,
            record.body,
        )
        with self._write() as db:
            self._fenced(db, fence)
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

    def save_rotation(
        self, record: RotationRecord, *, expected_revision: int, fence: Fence | None = None
    ) -> RotationRecord:
        stored = RotationRecord(
            record.id, record.ref, record.state, expected_revision + 1, record.created_at,
            record.updated_at, record.body,
        )
        with self._write() as db:
            self._fenced(db, fence)
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

    def audit_append(self, entry: AuditEntry, *, fence: Fence | None = None) -> None:
        with self._write() as db:
            self._fenced(db, fence)
            (last,) = db.execute("SELECT COALESCE(MAX(seq), 0) FROM audit").fetchone()
            if entry.seq != int(last) + 1:
                raise Conflict(
                    f"journal moved on (last entry {last}, tried to append {entry.seq}); retry"
                )
            db.execute(
                "INSERT INTO audit VALUES (?,?,?,?)",
                (entry.seq, entry.payload, entry.prev_hash, entry.hash),
            )

    def audit_entries(self, start: int = 1, stop: int | None = None) -> Iterator[AuditEntry]:
        """Range reads on the primary key (``seq`` is the rowid), `_AUDIT_BATCH` rows a query,
        so a long walk holds one batch in memory and a short range touches only its rows."""
        after = start - 1
        end = stop if stop is not None else 2**63 - 1
        for _ in range(2**40):  # bounded: every batch moves ``after`` forward
            rows = self._query(
                "SELECT seq, payload, prev_hash, hash FROM audit WHERE seq > ? AND seq < ? "
                "ORDER BY seq LIMIT ?",
                (after, end, _AUDIT_BATCH),
            )
            for seq, payload, prev_hash, digest in rows:
                yield AuditEntry(int(seq), payload, prev_hash, digest)
            if len(rows) < _AUDIT_BATCH:
                return
            after = int(rows[-1][0])

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

    def put_meta(self, key: str, value: str | None, *, fence: Fence | None = None) -> None:
        with self._write() as db:
            self._fenced(db, fence)
            if value is None:
                db.execute("DELETE FROM meta WHERE key=?", (key,))
            else:
                db.execute(
                    "INSERT INTO meta VALUES (?,?) ON CONFLICT (key) DO UPDATE "
                    "SET value=excluded.value",
                    (key, value),
                )
