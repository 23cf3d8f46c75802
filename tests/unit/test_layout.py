"""One naming truth: every layout exported by keyroll reads back with the matching source."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from keyroll.errors import InventoryError, UsageError
from keyroll.inventory import parse_inventory
from keyroll.layout import LAYOUTS, check_layout, layout_mismatch
from keyroll.model import Label
from keyroll.render import collect, render
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import EnvKeySource, StoreKeySource
from keyroll.stores.sqlite import SQLiteStore
from tests.unit.conftest import Clock, World

#: layout → the variable the inventory lists, and what the export must contain
CASES = {
    "suffix": ("JWT_SECRET", {"JWT_SECRET", "JWT_SECRET_KID", "JWT_SECRET_PREVIOUS",
                              "JWT_SECRET_PREVIOUS_KID"}),
    "seed-004": ("JWT_SECRET", {"JWT_SECRET", "JWT_SECRET_KID", "JWT_SECRET_PREVIOUS",
                                "JWT_SECRET_PREVIOUS_KID"}),
    "seed-003": ("JWT_SECRET_KEY_CURRENT", {"JWT_SECRET_KEY_CURRENT", "JWT_SECRET_KEY_CURRENT_KID",
                                            "JWT_SECRET_KEY_PREVIOUS", "JWT_SECRET_KEY_PREVIOUS_KID"}),
    "seed-001": ("SECRET_KEY", {"SECRET_KEY", "SECRET_KEY_KID", "OLD_SECRET_KEYS",
                                "OLD_SECRET_KEYS_KIDS"}),
}


def _inventory(var: str, layout: str) -> str:
    return f"""
[environments.dev]
[classes.app-key]
kind = "jwt-signing"
env_vars = ["{var}"]
layout = "{layout}"
cadence_days = 30
tier = "high"
blast_radius = "sessions"
owner = "auth"
environments = ["dev"]
overlap = {{ token_ttl = "15m", margin = "1h" }}
"""


@pytest.fixture(params=sorted(LAYOUTS))
def layout_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, World]]:
    layout = str(request.param)
    text = _inventory(CASES[layout][0], layout)
    (tmp_path / "keyroll.toml").write_text(text)
    key = secrets.token_bytes(32)
    inventory = parse_inventory(text, tmp_path / "keyroll.toml")
    with SQLiteStore(tmp_path / ".keyroll" / "store.db", key) as store:
        yield layout, World(tmp_path, store, inventory, Clock(), key)


def test_every_layout_round_trips_through_export(layout_world: tuple[str, World]) -> None:
    layout, world = layout_world
    var, expected = CASES[layout]
    ref = world.seed("app-key")
    store_ring = JWTKeyRing(StoreKeySource(world.store, ref, refresh_interval=0),
                            clock=lambda: world.clock().timestamp())
    old_token = store_ring.sign({"sub": "u1"}, ttl=timedelta(minutes=15))
    engine = world.engine()
    assert engine.run(engine.start("app-key", "dev").id).state == "overlap"

    exported = json.loads(render(collect(world.store, world.inventory, "dev"), "json"))
    assert set(exported) == expected
    source = EnvKeySource.from_layout(var, layout, environ=exported, derive_kids=False)
    keys = source.snapshot()
    versions = {v.number: v for v in world.store.list_versions(ref)}
    labels = world.store.get_labels(ref)
    assert keys.current.kid_hex == versions[labels[Label.CURRENT]].kid_hex
    assert [k.kid_hex for k in keys.keys[1:]] == [versions[labels[Label.PREVIOUS]].kid_hex]
    ring = JWTKeyRing(source, clock=lambda: world.clock().timestamp())
    assert ring.verify(old_token)["sub"] == "u1"  # signed by what is now the previous key
    new_token = ring.sign({"sub": "u2"}, ttl=timedelta(minutes=15))
    assert store_ring.verify_with_kid(new_token)[1] == keys.current.kid


#: Every (written, read) pairing whose writer can spell the reader's variable (seed-003 names
#: must end in ``_CURRENT``, so a seed-003 writer cannot write the other layouts' names).
PAIRINGS = [(w, r) for w in sorted(LAYOUTS) for r in sorted(LAYOUTS)
            if check_layout(w).problem(CASES[r][0]) is None]


@pytest.mark.parametrize(("written", "read"), PAIRINGS)
def test_a_reader_of_another_layout_refuses_at_startup(written: str, read: str) -> None:
    var = CASES[read][0]
    names_w, names_r = check_layout(written).names(var), check_layout(read).names(var)
    a, b = secrets.token_urlsafe(40), secrets.token_urlsafe(40)
    env = {names_w.current: a, names_w.previous: b}
    if names_w.previous == names_r.previous:
        assert EnvKeySource.from_layout(var, read, environ=env).snapshot().keys[1].label \
            is Label.PREVIOUS
        return
    with pytest.raises(UsageError) as caught:
        EnvKeySource.from_layout(var, read, environ=env)
    message = str(caught.value)
    assert names_w.previous in message and "layout" in message
    assert a not in message and b not in message


def test_the_issue_13_mismatches_are_named() -> None:
    key, old = secrets.token_urlsafe(40), secrets.token_urlsafe(40)
    with pytest.raises(UsageError, match="SECRET_KEY_PREVIOUS is set"):
        EnvKeySource.secret_key(environ={"SECRET_KEY": key, "SECRET_KEY_PREVIOUS": old})
    with pytest.raises(UsageError, match="JWT_SECRET_KEY_CURRENT_PREVIOUS is set"):
        EnvKeySource.jwt_secret_key(environ={"JWT_SECRET_KEY_CURRENT": key,
                                             "JWT_SECRET_KEY_CURRENT_PREVIOUS": old})
    # one key alone is no mismatch
    assert layout_mismatch(check_layout("seed-001"), "SECRET_KEY", {"SECRET_KEY": key}) is None


def test_the_inventory_refuses_unknown_layouts_and_misfit_names(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="unknown layout 'seed-9'"):
        parse_inventory(_inventory("JWT_SECRET", "seed-9"), tmp_path / "keyroll.toml")
    with pytest.raises(InventoryError, match="_CURRENT"):
        parse_inventory(_inventory("JWT_SECRET", "seed-003"), tmp_path / "keyroll.toml")
    with pytest.raises(UsageError, match="unknown layout"):
        EnvKeySource.from_layout("JWT_SECRET", "nope", environ={})
