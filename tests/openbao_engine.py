"""Run the rotation engine on an OpenBao store (shared by the OpenBao integration tests)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from keyroll.audit import Journal
from keyroll.generate import generate
from keyroll.inventory import parse_inventory
from keyroll.model import Label, SecretRef
from keyroll.rotation.engine import Engine
from keyroll.stores.base import Store
from tests.unit.conftest import INVENTORY, Clock

__all__ = ["INVENTORY", "VERIFY_HOOK", "EngineWorld", "finish_overlap"]

#: The jwt-access verify hook line in `INVENTORY`, for tests that replace it.
VERIFY_HOOK = 'hooks.verify = [{ run = "test ! -e verify-fails", environments = ["dev"] }]'



@dataclass
class EngineWorld:
    """An engine on ``store`` with the engine tests' inventory, a frozen clock and a workdir."""

    store: Store
    path: Path
    clock: Clock

    inventory: str = INVENTORY

    @classmethod
    def make(cls, store: Store, path: Path, inventory: str = INVENTORY) -> EngineWorld:
        (path / "keyroll.toml").write_text(inventory)
        return cls(store, path, Clock(), inventory)

    def engine(self) -> Engine:
        inventory = parse_inventory(self.inventory, self.path / "keyroll.toml")
        journal = Journal(self.store, actor="alice", clock=self.clock)
        return Engine(self.store, inventory, journal=journal, clock=self.clock, workdir=self.path)

    def seed(self, name: str = "jwt-access", env: str = "dev") -> SecretRef:
        ref = SecretRef(env, name)
        version = self.store.put_version(ref, generate("base64-48"), created_at=self.clock())
        self.store.set_labels(ref, expected={}, new={Label.CURRENT: version.number})
        return ref


def finish_overlap(world: EngineWorld, engine: Engine, rotation_id: str) -> str:
    """Move the clock past the jwt-access overlap (15m tokens + 1h margin) and run again."""
    world.clock.tick(timedelta(hours=2))
    return engine.run(rotation_id).state
