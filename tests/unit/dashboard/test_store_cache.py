"""The dashboard's store view: read-only, nothing kept across requests on a store without
change markers (the local store), and the next page shows a change made through another
handle. The OpenBao side (markers, reuse, max age) is tests/integration/test_dashboard_openbao.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from keyroll.dashboard import create_app
from keyroll.dashboard.store_cache import StoreCache
from keyroll.generate import generate
from keyroll.model import Label, SecretRef
from keyroll.stores.base import AuditEntry, RotationRecord
from keyroll.stores.sqlite import SQLiteStore
from tests.unit.conftest import World
from tests.unit.dashboard.conftest import NOW, TestClient

JWT = SecretRef("dev", "jwt-access")


def test_the_view_refuses_every_write_and_every_value(world: World) -> None:
    world.seed("jwt-access")
    view = StoreCache().view(world.store)
    writes = [
        lambda: view.read_value(JWT, 1),
        lambda: view.put_version(JWT, generate("hex-32")),
        lambda: view.destroy_version(JWT, 1),
        lambda: view.set_labels(JWT, expected={}, new={Label.PENDING: 1}),
        lambda: view.acquire_lock(JWT, "x", ttl=timedelta(minutes=1)),
        lambda: view.release_lock(JWT, "x"),
        lambda: view.create_rotation(RotationRecord("r-1", JWT, "plan", 0, NOW, NOW, {})),
        lambda: view.save_rotation(RotationRecord("r-1", JWT, "plan", 1, NOW, NOW, {}),
                                   expected_revision=1),
        lambda: view.audit_append(AuditEntry(1, "{}", "0" * 64, "0" * 64)),
        lambda: view.audit_migrate(),
        lambda: view.put_meta("k", "v"),
    ]
    for write in writes:
        with pytest.raises(RuntimeError, match="never writes"):
            write()
    assert [v.number for v in world.store.list_versions(JWT)] == [1]
    assert world.store.get_meta("k") is None and world.store.list_rotations() == []


def test_a_store_without_markers_is_read_afresh_every_request(world: World) -> None:
    world.seed("jwt-access")
    cache = StoreCache()
    first = cache.view(world.store)
    assert first.get_labels(JWT) == {Label.CURRENT: 1}
    version = world.store.put_version(JWT, generate("hex-32"))
    world.store.set_labels(JWT, expected={Label.CURRENT: 1}, new={Label.CURRENT: version.number})
    assert first.get_labels(JWT) == {Label.CURRENT: 1}  # one request reads each thing once
    assert cache.view(world.store).get_labels(JWT) == {Label.CURRENT: 2}


def test_the_next_page_shows_a_change_made_through_another_handle(world: World) -> None:
    """One store handle per request, as `keyroll dashboard` opens them; the engine and a
    plain write go through their own handles."""
    world.seed("jwt-access")
    path = world.path / ".keyroll" / "store.db"
    app = create_app(lambda: SQLiteStore(path, world.key), world.inventory, clock=world.clock)
    with TestClient(app, base_url="http://localhost") as client:

        def row(name: str) -> dict[str, object]:
            rows = client.get("/api/status?env=dev").json()["secrets"]
            return next(r for r in rows if r["class"] == name)

        assert (row("jwt-access")["version"], row("jwt-access")["rotation"]) == (1, None)
        engine = world.engine()
        record = engine.start("jwt-access", "dev")
        assert row("jwt-access")["rotation"] == record.id
        assert engine.run(record.id).state == "overlap"
        assert (row("jwt-access")["version"], row("jwt-access")["previous_version"]) == (2, 1)
        with SQLiteStore(path, world.key) as other:
            other.put_version(SecretRef("dev", "webhook"), generate("hex-32"))
            other.set_labels(SecretRef("dev", "webhook"), expected={}, new={Label.CURRENT: 1})
        assert row("webhook")["version"] == 1
        assert "keyroll_secret_version{" in client.get("/metrics").text
