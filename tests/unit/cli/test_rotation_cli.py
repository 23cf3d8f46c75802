"""The rotation commands end to end (in-process), bad input, and planted-value greps."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from keyroll.cli.exitcodes import OK, WAITING
from tests.leaks import assert_no_leak
from tests.unit.cli.conftest import Keyroll


def _values(keyroll: Keyroll, name: str, env: str) -> list[str]:
    """Every live value of a secret, through the audited --reveal path (test-only use)."""
    rows = json.loads(keyroll("status", "--env", env, "--json").out)["secrets"]
    assert any(r["class"] == name for r in rows)
    return [keyroll("get", name, "--env", env, "--reveal").out.strip()]


def _rotation_id(keyroll: Keyroll) -> str:
    rows = json.loads(keyroll("rotations", "--all", "--json").out)
    return str(rows[-1]["id"])


def test_rotate_advance_report_never_leak(initialised: Keyroll, monkeypatch: pytest.MonkeyPatch,
                                          project: Path) -> None:
    monkeypatch.setenv("KEYROLL_NOW", "2026-11-22T02:00:00+00:00")
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    planted = _values(initialised, "jwt-access", "dev")
    initialised.transcript.clear()  # type: ignore[attr-defined]  (the reveal itself printed it)

    dry = initialised("rotate", "jwt-access", "--env", "dev", "--dry-run")
    assert dry.code == 0 and "nothing was changed" in dry.out
    assert json.loads(initialised("rotations", "--all", "--json").out) == []

    rotated = initialised("rotate", "jwt-access", "--env", "dev")
    assert rotated.code == WAITING, rotated.err  # parked in its overlap: not an error
    assert "promote" in rotated.out and "overlap" in rotated.out
    assert f"exit {WAITING}" in rotated.out
    rid = _rotation_id(initialised)
    in_flight = initialised("rotate", "jwt-access", "--env", "dev")
    assert in_flight.code == 2 and f"rotation {rid} is in flight" in in_flight.err

    waiting = initialised("advance")
    assert waiting.code == OK and "1 waiting" in waiting.out
    done = initialised("advance", "--now", "2026-11-23T12:00:00Z")
    assert done.code == 0 and "1 moved" in done.out
    assert json.loads(initialised("rotations", "--json").out) == []

    drill = initialised("report", "drill", rid)
    assert drill.code == 0 and "### Timeline" in drill.out
    checklist = initialised("report", "checklist", "jwt-access", "--env", "dev")
    assert checklist.code == 0 and "- [x] Old secret retired" in checklist.out
    out_file = project / "drill.md"
    assert initialised("report", "drill", rid, "-o", str(out_file)).code == 0

    new_values = _values(initialised, "jwt-access", "dev")
    transcript = initialised.transcript  # type: ignore[attr-defined]
    assert_no_leak(transcript[:-2], planted + new_values, where="CLI output")
    journal = initialised("audit", "log", "--json", "-n", "0").out
    assert_no_leak([journal, out_file.read_text(), (project / "drill.md").read_bytes()],
                   planted + new_values, where="journal and reports")
    assert initialised("audit", "verify").code == 0


def test_two_person_rule_on_the_cli(ungated: Keyroll, monkeypatch: pytest.MonkeyPatch) -> None:
    assert ungated("generate", "jwt-access", "--env", "prod").code == 0
    requested = ungated("rotate", "jwt-access", "--env", "prod")
    assert requested.code == WAITING and "keyroll approve" in requested.out  # for approval
    rid = _rotation_id(ungated)
    own = ungated("approve", rid)
    assert own.code == 2 and "cannot approve it" in own.err
    before = json.loads(ungated("get", "jwt-access", "--env", "prod", "--json").out)
    monkeypatch.setenv("KEYROLL_ACTOR", "bob")
    approved = ungated("approve", rid)
    # bob's approval runs it; the example's prod deploy hook (a Kubernetes Secret apply) cannot
    # work here, so staging the new key fails at apply, the rotation rolls back and the secret is untouched
    assert "approved by bob" in approved.out
    assert approved.code == 1
    assert "rolled back at apply" in approved.err
    state = json.loads(ungated("rotations", "--all", "--json").out)[0]["state"]
    assert state == "rolled-back"
    after = json.loads(ungated("get", "jwt-access", "--env", "prod", "--json").out)
    assert after == before


def test_provider_cut_over_on_the_cli(initialised: Keyroll, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYROLL_ACTOR", "alice")
    old = "vnpay-old-secret-" + "a" * 20
    new = "vnpay-new-secret-" + "b" * 20
    monkeypatch.setattr(sys, "stdin", io.StringIO(old + "\n"))
    assert initialised("import", "vnpay-hash-secret", "--env", "staging").code == 0
    started = initialised("rotate", "vnpay-hash-secret", "--env", "staging")
    assert started.code == WAITING and "keyroll confirm" in started.out
    rid = _rotation_id(initialised)
    wrong = initialised("confirm", rid, "smoke")
    assert wrong.code == 2 and "waiting for 'drain', not 'smoke'" in wrong.err
    assert initialised("confirm", rid, "drain").code == WAITING  # the next manual step
    assert initialised("confirm", rid, "portal").code == WAITING
    monkeypatch.setattr(sys, "stdin", io.StringIO(new + "\n"))
    entered = initialised("confirm", rid, "enter")
    assert entered.code == WAITING, entered.err
    assert initialised("confirm", rid, "smoke").code == 0
    final = json.loads(initialised("rotations", "--all", "--json").out)[-1]
    assert final["state"] == "done"
    transcript = initialised.transcript  # type: ignore[attr-defined]
    assert_no_leak(transcript, [old, new], where="CLI output")
    assert_no_leak([initialised("audit", "log", "--json", "-n", "0").out], [old, new],
                   where="journal")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("rotate", "nope", "--env", "dev"), "no class 'nope'"),
        (("rotate", "jwt-access", "--env", "qa"), "no environment 'qa'"),
        (("rotate", "jwt-refresh", "--env", "dev"), "has no current version"),
        (("confirm", "r-none", "drain"), "no rotation r-none"),
        (("approve", "r-none"), "no rotation r-none"),
        (("rollback", "r-none"), "no rotation r-none"),
        (("advance", "--now", "yesterday"), "not an ISO time"),
        (("report", "drill", "r-none"), "no rotation r-none"),
        (("report", "checklist", "jwt-refresh", "--env", "dev"), "has no rotation yet"),
    ],
)
def test_bad_rotation_input_is_one_line_exit_2(
    initialised: Keyroll, args: tuple[str, ...], expected: str
) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    before = initialised("audit", "log", "--json", "-n", "0").out
    result = initialised(*args)
    assert result.code == 2, result
    assert expected in result.err
    assert result.err.strip().count("\n") == 0
    assert initialised("audit", "log", "--json", "-n", "0").out == before
    assert json.loads(initialised("rotations", "--all", "--json").out) == []


def test_confirm_of_a_rotation_not_paused(initialised: Keyroll) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    assert initialised("rotate", "jwt-access", "--env", "dev").code == WAITING
    rid = _rotation_id(initialised)
    result = initialised("confirm", rid, "drain")
    assert result.code == 2 and "not waiting for a confirmation" in result.err
    rolled = initialised("rollback", rid)
    assert rolled.code == WAITING  # after promote: a rotation back, through its overlap
    again = initialised("rollback", rid)
    # rolled back after promote, it is a rotation back through its overlap: not twice
    assert again.code == 2 and "already rolling back" in again.err


def test_now_never_applies_to_production(initialised: Keyroll) -> None:
    assert initialised("generate", "jwt-access", "--env", "prod").code == 0
    refused = initialised("advance", "--env", "prod", "--now", "2030-01-01T00:00:00Z")
    assert refused.code == 2 and "production environment" in refused.err
    skipped = initialised("advance", "--now", "2030-01-01T00:00:00Z")
    assert skipped.code == 0 and "skipping production environments (prod)" in skipped.err
