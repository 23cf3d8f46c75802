"""What a scan looks for: one keyed digest per version of every secret, and its metadata.

A `ScanIndex` maps recognition digests (`keyroll.recognise.digest`) to `Entry`: the secret's
class, environment, version, state and fingerprint. It is built either from the store
(`from_store`: every readable value is hashed under the store's recognition key and kept for
the literal matcher; every destroyed one is known by the digest recorded before its destroy) or
from an exported *scan baseline* (`load_baseline`: digests under the baseline key published in
the file, no value, no store, no master key).

A baseline records each value's shape too (bytes, words, characters: the matcher decodes a
candidate only in the spellings that can have a known length): it tells nothing about a random
value but its size. A baseline is safe to commit for values with enough entropy: it holds HMAC-
SHA256 digests under a key it publishes, i.e. salted hashes. Anyone with the file can test
guesses of a value at the speed of HMAC-SHA256, so values shorter than `BASELINE_MIN_LENGTH`
are left out of it (and counted in ``skipped``). Versions destroyed before keyroll recorded
baseline digests (or before this feature) are left out too: their only digest is under the
secret recognition key.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from keyroll.errors import NotFound, UsageError
from keyroll.model import Label, SecretRef, SecretValue, Version
from keyroll.recognise import digest, shape
from keyroll.recognise_tag import tag, tag_key
from keyroll.stores.base import (
    RECOGNISE_PREFIX,
    RECOGNISE_SHAPE_PREFIX,
    RECOGNISE_TAG_PREFIX,
    SCAN_BASELINE_MIN_LENGTH,
    SCAN_BASELINE_PREFIX,
    Store,
)

__all__ = ["BASELINE_FORMAT", "BASELINE_MIN_LENGTH", "Entry", "ScanIndex", "ValueState",
           "export_baseline", "load_baseline", "parse_baseline"]

#: The ``format`` field of a baseline file.
BASELINE_FORMAT = "keyroll-scan-baseline/1"
#: Values shorter than this are not written to a baseline (guessable from a published-key HMAC).
BASELINE_MIN_LENGTH = SCAN_BASELINE_MIN_LENGTH


class ValueState(StrEnum):
    """Where a found version stands: a live leak (current, pending), still accepted
    (previous), or already rotated away (retired: destroyed or unlabelled)."""

    CURRENT = "current"
    PENDING = "pending"
    PREVIOUS = "previous"
    RETIRED = "retired"

    @property
    def live(self) -> bool:
        """Whether a leak of this version needs an incident rotation now."""
        return self in (ValueState.CURRENT, ValueState.PENDING)


_LABEL_STATE = {Label.CURRENT: ValueState.CURRENT, Label.PENDING: ValueState.PENDING,
                Label.PREVIOUS: ValueState.PREVIOUS}


@dataclass(frozen=True, slots=True)
class Entry:
    """One version a scan recognises (never its value)."""

    name: str
    environment: str
    version: int
    state: ValueState
    fingerprint: str

    def to_json(self) -> dict[str, object]:
        return {"class": self.name, "env": self.environment, "version": self.version,
                "state": self.state.value, "fingerprint": self.fingerprint}

    @classmethod
    def parse(cls, data: object) -> Entry:
        """An entry from its JSON form. `UsageError` names what is wrong."""
        if not isinstance(data, dict):
            raise UsageError("baseline entry is not an object")
        try:
            return cls(str(data["class"]), str(data["env"]), int(data["version"]),
                       ValueState(data["state"]), str(data["fingerprint"]))
        except (KeyError, ValueError, TypeError):
            raise UsageError("baseline entry lacks class, env, version, state or fingerprint, "
                             "or has a bad one: re-export it with `keyroll scan "
                             "--export-baseline`") from None


@dataclass
class ScanIndex:
    """Digests to look up (under ``key``), and the values the literal matcher may use.

    Attributes:
        key: the HMAC key of ``digests``.
        digests: digest → the version it recognises.
        values: readable values and their entries (store mode only; empty from a baseline).
        source: ``store`` or ``baseline``.
        skipped: versions that could not be included (destroyed without a digest, or left out
            of a baseline).
        shapes: the values' shapes (`keyroll.recognise.shape`), or None when one is unknown (a
            version destroyed before keyroll recorded shapes): the matcher then tries every
            candidate in every spelling, slower but as exact.
        unread_shapes: the shapes of the versions not in ``values`` (destroyed ones, every
            one of a baseline): the only values the digest pass must find in their plain
            spellings when the literal matcher looks for the others (None: one is unknown).
        tags, unread_tags: the recognition tags (`keyroll.recognise_tag`) of every version,
            and of those not in ``values``: the C cutter's prefilter of plain candidates. None
            when one is unknown (a version destroyed before keyroll recorded tags, or a
            baseline, which has none): every plain candidate is then hashed.
    """

    key: bytes
    digests: dict[str, Entry] = field(default_factory=dict)
    values: list[tuple[SecretValue, Entry]] = field(default_factory=list)
    source: str = "store"
    skipped: int = 0
    shapes: set[tuple[int, int, int]] | None = field(default_factory=set)
    unread_shapes: set[tuple[int, int, int]] | None = field(default_factory=set)
    tags: set[int] | None = None
    unread_tags: set[int] | None = None

    def _add_shape(self, text: str | None, *, read: bool = False) -> None:
        """Record a value's shape ``"<bytes> <words> <characters>"`` (``read``: the value is
        in `values`); None (unknown) turns the matcher's filters off."""
        parts = text.split() if text else []
        if self.shapes is None or len(parts) != 3 or not all(p.isdigit() for p in parts):
            self.shapes = self.unread_shapes = None
            return
        known = (int(parts[0]), int(parts[1]), int(parts[2]))
        self.shapes.add(known)
        if not read and self.unread_shapes is not None:
            self.unread_shapes.add(known)

    def _add_tag(self, text: str | None, *, read: bool = False) -> None:
        """Record a version's tag (4 hex digits); None (unknown) turns the prefilter off."""
        try:
            known = int(text, 16) if text is not None and len(text) == 4 else None
        except ValueError:
            known = None
        if known is None or self.tags is None:
            self.tags = self.unread_tags = None
            return
        self.tags.add(known)
        if not read and self.unread_tags is not None:
            self.unread_tags.add(known)

    def __len__(self) -> int:
        return len(self.digests)

    def __repr__(self) -> str:
        return f"ScanIndex(source={self.source}, versions={len(self.digests)})"

    @classmethod
    def from_store(cls, store: Store) -> ScanIndex:
        """Every version of every secret in ``store``: readable ones hashed now, destroyed ones
        by their recorded digests."""
        index = cls(store.recognition_key(), tags=set(), unread_tags=set())
        tags = tag_key(index.key)
        for ref, version, state in _versions(store):
            if version.destroyed:
                recorded = store.get_meta(f"{RECOGNISE_PREFIX}{ref.environment}/{ref.name}/"
                                          f"{version.number}")
                entry = Entry(ref.name, ref.environment, version.number, state,
                              version.fingerprint)
                if recorded is None:
                    index.skipped += 1
                else:
                    index.digests[recorded] = entry
                    index._add_shape(store.get_meta(_where(RECOGNISE_SHAPE_PREFIX, ref, version)))
                    index._add_tag(store.get_meta(_where(RECOGNISE_TAG_PREFIX, ref, version)))
                continue
            try:
                value = store.read_value(ref, version.number)
            except NotFound:
                index.skipped += 1
                continue
            entry = Entry(ref.name, ref.environment, version.number, state, value.fingerprint)
            index.digests[digest(index.key, value.reveal())] = entry
            index._add_shape(_shape(value.reveal()), read=True)
            index._add_tag(f"{tag(tags, value.reveal()):04x}", read=True)
            index.values.append((value, entry))
        return index


def _where(prefix: str, ref: SecretRef, version: Version) -> str:
    return f"{prefix}{ref.environment}/{ref.name}/{version.number}"


def _shape(text: str) -> str:
    return " ".join(map(str, shape(text)))


def _versions(store: Store) -> Iterable[tuple[SecretRef, Version, ValueState]]:
    for ref in store.list_secrets():
        labels = {number: _LABEL_STATE[label] for label, number in store.get_labels(ref).items()
                  if label in _LABEL_STATE}
        for version in store.list_versions(ref):
            state = ValueState.RETIRED if version.destroyed else labels.get(
                version.number, ValueState.RETIRED)
            yield ref, version, state


def export_baseline(store: Store, now: datetime) -> tuple[dict[str, object], int]:
    """The baseline document of ``store`` and the number of versions left out of it.

    Digests are under `Store.scan_baseline_key`, which the document publishes.
    """
    key = store.scan_baseline_key()
    entries: list[dict[str, object]] = []
    skipped = 0
    for ref, version, state in _versions(store):
        if version.destroyed:
            recorded = store.get_meta(f"{SCAN_BASELINE_PREFIX}{ref.environment}/{ref.name}/"
                                      f"{version.number}")
            if recorded is None:
                skipped += 1
                continue
            entry = Entry(ref.name, ref.environment, version.number, state, version.fingerprint)
            recorded_shape = store.get_meta(_where(RECOGNISE_SHAPE_PREFIX, ref, version))
            entries.append({"digest": recorded, **entry.to_json(),
                            **({"shape": recorded_shape} if recorded_shape else {})})
            continue
        try:
            value = store.read_value(ref, version.number)
        except NotFound:
            skipped += 1
            continue
        if len(value.reveal()) < BASELINE_MIN_LENGTH:
            skipped += 1
            continue
        entry = Entry(ref.name, ref.environment, version.number, state, value.fingerprint)
        entries.append({"digest": digest(key, value.reveal()), **entry.to_json(),
                        "shape": _shape(value.reveal())})
    document: dict[str, object] = {
        "format": BASELINE_FORMAT,
        "generated_at": now.isoformat(),
        "hmac": "sha256",
        "key": base64.b64encode(key).decode(),
        "versions": entries,
    }
    return document, skipped


def load_baseline(path: Path) -> ScanIndex:
    """A `ScanIndex` from a baseline file. `UsageError` (exit 2) for a file that is not one."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no scan baseline at {path}: export one with "
                         "`keyroll scan --export-baseline FILE`") from None
    except OSError:
        raise UsageError(f"{path} is not a keyroll scan baseline (unreadable)") from None
    return parse_baseline(text, str(path))


def parse_baseline(text: bytes, path: str) -> ScanIndex:
    """A `ScanIndex` from a baseline document's bytes (``path`` names it in messages).

    Raises:
        UsageError: not a baseline (exit 2).
    """
    try:
        data = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UsageError(f"{path} is not a keyroll scan baseline (unreadable or not JSON)"
                         ) from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise UsageError(f"{path} is not a keyroll scan baseline (format is not "
                         f"{BASELINE_FORMAT})")
    try:
        key = base64.b64decode(str(data["key"]), validate=True)
        versions = data["versions"]
    except (KeyError, binascii.Error):
        raise UsageError(f"{path}: baseline key missing or not base64") from None
    if not isinstance(versions, list) or len(key) < 16:
        raise UsageError(f"{path}: baseline versions must be a list and its key 16+ bytes")
    index = ScanIndex(key, source="baseline")
    for item in versions:
        entry = Entry.parse(item)
        found = item.get("digest") if isinstance(item, dict) else None
        if not isinstance(found, str) or len(found) != 64:
            raise UsageError(f"{path}: a baseline entry has no 64-hex digest")
        index.digests[found.lower()] = entry
        given = item.get("shape")
        index._add_shape(given if isinstance(given, str) else None)
    return index
