"""Many threads verify while the store rotates under them: no failure, no torn key set."""

from __future__ import annotations

import threading

from keyroll.errors import InvalidToken
from keyroll.model import Label, SecretRef
from keyroll.runtime.fields import FieldCipher
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import StoreKeySource
from keyroll.stores.base import Store
from tests.unit.runtime.conftest import FakeClock
from tests.unit.runtime.support import field_value, jwt_value, promote, put

WORKERS = 4
ROUNDS = 300


def test_rotation_under_concurrent_verification(store: Store, ref: SecretRef, clock: FakeClock) -> None:
    put(store, ref, jwt_value(), Label.CURRENT)
    field_ref = SecretRef("prod", "field-encryption")
    put(store, field_ref, field_value(), Label.CURRENT)
    ring = JWTKeyRing(StoreKeySource(store, ref, refresh_interval=5, clock=clock), clock=clock)
    cipher = FieldCipher(StoreKeySource(store, field_ref, refresh_interval=5, clock=clock))
    old_token = ring.sign({"sub": "old", "exp": int(clock.now) + 10_000})
    old_blob = cipher.encrypt(b"old", context="c")
    failures: list[str] = []
    start = threading.Barrier(WORKERS + 1)

    def work() -> None:
        start.wait(timeout=30)
        for _ in range(ROUNDS):
            try:
                token = ring.sign({"sub": "w", "exp": int(clock.now) + 10_000})
                ring.verify(token)
                ring.verify(old_token)
                blob = cipher.encrypt(b"new", context="c")
                assert cipher.decrypt(blob, context="c") == b"new"
                assert cipher.decrypt(old_blob, context="c") == b"old"
            except (InvalidToken, AssertionError) as exc:
                failures.append(type(exc).__name__)

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    start.wait(timeout=30)
    for target in (ref, field_ref):  # the engine: create pending, wait an interval, promote
        value = jwt_value() if target is ref else field_value()
        version = store.put_version(target, value)
        store.set_labels(target, expected={Label.PENDING: None}, new={Label.PENDING: version.number})
    clock.advance(5)
    promote(store, ref)
    promote(store, field_ref)
    clock.advance(5)
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert ring.current_kid == store.get_version(ref, store.get_labels(ref)[Label.CURRENT]).kid
