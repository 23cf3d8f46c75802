"""A small real inventory, a real SQLite store and a movable clock for engine tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyroll.audit import Journal
from keyroll.generate import generate
from keyroll.inventory import Inventory, parse_inventory
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.rotation.engine import Engine
from keyroll.rotation.events import Event
from keyroll.stores.sqlite import SQLiteStore

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

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def tick(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class World:
    path: Path
    store: SQLiteStore
    inventory: Inventory
    clock: Clock
    key: bytes
    events: list[Event] = field(default_factory=list)

    def engine(self, actor: str = "alice") -> Engine:
        journal = Journal(self.store, actor=actor, clock=self.clock)
        return Engine(self.store, self.inventory, journal=journal, clock=self.clock,
                      observers=[self.events.append], workdir=self.path,
                      sleep=lambda seconds: self.clock.tick(timedelta(seconds=seconds)))

    def seed(self, name: str, env: str = "dev", value: str | None = None) -> SecretRef:
        cls = self.inventory.classes[name]
        ref = SecretRef(env, name)
        fmt = cls.generator.value if cls.generator else "base64-48"
        made = generate(fmt, prefix=cls.prefix) if value is None else SecretValue(value)
        version = self.store.put_version(ref, made, created_at=self.clock())
        self.store.set_labels(ref, expected={}, new={Label.CURRENT: version.number})
        return ref


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    (tmp_path / "keyroll.toml").write_text(INVENTORY)
    key = secrets.token_bytes(32)
    inventory = parse_inventory(INVENTORY, tmp_path / "keyroll.toml")
    with SQLiteStore(tmp_path / ".keyroll" / "store.db", key) as store:
        yield World(tmp_path, store, inventory, Clock(), key)
