"""The store contract: every backend must pass these tests unchanged.

A backend's test module subclasses `StoreContract` and provides two fixtures:

- ``store``: a fresh, empty store;
- ``reopen``: a callable returning a second, independent handle on the same store (another
  process would see the same thing), for the lock and compare-and-set tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from keyroll.audit import Journal
from keyroll.errors import Conflict, LeaseLost, LockHeld, NotFound
from keyroll.generate import generate
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.stores.base import AuditEntry, Fence, RotationRecord, Store

REF = SecretRef("prod", "jwt-access")
OTHER = SecretRef("staging", "jwt-access")
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

Reopen = Callable[[], Store]


def _record(rid: str = "r-1", ref: SecretRef = REF, state: str = "plan") -> RotationRecord:
    return RotationRecord(rid, ref, state, 0, T0, T0, {"steps": [], "note": "ü"})


class StoreContract:
    # --- versions -------------------------------------------------------------------------

    def test_put_then_read_round_trips_values(self, store: Store) -> None:
        values = [generate("base64-48"), SecretValue("pässwörd ✓"), generate("key-32")]
        numbers = [store.put_version(REF, v).number for v in values]
        assert numbers == [1, 2, 3]
        for number, value in zip(numbers, values, strict=True):
            assert store.read_value(REF, number) == value

    def test_version_metadata_is_kept(self, store: Store) -> None:
        value = generate("hex-32")
        made = store.put_version(REF, value, kid=0xDEADBEEF, created_at=T0, meta={"by": "test"})
        assert (made.kid, made.fingerprint, made.created_at) == (0xDEADBEEF, value.fingerprint, T0)
        (listed,) = store.list_versions(REF)
        assert listed.kid == 0xDEADBEEF
        assert listed.kid_hex == "deadbeef"
        assert listed.fingerprint == value.fingerprint
        assert listed.created_at == T0
        assert dict(listed.meta) == {"by": "test"}
        assert not listed.destroyed

    def test_kids_are_random_when_not_given(self, store: Store) -> None:
        kids = {store.put_version(REF, generate("hex-32")).kid for _ in range(8)}
        assert len(kids) == 8
        assert all(0 <= kid < 2**32 for kid in kids)

    def test_secrets_are_separate_per_environment(self, store: Store) -> None:
        a, b = generate("hex-32"), generate("hex-32")
        store.put_version(REF, a)
        store.put_version(OTHER, b)
        assert store.read_value(REF, 1) == a
        assert store.read_value(OTHER, 1) == b
        assert store.list_secrets() == sorted([REF, OTHER])

    def test_missing_secret_and_version(self, store: Store) -> None:
        assert store.list_versions(REF) == []
        assert store.get_labels(REF) == {}
        with pytest.raises(NotFound):
            store.read_value(REF, 1)
        store.put_version(REF, generate("hex-32"))
        with pytest.raises(NotFound):
            store.read_value(REF, 2)
        with pytest.raises(NotFound):
            store.get_version(REF, 2)
        with pytest.raises(NotFound):
            store.read(REF, Label.CURRENT)

    def test_destroy_erases_value_keeps_metadata(self, store: Store) -> None:
        store.put_version(REF, generate("hex-32"))
        store.put_version(REF, generate("hex-32"))
        store.set_labels(REF, expected={}, new={Label.CURRENT: 2})
        with pytest.raises(Conflict):
            store.destroy_version(REF, 2)
        store.destroy_version(REF, 1)
        with pytest.raises(NotFound):
            store.read_value(REF, 1)
        assert [v.destroyed for v in store.list_versions(REF)] == [True, False]
        with pytest.raises(NotFound):
            store.set_labels(REF, expected={}, new={Label.PREVIOUS: 1})

    def test_destroy_keeps_a_recognition_digest(self, store: Store) -> None:
        # issue 10 §4: a destroyed value is still recognised in output, without being kept
        old, new = SecretValue("retired-$\"\\-value-0123456789"), generate("hex-32")
        store.put_version(REF, old)
        store.put_version(REF, new)
        store.set_labels(REF, expected={}, new={Label.CURRENT: 2})
        assert len(store.recogniser()) == 0
        store.destroy_version(REF, 1)
        recogniser = store.recogniser()
        assert len(recogniser) == 1 and recogniser.knows(old.reveal())
        assert not recogniser.knows(new.reveal())
        assert store.recognition_key() == store.recognition_key()
        assert all(old.reveal() not in str(store.get_meta(k)) for k in store.list_meta())
        moved = b"m" * 32  # a migration brings the source's key along with its digests
        store.adopt_recognition_key(moved)
        assert store.recognition_key() == moved
        assert all("bW1t" not in str(store.get_meta(k)) or k == "recognise-key"
                   for k in store.list_meta())
        store.remember_value(REF, 1)  # again (a retire rerun after a crash): nothing changes
        store.remember_value(REF, 2)  # a live value may be recorded too (before its destroy)
        assert len(store.recogniser()) == 2

    # --- labels ---------------------------------------------------------------------------

    def test_labels_move_together(self, store: Store) -> None:
        for _ in range(2):
            store.put_version(REF, generate("hex-32"))
        store.set_labels(REF, expected={Label.CURRENT: None}, new={Label.CURRENT: 1})
        store.set_labels(REF, expected={Label.PENDING: None}, new={Label.PENDING: 2})
        after = store.set_labels(
            REF,
            expected={Label.CURRENT: 1, Label.PENDING: 2, Label.PREVIOUS: None},
            new={Label.CURRENT: 2, Label.PREVIOUS: 1, Label.PENDING: None},
        )
        assert after == {Label.CURRENT: 2, Label.PREVIOUS: 1}
        assert store.get_labels(REF) == after
        version, value = store.read(REF, Label.PREVIOUS)
        assert version.number == 1
        assert value == store.read_value(REF, 1)

    def test_label_compare_and_set_conflict_changes_nothing(
        self, store: Store, reopen: Reopen
    ) -> None:
        for _ in range(3):
            store.put_version(REF, generate("hex-32"))
        store.set_labels(REF, expected={}, new={Label.CURRENT: 1, Label.PENDING: 2})
        other = reopen()
        other.set_labels(REF, expected={Label.PENDING: 2}, new={Label.PENDING: 3})
        with pytest.raises(Conflict):
            store.set_labels(
                REF,
                expected={Label.CURRENT: 1, Label.PENDING: 2},
                new={Label.CURRENT: 2, Label.PREVIOUS: 1, Label.PENDING: None},
            )
        assert store.get_labels(REF) == {Label.CURRENT: 1, Label.PENDING: 3}

    def test_label_to_unknown_version_is_refused(self, store: Store) -> None:
        store.put_version(REF, generate("hex-32"))
        with pytest.raises(NotFound):
            store.set_labels(REF, expected={}, new={Label.CURRENT: 7})
        assert store.get_labels(REF) == {}

    # --- lock -----------------------------------------------------------------------------

    def test_lock_excludes_other_owners_until_expiry(self, store: Store, reopen: Reopen) -> None:
        other = reopen()
        store.acquire_lock(REF, "rot-a", ttl=timedelta(minutes=5), now=T0)
        with pytest.raises(LockHeld, match="rot-a"):
            other.acquire_lock(REF, "rot-b", ttl=timedelta(minutes=5), now=T0)
        other.acquire_lock(OTHER, "rot-b", ttl=timedelta(minutes=5), now=T0)
        lock = other.get_lock(REF, now=T0 + timedelta(minutes=1))
        assert lock is not None
        assert lock.owner == "rot-a"
        # the same owner extends
        store.acquire_lock(REF, "rot-a", ttl=timedelta(minutes=5), now=T0 + timedelta(minutes=4))
        with pytest.raises(LockHeld):
            other.acquire_lock(REF, "rot-b", ttl=timedelta(minutes=5), now=T0 + timedelta(minutes=6))
        # expired: another owner may take it
        later = T0 + timedelta(minutes=10)
        assert other.get_lock(REF, now=later) is None
        other.acquire_lock(REF, "rot-b", ttl=timedelta(minutes=5), now=later)

    def test_release_only_by_owner(self, store: Store) -> None:
        store.acquire_lock(REF, "rot-a", ttl=timedelta(minutes=5), now=T0)
        store.release_lock(REF, "rot-b")
        assert store.get_lock(REF, now=T0) is not None
        store.release_lock(REF, "rot-a")
        assert store.get_lock(REF, now=T0) is None
        store.acquire_lock(REF, "rot-b", ttl=timedelta(minutes=5), now=T0)

    def test_generation_grows_with_each_new_owner_never_on_renewal(
        self, store: Store, reopen: Reopen
    ) -> None:
        first = store.acquire_lock(REF, "rot-a", ttl=timedelta(minutes=5), now=T0)
        renewed = store.acquire_lock(REF, "rot-a", ttl=timedelta(minutes=5),
                                     now=T0 + timedelta(minutes=1), generation=first.generation)
        assert renewed.generation == first.generation
        assert renewed.expires_at == T0 + timedelta(minutes=6)
        # rot-a is paused past its lease; rot-b takes over
        other = reopen()
        taken = other.acquire_lock(REF, "rot-b", ttl=timedelta(minutes=5),
                                   now=T0 + timedelta(minutes=7))
        assert taken.generation == first.generation + 1
        with pytest.raises(LeaseLost):  # rot-a wakes up and tries to renew
            store.acquire_lock(REF, "rot-a", ttl=timedelta(minutes=5),
                               now=T0 + timedelta(minutes=8), generation=first.generation)
        assert other.get_lock(REF, now=T0 + timedelta(minutes=8)).owner == "rot-b"  # type: ignore[union-attr]
        other.release_lock(REF, "rot-b")
        again = store.acquire_lock(REF, "rot-a", ttl=timedelta(minutes=5), now=T0)
        assert again.generation == taken.generation + 1  # released: the count goes on

    def test_a_save_fenced_by_a_lost_lease_is_refused(self, store: Store, reopen: Reopen) -> None:
        held = store.acquire_lock(REF, "rot-a", ttl=timedelta(minutes=5), now=T0)
        stale = Fence(REF, held.owner, held.generation)
        created = store.create_rotation(_record())
        moved = RotationRecord(created.id, created.ref, "create", created.revision,
                               created.created_at, T0, {"steps": ["plan"]})
        saved = store.save_rotation(moved, expected_revision=1, fence=stale)
        assert saved.revision == 2
        other = reopen()
        took = other.acquire_lock(REF, "rot-b", ttl=timedelta(minutes=5),
                                  now=T0 + timedelta(minutes=6))
        fresh = Fence(REF, took.owner, took.generation)
        with pytest.raises(LeaseLost):
            store.save_rotation(RotationRecord(saved.id, saved.ref, "apply", saved.revision,
                                               saved.created_at, T0, {"stale": True}),
                                expected_revision=saved.revision, fence=stale)
        assert store.get_rotation("r-1").state == "create"
        done = other.save_rotation(RotationRecord(saved.id, saved.ref, "done", saved.revision,
                                                  saved.created_at, T0, {}),
                                   expected_revision=saved.revision, fence=fresh)
        assert done.state == "done"
        for write in (
            lambda: store.put_version(REF, SecretValue("x" * 32), fence=stale),
            lambda: store.set_labels(REF, expected={}, new={}, fence=stale),
            lambda: store.create_rotation(_record("r-2"), fence=stale),
            lambda: store.audit_append(AuditEntry(1, "{}", "0" * 64, "1" * 64), fence=stale),
            lambda: store.put_meta("settle:r-1", "2026-01-01T00:00:00+00:00", fence=stale),
            lambda: store.put_meta("settle:r-1", None, fence=stale),
        ):
            with pytest.raises(LeaseLost):
                write()
        assert store.list_versions(REF) == [] and store.audit_tail() is None
        assert store.get_meta("settle:r-1") is None
        other.put_meta("settle:r-1", "kept", fence=fresh)  # the lock's holder writes
        with pytest.raises(LeaseLost):
            store.put_meta("settle:r-1", None, fence=stale)
        assert store.get_meta("settle:r-1") == "kept"

    # --- rotations ------------------------------------------------------------------------

    def test_rotation_records_round_trip_with_revisions(self, store: Store) -> None:
        created = store.create_rotation(_record())
        assert created.revision == 1
        with pytest.raises(Conflict):
            store.create_rotation(_record())
        moved = RotationRecord(
            created.id, created.ref, "create", created.revision, created.created_at,
            T0 + timedelta(seconds=3), {"steps": ["plan"], "note": "ü"},
        )
        saved = store.save_rotation(moved, expected_revision=1)
        assert saved.revision == 2
        got = store.get_rotation("r-1")
        assert (got.state, got.revision, dict(got.body)) == (
            "create", 2, {"steps": ["plan"], "note": "ü"},
        )
        assert got.updated_at == T0 + timedelta(seconds=3)
        assert got.ref == REF

    def test_stale_rotation_save_is_refused(self, store: Store, reopen: Reopen) -> None:
        store.create_rotation(_record())
        other = reopen()
        current = other.get_rotation("r-1")
        other.save_rotation(
            RotationRecord(current.id, current.ref, "apply", 1, T0, T0, {}), expected_revision=1
        )
        with pytest.raises(Conflict):
            store.save_rotation(
                RotationRecord(current.id, current.ref, "create", 1, T0, T0, {}),
                expected_revision=1,
            )
        assert store.get_rotation("r-1").state == "apply"

    def test_rotation_lookup_and_listing(self, store: Store) -> None:
        with pytest.raises(NotFound):
            store.get_rotation("nope")
        with pytest.raises(NotFound):
            store.save_rotation(_record("nope"), expected_revision=1)
        store.create_rotation(_record("r-1"))
        store.create_rotation(_record("r-2", OTHER))
        assert [r.id for r in store.list_rotations()] == ["r-1", "r-2"]
        assert [r.id for r in store.list_rotations(OTHER)] == ["r-2"]

    # --- audit ----------------------------------------------------------------------------

    def test_audit_appends_in_sequence(self, store: Store, reopen: Reopen) -> None:
        assert store.audit_tail() is None
        store.audit_append(AuditEntry(1, '{"a":1}', "0" * 64, "h1"))
        store.audit_append(AuditEntry(2, '{"a":2}', "h1", "h2"))
        with pytest.raises(Conflict):
            reopen().audit_append(AuditEntry(2, '{"a":"x"}', "h1", "hx"))
        with pytest.raises(Conflict):
            store.audit_append(AuditEntry(4, '{"a":4}', "h2", "h4"))
        assert [e.seq for e in store.audit_entries()] == [1, 2]
        assert [e.payload for e in store.audit_entries(2)] == ['{"a":2}']
        tail = store.audit_tail()
        assert tail is not None
        assert (tail.seq, tail.hash) == (2, "h2")

    def test_audit_range_reads_cross_batches_and_pages(self, store: Store) -> None:
        journal = Journal(store, actor="contract", clock=lambda: T0)
        for n in range(1, 251):  # three OpenBao pages of 100, and SQLite batches
            journal.append("contract.step", evidence={"n": n})
        assert [e.seq for e in store.audit_entries()] == list(range(1, 251))
        for start, stop in ((1, 2), (99, 102), (100, 101), (101, 201), (200, None),
                            (250, None), (251, None), (7, 7), (9, 3), (0, 3)):
            want = [n for n in range(max(start, 1), 251) if stop is None or n < stop]
            assert [e.seq for e in store.audit_entries(start, stop)] == want, (start, stop)
        tail = store.audit_tail()
        assert tail is not None and tail.seq == 250
        assert [e.hash for e in store.audit_entries(250)] == [tail.hash]
        assert journal.verify().ok and journal.verify().count == 250
        assert store.audit_layout() == "current"
        assert store.audit_migrate() == 0

    def test_two_concurrent_appenders_never_fork_the_chain(
        self, store: Store, reopen: Reopen
    ) -> None:
        """Two writers on their own handles append at once; every record lands once, in one
        chain (each append is a check-and-set on the tail: the loser retries on the new one)."""
        per_writer = 40
        handles = [reopen(), reopen()]
        barrier = threading.Barrier(len(handles), timeout=30)
        failures: list[BaseException] = []

        def write(number: int, handle: Store) -> None:
            journal = Journal(handle, actor=f"writer-{number}", clock=lambda: T0)
            barrier.wait()
            try:
                for n in range(per_writer):
                    journal.append("contract.race", evidence={"writer": number, "n": n})
            except BaseException as exc:  # noqa: BLE001  (reported below)
                failures.append(exc)

        threads = [threading.Thread(target=write, args=(i, h)) for i, h in enumerate(handles)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not failures, failures
        report = Journal(store, actor="check").verify()
        assert report.ok, report.problems
        assert report.count == per_writer * len(handles)
        seen = [(r.actor, r.evidence["n"]) for r in Journal(store, actor="check").records()]
        assert sorted(seen) == sorted((f"writer-{w}", n) for w in range(len(handles))
                                      for n in range(per_writer))

    # --- bookkeeping ----------------------------------------------------------------------

    def test_meta_set_get_delete(self, store: Store) -> None:
        assert store.get_meta("notify:2026-11-22") is None
        store.put_meta("notify:2026-11-22", '{"sent": ["prod/jwt-access"]}')
        assert store.get_meta("notify:2026-11-22") == '{"sent": ["prod/jwt-access"]}'
        store.put_meta("notify:2026-11-22", "{}")
        assert store.get_meta("notify:2026-11-22") == "{}"
        store.put_meta("usage:prod/jwt-access", "{}")
        assert store.list_meta() == ["notify:2026-11-22", "usage:prod/jwt-access"]
        store.put_meta("notify:2026-11-22", None)
        assert store.get_meta("notify:2026-11-22") is None
        assert store.list_meta() == ["usage:prod/jwt-access"]
