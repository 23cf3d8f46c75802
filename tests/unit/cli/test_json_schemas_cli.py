"""Versioned --json documents: one schema per command (``docs/schemas/``), every document
validated against the schema its ``schema`` key names, and checked key by key."""

from __future__ import annotations

import io
import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from keyroll.cli.exitcodes import FAILED, OK, WAITING
from keyroll.model import SecretRef
from keyroll.stores import open_store
from tests.leaks import assert_no_leak
from tests.unit.cli.conftest import Keyroll
from tests.unit.conftest import INVENTORY
from tests.unit.test_notify import webhook  # noqa: F401  (the loopback receiver fixture)

SCHEMAS = Path(__file__).parents[3] / "docs" / "schemas"


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name.replace('/', '.')}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def valid(doc: Any) -> dict[str, Any]:
    """``doc``, validated against the documented schema its ``schema`` key names."""
    assert isinstance(doc, dict) and isinstance(doc.get("schema"), str), doc
    _validator(doc["schema"]).validate(doc)
    return doc


def test_every_documented_schema_is_a_valid_schema_named_after_its_file() -> None:
    files = sorted(SCHEMAS.glob("keyroll.*.v1.json"))
    assert len(files) >= 12
    for file in files:
        schema = json.loads(file.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        name = schema["properties"]["schema"]["const"]
        assert file.name == f"{name.replace('/', '.')}.json"
        assert schema["additionalProperties"] is False  # every field is documented


def test_a_document_with_an_undocumented_field_fails_validation() -> None:
    doc = {"schema": "keyroll.notify/v1", "date": "2026-12-01", "environment": None,
           "channels": ["webhook"], "sent": [], "already_sent": []}
    valid(doc)
    with pytest.raises(jsonschema.ValidationError):
        valid({**doc, "value": "x"})
    with pytest.raises(jsonschema.ValidationError):
        valid({**doc, "schema": "keyroll.notify/v1", "sent": ["not a secret ref"]})


def test_inventory_check_json(initialised: Keyroll) -> None:
    done = initialised("inventory", "check", "--json")
    assert done.code == 0, done.err
    doc = valid(json.loads(done.out))
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
    doc = valid(json.loads(done.out))
    assert set(doc) == {"schema", "ok", "count", "head", "problems", "mode", "since", "walked",
                        "last_full_check", "layout"}
    assert doc["schema"] == "keyroll.audit-verify/v1"
    assert doc["ok"] is True and doc["count"] >= 2 and doc["problems"] == []
    pinned = initialised("audit", "verify", "--json", "--expect-head", "f" * 64)
    assert pinned.code == 1
    assert valid(json.loads(pinned.out))["ok"] is False


def test_rotate_json_streams_ndjson_events(initialised: Keyroll, project: Path) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    plan = initialised("rotate", "jwt-access", "--env", "dev", "--dry-run", "--json")
    steps = [valid(json.loads(line)) for line in plan.out.splitlines()]
    assert {d["schema"] for d in steps} == {"keyroll.rotate-plan/v1"}
    assert [d["step"] for d in steps][:2] == ["plan", "create"]
    done = initialised("rotate", "jwt-access", "--env", "dev", "--json")
    assert done.code == WAITING, done.err  # parked in its overlap
    lines = [valid(json.loads(line)) for line in done.out.splitlines()]  # every line is JSON
    events, result = lines[:-1], lines[-1]
    assert {e["schema"] for e in events} == {"keyroll.rotate-event/v1"}
    assert set(events[0]) == {"schema", "rotation", "secret", "kind", "step", "message", "at",
                              "evidence"}
    assert "step.finished" in {e["kind"] for e in events}
    assert result == {"schema": "keyroll.rotate-result/v1", "rotation": events[0]["rotation"],
                      "secret": "dev/jwt-access", "state": "overlap", "waiting": True,
                      "direction": "forward", "error": None,
                      "waiting_for": result["waiting_for"]}
    assert result["waiting_for"].startswith("overlap runs until")
    with open_store("sqlite:.keyroll/store.db", base=project, create=False) as store:
        ref = SecretRef("dev", "jwt-access")
        values = [store.read_value(ref, v.number).reveal() for v in store.list_versions(ref)]
    assert len(values) == 2
    assert_no_leak([done.out, done.err], values, where="rotate --json")


def test_advance_json(initialised: Keyroll) -> None:
    done = initialised("advance", "--json", "--no-start-due")
    assert done.code == OK, done.err
    doc = valid(json.loads(done.out))
    assert doc == {"schema": "keyroll.advance/v1", "moved": [], "started": [], "waiting": [],
                   "busy": [], "failed": [], "in_flight": []}
    assert initialised("generate", "jwt-access", "--env", "dev").code == OK
    assert initialised("rotate", "jwt-access", "--env", "dev").code == WAITING
    tick = initialised("advance", "--json")
    doc = valid(json.loads(tick.out))
    assert tick.code == OK and doc["waiting"] == doc["in_flight"] and len(doc["waiting"]) == 1
    over = initialised("advance", "--json", "--now", "2030-01-01T00:00:00Z", "--no-start-due")
    doc = valid(json.loads(over.out))
    assert over.code == OK, over.err  # retired: nothing left in flight
    assert len(doc["moved"]) == 1 and doc["in_flight"] == []


def _rotation_id(keyroll: Keyroll) -> str:
    return str(json.loads(keyroll("rotations", "--all", "--json").out)[-1]["id"])


def test_approve_json_waiting_then_rollback_json(initialised: Keyroll, project: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "keyroll.toml").write_text(INVENTORY)  # prod: approvals = 2, no kubectl hooks
    assert initialised("generate", "jwt-access", "--env", "prod").code == OK
    requested = initialised("rotate", "jwt-access", "--env", "prod", "--json")
    assert requested.code == WAITING
    result = valid(json.loads(requested.out.splitlines()[-1]))
    assert result["state"] == "awaiting-approval" and result["waiting_for"] == "approval"
    rid = result["rotation"]
    monkeypatch.setenv("KEYROLL_ACTOR", "bob")
    approved = initialised("approve", rid, "--json")
    assert approved.code == WAITING, approved.err  # approved, run, parked in its overlap
    doc = valid(json.loads(approved.out))  # the step lines went to stderr
    assert doc["schema"] == "keyroll.approve/v1" and doc["state"] == "overlap"
    assert doc["approved_by"] == "bob" and doc["approvals"] == ["bob"]
    assert doc["approvals_required"] == 2 and doc["waiting"] is True
    assert "promote" in approved.err
    rolled = initialised("rollback", rid, "--json")
    assert rolled.code == WAITING, rolled.err  # after promote: a rotation back
    doc = valid(json.loads(rolled.out))
    assert doc["direction"] == "back" and doc["state"] == "overlap"
    assert doc["current_version"] == 1 and doc["retiring_version"] == 2
    refused = initialised("approve", rid, "--json")
    assert refused.code == 2 and refused.out == "" and "not waiting for approval" in refused.err


def test_rollback_json_before_promote_and_a_failed_approve(
        ungated: Keyroll, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ungated("generate", "jwt-access", "--env", "prod").code == OK
    assert ungated("rotate", "jwt-access", "--env", "prod").code == WAITING
    first = _rotation_id(ungated)
    rolled = ungated("rollback", first, "--json")
    assert rolled.code == OK, rolled.err  # asked for and done: not a failure
    doc = valid(json.loads(rolled.out))
    assert doc["state"] == "rolled-back" and doc["waiting"] is False
    assert doc["retiring_version"] is None and doc["direction"] == "forward"
    assert ungated("rotate", "jwt-access", "--env", "prod").code == WAITING
    second = _rotation_id(ungated)
    monkeypatch.setenv("KEYROLL_ACTOR", "bob")
    # the example's prod deploy hook (a Kubernetes Secret apply) cannot work here: apply
    # fails, the rotation rolls back, and approve exits 1 with the document saying why
    failed = ungated("approve", second, "--json")
    assert failed.code == FAILED
    doc = valid(json.loads(failed.out))
    assert doc["state"] == "rolled-back" and doc["error"]["step"] == "apply"
    assert "rolled back at apply" in failed.err


def test_confirm_json_through_the_manual_steps(initialised: Keyroll,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = "vnpay-old-secret-" + "a" * 20, "vnpay-new-secret-" + "b" * 20
    monkeypatch.setattr(sys, "stdin", io.StringIO(old + "\n"))
    assert initialised("import", "vnpay-hash-secret", "--env", "staging").code == OK
    assert initialised("rotate", "vnpay-hash-secret", "--env", "staging").code == WAITING
    rid = _rotation_id(initialised)
    seen = []
    for step in ("drain", "portal", "enter", "smoke"):
        if step == "enter":
            monkeypatch.setattr(sys, "stdin", io.StringIO(new + "\n"))
        done = initialised("confirm", rid, step, "--json")
        doc = valid(json.loads(done.out))
        assert doc["schema"] == "keyroll.confirm/v1" and doc["confirmed"] == step
        assert doc["by"] == "alice"
        assert done.code == (WAITING if doc["waiting"] else OK), (step, done.err)
        seen.append((doc["state"], doc["waiting_for"]))
    assert seen[0] == ("awaiting-confirmation", "confirmation of portal")
    assert seen[-1] == ("done", None)
    assert_no_leak(initialised.transcript, [old, new], where="confirm --json")  # type: ignore[attr-defined]


def test_report_json(initialised: Keyroll, project: Path) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == OK
    assert initialised("rotate", "jwt-access", "--env", "dev").code == WAITING
    rid = _rotation_id(initialised)
    assert initialised("advance", "--now", "2030-01-01T00:00:00Z", "--no-start-due").code == OK
    drill = initialised("report", "drill", rid, "--json")
    assert drill.code == OK, drill.err
    doc = valid(json.loads(drill.out))
    assert doc["rotation"] == rid and doc["state"] == "done" and doc["rollback"] is None
    actions = [e["action"] for e in doc["timeline"]]
    assert actions[:3] == ["requested", "plan", "create"] and "retire" in actions
    assert doc["new_fingerprint"] == doc["timeline"][2]["fingerprint"]
    checklist = initialised("report", "checklist", "jwt-access", "--env", "dev", "--json")
    doc = valid(json.loads(checklist.out))
    assert doc["rotation"] == rid and doc["journal_ok"] is True
    assert len(doc["items"]) == 13 and doc["items"][-1]["done"] is False
    # the markdown and the JSON are one report: every item's text is in the markdown
    markdown = initialised("report", "checklist", "jwt-access", "--env", "dev").out
    assert all(f"{'[x]' if i['done'] else '[ ]'} {i['item']}" in markdown for i in doc["items"])
    written = project / "drill.json"
    assert initialised("report", "drill", rid, "--json", "-o", str(written)).code == OK
    assert valid(json.loads(written.read_text()))["rotation"] == rid


def test_notify_json(initialised: Keyroll, monkeypatch: pytest.MonkeyPatch,
                     webhook: tuple[str, Any]) -> None:  # noqa: F811
    url, receiver = webhook
    monkeypatch.setenv("KEYROLL_SLACK_WEBHOOK_URL", url)
    assert initialised("generate", "jwt-access", "--env", "dev").code == OK
    monkeypatch.setenv("KEYROLL_NOW", "2030-01-01T00:00:00Z")  # years later: overdue
    done = initialised("notify", "--env", "dev", "--json")
    assert done.code == OK, done.err
    doc = valid(json.loads(done.out))
    assert doc["channels"] == ["webhook"] and doc["date"] == "2030-01-01"
    assert "dev/jwt-access" in doc["sent"] and doc["environment"] == "dev"
    assert len(receiver.bodies) == 1
    again = valid(json.loads(initialised("notify", "--env", "dev", "--json").out))
    assert again["sent"] == [] and "dev/jwt-access" in again["already_sent"]
