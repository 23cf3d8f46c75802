"""Issue 10 §6: a busy local store during a step pauses the rotation; it never rolls back."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from keyroll.errors import StoreUnavailable
from keyroll.model import Label
from keyroll.stores.sqlite import SQLiteStore
from tests.unit.conftest import World


class ContendedStore(SQLiteStore):
    """A real second connection holds the write lock while `set_labels` runs, once armed."""

    armed = False

    def set_labels(self, *args: Any, **kwargs: Any) -> Any:
        if not self.armed:
            return super().set_labels(*args, **kwargs)
        other = sqlite3.connect(self.path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            return super().set_labels(*args, **kwargs)
        finally:
            other.execute("ROLLBACK")
            other.close()


def test_busy_store_in_a_step_pauses_instead_of_rolling_back(world: World) -> None:
    ref = world.seed("api")
    contended = ContendedStore(world.path / ".keyroll" / "store.db", world.key, busy_timeout=0.05)
    world.store = contended
    engine = world.engine()
    record = engine.start("api", "dev")
    contended.armed = True
    with pytest.raises(StoreUnavailable, match="busy"):
        engine.run(record.id)
    paused = engine.get(record.id)
    assert paused.state == "create"
    assert world.store.get_labels(ref) == {Label.CURRENT: 1}
    contended.armed = False
    assert engine.run(record.id).state == "overlap"
    contended.close()
