"""The dashboard on a real OpenBao keeps the secrets' state between requests, and the next page
still shows any change made elsewhere: by the engine on its own connection, by the CLI, by an
app reporting usage. What it kept is re-read when the store's change markers move, and after
`MAX_AGE_SECONDS` whatever they say (a write made by hand in OpenBao moves no marker)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from keyroll.cli.app import run
from keyroll.dashboard import create_app
from keyroll.dashboard.store_cache import MAX_AGE_SECONDS, StoreCache
from keyroll.model import Label, SecretRef
from keyroll.runtime.usage import KidUsage, merge_usage
from keyroll.stores.openbao import OpenBaoStore
from tests.openbao_engine import INVENTORY, EngineWorld
from tests.openbao_fixtures import bao_dev as bao_dev
from tests.openbao_fixtures import bao_store_factory as bao_store_factory
from tests.openbao_server import DevServer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

Factory = Callable[..., OpenBaoStore]
JWT = SecretRef("dev", "jwt-access")


def _url(bao: DevServer, store: OpenBaoStore) -> str:
    return f"openbao://{bao.addr.removeprefix('http://')}/secret?prefix={store.prefix}"


def _row(client: TestClient, name: str, env: str = "dev") -> dict[str, Any]:
    rows = client.get(f"/api/status?env={env}").json()["secrets"]
    found = [r for r in rows if r["class"] == name]
    if found:
        return dict(found[0])
    page = client.get(f"/api/status?env={env}&state=missing").json()["secrets"]
    return dict(next(r for r in page if r["class"] == name))


def _metric(client: TestClient, line_start: str) -> str:
    lines = [line for line in client.get("/metrics").text.splitlines()
             if line.startswith(line_start)]
    assert len(lines) == 1, (line_start, lines)
    return lines[0].rsplit(" ", 1)[1]


def test_the_next_page_shows_every_change_made_elsewhere(
    bao_dev: DevServer, bao_store_factory: Factory, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    root = bao_store_factory()
    url = _url(bao_dev, root)
    world = EngineWorld.make(root, tmp_path)
    world.seed()  # jwt-access in dev, version 1
    env = {"BAO_TOKEN": bao_dev.token}
    app = create_app(lambda: OpenBaoStore.from_url(url, environ=env), world.inventory,
                     clock=world.clock)
    with TestClient(app, base_url="http://localhost") as client:
        first = _row(client, "jwt-access")
        assert (first["version"], first["rotation"]) == (1, None)
        assert _row(client, "webhook")["state"] == "missing"
        assert client.get("/api/rotations").json()["rotations"] == []
        assert _metric(client, 'keyroll_secret_version{class="jwt-access",environment="dev"'
                       ) == "1.0"
        assert _row(client, "jwt-access") == first  # unchanged: answered from what was read

        # the engine, on its own connection, starts a rotation and runs it to its overlap
        other = OpenBaoStore.from_url(url, environ=env)
        try:
            engine = EngineWorld.make(other, tmp_path).engine()
            record = engine.start("jwt-access", "dev")
            started = _row(client, "jwt-access")
            assert (started["rotation"], started["version"]) == (record.id, 1)
            assert [r["id"] for r in client.get("/api/rotations?active=true").json()[
                "rotations"]] == [record.id]
            assert engine.run(record.id).state == "overlap"
        finally:
            other.close()
        moved = _row(client, "jwt-access")
        assert (moved["version"], moved["previous_version"]) == (2, 1)
        assert moved["rotation_state"] == "overlap"
        detail = client.get("/api/secrets/dev/jwt-access").json()
        assert [v["number"] for v in detail["versions"]] == [2, 1]
        assert detail["labels"] == {"current": 2, "previous": 1}
        assert _metric(client, 'keyroll_secret_version{class="jwt-access",environment="dev"'
                       ) == "2.0"

        # the CLI (its own store handle, from keyroll.toml) creates a missing secret
        (tmp_path / "keyroll.toml").write_text(INVENTORY.replace(
            'project = "test"\n', f'project = "test"\n[store]\nurl = "{url}"\n', 1))
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("BAO_TOKEN", bao_dev.token)
        for var in ("KEYROLL_STORE", "KEYROLL_CONFIG", "KEYROLL_NOW"):
            monkeypatch.delenv(var, raising=False)
        code = run(["generate", "webhook", "--env", "dev"])
        assert code == 0, capsys.readouterr().err
        made = _row(client, "webhook")
        assert (made["version"], made["state"]) == (1, "ok")

        # an app reports usage (bookkeeping only: the other marker)
        kid = detail["versions"][0]["kid"]
        with OpenBaoStore.from_url(url, environ=env) as app_store:
            number = app_store.get_labels(JWT)[Label.CURRENT]
            version = app_store.get_version(JWT, number)
            seen = datetime(2026, 11, 3, tzinfo=UTC)
            assert merge_usage(app_store, JWT, {version.kid: KidUsage(5, 0, seen)}) == {}
        usage = client.get("/api/secrets/dev/jwt-access").json()["versions"][0]
        assert usage["kid"] == kid and usage["usage"]["count"] == 5


def test_what_was_read_is_reused_until_a_marker_moves_or_it_is_too_old(
    bao_dev: DevServer, bao_store_factory: Factory, tmp_path: Path
) -> None:
    root = bao_store_factory()
    world = EngineWorld.make(root, tmp_path)
    world.seed()
    now = [0.0]
    cache = StoreCache(clock=lambda: now[0])
    assert cache.view(root).get_labels(JWT) == {Label.CURRENT: 1}
    # a hand edit in OpenBao (or a keyroll older than the markers) moves no marker: what was
    # read stands, until it is older than MAX_AGE_SECONDS
    path = f"secret/data/{root.prefix}/_index/dev/jwt-access"
    stored = bao_dev.api("GET", path)["data"]
    edited = {**stored["data"], "labels": {}}
    bao_dev.api("POST", path, {"options": {"cas": stored["metadata"]["version"]},
                               "data": edited})
    assert root.get_labels(JWT) == {}
    assert cache.view(root).get_labels(JWT) == {Label.CURRENT: 1}
    now[0] += MAX_AGE_SECONDS + 1
    assert cache.view(root).get_labels(JWT) == {}
    # a write through keyroll moves the marker: the very next view reads again
    root.set_labels(JWT, expected={}, new={Label.CURRENT: 1})
    assert cache.view(root).get_labels(JWT) == {Label.CURRENT: 1}
    refills = cache.refills
    for _ in range(3):
        assert cache.view(root).list_versions(JWT)[0].number == 1
    assert cache.refills == refills
    # the lock is read at every request (its expiry is time), never from the cache
    viewer = cache.view(root)
    assert viewer.get_lock(JWT) is None
    root.acquire_lock(JWT, "someone", ttl=timedelta(minutes=5))
    lock = viewer.get_lock(JWT)
    assert lock is not None and lock.owner == "someone"
