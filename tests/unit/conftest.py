"""The ``world`` fixture: the engine tests' inventory around `tests.world.World` (a real
SQLite store and a movable clock)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from keyroll.generate import generate
from keyroll.model import SecretRef, SecretValue
from keyroll.stores.sqlite import SQLiteStore
from tests.world import T0, Clock
from tests.world import World as EngineWorld

__all__ = ["INVENTORY", "T0", "Clock", "World", "world"]

INVENTORY = """
project = "test"
[environments.dev]
[environments.staging]
drill = true
[environments.prod]
approvals = 2
production = true

[classes.jwt-access]
kind = "jwt-signing"
env_vars = ["JWT_SECRET"]
cadence_days = 90
tier = "medium"
blast_radius = "sessions"
owner = "auth"
environments = ["dev", "staging", "prod"]
overlap = { token_ttl = "15m", margin = "1h", settle = "10m", max = "1d" }
hooks.on_promote = [{ write_dotenv = "app.env" }]
hooks.verify = [{ run = "test ! -e verify-fails", environments = ["dev"] }]
hooks.revoke = [{ run = "touch revoked-sessions" }]

[classes.webhook]
kind = "webhook-hmac"
env_vars = ["WEBHOOK_SECRET"]
cadence_days = 90
tier = "high"
blast_radius = "partners"
owner = "payments"
environments = ["dev"]
prefix = "whsec_"
generator = "key-32"
overlap = { min = "1h" }

[classes.api]
kind = "api-key"
env_vars = ["API_KEY"]
cadence_days = 90
tier = "medium"
blast_radius = "x"
owner = "y"
environments = ["dev"]
overlap = { min = "1h" }

[classes.opaque]
kind = "opaque"
env_vars = ["OPAQUE_TOKEN"]
cadence_days = 30
tier = "low"
blast_radius = "x"
owner = "y"
environments = ["dev"]

[classes.field]
kind = "encryption-key"
env_vars = ["FIELD_ENCRYPTION_KEY"]
cadence_days = 180
tier = "high"
blast_radius = "pii"
owner = "security"
environments = ["dev"]
overlap = { min = "1h" }
hooks.remaining = [{ run = "cat remaining.txt" }]

[classes.vnpay]
kind = "provider-shared"
env_vars = ["VNPAY_HASH_SECRET"]
cadence_days = 90
tier = "high"
blast_radius = "checkout"
owner = "payments"
environments = ["dev", "prod"]
options = { provider = "vnpay", retry_window = "24h" }
"""


@dataclass
class World(EngineWorld):
    """The engine world of the unit tests (SQLite store; the engine's waits move the clock)."""

    store: SQLiteStore  # type: ignore[assignment]  # narrower than Store: tests reach into it

    def seed(self, name: str, env: str = "dev", value: str | None = None) -> SecretRef:
        cls = self.inventory.classes[name]
        fmt = cls.generator.value if cls.generator else "base64-48"
        made = generate(fmt, prefix=cls.prefix) if value is None else SecretValue(value)
        return self.put_current(SecretRef(env, name), made)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    created = EngineWorld.create(tmp_path, INVENTORY)
    assert isinstance(created.store, SQLiteStore)
    with created.store as store:
        yield World(tmp_path, store, created.inventory, created.clock, created.key)
