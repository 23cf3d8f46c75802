"""Copy a whole store into another (``keyroll migrate-store --from URL --to URL``).

Everything keyroll keeps moves: every secret's versions with the same numbers, key ids,
creation times and meta (destroyed versions stay destroyed), the labels, the rotation records
(same ids, states, bodies and revisions), the audit journal (same seq, payload and hashes, so
``keyroll audit verify`` passes at the target) and the bookkeeping values. The source is only
read. The copy is then checked: every live value's fingerprint at the target must match the
source's, and every record must read back identical; a difference raises `StoreCorrupted` and
the target should be discarded.

A destroyed version has no value left to copy, and the store contract can only create a
version from a value, so at the target it is created from a random placeholder that is
destroyed at once: number, key id, creation time and destroyed flag match, its fingerprint is
the placeholder's, and its meta gains ``migrated_from_fingerprint`` with the original
fingerprint so reports can still show it.

The target must be empty (no secret, rotation, journal entry or bookkeeping value): a copy
never merges two histories. If a migration stops half-way (store unavailable), discard the
target (a new file, or a new OpenBao prefix) and run it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from keyroll.errors import StoreCorrupted, UsageError
from keyroll.generate import generate
from keyroll.model import SecretRef, Version
from keyroll.stores.base import RECOGNISE_PREFIX, RECOGNITION_KEY, RotationRecord, Store

__all__ = ["MIGRATED_FROM_FINGERPRINT", "MigrationReport", "migrate_store"]

#: Meta key added to a destroyed version copied by `migrate_store` (its original fingerprint).
MIGRATED_FROM_FINGERPRINT = "migrated_from_fingerprint"


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What `migrate_store` copied and checked. Holds counts and fingerprints, no values.

    Attributes:
        source: the source store's URL.
        target: the target store's URL.
        secrets: secrets copied.
        versions: versions copied (live and destroyed).
        destroyed_versions: of those, destroyed ones (recreated as destroyed placeholders).
        labels: labels set.
        rotations: rotation records copied.
        audit_entries: journal entries copied.
        meta_keys: bookkeeping values copied.
        verified_values: live values whose fingerprint was checked at the target.
        fingerprints: per secret (``env/name``), the fingerprints of its live versions.
    """

    source: str
    target: str
    secrets: int = 0
    versions: int = 0
    destroyed_versions: int = 0
    labels: int = 0
    rotations: int = 0
    audit_entries: int = 0
    meta_keys: int = 0
    verified_values: int = 0
    fingerprints: dict[str, list[str]] = field(default_factory=dict)


def _refuse_non_empty(target: Store) -> None:
    held = []
    if secrets := target.list_secrets():
        held.append(f"{len(secrets)} secret(s)")
    if rotations := target.list_rotations():
        held.append(f"{len(rotations)} rotation record(s)")
    if target.audit_tail() is not None:
        held.append("an audit journal")
    if keys := target.list_meta():
        held.append(f"{len(keys)} bookkeeping value(s)")
    if held:
        raise UsageError(
            f"the target store {target.url} already holds keyroll data ({', '.join(held)}): "
            "migrate into an empty store (a new SQLite file, or a new OpenBao prefix such as "
            "?prefix=keyroll-2); nothing was copied"
        )


def _copy_versions(
    source: Store, target: Store, ref: SecretRef, report: dict[str, int]
) -> list[Version]:
    versions = source.list_versions(ref)
    for version in versions:
        if version.destroyed:
            placeholder = generate("hex-32")
            meta = _destroyed_meta(version)
            made = target.put_version(
                ref, placeholder, kid=version.kid, created_at=version.created_at, meta=meta
            )
            _same_number(ref, version, made)
            target.destroy_version(ref, made.number)
            report["destroyed_versions"] += 1
        else:
            value = source.read_value(ref, version.number)
            if value.fingerprint != version.fingerprint:
                raise StoreCorrupted(
                    f"{ref} version {version.number} at the source {source.url} does not match "
                    "its own fingerprint: fix the source before migrating"
                )
            made = target.put_version(
                ref, value, kid=version.kid, created_at=version.created_at,
                meta=dict(version.meta),
            )
            _same_number(ref, version, made)
        report["versions"] += 1
    return versions


def _destroyed_meta(version: Version) -> dict[str, object]:
    """A destroyed version's meta at the target: its own, plus its original fingerprint (kept
    from an earlier migration if it went through one already)."""
    original = version.meta.get(MIGRATED_FROM_FINGERPRINT, version.fingerprint)
    return {**version.meta, MIGRATED_FROM_FINGERPRINT: original}


def _same_number(ref: SecretRef, want: Version, made: Version) -> None:
    if made.number != want.number:
        raise StoreCorrupted(
            f"{ref}: the target gave version {made.number} where the source has "
            f"{want.number} (was the target written to during the migration?); discard it"
        )


def _copy_rotation(target: Store, record: RotationRecord) -> None:
    stored = target.create_rotation(record)
    # revision counts saves; replay them so the target's revision equals the source's
    while stored.revision < record.revision:
        stored = target.save_rotation(record, expected_revision=stored.revision)


def _verify(source: Store, target: Store, refs: list[SecretRef]) -> int:
    """Read everything back from the target and compare; the number of values checked."""
    checked = 0

    def differ(what: str) -> StoreCorrupted:
        return StoreCorrupted(
            f"migration check failed: {what} differs between {source.url} and {target.url}; "
            "discard the target and run the migration again"
        )

    if target.list_secrets() != refs:
        raise differ("the list of secrets")
    for ref in refs:
        mine, theirs = source.list_versions(ref), target.list_versions(ref)
        if len(mine) != len(theirs):
            raise differ(f"{ref}'s number of versions")
        for a, b in zip(mine, theirs, strict=True):
            if a.destroyed:
                want_meta = _destroyed_meta(a)
            elif b.fingerprint != a.fingerprint or (
                target.read_value(ref, b.number).fingerprint != a.fingerprint
            ):
                raise differ(f"{ref} version {a.number}'s value (by fingerprint)")
            else:
                want_meta = dict(a.meta)
                checked += 1
            if (a.number, a.kid, a.created_at, a.destroyed, want_meta) != (
                b.number, b.kid, b.created_at, b.destroyed, dict(b.meta),
            ):
                raise differ(f"{ref} version {a.number}'s metadata")
        if source.get_labels(ref) != target.get_labels(ref):
            raise differ(f"{ref}'s labels")
    if source.list_rotations() != target.list_rotations():
        raise differ("the rotation records")
    if list(source.audit_entries()) != list(target.audit_entries()):
        raise differ("the audit journal")
    for key in source.list_meta():
        if key != RECOGNITION_KEY and source.get_meta(key) != target.get_meta(key):
            raise differ(f"bookkeeping value {key!r}")
    return checked


def migrate_store(source: Store, target: Store) -> MigrationReport:
    """Copy everything from ``source`` into the empty ``target``, then check the copy.

    Args:
        source: the store to copy from; only read.
        target: an empty store to copy into.

    Returns:
        What was copied and verified (counts and fingerprints, never values).

    Raises:
        UsageError: the target already holds keyroll data (nothing is copied), or a store
            cannot list its bookkeeping keys.
        StoreCorrupted: a source value fails its own fingerprint, or the copy does not read
            back identical (discard the target).
        StoreUnavailable, StoreForbidden: from either store; the target is then partial:
            discard it and run again.
    """
    _refuse_non_empty(target)
    if any(key.startswith(RECOGNISE_PREFIX) for key in source.list_meta()):
        # the recognition digests of destroyed values were made with the source's key
        target.adopt_recognition_key(source.recognition_key())
    counts = {"destroyed_versions": 0, "versions": 0}
    refs = source.list_secrets()
    fingerprints: dict[str, list[str]] = {}
    labels = 0
    for ref in refs:
        versions = _copy_versions(source, target, ref, counts)
        fingerprints[str(ref)] = [v.fingerprint for v in versions if not v.destroyed]
        moved = source.get_labels(ref)
        if moved:
            target.set_labels(ref, expected={}, new=dict(moved))
            labels += len(moved)
    rotations = source.list_rotations()
    for record in rotations:
        _copy_rotation(target, record)
    entries = 0
    for entry in source.audit_entries():
        target.audit_append(entry)
        entries += 1
    keys = [key for key in source.list_meta() if key != RECOGNITION_KEY]
    for key in keys:
        value = source.get_meta(key)
        if value is not None:
            target.put_meta(key, value)
    checked = _verify(source, target, refs)
    return MigrationReport(
        source=source.url, target=target.url, secrets=len(refs), versions=counts["versions"],
        destroyed_versions=counts["destroyed_versions"], labels=labels,
        rotations=len(rotations), audit_entries=entries, meta_keys=len(keys),
        verified_values=checked, fingerprints=fingerprints,
    )
