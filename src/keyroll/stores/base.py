"""The store contract every backend implements, and the records it keeps.

A store keeps, per secret (`SecretRef`): numbered versions with encrypted values, the three
labels (moved together by one atomic compare-and-set), a lock with expiry so that one rotation
runs at a time, and the rotation records. Besides that it keeps keyroll's own journal (the
append-only audit entries, hash-chained by `keyroll.audit`) and a small key/value area for
bookkeeping (notification log, re-encryption checkpoints, recognition digests). Nothing but
`put_version` and `read_value` ever sees a value.

Before a backend destroys a value it records the value's recognition digest (`remember_value`,
bookkeeping key ``recognise:<environment>/<name>/<version>``), so that hook output, logs and
``keyroll scan`` still recognise it (`keyroll.recognise`) without the value being kept.

Every backend passes the same contract tests (``tests/stores/contract.py``).
"""

from __future__ import annotations

import base64
import json
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from keyroll.errors import NotFound
from keyroll.model import Label, SecretRef, SecretValue, Version
from keyroll.recognise import Recogniser, digest, shape
from keyroll.recognise_tag import tag, tag_key

__all__ = ["RECOGNISE_PREFIX", "RECOGNITION_KEY", "AuditEntry", "Fence", "LockInfo", "RotationRecord",
           "Store"]

#: Bookkeeping keys of recognition digests: ``recognise:<environment>/<name>/<version>``.
RECOGNISE_PREFIX = "recognise:"
#: Bookkeeping key prefix of the decrypt-only versions of a secret (`Store.decrypt_only_versions`).
DECRYPT_ONLY_PREFIX = "decrypt-only:"
#: Bookkeeping key of the recognition key itself, where a backend keeps one (in its own form:
#: migration moves the key with `Store.adopt_recognition_key`, never this entry verbatim).
RECOGNITION_KEY = "recognise-key"
#: Bookkeeping keys of the shape of each recognised value, ``"<bytes> <words> <characters>"``
#: (`keyroll.recognise.shape`: ``keyroll scan`` decodes a candidate only in the spellings that
#: can have a recorded length): ``recognise-shape:<environment>/<name>/<version>``.
RECOGNISE_SHAPE_PREFIX = "recognise-shape:"
#: Bookkeeping keys of the recognition tag of each recognised value (4 hex digits: the keyed
#: 16-bit prefilter of `keyroll.recognise_tag`; absent for versions destroyed before it
#: existed, which ``keyroll scan`` then hashes every candidate for):
#: ``recognise-tag:<environment>/<name>/<version>``.
RECOGNISE_TAG_PREFIX = "recognise-tag:"
#: Bookkeeping keys of scan-baseline digests (``keyroll scan --export-baseline``):
#: ``scan-baseline:<environment>/<name>/<version>``, HMAC under `SCAN_BASELINE_KEY`.
SCAN_BASELINE_PREFIX = "scan-baseline:"
#: The key of the scan baseline's digests: random, and published in every baseline, so it is
#: never the recognition key (which must stay as secret as the store).
SCAN_BASELINE_KEY = "scan-baseline-key"
#: Shorter values get no baseline digest: one under a published key is a guessable hash.
SCAN_BASELINE_MIN_LENGTH = 16


@dataclass(frozen=True, slots=True)
class RotationRecord:
    """One rotation as persisted. The engine owns the meaning of ``state`` and ``body``.

    Attributes:
        id: unique rotation id (e.g. ``r-20261122-5f3a9c``).
        ref: the secret being rotated.
        state: the engine's step name (``plan``, ``create`` … ``done``, ``rolled-back``).
        revision: bumped by every save; `Store.save_rotation` compares it (optimistic lock).
        created_at: when the record was first stored.
        updated_at: when it was last saved.
        body: JSON-serialisable data (versions, deadlines, evidence). Never a secret value.
    """

    id: str
    ref: SecretRef
    state: str
    revision: int
    created_at: datetime
    updated_at: datetime
    body: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One journal entry as stored: its position, its canonical JSON text, and the chain.

    ``hash = sha256(prev_hash || payload)``; `keyroll.audit` computes and checks it, the store
    only keeps it.
    """

    seq: int
    payload: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class LockInfo:
    """Who holds a secret's rotation lock, until when, and under which fencing generation.

    ``generation`` grows by one every time the lock passes to another owner (never when its
    holder renews it): a write carrying a generation that is no longer the lock's comes from a
    process that lost the lock (Chubby's sequencers), and the store refuses it.
    """

    owner: str
    expires_at: datetime
    generation: int = 0


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a write is made under. A fenced write is refused (`LeaseLost`) unless the
    secret's lock is still held by ``owner`` at ``generation``: a process paused past its
    lease, while another took over, changes nothing when it wakes."""

    ref: SecretRef
    owner: str
    generation: int


class Store(ABC):
    """The contract of a secret store backend.

    Errors: `NotFound` for a missing secret, version or rotation; `Conflict` when a
    compare-and-set loses; `LockHeld` when another owner has the lock; `StoreUnavailable`
    and `StoreForbidden` from remote backends; `StoreCorrupted` when a value fails
    authentication. Backends translate their own errors into these, once, in their module.
    """

    #: Where the store is, for messages and the audit journal (no credentials in it).
    url: str

    # --- versions -------------------------------------------------------------------------

    @abstractmethod
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
        """Store a new version (number = last + 1) with no label; return its metadata.

        Every write below takes ``fence`` (see `Fence`) and raises `LeaseLost` when it fails.

        Args:
            kid: key id to record; a fresh random one (`keyroll.model.new_kid`) if None.
            created_at: creation time; now if None (migration passes the original time).
            meta: non-secret annotations kept with the version.
        """

    @abstractmethod
    def read_value(self, ref: SecretRef, number: int) -> SecretValue:
        """Decrypt and return one version's value. `NotFound` if absent or destroyed."""

    @abstractmethod
    def list_versions(self, ref: SecretRef) -> list[Version]:
        """All versions of a secret, oldest first; ``[]`` when the secret has none."""

    @abstractmethod
    def destroy_version(self, ref: SecretRef, number: int, *, fence: Fence | None = None) -> None:
        """Erase a version's value for good, keeping its metadata. Refused (`Conflict`) while
        a label points at it."""

    @abstractmethod
    def list_secrets(self) -> list[SecretRef]:
        """Every secret that has at least one version, sorted."""

    # --- labels ---------------------------------------------------------------------------

    @abstractmethod
    def get_labels(self, ref: SecretRef) -> dict[Label, int]:
        """The labels currently set on a secret (absent labels are not in the dict)."""

    @abstractmethod
    def set_labels(
        self,
        ref: SecretRef,
        *,
        expected: Mapping[Label, int | None],
        new: Mapping[Label, int | None],
        fence: Fence | None = None,
    ) -> dict[Label, int]:
        """Move labels atomically, if they still are where the caller last saw them.

        Args:
            expected: for each label named, the version it must point at now (None: unset).
            new: for each label named, the version it will point at (None: remove it).
                Labels not named keep their place.

        Returns:
            The labels after the move.

        Raises:
            Conflict: a label in ``expected`` moved in the meantime; nothing was changed.
            NotFound: a version in ``new`` does not exist or is destroyed.
        """

    # --- per-secret lock ------------------------------------------------------------------

    @abstractmethod
    def acquire_lock(
        self,
        ref: SecretRef,
        owner: str,
        *,
        ttl: timedelta,
        now: datetime | None = None,
        generation: int | None = None,
    ) -> LockInfo:
        """Take (or, for the same owner, extend) the secret's lock until ``now + ttl``.

        A new owner gets the next fencing generation; the same owner keeps its generation.

        Args:
            generation: renew only: the lock must still be ``owner``'s at this generation
                (expired or not, as long as nobody took it in between).

        Raises:
            LockHeld: another owner holds an unexpired lock (the message names the owner).
            LeaseLost: ``generation`` was given and the lock is no longer that lease.
        """

    @abstractmethod
    def release_lock(self, ref: SecretRef, owner: str) -> None:
        """Release the lock if ``owner`` holds it; do nothing otherwise. The generation is
        kept: the next owner gets the one after it."""

    @abstractmethod
    def get_lock(self, ref: SecretRef, *, now: datetime | None = None) -> LockInfo | None:
        """The unexpired lock on a secret, or None."""

    # --- rotation records -----------------------------------------------------------------

    @abstractmethod
    def create_rotation(self, record: RotationRecord, *, fence: Fence | None = None
                        ) -> RotationRecord:
        """Store a new rotation record with revision 1. `Conflict` if the id exists."""

    @abstractmethod
    def save_rotation(
        self, record: RotationRecord, *, expected_revision: int, fence: Fence | None = None
    ) -> RotationRecord:
        """Replace a record if its stored revision is ``expected_revision``; bump it.

        Args:
            fence: the lease the writer works under (see `Fence`).

        Raises:
            Conflict: another process saved it first.
            LeaseLost: ``fence`` is no longer the secret's lock.
            NotFound: no such rotation.
        """

    @abstractmethod
    def get_rotation(self, rotation_id: str) -> RotationRecord:
        """One rotation record. `NotFound` if absent."""

    @abstractmethod
    def list_rotations(self, ref: SecretRef | None = None) -> list[RotationRecord]:
        """Rotation records (of one secret, or all), oldest first."""

    # --- audit journal --------------------------------------------------------------------

    @abstractmethod
    def audit_append(self, entry: AuditEntry, *, fence: Fence | None = None) -> None:
        """Append one entry. `Conflict` unless ``entry.seq`` is exactly last seq + 1.

        Args:
            fence: the lease the writer works under (see `Fence`): a paused process that lost
                it adds nothing to the journal.
        """

    @abstractmethod
    def audit_entries(self, start: int = 1, stop: int | None = None) -> Iterator[AuditEntry]:
        """Entries with ``start <= seq < stop`` (``stop`` None: to the end), in stored order.

        Backends read a range in batches (an indexed range query, pages of entries), never
        one request per entry, and never the whole journal to serve a short range.
        """

    @abstractmethod
    def audit_tail(self) -> AuditEntry | None:
        """The last entry, or None when the journal is empty. Cheap: it lists nothing (a
        journal append reads it first)."""

    def audit_migrate(self) -> int:
        """Bring the journal to this backend's current layout, verified, and return how many
        entries were moved (0: nothing to do, the default). Entries, their order and their
        hashes are unchanged; only where they are kept changes."""
        return 0

    def audit_layout(self) -> str:
        """How the journal is kept (``"current"`` unless a backend still reads an older
        layout that `audit_migrate` would convert)."""
        return "current"

    # --- bookkeeping key/value ------------------------------------------------------------

    @abstractmethod
    def get_meta(self, key: str) -> str | None:
        """A bookkeeping value (never a secret), or None."""

    @abstractmethod
    def put_meta(self, key: str, value: str | None, *, fence: Fence | None = None) -> None:
        """Set (or with None, delete) a bookkeeping value.

        Raises:
            LeaseLost: ``fence`` (a strategy's write under a rotation's lease) is no longer
                the secret's lock; nothing was written.
        """

    @abstractmethod
    def list_meta(self) -> list[str]:
        """Every bookkeeping key, sorted (migration copies them all)."""

    # --- what changed -----------------------------------------------------------------------

    def secret_index(self, ref: SecretRef) -> tuple[dict[Label, int], list[Version]]:
        """A secret's labels and versions, read together (one read on a backend that keeps
        them in one document; `get_labels` and `list_versions` otherwise)."""
        return self.get_labels(ref), self.list_versions(ref)

    def change_markers(self) -> tuple[str, str] | None:
        """Two texts a reader caches against: the first changes after every write to
        versions, labels, locks and rotation records, the second after every bookkeeping
        write (`put_meta`); neither follows the journal (its tail says where it ends).

        None (the default, and the local store, whose reads are cheap): the backend keeps
        no markers, so a reader must read again every time. A reader that finds the same
        pair again may reuse what it read under it, which is how the dashboard serves an
        OpenBao store without some 50 reads a page. A write through an older keyroll, or by
        hand in the backend, moves no marker: readers re-read after a bounded age anyway.
        """
        return None

    # --- who is calling --------------------------------------------------------------------

    def identity(self) -> tuple[str, tuple[str, ...]] | None:
        """Who the store authenticates the caller as, and their groups; None when it does not
        know (the local store: anyone with the master key is the same caller). The CLI
        records this identity as the journal's actor and matches it against ``approvers``."""
        return None

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:  # noqa: B027  (optional hook: most backends hold nothing)
        """Release connections. The store is unusable afterwards."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- recognising values no longer held ------------------------------------------------

    def recognition_key(self) -> bytes:
        """The key of this store's recognition digests (`keyroll.recognise`).

        The default is 32 random bytes kept in the bookkeeping area (which, on a remote
        backend, is as protected as the values); the local store derives it from its master
        key instead, so nothing in its file lets anyone test guesses of a destroyed value.
        """
        text = self.get_meta(RECOGNITION_KEY)
        if text is None:
            self.put_meta(RECOGNITION_KEY, base64.b64encode(secrets.token_bytes(32)).decode())
            text = self.get_meta(RECOGNITION_KEY)  # a concurrent creator's key wins for both
            assert text is not None
        return base64.b64decode(text)

    def adopt_recognition_key(self, key: bytes) -> None:
        """Use ``key`` for recognition digests from now on (migration: the digests copied from
        another store were made with its key)."""
        self.put_meta(RECOGNITION_KEY, base64.b64encode(key).decode())

    def remember_value(self, ref: SecretRef, number: int) -> None:
        """Record the recognition digest of a version's value, if not recorded yet (with, for
        ``keyroll scan``, its shape, its recognition tag and, from 16 characters, its
        scan-baseline digest).

        Backends call it first thing in `destroy_version`; it may run again (idempotent).
        A version already destroyed, or absent, is left as it is.
        """
        key = f"{RECOGNISE_PREFIX}{ref.environment}/{ref.name}/{number}"
        if self.get_meta(key) is not None:
            return
        try:
            value = self.read_value(ref, number)
        except NotFound:
            return
        text = value.reveal()
        where = f"{ref.environment}/{ref.name}/{number}"
        # what `keyroll scan` uses first, the recognition digest (checked above) last: a crash
        # in between leaves no digest, and the next call writes them all again
        self.put_meta(f"{RECOGNISE_SHAPE_PREFIX}{where}", " ".join(map(str, shape(text))))
        self.put_meta(f"{RECOGNISE_TAG_PREFIX}{where}",
                      f"{tag(tag_key(self.recognition_key()), text):04x}")
        if len(text) >= SCAN_BASELINE_MIN_LENGTH:
            self.put_meta(f"{SCAN_BASELINE_PREFIX}{where}", digest(self.scan_baseline_key(), text))
        self.put_meta(key, digest(self.recognition_key(), text))

    def scan_baseline_key(self) -> bytes:
        """The key of scan-baseline digests (random, kept in bookkeeping, created on first
        use). It is published in every exported baseline: never use it for anything else."""
        text = self.get_meta(SCAN_BASELINE_KEY)
        if text is None:
            self.put_meta(SCAN_BASELINE_KEY, base64.b64encode(secrets.token_bytes(32)).decode())
            text = self.get_meta(SCAN_BASELINE_KEY)
            assert text is not None
        return base64.b64decode(text)

    def recogniser(self) -> Recogniser:
        """A `Recogniser` of every value this store destroyed after recording its digest."""
        digests = [
            text for key in self.list_meta() if key.startswith(RECOGNISE_PREFIX)
            and (text := self.get_meta(key)) is not None
        ]
        return Recogniser(self.recognition_key() if digests else b"", digests)

    def own_secrets(self) -> list[SecretValue]:
        """The credentials this store was opened with (master key, token), to be masked in
        every output; ``[]`` for a backend that holds none."""
        return []

    # --- decrypt-only versions (restored from escrow) ----------------------------------------

    def decrypt_only_versions(self, ref: SecretRef) -> list[int]:
        """Versions every key source accepts for decryption (never as primary) besides the
        labelled ones: keys brought back from escrow (`keyroll.escrow`) for a restored
        backup. Kept in the bookkeeping as ``decrypt-only:<env>/<name>``."""
        text = self.get_meta(f"{DECRYPT_ONLY_PREFIX}{ref.environment}/{ref.name}")
        if not text:
            return []
        try:
            return [int(n) for n in json.loads(text)]
        except (ValueError, TypeError):
            return []

    def set_decrypt_only_versions(self, ref: SecretRef, numbers: list[int]) -> None:
        """Replace the decrypt-only versions of a secret (empty: none)."""
        key = f"{DECRYPT_ONLY_PREFIX}{ref.environment}/{ref.name}"
        self.put_meta(key, json.dumps(sorted(set(numbers))) if numbers else None)

    # --- conveniences built on the contract -----------------------------------------------

    def get_version(self, ref: SecretRef, number: int) -> Version:
        """One version's metadata. `NotFound` if it does not exist."""
        for version in self.list_versions(ref):
            if version.number == number:
                return version
        raise NotFound(f"{ref} has no version {number}: see `keyroll status` for what exists")

    def read(self, ref: SecretRef, label: Label = Label.CURRENT) -> tuple[Version, SecretValue]:
        """The version a label points at, with its value. `NotFound` if the label is unset."""
        number = self.get_labels(ref).get(label)
        if number is None:
            raise NotFound(
                f"{ref} has no {label.value} version: create one with "
                f"`keyroll generate {ref.name} --env {ref.environment}` or `keyroll import`"
            )
        return self.get_version(ref, number), self.read_value(ref, number)
