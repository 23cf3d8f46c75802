"""/metrics parses as Prometheus text and carries the right numbers against a frozen clock."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from keyroll.audit import Journal
from keyroll.audit_check import check_full
from keyroll.dashboard import create_app
from keyroll.errors import StoreUnavailable
from keyroll.model import SecretRef
from keyroll.rotation.engine import ACTIVE
from keyroll.runtime.usage import KidUsage, merge_usage
from keyroll.stores.base import Store
from tests.unit.conftest import T0, World
from tests.unit.dashboard.conftest import NOW, History, TestClient


def _scrape(client: TestClient) -> dict[str, list[Sample]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(response.text):
        families.setdefault(family.name, []).extend(family.samples)
    return families


def _one(families: dict[str, list[Sample]], name: str, **labels: str) -> float:
    found = [s.value for s in families[name]
             if s.name.startswith(name) and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def _secret(env: str, cls: str) -> dict[str, str]:
    return {"environment": env, "class": cls}


def test_secret_metrics_match_the_frozen_clock(client: TestClient, history: History) -> None:
    m = _scrape(client)
    assert _one(m, "keyroll_store_up") == 1
    api = _secret("dev", "api")
    assert _one(m, "keyroll_secret_age_seconds", **api) == timedelta(days=101).total_seconds()
    assert _one(m, "keyroll_secret_created_timestamp_seconds", **api) == (
        (T0 - timedelta(days=100)).timestamp())
    assert _one(m, "keyroll_secret_due_timestamp_seconds", **api) == (
        (T0 - timedelta(days=10)).timestamp())
    assert _one(m, "keyroll_secret_days_left", **api) == -12
    assert _one(m, "keyroll_secret_version", **api) == 1  # the rolled-back v2 never counted
    assert _one(m, "keyroll_secret_cadence_seconds", **api) == 90 * 86400
    field = _secret("dev", "field")
    assert _one(m, "keyroll_secret_days_left", **field) == 4
    assert _one(m, "keyroll_secret_age_seconds", **field) == timedelta(days=176).total_seconds()
    jwt = _secret("dev", "jwt-access")
    assert _one(m, "keyroll_secret_version", **jwt) == 2
    labels = next(s.labels for s in m["keyroll_secret_age_seconds"]
                  if s.labels["class"] == "jwt-access" and s.labels["environment"] == "dev")
    assert labels == {"class": "jwt-access", "environment": "dev", "kind": "jwt-signing",
                      "tier": "medium"}
    info = next(s.labels for s in m["keyroll_secret_info"] if s.labels["class"] == "webhook")
    assert (info["owner"], info["blast_radius"], info["tier"]) == ("payments", "partners", "high")


def test_state_is_one_hot(client: TestClient) -> None:
    m = _scrape(client)
    expected = {("dev", "api"): "overdue", ("dev", "field"): "due", ("prod", "jwt-access"): "missing",
                ("prod", "vnpay"): "missing", ("dev", "jwt-access"): "ok", ("dev", "opaque"): "ok"}
    for (env, cls), state in expected.items():
        for each in ("ok", "due", "overdue", "missing"):
            value = _one(m, "keyroll_secret_state", **_secret(env, cls), state=each)
            assert value == (1 if each == state else 0), (env, cls, each)
    # a secret with no current version has a state but no age, due date or days left
    missing = _secret("prod", "jwt-access")
    for name in ("keyroll_secret_age_seconds", "keyroll_secret_days_left",
                 "keyroll_secret_due_timestamp_seconds", "keyroll_secret_version"):
        assert not [s for s in m[name] if all(s.labels.get(k) == v for k, v in missing.items())]


def test_rotation_metrics(client: TestClient, history: History) -> None:
    m = _scrape(client)
    in_flight = {s.labels["state"]: s.value for s in m["keyroll_rotations_in_flight"]}
    assert set(in_flight) == set(ACTIVE)
    assert in_flight["overlap"] == 2 and in_flight["awaiting-confirmation"] == 1
    assert sum(in_flight.values()) == 3
    assert _one(m, "keyroll_secret_rotation_in_flight", **_secret("dev", "webhook")) == 1
    assert _one(m, "keyroll_secret_rotation_in_flight", **_secret("dev", "jwt-access")) == 0
    done = history.world.store.get_rotation(history.rotations["done"])
    assert _one(m, "keyroll_rotation_last_success_timestamp_seconds",
                **_secret("dev", "jwt-access")) == done.updated_at.timestamp()
    assert not [s for s in m["keyroll_rotation_last_success_timestamp_seconds"]
                if s.labels["class"] == "api"]  # only rolled back: no success
    assert _one(m, "keyroll_rotations", **_secret("dev", "api"), outcome="rolled-back") == 1
    assert _one(m, "keyroll_rotations", **_secret("dev", "jwt-access"), outcome="done") == 1


def test_audit_metrics_and_tampering(client: TestClient, history: History) -> None:
    records = list(history.world.engine().journal.records())
    m = _scrape(client)
    assert _one(m, "keyroll_audit_journal_ok") == 1
    assert _one(m, "keyroll_audit_records") == len(records)
    assert _one(m, "keyroll_audit_last_record_timestamp_seconds") == records[-1].time.timestamp()

    db = sqlite3.connect(history.world.store.path)
    try:
        db.execute("UPDATE audit SET payload = replace(payload, 'alice', 'mallory') WHERE seq = 2")
        db.commit()
    finally:
        db.close()
    # record 2 lies before the head the first scrape verified: an incremental scrape does not
    # read it again (docs/operations.md says so); the full check finds it
    assert _one(_scrape(client), "keyroll_audit_journal_ok") == 1
    assert "keyroll_audit_last_full_check_ok" not in _scrape(client)
    full = check_full(Journal(history.world.store, actor="ops"))
    assert not full.ok and "record 2 was edited" in full.report.problems[0]
    tampered = _scrape(client)
    assert _one(tampered, "keyroll_audit_journal_ok") == 0
    assert _one(tampered, "keyroll_audit_last_full_check_ok") == 0
    assert _one(tampered, "keyroll_audit_last_full_check_timestamp_seconds") > 0
    page = client.get("/").text
    assert "Audit journal TAMPERED" in page and "record 2 was edited" in page
    assert "FAILED" in page
    verification = client.get("/api/audit").json()["verification"]
    assert verification["ok"] is False and verification["problems"]
    assert verification["last_full_check"]["ok"] is False


class _Down(AbstractContextManager[Store]):
    def __enter__(self) -> Store:
        raise StoreUnavailable("the OpenBao server at 127.0.0.1:1 did not answer")

    def __exit__(self, *exc: object) -> None:
        return None


def test_store_down_is_a_metric_and_a_503(world: World) -> None:
    app = create_app(_Down, world.inventory, clock=lambda: NOW)
    with TestClient(app, base_url="http://localhost") as client:
        m = _scrape(client)
        assert _one(m, "keyroll_store_up") == 0
        assert set(m) == {"keyroll_store_up"}
        health = client.get("/healthz")
        assert health.status_code == 503
        # the kind of failure only: a store's message names its server or file (issue 10 §6)
        assert health.json() == {"status": "unavailable",
                                 "error": "the store did not answer; the "
                                          "server's log has the details"}
        page = client.get("/api/status")
        assert page.status_code == 503
        assert page.json()["error"].startswith("the store did not answer")
        html = client.get("/")
        assert html.status_code == 503 and "Traceback" not in html.text


def test_openmetrics_on_request(client: TestClient) -> None:
    response = client.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.rstrip().endswith("# EOF")


def test_key_usage_reported_by_apps(client: TestClient, history: History) -> None:
    store = history.world.store
    ref = SecretRef("dev", "webhook")
    old, new = store.list_versions(ref)
    merge_usage(store, ref, {old.kid: KidUsage(3, 1, NOW - timedelta(minutes=5)),
                             new.kid: KidUsage(7, 0, NOW - timedelta(minutes=1))})
    m = _scrape(client)
    webhook = _secret("dev", "webhook")
    assert _one(m, "keyroll_key_last_used_timestamp_seconds", **webhook, label="previous") == (
        (NOW - timedelta(minutes=5)).timestamp())
    assert _one(m, "keyroll_key_last_used_timestamp_seconds", **webhook, label="current") == (
        (NOW - timedelta(minutes=1)).timestamp())
    assert not [s for s in m["keyroll_key_last_used_timestamp_seconds"]
                if s.labels["class"] != "webhook"]  # nothing reported for the others
    doc = client.get("/api/secrets/dev/webhook").json()
    usage = {v["number"]: v["usage"] for v in doc["versions"]}
    assert usage[1] == {"count": 3, "legacy": 1, "last_seen": (NOW - timedelta(minutes=5)).isoformat()}
    assert usage[2]["count"] == 7
    html = client.get("/secrets/dev/webhook").text
    assert "3× (1 legacy), last 2026-11-02 01:55:00 UTC" in html
