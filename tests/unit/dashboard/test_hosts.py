"""Issue 10 §6: the dashboard answers only its own Host names (DNS rebinding), and a 503 names no
filesystem path."""

from __future__ import annotations

import secrets
from contextlib import nullcontext
from pathlib import Path

import pytest

from keyroll.cli.dashboard_cmd import allowed_hosts
from keyroll.dashboard import create_app
from keyroll.errors import UsageError
from keyroll.stores.sqlite import SQLiteStore
from tests.unit.conftest import World
from tests.unit.dashboard.conftest import TestClient


def _client(world: World, **kwargs: object) -> TestClient:
    app = create_app(lambda: nullcontext(world.store), world.inventory, clock=world.clock,
                     **kwargs)  # type: ignore[arg-type]
    return TestClient(app, base_url="http://localhost")


@pytest.mark.parametrize("path", ["/api/audit", "/", "/healthz", "/metrics", "/api/status"])
@pytest.mark.parametrize("host", ["rebind.attacker.example", "rebind.attacker.example:8080",
                                  "localhost.attacker.example", "127.0.0.1.nip.io", "",
                                  "10.0.0.7"])
def test_a_foreign_host_header_is_refused(world: World, path: str, host: str) -> None:
    response = _client(world).get(path, headers={"host": host})
    assert response.status_code == 400
    assert "journal" not in response.text and "jwt-access" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "127.0.0.1:8080", "[::1]:8080",
                                  "LOCALHOST"])
def test_loopback_names_are_answered(world: World, host: str) -> None:
    assert _client(world).get("/api/audit", headers={"host": host}).status_code == 200


def test_allowed_hosts_add_names(world: World) -> None:
    client = _client(world, allowed_hosts=["keyroll.example.com", "*.internal.example"])
    assert client.get("/healthz", headers={"host": "keyroll.example.com"}).status_code == 200
    assert client.get("/healthz", headers={"host": "a.internal.example"}).status_code == 200
    assert client.get("/healthz", headers={"host": "localhost"}).status_code == 400
    with pytest.raises(UsageError):
        create_app(lambda: nullcontext(world.store), world.inventory, allowed_hosts=[])


def test_cli_allowed_hosts() -> None:
    assert allowed_hosts("127.0.0.1", []) == ["localhost", "127.0.0.1", "[::1]"]
    assert allowed_hosts("10.1.2.3", ["Keyroll.Example.com", "::1", "fe80::1"]) == [
        "localhost", "127.0.0.1", "[::1]", "10.1.2.3", "keyroll.example.com", "[fe80::1]"]
    assert allowed_hosts("0.0.0.0", []) == ["localhost", "127.0.0.1", "[::1]"]  # noqa: S104
    for bad in ("https://keyroll.example.com", "keyroll.example.com:443", "a b", "a\nb", ""):
        with pytest.raises(UsageError, match="--allowed-host"):
            allowed_hosts("127.0.0.1", [bad])


def test_a_503_names_no_filesystem_path(world: World, tmp_path: Path) -> None:
    missing = tmp_path / "secret-folder" / "store.db"

    def factory() -> SQLiteStore:
        return SQLiteStore(missing, secrets.token_bytes(32), create=False)

    app = create_app(factory, world.inventory, clock=world.clock)
    with TestClient(app, base_url="http://localhost") as client:
        for path in ("/", "/api/status", "/healthz", "/api/audit"):
            response = client.get(path)
            assert response.status_code in (503, 422), (path, response.text)
            assert "secret-folder" not in response.text and str(tmp_path) not in response.text
