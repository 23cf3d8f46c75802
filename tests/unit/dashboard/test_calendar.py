"""The calendar: ``keyroll calendar`` (table, JSON, .ics parsed by icalendar), the dashboard
page and API, and never-created secrets hidden behind a count."""

from __future__ import annotations

import json
from pathlib import Path

import icalendar
import pytest

from keyroll.calendar import calendar, to_ics
from keyroll.cli.app import run
from tests.leaks import assert_no_leak
from tests.unit.dashboard.conftest import NOW, History, TestClient


def test_calendar_lists_what_is_due_with_owners(history: History) -> None:
    world = history.world
    entries = calendar(world.store, world.inventory, NOW, days=90)
    assert entries, "the history has due and overdue secrets"
    assert [e.due_at for e in entries] == sorted(e.due_at for e in entries)
    field = next(e for e in entries if e.name == "field")
    assert (field.environment, field.owner, field.state, field.days_left) == (
        "dev", "security", "due", 4)
    assert all(e.state != "missing" for e in entries)
    assert len(calendar(world.store, world.inventory, NOW, days=1)) < len(entries)


def test_ics_parses_with_icalendar(history: History) -> None:
    world = history.world
    entries = calendar(world.store, world.inventory, NOW, days=365)
    text = to_ics(entries, "test, with; odd\\chars", NOW)
    parsed = icalendar.Calendar.from_ical(text)
    events = list(parsed.walk("VEVENT"))
    assert len(events) == len(entries)
    by_uid = {str(e["UID"]): e for e in events}
    assert len(by_uid) == len(events)
    field = next(e for e in events if "field (dev)" in str(e["SUMMARY"]))
    assert "owner security" in str(field["DESCRIPTION"])
    assert field.decoded("DTSTART") == next(e for e in entries if e.name == "field").due_at.date()
    assert str(parsed["PRODID"]).endswith("test, with; odd\\chars//EN")
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    assert_no_leak([text], history.values, where="calendar .ics")


def test_calendar_cli_json_and_ics(history: History, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    world = history.world
    monkeypatch.chdir(world.path)
    monkeypatch.setenv("KEYROLL_MASTER_KEY", __import__("base64").b64encode(world.key).decode())
    monkeypatch.setenv("KEYROLL_NOW", NOW.isoformat())
    for var in ("KEYROLL_STORE", "KEYROLL_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    ics = tmp_path / "rotations.ics"
    assert run(["calendar", "--days", "90", "--json", "--ics", str(ics)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {e["class"] for e in doc["entries"]} >= {"field"}
    assert len(list(icalendar.Calendar.from_ical(ics.read_text()).walk("VEVENT"))) == len(
        doc["entries"])
    assert run(["calendar", "--days", "0"]) == 2
    assert run(["calendar", "--env", "nope"]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    # status hides never-created secrets behind a count; --all lists them
    assert run(["status"]) == 0
    hidden = capsys.readouterr().out
    assert "were never created" in hidden and "missing" not in hidden.split("were never")[0]
    assert run(["status", "--all"]) == 0
    assert "missing" in capsys.readouterr().out


def test_dashboard_calendar_and_hidden_missing(client: TestClient) -> None:
    page = client.get("/calendar?days=90")
    assert page.status_code == 200 and "field" in page.text and "security" in page.text
    api = client.get("/api/calendar", params={"days": 30}).json()
    assert all(e["state"] != "missing" for e in api["entries"])
    assert client.get("/api/calendar?days=0").status_code == 422
    assert client.get("/calendar?env=nope").status_code == 404
    overview = client.get("/")
    assert "were never created" in overview.text
    assert "state-missing\">missing</span></td>" not in overview.text
    shown = client.get("/?all=true")
    assert "were never created" not in shown.text
    assert "state-missing\">missing</span></td>" in shown.text
    assert client.get("/api/status").json()["hidden_missing"] == 0  # the API lists everything
