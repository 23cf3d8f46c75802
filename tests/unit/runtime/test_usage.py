"""Usage counters and the cross-process usage record the engine reads."""

from __future__ import annotations

import json
import threading

from keyroll.model import Label, SecretRef
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import StoreKeySource
from keyroll.runtime.usage import KidUsage, UsageCounter, merge_usage, read_usage, usage_key
from keyroll.stores.base import Store
from tests.unit.runtime.conftest import FakeClock
from tests.unit.runtime.support import jwt_value, put, rotate


def test_counter_counts_per_kid_and_legacy(clock: FakeClock) -> None:
    usage = UsageCounter(clock)
    usage.record(1)
    clock.advance(10)
    usage.record(1, legacy=True)
    usage.record(2)
    snap = usage.snapshot()
    assert (snap[1].count, snap[1].legacy) == (2, 1)
    assert snap[1].last_seen is not None and snap[1].last_seen.timestamp() == clock.now


def test_counter_is_thread_safe() -> None:
    usage = UsageCounter()
    threads = [threading.Thread(target=lambda: [usage.record(7) for _ in range(2000)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert usage.snapshot()[7].count == 8000


def test_thread_churn_keeps_counts_exact_and_tables_bounded() -> None:
    usage = UsageCounter()
    for _ in range(50):
        t = threading.Thread(target=lambda: [usage.record(3) for _ in range(10)])
        t.start()
        t.join(timeout=30)
    assert usage.snapshot()[3].count == 500
    assert len(usage._tables) <= 3


def test_take_unreported_then_give_back(clock: FakeClock) -> None:
    usage = UsageCounter(clock)
    usage.record(1)
    usage.record(1)
    first = usage.take_unreported()
    assert first[1].count == 2
    assert usage.take_unreported() == {}
    usage.give_back(first)
    usage.record(1)
    assert usage.take_unreported()[1].count == 3


def test_report_usage_writes_the_documented_record(store: Store, ref: SecretRef, clock: FakeClock) -> None:
    v1 = put(store, ref, jwt_value(), Label.CURRENT)
    source = StoreKeySource(store, ref, refresh_interval=5, report_usage=True, clock=clock, wallclock=clock)
    ring = JWTKeyRing(source, clock=clock)
    old_token = ring.sign({"sub": "u", "exp": int(clock.now) + 3600})
    v2 = rotate(store, ref, jwt_value())
    clock.advance(5)
    ring.verify(old_token)
    ring.verify(old_token)
    clock.advance(5)
    source.snapshot()  # refresh → report
    raw = json.loads(store.get_meta(usage_key(ref)) or "{}")
    assert set(raw) == {v1.kid_hex}
    assert raw[v1.kid_hex]["count"] == 2
    assert raw[v1.kid_hex]["last_seen"].endswith("+00:00")
    ring.verify(ring.sign({"exp": int(clock.now) + 60}))
    source.report_now()
    merged = read_usage(store, ref)
    assert merged[v1.kid].count == 2 and merged[v2.kid].count == 1


def test_two_reporters_merge(store: Store, ref: SecretRef) -> None:
    from datetime import datetime

    from keyroll._compat import UTC

    t1 = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
    t2 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
    assert merge_usage(store, ref, {5: KidUsage(3, 0, t1)}) == {}
    assert merge_usage(store, ref, {5: KidUsage(4, 1, t2), 6: KidUsage(1, 0, t1)}) == {}
    usage = read_usage(store, ref)
    assert usage[5] == KidUsage(7, 1, t2)
    assert usage[6].count == 1


def test_lost_write_is_given_back(store: Store, ref: SecretRef) -> None:
    from datetime import datetime

    from keyroll._compat import UTC

    put_meta = store.put_meta

    def racing_put(key: str, value: str | None) -> None:
        put_meta(key, value)
        put_meta(key, "{}")  # another process overwrote us right after

    store.put_meta = racing_put  # type: ignore[method-assign]
    delta = {5: KidUsage(1, 0, datetime(2026, 11, 22, tzinfo=UTC))}
    assert merge_usage(store, ref, delta) == delta


def test_unreadable_record_counts_as_empty(store: Store, ref: SecretRef) -> None:
    store.put_meta(usage_key(ref), "not json")
    assert read_usage(store, ref) == {}
    store.put_meta(usage_key(ref), json.dumps({"zz": {}, "0000000a": {"count": 2}}))
    assert read_usage(store, ref) == {10: KidUsage(2, 0, None)}
