"""Issue 11 §4: the kv_delivery hook on a real OpenBao dev server: the KV v2 entry an
ExternalSecret (``dataFrom.extract``) would sync is right at every step of a rotation."""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any

import pytest

from keyroll.audit import Journal
from keyroll.inventory import parse_inventory
from keyroll.model import Label
from keyroll.rotation.engine import Engine
from keyroll.rotation.events import Event
from keyroll.targets.kv import connect, read_layout
from tests.leaks import assert_no_leak
from tests.openbao_fixtures import bao_dev
from tests.openbao_server import DevServer
from tests.unit.conftest import INVENTORY, World, world

__all__ = ["bao_dev", "world"]


def meta_of(client: Any, app: str) -> Any:
    return client.secrets.kv.v2.read_secret_metadata(path=f"{app}/dev", mount_point="secret")

pytestmark = pytest.mark.integration


def test_entry_follows_every_step(world: World, bao_dev: DevServer,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAO_ADDR", bao_dev.addr)
    monkeypatch.setenv("BAO_TOKEN", bao_dev.token)
    app = f"app-{secrets.token_hex(4)}"
    hook = (f'hooks.on_promote = [{{ kv_delivery = {{ mount = "secret", path = "{app}/{{env}}", '
            'classes = ["jwt-access"] } }]')
    text = INVENTORY.replace('hooks.on_promote = [{ write_dotenv = "app.env" }]', hook)
    world.inventory = parse_inventory(text, world.path / "keyroll.toml")
    ref = world.seed("jwt-access")
    client = connect(None, None)
    seen: dict[str, dict[str, str]] = {}
    events: list[Event] = []

    def observe(event: Event) -> None:
        events.append(event)
        if event.kind == "step.finished" and event.step in ("apply", "promote", "retire"):
            seen[str(event.step)] = read_layout(client, "secret", f"{app}/dev")

    engine = Engine(world.store, world.inventory,
                    journal=Journal(world.store, actor="alice", clock=world.clock),
                    clock=world.clock, observers=[observe], workdir=world.path,
                    sleep=lambda s: world.clock.tick(timedelta(seconds=s)))
    old = world.store.get_version(ref, world.store.get_labels(ref)[Label.CURRENT])
    record = engine.run(engine.start("jwt-access", "dev").id)
    assert record.state == "overlap"
    new = world.store.get_version(ref, world.store.get_labels(ref)[Label.CURRENT])
    world.clock.tick(timedelta(days=2))
    engine.advance(start_due=False)
    assert engine.get(record.id).state == "done"
    new_value = world.store.read_value(ref, new.number).reveal()
    assert world.store.get_version(ref, old.number).destroyed
    # apply: the current key signs, the new one is staged as _NEXT (accepted, not signing)
    assert seen["apply"]["JWT_SECRET_KID"] == old.kid_hex
    assert seen["apply"]["JWT_SECRET_NEXT"] == new_value
    assert seen["apply"]["JWT_SECRET_NEXT_KID"] == new.kid_hex
    assert "JWT_SECRET_PREVIOUS" not in seen["apply"]
    # promote: the overlap holds current and previous
    assert seen["promote"]["JWT_SECRET"] == new_value
    assert seen["promote"]["JWT_SECRET_KID"] == new.kid_hex
    assert seen["promote"]["JWT_SECRET_PREVIOUS_KID"] == old.kid_hex
    assert seen["promote"]["JWT_SECRET_PREVIOUS"] == seen["apply"]["JWT_SECRET"]
    assert "JWT_SECRET_NEXT" not in seen["promote"]
    # retire: only the current key is left
    assert seen["retire"] == {"JWT_SECRET": new_value, "JWT_SECRET_KID": new.kid_hex}
    shown = json.dumps([[e.message, e.evidence] for e in events], default=str)
    assert_no_leak([shown, json.dumps(meta_of(client, app))],
                   [new_value, seen["apply"]["JWT_SECRET"]], where="events and KV metadata")
    meta = client.secrets.kv.v2.read_secret_metadata(path=f"{app}/dev", mount_point="secret")
    assert meta["data"]["custom_metadata"]["keyroll-rotation"] == record.id
    client.adapter.close()
