"""Versioned --json documents: one schema per command, checked key by key."""

from __future__ import annotations

import json
from pathlib import Path

from keyroll.model import SecretRef
from keyroll.stores import open_store
from tests.leaks import assert_no_leak
from tests.unit.cli.conftest import Keyroll


def test_inventory_check_json(initialised: Keyroll) -> None:
    done = initialised("inventory", "check", "--json")
    assert done.code == 0, done.err
    doc = json.loads(done.out)
    assert set(doc) == {"schema", "ok", "file", "environments", "classes", "secrets", "warnings"}
    assert doc["warnings"] == []  # the example generates no provider credential locally
    assert doc["schema"] == "keyroll.inventory-check/v1" and doc["ok"] is True
    assert isinstance(doc["secrets"], int) and doc["secrets"] > 0
    first = doc["classes"][0]
    assert set(first) == {"name", "kind", "layout", "env_vars", "environments"}
    assert first["layout"] == "suffix"


def test_audit_verify_json(initialised: Keyroll) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    done = initialised("audit", "verify", "--json")
    assert done.code == 0, done.err
    doc = json.loads(done.out)
    assert set(doc) == {"schema", "ok", "count", "head", "problems"}
    assert doc["schema"] == "keyroll.audit-verify/v1"
    assert doc["ok"] is True and doc["count"] >= 2 and doc["problems"] == []
    pinned = initialised("audit", "verify", "--json", "--expect-head", "f" * 64)
    assert pinned.code == 1
    assert json.loads(pinned.out)["ok"] is False


def test_rotate_json_streams_ndjson_events(initialised: Keyroll, project: Path) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    plan = initialised("rotate", "jwt-access", "--env", "dev", "--dry-run", "--json")
    steps = [json.loads(line) for line in plan.out.splitlines()]
    assert {d["schema"] for d in steps} == {"keyroll.rotate-plan/v1"}
    assert [d["step"] for d in steps][:2] == ["plan", "create"]
    done = initialised("rotate", "jwt-access", "--env", "dev", "--json")
    assert done.code == 0, done.err
    lines = [json.loads(line) for line in done.out.splitlines()]  # every line is JSON
    events, result = lines[:-1], lines[-1]
    assert {e["schema"] for e in events} == {"keyroll.rotate-event/v1"}
    assert set(events[0]) == {"schema", "rotation", "secret", "kind", "step", "message", "at",
                              "evidence"}
    assert "step.finished" in {e["kind"] for e in events}
    assert result == {"schema": "keyroll.rotate-result/v1", "rotation": events[0]["rotation"],
                      "secret": "dev/jwt-access", "state": "overlap", "waiting": True}
    with open_store("sqlite:.keyroll/store.db", base=project, create=False) as store:
        ref = SecretRef("dev", "jwt-access")
        values = [store.read_value(ref, v.number).reveal() for v in store.list_versions(ref)]
    assert len(values) == 2
    assert_no_leak([done.out, done.err], values, where="rotate --json")


def test_advance_json(initialised: Keyroll) -> None:
    done = initialised("advance", "--json", "--no-start-due")
    assert done.code == 0, done.err
    doc = json.loads(done.out)
    assert doc == {"schema": "keyroll.advance/v1", "moved": [], "started": [], "waiting": [],
                   "busy": [], "failed": []}
