"""No value in any response, everything escaped, bad input is one line, nothing changes."""

from __future__ import annotations

import json
import re
from contextlib import nullcontext
from html import unescape

import pytest

from keyroll.dashboard import create_app
from keyroll.dashboard.views import ReadOnlyJournal
from keyroll.inventory import parse_inventory
from keyroll.runtime.usage import usage_key
from tests.leaks import assert_no_leak
from tests.unit.conftest import INVENTORY, World
from tests.unit.dashboard.conftest import History, TestClient, make_history
from tests.unit.dashboard.test_pages import _paths


def _crawl(client: TestClient, start: list[str]) -> list[tuple[str, str, str]]:
    """Every page reachable from ``start`` (bounded): (path, headers, body)."""
    seen: set[str] = set()
    queue = list(start)
    out: list[tuple[str, str, str]] = []
    for _ in range(400):
        if not queue:
            break
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        response = client.get(path)
        out.append((path, json.dumps(dict(response.headers)), response.text))
        if response.headers.get("content-type", "").startswith("text/html"):
            queue.extend(t for t in (unescape(h) for h in re.findall(r'href="([^"]+)"',
                                                                     response.text))
                         if t.startswith("/") and t not in seen)
    assert not queue
    return out


def test_no_planted_value_in_any_response(client: TestClient, history: History) -> None:
    # every version's value, including the retired and rolled-back ones read before they
    # were destroyed
    assert len(history.values) >= 12
    for ref in history.world.store.list_secrets():
        assert history.world.store.list_versions(ref)
    destroyed = [v for ref in history.world.store.list_secrets()
                 for v in history.world.store.list_versions(ref) if v.destroyed]
    assert len(destroyed) >= 3
    pages = _crawl(client, [*_paths(history), "/audit?limit=1000", "/api/audit?limit=1000",
                            "/nope", "/secrets/dev/nope", "/rotations/r-nope"])
    assert len(pages) > 30
    assert_no_leak([body for _, _, body in pages], history.values, where="a response body")
    assert_no_leak([headers for _, headers, _ in pages], history.values, where="a header")


def test_everything_is_escaped(world: World) -> None:
    hostile = INVENTORY.replace(
        'owner = "auth"',
        'owner = "<b>auth</b>"\ndescription = "signs <script>alert(1)</script> tokens"',
    )
    world.inventory = parse_inventory(hostile, world.path / "keyroll.toml")
    world.seed("jwt-access")
    engine = world.engine(actor='<img src=x onerror="alert(2)">')
    record = engine.run(engine.start("jwt-access", "dev").id)
    app = create_app(lambda: nullcontext(world.store), world.inventory, clock=world.clock)
    with TestClient(app, base_url="http://localhost") as client:
        for path in ("/", "/secrets/dev/jwt-access", f"/rotations/{record.id}", "/rotations",
                     "/audit", "/?env=<script>x</script>", "/secrets/dev/<script>"):
            html = client.get(path).text
            assert "<script" not in html, path
            assert "<img" not in html and "<b>" not in html, path
        overview = client.get("/").text
        assert "signs &lt;script&gt;alert(1)&lt;/script&gt; tokens" in overview
        assert "&lt;b&gt;auth&lt;/b&gt;" in overview
        rotation = client.get(f"/rotations/{record.id}").text
        assert "&lt;img src=x onerror=" in rotation  # the drill report's "Rotated by", escaped


BAD = [
    ("/secrets/nope/jwt-access", 404, "no environment 'nope'"),
    ("/secrets/dev/nope", 404, "no class 'nope'"),
    ("/secrets/prod/webhook", 404, "does not exist in 'prod'"),
    ("/secrets/dev/..%2F..%2Fetc", 404, ""),
    ("/rotations/r-20990101-000000", 404, ""),
    ("/rotations/x%20y", 404, "no rotation"),
    ("/rotations/%3Cx%3E", 404, "no rotation"),
    ("/?env=nope", 404, "no environment 'nope'"),
    ("/audit?limit=0", 422, "limit"),
    ("/audit?limit=abc", 422, "limit"),
    ("/nope", 404, "no page at /nope"),
    ("/api/secrets/dev/nope", 404, "no class 'nope'"),
    ("/api/rotations/r-20990101-000000", 404, "r-20990101-000000"),
    ("/api/rotations/%3Cx%3E", 404, "no rotation"),
    ("/api/status?env=nope", 404, "no environment 'nope'"),
    ("/api/status?env=" + "x" * 100, 422, "env"),
    ("/api/audit?limit=0", 422, "limit: Input should be greater than or equal to 1"),
    ("/api/audit?limit=1001", 422, "limit: Input should be less than or equal to 1000"),
    ("/api/audit?limit=abc", 422, "limit"),
    ("/api/audit?limit=1&limit=x", 422, "limit"),
    ("/api/rotations?active=maybe", 422, "active"),
    ("/api/nope", 404, "no page at /api/nope"),
]


@pytest.mark.parametrize("path,status,text", BAD)
def test_bad_input_is_one_line(client: TestClient, path: str, status: int, text: str) -> None:
    response = client.get(path)
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text and 'File "' not in response.text
    if path.startswith("/api/"):
        doc = response.json()
        assert set(doc) == {"error"}
        assert "\n" not in doc["error"] and text in doc["error"]
    else:
        assert response.headers["content-type"].startswith("text/html")
        message = re.search(r'<p class="error">(.*?)</p>', response.text, re.S)
        assert message is not None and "\n" not in message.group(1)
        assert text.replace("'", "&#39;") in message.group(1)


def test_the_dashboard_changes_nothing(history: History) -> None:
    store = history.world.store

    def snapshot() -> object:
        refs = store.list_secrets()
        return (
            [(r, store.get_labels(r), store.list_versions(r)) for r in refs],
            [(r.id, r.state, r.revision) for r in store.list_rotations()],
            [e.hash for e in store.audit_entries()],
            [store.get_lock(r, now=history.world.clock()) for r in refs],
            [store.get_meta(usage_key(r)) for r in refs],
        )

    before = snapshot()
    app = create_app(lambda: nullcontext(store), history.world.inventory,
                     clock=history.world.clock)
    with TestClient(app, base_url="http://localhost") as client:
        _crawl(client, _paths(history))
    assert snapshot() == before
    methods = {m for route in app.routes for m in getattr(route, "methods", None) or ()}
    assert methods <= {"GET", "HEAD"}


def test_the_history_fixture_is_reproducible(world: World) -> None:
    # guards the other tests: the planted values are the ones in the store
    history = make_history(world)
    for ref in world.store.list_secrets():
        for version in world.store.list_versions(ref):
            if not version.destroyed:
                assert world.store.read_value(ref, version.number).reveal() in history.values


def test_no_route_reads_a_value(
    client: TestClient, history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise AssertionError("the dashboard read a secret value")

    monkeypatch.setattr(history.world.store, "read_value", refuse)
    monkeypatch.setattr(history.world.store, "read", refuse)
    pages = _crawl(client, [*_paths(history), "/api/audit?limit=1000"])
    assert all(not body.startswith("Internal") for _, _, body in pages)
    assert calls == []


def test_the_dashboards_journal_cannot_append(world: World) -> None:
    journal = ReadOnlyJournal(world.store, clock=world.clock)
    with pytest.raises(RuntimeError, match="never writes"):
        journal.append("secret.get")
    assert world.store.audit_tail() is None
