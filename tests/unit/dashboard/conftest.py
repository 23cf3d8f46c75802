"""A store with history (done, in-flight, rolled-back, paused rotations; ok, due, overdue and
missing secrets), every planted value remembered, and the dashboard over it."""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # starlette >= 1.x prefers httpx2 for its test client; the web extra installs httpx, which
    # it still supports (with this one deprecation warning, at import)
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient as TestClient

from keyroll.dashboard import create_app
from keyroll.generate import generate
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.stores.base import Store
from tests.unit.conftest import T0, World

#: The frozen "now" of every assertion: one day after the world's start.
NOW = T0 + timedelta(days=1)


@dataclass
class History:
    world: World
    values: list[str] = field(default_factory=list)
    rotations: dict[str, str] = field(default_factory=dict)

    def plant(self, name: str, env: str, created_at: datetime) -> SecretRef:
        """A current version with a known value, created at a chosen time."""
        ref = SecretRef(env, name)
        cls = self.world.inventory.classes[name]
        if cls.generator is None:  # entered from a provider's portal: any long text
            made = SecretValue(f"planted-{name}-{env}-{secrets.token_urlsafe(24)}")
        else:
            made = generate(cls.generator.value, prefix=cls.prefix)
        value = made.reveal()
        version = self.world.store.put_version(ref, made, created_at=created_at)
        self.world.store.set_labels(ref, expected={}, new={Label.CURRENT: version.number})
        self.values.append(value)
        return ref

    def remember(self, ref: SecretRef) -> None:
        """Read every version's value that still exists (before retire destroys them)."""
        for version in self.world.store.list_versions(ref):
            if not version.destroyed:
                value = self.world.store.read_value(ref, version.number).reveal()
                if value not in self.values:
                    self.values.append(value)


def make_history(world: World) -> History:
    """Drive real rotations on the SQLite store; end with the clock frozen at `NOW`."""
    history = History(world)
    engine = world.engine()

    jwt = history.plant("jwt-access", "dev", T0)
    record = engine.run(engine.start("jwt-access", "dev").id)
    assert record.state == "overlap"
    history.remember(jwt)
    world.clock.tick(timedelta(hours=2))
    assert engine.run(record.id).state == "done"
    history.rotations["done"] = record.id

    staging = history.plant("jwt-access", "staging", T0)
    drill = engine.run(engine.start("jwt-access", "staging").id)
    assert drill.state == "overlap" and drill.body.drill is True
    history.remember(staging)
    history.rotations["drill"] = drill.id

    webhook = history.plant("webhook", "dev", T0)
    overlap = engine.run(engine.start("webhook", "dev").id)
    assert overlap.state == "overlap"
    history.remember(webhook)
    history.rotations["overlap"] = overlap.id

    opaque = history.plant("opaque", "dev", T0)
    at_once = engine.run(engine.start("opaque", "dev").id)
    assert at_once.state == "done"  # no overlap for opaque values: v1 is destroyed already
    history.remember(opaque)
    history.rotations["at-once"] = at_once.id

    api = history.plant("api", "dev", T0 - timedelta(days=100))  # cadence 90: overdue
    rolled = engine.run(engine.start("api", "dev").id)
    history.remember(api)
    # rolled back after promote: a rotation back, the new key accepted through the overlap
    assert engine.rollback(rolled.id).state == "overlap"
    world.clock.tick(timedelta(hours=2))
    assert engine.run(rolled.id).state == "rolled-back"
    history.rotations["rolled-back"] = rolled.id

    history.plant("vnpay", "dev", T0)
    paused = engine.run(engine.start("vnpay", "dev").id)
    assert paused.state == "awaiting-confirmation"
    history.rotations["paused"] = paused.id

    history.plant("field", "dev", T0 - timedelta(days=175))  # cadence 180: due in 4 days
    world.clock.now = NOW
    return history


def client_for(store: Store, world: World) -> TestClient:
    app = create_app(lambda: nullcontext(store), world.inventory, clock=world.clock)
    return TestClient(app, base_url="http://localhost")


@pytest.fixture
def history(world: World) -> History:
    return make_history(world)


@pytest.fixture
def client(history: History) -> Iterator[TestClient]:
    with client_for(history.world.store, history.world) as test_client:
        yield test_client
