"""Run the rotation engine on an OpenBao store (shared by the OpenBao integration tests):
`tests.world.World` around a store the test opened, with the engine tests' inventory."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from keyroll.generate import generate
from keyroll.model import SecretRef
from keyroll.rotation.engine import Engine
from keyroll.stores.base import Store
from tests.unit.conftest import INVENTORY
from tests.world import World

__all__ = ["INVENTORY", "VERIFY_HOOK", "EngineWorld", "finish_overlap"]

#: The jwt-access verify hook line in `INVENTORY`, for tests that replace it.
VERIFY_HOOK = 'hooks.verify = [{ run = "test ! -e verify-fails", environments = ["dev"] }]'


@dataclass
class EngineWorld(World):
    """An engine on ``store`` with the engine tests' inventory, a frozen clock and a workdir
    (the engine's waits really sleep: the server runs in real time)."""

    @classmethod
    def make(cls, store: Store, path: Path, inventory: str = INVENTORY) -> EngineWorld:
        made = World.on_store(store, path, inventory)
        return cls(made.path, made.store, made.inventory, made.clock, move_clock_on_sleep=False)

    def seed(self, name: str = "jwt-access", env: str = "dev") -> SecretRef:
        return self.put_current(SecretRef(env, name), generate("base64-48"))


def finish_overlap(world: EngineWorld, engine: Engine, rotation_id: str) -> str:
    """Move the clock past the jwt-access overlap (15m tokens + 1h margin) and run again."""
    world.clock.tick(timedelta(hours=2))
    return engine.run(rotation_id).state
