"""`keyroll serve`'s journal checks: every tick the incremental one (the checkpoint follows the
head), a full one when the last recorded full check is ``verify_every`` old, its failure
reported once, on the tick that ran it."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

from keyroll.audit_check import check_recent, last_full_check
from keyroll.rotation.rotator import Rotator
from tests.unit.conftest import World


def test_full_check_on_schedule_incremental_between(world: World) -> None:
    world.seed("jwt-access")
    engine = world.engine()
    rotator = Rotator(engine, clock=world.clock, verify_every=timedelta(hours=1),
                      start_due=False)
    first = rotator.tick()
    assert first.journal is not None and first.journal.ok  # no full check yet: one now
    ran = last_full_check(world.store)
    assert ran is not None and ran.ok and ran.at == first.at
    for _ in range(3):
        engine.journal.append("between.ticks")
    world.clock.tick(timedelta(minutes=1))
    second = rotator.tick()
    assert second.journal is None  # incremental, nothing wrong: nothing to report
    assert last_full_check(world.store) == ran  # no new full check
    assert check_recent(engine.journal).since == engine.journal.verify().count  # advanced

    with sqlite3.connect(world.store.path) as db:
        db.execute("UPDATE audit SET payload = replace(payload, 'alice', 'mallory') WHERE seq=1")
    world.clock.tick(timedelta(minutes=1))
    assert rotator.tick().journal is None  # record 1 is before the checkpoint
    world.clock.tick(timedelta(hours=1))
    due = rotator.tick()
    assert due.journal is not None and not due.journal.ok
    assert "record 1 was edited" in due.journal.problems[0]
    world.clock.tick(timedelta(minutes=1))
    assert rotator.tick().journal is None  # reported once (the dashboard keeps showing it)
    assert not check_recent(engine.journal).ok


def test_full_checks_can_be_turned_off(world: World) -> None:
    """Only the first walk (there is no checkpoint to start from) reads the whole chain."""
    world.seed("jwt-access")
    engine = world.engine()
    engine.journal.append("one")
    rotator = Rotator(engine, clock=world.clock, verify_every=None, start_due=False)
    rotator.tick()
    first = last_full_check(world.store)
    assert first is not None
    for _ in range(2):
        world.clock.tick(timedelta(hours=2))
        engine.journal.append("more")
        rotator.tick()
    assert last_full_check(world.store) == first
    assert check_recent(engine.journal).mode == "incremental"
