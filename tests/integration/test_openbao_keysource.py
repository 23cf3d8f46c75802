"""The runtime key source reads from OpenBao exactly as from the local store.

The same scenarios run on both backends (parametrized): a `StoreKeySource` with a refresh
interval picks up a rotation made by *another* store handle (another process or machine) only
once the interval has passed, JWTs signed before the rotation still verify by the previous
kid, usage counters reach the store, and an OpenBao outage keeps the last keys in service.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from keyroll.generate import generate
from keyroll.model import Label, SecretRef, SecretValue, Version
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import StoreKeySource
from keyroll.runtime.usage import read_usage
from keyroll.stores.base import Store
from keyroll.stores.openbao import OpenBaoStore
from keyroll.stores.sqlite import SQLiteStore
from tests.openbao_fixtures import bao_dev as bao_dev
from tests.openbao_fixtures import bao_store_factory as bao_store_factory
from tests.openbao_server import DevServer
from tests.world import SecondsClock

pytestmark = pytest.mark.integration

REF = SecretRef("prod", "jwt-access")
TTL = timedelta(minutes=15)
Pair = tuple[Store, Store]  # (the app's handle, the rotator's handle) on the same data


@pytest.fixture(params=["sqlite", "openbao"])
def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Pair]:
    if request.param == "sqlite":
        key = secrets.token_bytes(32)
        app, rotator = SQLiteStore(tmp_path / "s.db", key), SQLiteStore(tmp_path / "s.db", key)
        yield app, rotator
        app.close()
        rotator.close()
    else:
        factory: Callable[..., OpenBaoStore] = request.getfixturevalue("bao_store_factory")
        yield factory(), factory()


def _put(store: Store, value: SecretValue, label: Label) -> Version:
    version = store.put_version(REF, value)
    store.set_labels(REF, expected={}, new={label: version.number})
    return version


def _rotate(store: Store, value: SecretValue) -> Version:
    labels = store.get_labels(REF)
    version = store.put_version(REF, value)
    store.set_labels(REF, expected={Label.PENDING: None}, new={Label.PENDING: version.number})
    store.set_labels(
        REF,
        expected={Label.CURRENT: labels[Label.CURRENT], Label.PENDING: version.number},
        new={Label.CURRENT: version.number, Label.PREVIOUS: labels[Label.CURRENT],
             Label.PENDING: None},
    )
    return version


def test_rotation_reaches_the_app_after_the_refresh_interval(stores: Pair) -> None:
    app, rotator = stores
    clock = SecondsClock(1000.0)
    v1 = _put(rotator, generate("base64-48"), Label.CURRENT)
    source = StoreKeySource(app, REF, refresh_interval=30, clock=clock)
    ring = JWTKeyRing(source)
    old_token = ring.sign({"sub": "u1"}, ttl=TTL)
    assert ring.current_kid == v1.kid

    v2 = _rotate(rotator, generate("base64-48"))
    clock.now += 29
    assert ring.current_kid == v1.kid  # not before the interval
    clock.now += 2
    assert ring.current_kid == v2.kid
    keys = source.snapshot()
    assert [(k.kid, k.label) for k in keys.keys] == [
        (v2.kid, Label.CURRENT), (v1.kid, Label.PREVIOUS),
    ]
    assert ring.verify(old_token)["sub"] == "u1"  # still accepted through the overlap
    new_token = ring.sign({"sub": "u2"}, ttl=TTL)
    assert ring.verify_with_kid(new_token)[1] == v2.kid


def test_usage_counters_reach_the_store(stores: Pair) -> None:
    app, rotator = stores
    clock = SecondsClock(1000.0)
    v1 = _put(rotator, generate("base64-48"), Label.CURRENT)
    source = StoreKeySource(app, REF, refresh_interval=10, clock=clock, report_usage=True)
    ring = JWTKeyRing(source)
    for _ in range(3):
        ring.verify(ring.sign({"sub": "u"}, ttl=TTL))
    source.report_now()
    usage = read_usage(rotator, REF)
    assert usage[v1.kid].count == 3


def test_openbao_outage_keeps_the_last_keys() -> None:
    server = DevServer().start()
    try:
        url = f"openbao://{server.addr.removeprefix('http://')}/secret?prefix=outage"
        store = OpenBaoStore.from_url(url, environ={"BAO_TOKEN": server.token})
        v1 = _put(store, generate("base64-48"), Label.CURRENT)
        clock = SecondsClock(1000.0)
        source = StoreKeySource(store, REF, refresh_interval=5, clock=clock)
        ring = JWTKeyRing(source)
        token = ring.sign({"sub": "u"}, ttl=TTL)
        server.stop()
        clock.now += 60
        assert ring.current_kid == v1.kid
        assert ring.verify(token)["sub"] == "u"
        store.close()
    finally:
        server.stop()
