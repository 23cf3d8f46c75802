"""`keyroll.migrate.migrate_store`: SQLite → OpenBao → SQLite, and SQLite → SQLite.

A rich source (several secrets, a destroyed version, all three labels, version meta, rotation
records saved several times, a real hash-chained journal, bookkeeping keys that need encoding)
must arrive identical, by fingerprint, with the source untouched; a non-empty target is refused
with nothing copied; the report never holds a value.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from keyroll.audit import Journal
from keyroll.errors import UsageError
from keyroll.generate import generate
from keyroll.migrate import MIGRATED_FROM_FINGERPRINT, migrate_store
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.stores.base import RECOGNITION_KEY, RotationRecord, Store
from keyroll.stores.openbao import OpenBaoStore
from keyroll.stores.sqlite import SQLiteStore
from tests.leaks import assert_no_leak
from tests.openbao_fixtures import bao_dev as bao_dev
from tests.openbao_fixtures import bao_store_factory as bao_store_factory
from tests.stores.contract import OTHER, REF, T0

THIRD = SecretRef("prod", "bank-webhook")


@pytest.fixture
def sqlite_factory(tmp_path: Path) -> Iterator[Callable[[str], SQLiteStore]]:
    opened: list[SQLiteStore] = []
    key = secrets.token_bytes(32)

    def factory(name: str) -> SQLiteStore:
        opened.append(SQLiteStore(tmp_path / f"{name}.db", key))
        return opened[-1]

    yield factory
    for store in opened:
        store.close()


def _populate(store: Store) -> list[SecretValue]:
    """A source with everything a store can hold; returns the planted values."""
    values = [generate("base64-48") for _ in range(6)]
    for i, value in enumerate(values[:4]):
        store.put_version(REF, value, created_at=T0 + timedelta(days=i), meta={"gen": i, "ü": "✓"})
    store.put_version(OTHER, values[4])
    store.put_version(THIRD, values[5], kid=0xDEADBEEF)
    store.set_labels(REF, expected={}, new={Label.PREVIOUS: 2, Label.CURRENT: 3, Label.PENDING: 4})
    store.destroy_version(REF, 1)
    store.set_labels(OTHER, expected={}, new={Label.CURRENT: 1})
    rec = store.create_rotation(RotationRecord("r-1", REF, "plan", 0, T0, T0, {"steps": []}))
    for state in ("create", "apply"):
        rec = store.save_rotation(
            RotationRecord("r-1", REF, state, 0, T0, T0 + timedelta(minutes=1), {"s": state}),
            expected_revision=rec.revision,
        )
    store.create_rotation(RotationRecord("r-2", OTHER, "done", 0, T0 + timedelta(hours=1),
                                         T0 + timedelta(hours=2), {"note": "ü"}))
    journal = Journal(store, actor="tester", clock=lambda: T0)
    for action in ("import", "generate", "rotate"):
        journal.append(action, ref=REF, fingerprints=[values[0].fingerprint])
    store.put_meta("notify:2026-11-22", '{"sent": ["prod/jwt-access"]}')
    store.put_meta("reencrypt/users.email", "row 42")
    return values


def _dump(store: Store) -> tuple[Any, ...]:
    """Everything a store holds, comparable across backends (destroyed versions by their
    original fingerprint), with the fingerprint of every live value as read back."""
    secrets_: dict[str, Any] = {}
    for ref in store.list_secrets():
        versions = []
        for v in store.list_versions(ref):
            meta = dict(v.meta)
            original = meta.pop(MIGRATED_FROM_FINGERPRINT, v.fingerprint)
            read = None if v.destroyed else store.read_value(ref, v.number).fingerprint
            versions.append((v.number, v.kid, original if v.destroyed else v.fingerprint,
                             v.created_at, v.destroyed, meta, read))
        secrets_[str(ref)] = (versions, store.get_labels(ref))
    return (
        secrets_, store.list_rotations(), list(store.audit_entries()),
        # the recognition key is kept in each backend's own form (sealed in SQLite): compared
        # by `_same_recognition` instead
        {key: store.get_meta(key) for key in store.list_meta() if key != RECOGNITION_KEY},
    )


def _same_recognition(a: Store, b: Store) -> None:
    """Destroyed values are still recognised after the move (the key moved with the digests)."""
    assert a.recognition_key() == b.recognition_key()
    assert len(a.recogniser()) == len(b.recogniser()) == 1


def test_sqlite_to_sqlite(sqlite_factory: Callable[[str], SQLiteStore]) -> None:
    source, target = sqlite_factory("source"), sqlite_factory("target")
    _populate(source)
    before = _dump(source)
    report = migrate_store(source, target)
    assert _dump(target) == before == _dump(source)
    _same_recognition(source, target)
    assert (report.secrets, report.versions, report.destroyed_versions) == (3, 6, 1)
    # bookkeeping: notify, reencrypt, and what destroying version 1 recorded: its recognition
    # digest, its shape, its recognition tag and its scan-baseline digest (and the
    # scan-baseline key)
    assert (report.labels, report.rotations, report.audit_entries, report.meta_keys) == (
        4, 2, 3, 7,
    )
    assert report.verified_values == 5
    assert Journal(target).verify().ok


@pytest.mark.integration
def test_sqlite_to_openbao_and_back(
    sqlite_factory: Callable[[str], SQLiteStore], bao_store_factory: Callable[..., OpenBaoStore]
) -> None:
    source = sqlite_factory("source")
    planted = _populate(source)
    before = _dump(source)
    bao = bao_store_factory()
    report = migrate_store(source, bao)
    assert _dump(bao) == before
    assert report.verified_values == 5
    assert report.fingerprints[str(REF)] == [v.fingerprint for v in planted[1:4]]
    assert Journal(bao).verify().ok

    back = sqlite_factory("back")
    migrate_store(bao, back)
    assert _dump(back) == before
    assert _dump(source) == before  # the source was only read
    _same_recognition(source, bao)
    _same_recognition(source, back)
    assert back.read(REF)[1] == planted[2]
    assert back.read(REF, Label.PREVIOUS)[1] == planted[1]
    (destroyed, *_) = back.list_versions(REF)
    assert destroyed.destroyed
    assert destroyed.meta[MIGRATED_FROM_FINGERPRINT] == planted[0].fingerprint
    assert_no_leak([repr(report), str(report)], [v.reveal() for v in planted], where="report")


@pytest.mark.integration
def test_non_empty_target_is_refused_and_untouched(
    sqlite_factory: Callable[[str], SQLiteStore], bao_store_factory: Callable[..., OpenBaoStore]
) -> None:
    source = sqlite_factory("source")
    _populate(source)
    bao = bao_store_factory()
    bao.put_meta("something", "here")
    before = _dump(bao)
    with pytest.raises(UsageError, match=r"already holds keyroll data.*empty store"):
        migrate_store(source, bao)
    assert _dump(bao) == before
    only_journal = sqlite_factory("journal-only")
    Journal(only_journal, actor="x").append("import")
    with pytest.raises(UsageError, match="audit journal"):
        migrate_store(source, only_journal)
