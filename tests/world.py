"""The one engine test world: a keyroll project (folder, keyroll.toml, store, journal) with a
clock the test moves, and the helpers every engine test shares.

`World` runs the rotation engine on any `Store` (SQLite by default, OpenBao through
`World.on_store`). The fixtures that used to build their own worlds are thin layers over it:
``tests/unit/conftest.py`` (the ``world`` fixture and its inventory), ``tests/integration/
rotation_world.py`` (real servers), ``tests/openbao_engine.py`` (an OpenBao store) and
``tests/reencrypt_world.py`` (an application table). Also here: the one test clock (`Clock`
for datetimes, `SecondsClock` for monotonic or epoch seconds); the one `free_port` is in
``tests/servers.py``, beside the servers that need it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from keyroll.audit import Journal
from keyroll.inventory import Inventory, parse_inventory
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.rotation.engine import TERMINAL, Engine
from keyroll.rotation.events import Event
from keyroll.stores.base import RotationRecord, Store
from keyroll.stores.sqlite import SQLiteStore
from tests.clocks import T0, Clock, SecondsClock

__all__ = ["T0", "Clock", "SecondsClock", "World"]

@dataclass
class World:
    """A keyroll project in ``path``: its inventory, its store, a clock and the events seen.

    ``sleep`` is what the engine's waits do: move the frozen clock (the default for frozen
    clocks) or really sleep (None: the engine's own default).
    """

    path: Path
    store: Store
    inventory: Inventory
    clock: Clock
    key: bytes = b""
    events: list[Event] = field(default_factory=list)
    actor: str = "alice"
    move_clock_on_sleep: bool = True

    @classmethod
    def create(cls, path: Path, text: str, *, store_file: str = ".keyroll/store.db",
               real_clock: bool = False, actor: str = "alice",
               move_clock_on_sleep: bool = True) -> World:
        """A project with ``text`` as keyroll.toml and a fresh SQLite store."""
        (path / "keyroll.toml").write_text(text)
        key = secrets.token_bytes(32)
        store = SQLiteStore(path / store_file, key)
        inventory = parse_inventory(text, path / "keyroll.toml")
        return cls(path, store, inventory, Clock(real=real_clock), key, actor=actor,
                   move_clock_on_sleep=move_clock_on_sleep)

    @classmethod
    def on_store(cls, store: Store, path: Path, text: str, *, actor: str = "alice",
                 move_clock_on_sleep: bool = True) -> World:
        """A project with ``text`` as keyroll.toml around a store the caller opened."""
        (path / "keyroll.toml").write_text(text)
        return cls(path, store, parse_inventory(text, path / "keyroll.toml"), Clock(),
                   actor=actor, move_clock_on_sleep=move_clock_on_sleep)

    def reload(self, text: str) -> Inventory:
        """Replace keyroll.toml (and the parsed inventory) with ``text``."""
        (self.path / "keyroll.toml").write_text(text)
        self.inventory = parse_inventory(text, self.path / "keyroll.toml")
        return self.inventory

    def engine(self, actor: str | None = None,
               observers: Sequence[Callable[[Event], None]] = ()) -> Engine:
        journal = Journal(self.store, actor=actor or self.actor, clock=self.clock)
        sleep = (lambda seconds: self.clock.tick(timedelta(seconds=seconds))) \
            if self.move_clock_on_sleep and not self.clock.real else None
        extra = {"sleep": sleep} if sleep is not None else {}
        return Engine(self.store, self.inventory, journal=journal, clock=self.clock,
                      observers=[self.events.append, *observers], workdir=self.path, **extra)

    def put_current(self, ref: SecretRef, value: SecretValue, *, role: str | None = None
                    ) -> SecretRef:
        """Store ``value`` as a new version of ``ref`` and label it current."""
        meta = {"role": role} if role else {}
        version = self.store.put_version(ref, value, created_at=self.clock(), meta=meta)
        self.store.set_labels(ref, expected={}, new={Label.CURRENT: version.number})
        return ref

    def rotate(self, name: str, env: str = "dev", *, incident: bool = False,
               tick: timedelta = timedelta(hours=1), engine: Engine | None = None,
               max_ticks: int = 20) -> RotationRecord:
        """Start and drive a rotation to its end, moving the clock over each overlap wait."""
        engine = engine or self.engine()
        record = engine.start(name, env, incident=incident)
        return self.finish(record.id, engine=engine, tick=tick, max_ticks=max_ticks)

    def finish(self, rotation_id: str, *, engine: Engine | None = None,
               tick: timedelta = timedelta(hours=1), max_ticks: int = 20) -> RotationRecord:
        """Run a rotation until it ends, moving the clock by ``tick`` over each overlap wait."""
        engine = engine or self.engine()
        for _ in range(max_ticks):
            record = engine.run(rotation_id)
            if record.state in TERMINAL:
                return record
            assert record.state == "overlap", record.state
            self.clock.tick(tick)
        raise AssertionError(f"rotation {rotation_id} did not end within {max_ticks} ticks")

    def journal_text(self) -> str:
        return "\n".join(entry.payload for entry in self.store.audit_entries())

    def records_text(self) -> str:
        return "\n".join(json.dumps(r.body, default=str) for r in self.store.list_rotations())

    def close(self) -> None:
        self.store.close()
