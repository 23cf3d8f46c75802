"""A keyroll project (inventory, SQLite store, journal, clock) around real servers, for the
``postgres-role`` and ``redis-acl`` strategy tests: the engine drives the rotation, the test
inspects the servers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keyroll.model import SecretRef, SecretValue
from keyroll.stores.sqlite import SQLiteStore
from tests.world import T0, Clock, World

__all__ = ["T0", "Clock", "EngineWorld", "class_toml", "inventory_text"]


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
class EngineWorld(World):
    """`tests.world.World` for the server strategies: store file ``store.db``, actor ``ops``,
    the engine's waits really sleep (the servers run in real time)."""

    store: SQLiteStore  # type: ignore[assignment]  # narrower than Store: tests reach into it

    @classmethod
    def create(cls, path: Path, text: str, *, real_clock: bool = False) -> EngineWorld:  # type: ignore[override]
        made = World.create(path, text, store_file="store.db", real_clock=real_clock,
                            actor="ops", move_clock_on_sleep=False)
        assert isinstance(made.store, SQLiteStore)
        return cls(made.path, made.store, made.inventory, made.clock, made.key, actor="ops",
                   move_clock_on_sleep=False)

    def seed(self, name: str, value: SecretValue, role: str | None = None) -> SecretRef:
        return self.put_current(SecretRef("dev", name), value, role=role)

    def current(self, name: str) -> tuple[str | None, SecretValue]:
        """(role, value) of the current version."""
        version, value = self.store.read(SecretRef("dev", name))
        role = version.meta.get("role")
        return (str(role) if role else None), value
