"""Shared by the framework tests: the engine's `world`, and a rotation driven to its end."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from keyroll.model import Label, SecretRef
from keyroll.runtime.keysource import StoreKeySource
from tests.unit.conftest import World, world

__all__ = ["full_rotation", "store_source", "world"]


def store_source(world: World, ref: SecretRef) -> StoreKeySource:
    """What an app on the embedded store reads (reloaded on every call, so no waiting)."""
    return StoreKeySource(world.store, ref, refresh_interval=0)


def full_rotation(world: World, name: str, during_overlap: Callable[[], None]) -> None:
    """Rotate ``name`` in dev through plan … retire with the real engine, calling
    ``during_overlap`` once both keys are accepted; assert the old version was destroyed."""
    ref = SecretRef("dev", name)
    engine = world.engine()
    record = engine.run(engine.start(name, "dev").id)
    assert record.state == "overlap"
    assert set(world.store.get_labels(ref)) == {Label.CURRENT, Label.PREVIOUS}
    during_overlap()
    world.clock.tick(timedelta(days=2))
    assert engine.run(record.id).state == "done"
    assert set(world.store.get_labels(ref)) == {Label.CURRENT}
    assert world.store.list_versions(ref)[0].destroyed
