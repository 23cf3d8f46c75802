"""Clocks (issue 10 §3): ``KEYROLL_NOW`` left set in CI obeys the guard ``--now`` has, the
journal records real time, and an overlap promoted under one clock is never cut short under
another."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyroll.audit import Journal
from keyroll.cli.exitcodes import WAITING
from keyroll.model import Label, utcnow
from keyroll.rotation.engine import Engine
from tests.unit.cli.conftest import Keyroll
from tests.unit.conftest import INVENTORY, World

FAR = "2030-06-01T00:00:00Z"


def _journal_times(keyroll: Keyroll) -> list[datetime]:
    rows = json.loads(keyroll("audit", "log", "--json", "-n", "0").out)
    return [datetime.fromisoformat(r["time"]) for r in rows]


def test_keyroll_now_never_moves_production(initialised: Keyroll,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert initialised("generate", "jwt-access", "--env", "prod").code == 0
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    monkeypatch.setenv("KEYROLL_NOW", FAR)  # left set in CI
    refused = initialised("rotate", "jwt-access", "--env", "prod")
    assert refused.code == 2 and "KEYROLL_NOW cannot be used on prod" in refused.err
    assert refused.err.count("\n") == 1
    skipped = initialised("advance")  # starts dev's overdue rotation, which then waits
    assert skipped.code == 0, skipped.err  # advance: in flight is not a failure
    assert "KEYROLL_NOW: skipping production environments (prod)" in skipped.err
    explicit = initialised("advance", "--env", "prod")
    assert explicit.code == 2 and "production environment" in explicit.err
    status = json.loads(initialised("status", "--json").out)["secrets"]
    prod = next(r for r in status if r["class"] == "jwt-access" and r["environment"] == "prod")
    assert prod["state"] == "ok"  # real time: not shown as overdue by the year-2030 clock
    # the journal keeps real time, whatever the clock
    now = utcnow()
    assert all(abs(t - now) < timedelta(minutes=5) for t in _journal_times(initialised))


def test_keyroll_now_applies_to_non_production(initialised: Keyroll,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    monkeypatch.setenv("KEYROLL_NOW", FAR)
    status = json.loads(initialised("status", "--env", "dev", "--json").out)["secrets"]
    dev = next(r for r in status if r["class"] == "jwt-access")
    assert dev["state"] == "overdue"


def test_a_production_rotation_is_not_retired_by_a_moved_clock(
    initialised: Keyroll, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    """The reported scenario: `KEYROLL_NOW=2030-… keyroll advance` retired a production key
    seconds after promote."""
    (project / "keyroll.toml").write_text(INVENTORY)  # prod: approvals = 2, no kubectl hooks
    assert initialised("generate", "jwt-access", "--env", "prod").code == 0
    monkeypatch.setenv("KEYROLL_ACTOR", "alice")
    assert initialised("rotate", "jwt-access", "--env", "prod").code == WAITING  # approval
    rid = json.loads(initialised("rotations", "--json").out)[-1]["id"]
    monkeypatch.setenv("KEYROLL_ACTOR", "bob")
    assert initialised("approve", rid).code == WAITING  # its overlap
    rows = json.loads(initialised("rotations", "--json").out)
    assert rows[-1]["state"] == "overlap"
    monkeypatch.setenv("KEYROLL_NOW", FAR)
    assert initialised("advance").code == 0  # prod skipped: nothing touched
    rows = json.loads(initialised("rotations", "--json").out)
    assert rows[-1]["state"] == "overlap"  # still in its overlap


def test_an_overlap_promoted_under_a_past_clock_is_measured_in_real_time(world: World) -> None:
    ref = world.seed("webhook")  # overlap.min = 1h
    past = utcnow() - timedelta(days=30)
    demo = Engine(world.store, world.inventory, journal=Journal(world.store), clock=lambda: past,
                  workdir=world.path)
    record = demo.run(demo.start("webhook", "dev").id)
    assert record.state == "overlap"
    assert record.body.overlap_started == past
    assert record.body.overlap_started_real is not None
    real = Engine(world.store, world.inventory, journal=Journal(world.store), workdir=world.path)
    # on the real clock 30 days "passed" since promote: the overlap must still run its hour
    assert real.run(record.id).state == "overlap"
    assert world.store.get_labels(ref) == {Label.CURRENT: 2, Label.PREVIOUS: 1}
    later = Engine(world.store, world.inventory, journal=Journal(world.store),
                   workdir=world.path, clock=lambda: utcnow() + timedelta(hours=2),
                   wall_clock=lambda: utcnow() + timedelta(hours=2))
    assert later.run(record.id).state == "done"


def test_the_overlap_end_is_written_once_at_promote(world: World) -> None:
    world.seed("webhook")
    engine = world.engine()
    record = engine.run(engine.start("webhook", "dev").id)
    assert record.body.overlap_started is not None
    assert record.body.overlap_until == record.body.overlap_started + timedelta(hours=1)
    assert record.body.overlap_until.tzinfo is UTC or record.body.overlap_until.utcoffset() == \
        timedelta(0)


def test_a_cron_tick_that_finds_a_live_holder_exits_0_busy(
    initialised: Keyroll, project: Path
) -> None:
    from keyroll.rotation.lock import LEASE_TTL, Holder
    from keyroll.stores import open_store

    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    assert initialised("rotate", "jwt-access", "--env", "dev").code == WAITING
    rid = json.loads(initialised("rotations", "--json").out)[-1]["id"]
    with open_store("sqlite:.keyroll/store.db", base=project) as store:
        ref = store.get_rotation(rid).ref
        holder = Holder.this_process(rid, "other-tick")  # a live process: this one
        store.acquire_lock(ref, holder.owner, ttl=LEASE_TTL)
    tick = initialised("advance", "--now", "2026-12-31T00:00:00Z")
    assert tick.code == 0, tick.err
    assert f"busy: {rid}" in tick.out and "will retry" in tick.out
    assert "1 busy, 0 failed" in tick.out
