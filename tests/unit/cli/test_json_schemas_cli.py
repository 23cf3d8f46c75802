"""Versioned --json documents: one schema per command, checked key by key."""

from __future__ import annotations

import json

from tests.unit.cli.conftest import Keyroll


def test_inventory_check_json(initialised: Keyroll) -> None:
    done = initialised("inventory", "check", "--json")
    assert done.code == 0, done.err
    doc = json.loads(done.out)
    assert set(doc) == {"schema", "ok", "file", "environments", "classes", "secrets"}
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
