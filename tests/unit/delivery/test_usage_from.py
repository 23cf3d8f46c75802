"""Issue 11 §1: the usage-aware overlap fed from a Prometheus scrape of a FileKeySource app
(``overlap.usage_from``), over real HTTP from prometheus-client's own exposition server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta

import pytest

from keyroll.inventory import parse_inventory
from keyroll.model import Label
from keyroll.runtime.filesource import FileKeySource
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.usage import UsageCounter
from tests.kubelet import publish
from tests.unit.conftest import INVENTORY, World

prometheus = pytest.importorskip("prometheus_client")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def metrics_url() -> Iterator[str]:
    from prometheus_client.exposition import start_http_server

    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1")
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_overlap_waits_while_the_scrape_shows_the_old_kid_in_use(
    world: World, metrics_url: str
) -> None:
    overlap = 'overlap = { token_ttl = "15m", margin = "1h", settle = "10m", max = "1d" }'
    text = INVENTORY.replace(overlap, overlap.replace(' }', f', usage_from = "{metrics_url}" }}'))
    world.inventory = parse_inventory(text, world.path / "keyroll.toml")
    ref = world.seed("jwt-access")
    old = world.store.read(ref, Label.CURRENT)
    keys = world.path / "keys"
    publish(keys, {"JWT_SECRET": old[1].reveal(), "JWT_SECRET_KID": old[0].kid_hex})
    source = FileKeySource.jwt_secret(path=keys)
    source.usage = UsageCounter(lambda: world.clock().timestamp())
    ring = JWTKeyRing(source)
    token = ring.sign({"sub": "u"}, ttl=timedelta(hours=2))
    engine = world.engine()
    record = engine.run(engine.start("jwt-access", "dev").id)
    assert record.state == "overlap"
    world.clock.tick(timedelta(minutes=75))
    ring.verify(token)  # the app still sees the old kid, just before the deadline
    world.clock.tick(timedelta(minutes=5))
    engine.advance(start_due=False)
    waiting = engine.get(record.id)
    assert waiting.state == "overlap"
    assert waiting.body.waiting is not None and "used within" in waiting.body.waiting
    world.clock.tick(timedelta(minutes=10))
    engine.advance(start_due=False)
    assert engine.get(record.id).state == "done"


def test_a_failed_scrape_keeps_the_overlap_going(world: World) -> None:
    url = f"http://127.0.0.1:{_free_port()}/metrics"  # nothing listens there
    overlap = 'overlap = { token_ttl = "15m", margin = "1h", settle = "10m", max = "1d" }'
    text = INVENTORY.replace(overlap, overlap.replace(' }', f', usage_from = ["{url}"] }}'))
    world.inventory = parse_inventory(text, world.path / "keyroll.toml")
    world.seed("jwt-access")
    engine = world.engine()
    record = engine.run(engine.start("jwt-access", "dev").id)
    world.clock.tick(timedelta(hours=2))
    engine.advance(start_due=False)
    waiting = engine.get(record.id)
    assert waiting.state == "overlap"
    assert waiting.body.waiting is not None and "cannot read usage" in waiting.body.waiting
    world.clock.tick(timedelta(days=1))
    engine.advance(start_due=False)
    assert engine.get(record.id).state == "done"  # overlap.max still ends it
