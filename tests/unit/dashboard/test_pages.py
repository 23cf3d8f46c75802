"""Every page and API route renders, over a real SQLite store with real rotation history."""

from __future__ import annotations

import re
from contextlib import nullcontext
from datetime import timedelta
from html import unescape

import pytest

from keyroll.dashboard import create_app, views
from tests.unit.conftest import T0
from tests.unit.dashboard.conftest import NOW, History, TestClient, client_for

SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "referrer-policy",
                    "cache-control")


def _paths(history: History) -> list[str]:
    ids = list(history.rotations.values())
    return [
        "/", "/?env=dev", "/?env=prod", "/secrets/dev/jwt-access", "/secrets/prod/jwt-access",
        "/secrets/dev/vnpay", "/rotations", "/rotations?active=true",
        *(f"/rotations/{i}" for i in ids), "/audit", "/audit?limit=5&secret=jwt-access",
        "/audit?action=rotation&environment=dev", "/api/status", "/api/status?env=dev",
        "/api/secrets/dev/jwt-access", "/api/rotations", "/api/rotations?active=true",
        *(f"/api/rotations/{i}" for i in ids), "/api/audit", "/api/audit?limit=3",
        "/api/openapi.json", "/healthz", "/metrics",
    ]


def test_every_route_renders(client: TestClient, history: History) -> None:
    for path in _paths(history):
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        for header in SECURITY_HEADERS:
            assert header in response.headers, (path, header)
        if path.startswith("/api/") or path == "/healthz":
            assert response.headers["content-type"].startswith("application/json")
            response.json()
        elif path != "/metrics":
            assert response.headers["content-type"].startswith("text/html")
            assert "<!doctype html>" in response.text


def test_every_link_on_every_page_resolves(client: TestClient) -> None:
    seen: set[str] = set()
    queue = ["/"]
    for _ in range(300):  # bounded crawl
        if not queue:
            break
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        response = client.get(path)
        assert response.status_code == 200, path
        if response.headers["content-type"].startswith("text/html"):
            for link in re.findall(r'href="([^"]+)"', response.text):
                target = unescape(link)
                if target.startswith("/") and target not in seen:
                    queue.append(target)
    assert not queue, "crawl did not finish"
    assert {"/rotations", "/audit", "/metrics", "/secrets/dev/api"} <= seen


def test_overview_lists_every_secret_worst_first(client: TestClient, history: History) -> None:
    doc = client.get("/api/status").json()
    assert doc["now"] == NOW.isoformat()
    rows = {(r["environment"], r["class"]): r for r in doc["secrets"]}
    assert len(rows) == len(history.world.inventory.secrets())
    assert [r["state"] for r in doc["secrets"]][:2] == ["overdue", "missing"]
    api = rows[("dev", "api")]
    assert (api["state"], api["days_left"], api["age_days"]) == ("overdue", -12, 101)
    assert api["age_seconds"] == timedelta(days=101).total_seconds()
    assert api["due_at"] == (T0 - timedelta(days=10)).isoformat()
    field = rows[("dev", "field")]
    assert (field["state"], field["days_left"]) == ("due", 4)
    assert rows[("prod", "jwt-access")]["state"] == "missing"
    assert rows[("prod", "jwt-access")]["fingerprint"] is None
    jwt = rows[("dev", "jwt-access")]
    assert (jwt["state"], jwt["version"], jwt["rotation"]) == ("ok", 2, None)
    webhook = rows[("dev", "webhook")]
    assert (webhook["rotation"], webhook["rotation_state"]) == (history.rotations["overlap"],
                                                                "overlap")
    assert doc["counts"] == {"ok": 5, "due": 1, "overdue": 1, "missing": 2}
    assert {r["id"] for r in doc["in_flight"]} == {
        history.rotations["overlap"], history.rotations["drill"], history.rotations["paused"]}

    html = client.get("/").text
    for cls in history.world.inventory.classes:
        assert f">{cls}</a>" in html
    assert 'class="state state-overdue">overdue' in html
    assert 'class="state state-due">due' in html
    assert "Audit journal verified" in html
    assert client.get("/api/status?env=prod").json()["counts"] == {
        "ok": 0, "due": 0, "overdue": 0, "missing": 2}


def test_secret_page_shows_versions_labels_history_and_journal(
    client: TestClient, history: History
) -> None:
    doc = client.get("/api/secrets/dev/jwt-access").json()
    store = history.world.store
    versions = store.list_versions(history.world.inventory.resolve("jwt-access", "dev")[1])
    assert [v["number"] for v in doc["versions"]] == [2, 1]
    assert [(v["fingerprint"], v["kid"], v["destroyed"]) for v in reversed(doc["versions"])] == [
        (v.fingerprint, v.kid_hex, v.destroyed) for v in versions]
    assert doc["versions"][0]["labels"] == ["current"] and doc["versions"][1]["destroyed"]
    assert doc["labels"] == {"current": 2}
    assert [r["id"] for r in doc["rotations"]] == [history.rotations["done"]]
    actions = [r["action"] for r in doc["journal"]]
    assert actions[0] == "rotation.done" and actions[-1] == "rotation.requested"
    assert doc["class"]["owner"] == "auth" and doc["lock"] is None

    html = client.get("/secrets/dev/jwt-access").text
    for version in versions:
        assert version.fingerprint in html and version.kid_hex in html
    assert "destroyed" in html and history.rotations["done"] in html
    assert "rotation.promote" in html

    busy = client.get("/api/secrets/dev/webhook").json()
    assert busy["labels"] == {"current": 2, "previous": 1}
    # a rotation waiting out its overlap holds no lock: locks live only while a process works
    assert busy["lock"] is None
    assert [r["state"] for r in busy["rotations"]][-1] == "overlap"


def test_rotation_page_has_timeline_evidence_and_reports(
    client: TestClient, history: History
) -> None:
    rotation_id = history.rotations["done"]
    doc = client.get(f"/api/rotations/{rotation_id}").json()
    assert doc["rotation"]["state"] == "done"
    steps = [s["step"] for s in doc["timeline"]]
    assert steps[:2] == ["plan", "create"] and steps[-1] == "retire"
    assert all(s["outcome"] == "ok" and s["duration"] is not None for s in doc["timeline"])
    overlap = next(s for s in doc["timeline"] if s["step"] == "overlap")
    assert "overlap" in overlap["evidence"]
    retire = next(s for s in doc["timeline"] if s["step"] == "retire")
    assert overlap["waited_before"] is not None  # the overlap itself was waited out
    assert retire["waited_before"] is None  # retire follows at once
    assert doc["drill_report"].startswith("## Rotation report")
    assert "## Rotation — jwt-access — dev" in doc["checklist"]
    assert [r["rotation"] for r in doc["journal"]] == [rotation_id] * len(doc["journal"])

    html = client.get(f"/rotations/{rotation_id}").text
    assert "<h2>Rotation report" in html and "<h3>Timeline</h3>" in html
    assert "<li>[x] New secret generated" in html
    assert "<strong>done</strong>" in html

    drill = client.get(f"/rotations/{history.rotations['drill']}").text
    assert "<h2>Drill report" in drill
    paused = client.get(f"/api/rotations/{history.rotations['paused']}").json()
    assert paused["rotation"]["awaiting"] == "drain"
    assert "keyroll confirm" in client.get(f"/rotations/{history.rotations['paused']}").text
    rolled = client.get(f"/api/rotations/{history.rotations['rolled-back']}").json()
    assert rolled["rotation"]["state"] == "rolled-back"
    assert "rolled back" in rolled["rotation"]["error"]
    assert rolled["rollback"]["labels"] == {"current": 1}


def test_rotations_list_puts_in_flight_first(client: TestClient, history: History) -> None:
    listed = client.get("/api/rotations").json()["rotations"]
    assert len(listed) == len(history.rotations)
    assert [r["active"] for r in listed] == [True, True, True, False, False, False]
    active = client.get("/api/rotations?active=true").json()["rotations"]
    assert all(r["active"] for r in active) and len(active) == 3


def test_api_audit_limit_filters_and_verification(client: TestClient, history: History) -> None:
    everything = list(history.world.engine().journal.records())
    doc = client.get("/api/audit").json()
    assert doc["verification"]["ok"] is True
    assert doc["verification"]["count"] == len(everything)
    assert [r["seq"] for r in doc["records"]] == [r.seq for r in reversed(everything)]
    three = client.get("/api/audit?limit=3").json()["records"]
    assert [r["seq"] for r in three] == [everything[-1].seq, everything[-2].seq,
                                        everything[-3].seq]
    mine = client.get("/api/audit", params={"rotation": history.rotations["done"]}).json()
    assert {r["rotation"] for r in mine["records"]} == {history.rotations["done"]}
    creates = client.get("/api/audit?action=rotation.create").json()["records"]
    assert creates and {r["action"] for r in creates} == {"rotation.create"}
    assert all(len(r["fingerprints"]) == 1 for r in creates)


def test_healthz(client: TestClient) -> None:
    """The index is built in the background at start; a page waits for it, /healthz says."""
    assert client.get("/healthz").json()["journal_index"] in ("building", "ready")
    assert client.get("/audit").status_code == 200
    assert client.get("/healthz").json() == {"status": "ok", "journal_index": "ready"}


def test_healthz_says_building_until_the_index_is_built(history: History) -> None:
    """Without the server's start (no lifespan) nothing builds it until a page asks."""
    client = client_for(history.world.store, history.world)
    assert client.get("/healthz").json() == {"status": "ok", "journal_index": "building"}
    client.get("/api/audit")
    assert client.get("/healthz").json() == {"status": "ok", "journal_index": "ready"}


def test_head_answers_like_get_without_a_body(client: TestClient) -> None:
    for path in ("/", "/healthz", "/metrics", "/api/status", "/nope"):
        got, head = client.get(path), client.head(path)
        assert head.status_code == got.status_code, path
        assert head.content == b"" and head.headers["content-type"] == got.headers["content-type"]


@pytest.mark.parametrize("method", ["post", "put", "delete", "patch"])
def test_nothing_but_get(client: TestClient, method: str) -> None:
    for path in ("/", "/api/status", "/metrics", "/healthz"):
        response = getattr(client, method)(path)
        assert response.status_code == 405, (method, path)


def test_state_filter(client: TestClient) -> None:
    overdue = client.get("/api/status?state=overdue").json()
    assert [(r["environment"], r["class"]) for r in overdue["secrets"]] == [("dev", "api")]
    assert overdue["counts"]["ok"] == 5  # counts stay whole: the page links every state
    missing = client.get("/api/status?state=missing&env=prod").json()["secrets"]
    assert {r["class"] for r in missing} == {"jwt-access", "vnpay"}
    html = client.get("/?state=due").text
    assert ">field</a>" in html and ">api</a>" not in html
    assert client.get("/api/status?state=late").status_code == 422


def test_links_follow_the_root_path_behind_a_proxy(history: History) -> None:
    world = history.world
    app = create_app(lambda: nullcontext(world.store), world.inventory, clock=world.clock)
    with TestClient(app, root_path="/keyroll", base_url="http://localhost") as client:
        html = client.get("/keyroll/").text
        links = re.findall(r'href="([^"]+)"', html)
        assert links and all(link.startswith("/keyroll/") for link in links)
        missing = client.get("/keyroll/api/nope")
        assert missing.json() == {"error": "no page at /keyroll/api/nope: start at /keyroll/"}


def test_a_long_journal_is_cut_on_the_secret_page(
    client: TestClient, history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = client.get("/api/secrets/dev/jwt-access").json()["journal_total"]
    monkeypatch.setattr(views, "SECRET_JOURNAL_LIMIT", 3)
    doc = client.get("/api/secrets/dev/jwt-access").json()
    assert (len(doc["journal"]), doc["journal_total"]) == (3, total)
    assert doc["journal"][0]["action"] == "rotation.done"
    html = client.get("/secrets/dev/jwt-access").text
    assert f"the newest 3 of {total} records" in html
    assert "/audit?environment=dev&amp;secret=jwt-access&amp;limit=1000" in html
