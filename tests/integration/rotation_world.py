"""A keyroll project (inventory, SQLite store, journal, clock) around real servers, for the
``postgres-role`` and ``redis-acl`` strategy tests: the engine drives the rotation, the test
inspects the servers."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from keyroll.audit import Journal
from keyroll.inventory import Inventory, parse_inventory
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.rotation.engine import TERMINAL, Engine
from keyroll.rotation.events import Event
from keyroll.stores.base import RotationRecord
from keyroll.stores.sqlite import SQLiteStore

__all__ = ["Clock", "EngineWorld", "class_toml", "inventory_text"]

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def _toml(value: Any) -> str:
    """A TOML value (JSON's string and list syntax is valid TOML for what we write)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(type(value))


def class_toml(name: str, kind: str, env_var: str, options: Mapping[str, Any],
               overlap: Mapping[str, Any], hooks: Mapping[str, Any] | None = None) -> str:
    """One ``[classes.<name>]`` table in environment ``dev``."""
    lines = [
        f"[classes.{name}]", f"kind = {_toml(kind)}", f"env_vars = [{_toml(env_var)}]",
        "cadence_days = 30", 'tier = "high"', 'blast_radius = "test"', 'owner = "test"',
        'environments = ["dev"]', f"overlap = {_toml(overlap)}",
    ]
    for step, items in (hooks or {}).items():
        lines.append(f"hooks.{step} = {_toml(items)}")
    lines.append(f"[classes.{name}.options]")
    lines += [f"{key} = {_toml(value)}" for key, value in options.items()]
    return "\n".join(lines) + "\n"


def inventory_text(*classes: str) -> str:
    return 'project = "t"\n[environments.dev]\n\n' + "\n".join(classes)


@dataclass
class Clock:
    """A clock the test moves (``real=True``: wall time plus the moves)."""

    real: bool = False
    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        base = datetime.now(UTC) if self.real else T0
        return base + self.offset

    def tick(self, delta: timedelta) -> None:
        self.offset += delta


@dataclass
class EngineWorld:
    """A keyroll project in ``path`` with its own store."""

    path: Path
    store: SQLiteStore
    inventory: Inventory
    clock: Clock
    key: bytes
    events: list[Event] = field(default_factory=list)

    @classmethod
    def create(cls, path: Path, text: str, *, real_clock: bool = False) -> EngineWorld:
        (path / "keyroll.toml").write_text(text)
        key = secrets.token_bytes(32)
        store = SQLiteStore(path / "store.db", key)
        inventory = parse_inventory(text, path / "keyroll.toml")
        return cls(path, store, inventory, Clock(real=real_clock), key)

    def engine(self, observers: Sequence[Callable[[Event], None]] = ()) -> Engine:
        journal = Journal(self.store, actor="ops", clock=self.clock)
        return Engine(self.store, self.inventory, journal=journal, clock=self.clock,
                      observers=[self.events.append, *observers], workdir=self.path)

    def seed(self, name: str, value: SecretValue, role: str | None = None) -> SecretRef:
        ref = SecretRef("dev", name)
        meta = {"role": role} if role else {}
        version = self.store.put_version(ref, value, created_at=self.clock(), meta=meta)
        self.store.set_labels(ref, expected={}, new={Label.CURRENT: version.number})
        return ref

    def current(self, name: str) -> tuple[str | None, SecretValue]:
        """(role, value) of the current version."""
        version, value = self.store.read(SecretRef("dev", name))
        role = version.meta.get("role")
        return (str(role) if role else None), value

    def rotate(self, name: str, *, incident: bool = False, tick: timedelta = timedelta(hours=1),
               engine: Engine | None = None, max_ticks: int = 20) -> RotationRecord:
        """Start and drive a rotation to its end, moving the clock over each overlap wait."""
        engine = engine or self.engine()
        record = engine.start(name, "dev", incident=incident)
        return self.finish(record.id, engine=engine, tick=tick, max_ticks=max_ticks)

    def finish(self, rotation_id: str, *, engine: Engine | None = None,
               tick: timedelta = timedelta(hours=1), max_ticks: int = 20) -> RotationRecord:
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
