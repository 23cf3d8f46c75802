"""`keyroll.reports`: the seed 004 §7 checklist and the §8 drill report, from the journal."""

from __future__ import annotations

from datetime import timedelta

from keyroll.audit import Journal
from keyroll.reports import checklist, drill_report
from tests.unit.conftest import World


def _done(world: World) -> str:
    world.seed("jwt-access")
    record = world.rotate("jwt-access", tick=timedelta(hours=2))
    assert record.state == "done"
    return record.id


def test_the_checklist_of_a_finished_rotation_is_ticked(world: World) -> None:
    rotation = _done(world)
    text = checklist(world.store, world.inventory, Journal(world.store), "jwt-access", "dev")
    assert f"Rotation record `{rotation}`" in text
    assert "- [x] New secret generated" in text
    assert "- [x] Overlap window end date: 20" in text
    assert "- [x] Old secret retired: 20" in text
    assert "- [x] Post-rotation audit: journal verified" in text
    assert "- [ ] Runbook updated" in text


def test_the_checklist_shows_the_new_fingerprint_never_a_value(world: World) -> None:
    _done(world)
    version, value = world.store.read(world.inventory.resolve("jwt-access", "dev")[1])
    text = checklist(world.store, world.inventory, Journal(world.store), "jwt-access", "dev")
    assert f"`{version.fingerprint}`" in text
    assert value.reveal() not in text


def test_an_unfinished_rotation_leaves_boxes_open(world: World) -> None:
    world.seed("jwt-access")
    world.engine().start("jwt-access", "dev")
    text = checklist(world.store, world.inventory, Journal(world.store), "jwt-access", "dev")
    assert "- [ ] Overlap window end date: ____" in text
    assert "Old secret retired: not yet" in text


def test_the_drill_report_has_a_timeline_and_no_failures(world: World) -> None:
    rotation = _done(world)
    text = drill_report(world.store, world.inventory, Journal(world.store), rotation)
    assert text.startswith("## Rotation report — jwt-access — dev — ")
    assert f"`{rotation}`" in text and "state **done**" in text
    assert "### Timeline" in text and "### Verification evidence" in text
    assert "- Failed steps: 0" in text
    assert "- Rollback triggered: no\n" in text


def test_a_staging_rotation_is_a_drill(world: World) -> None:
    world.seed("jwt-access", env="staging")
    record = world.rotate("jwt-access", "staging", tick=timedelta(hours=2))
    text = drill_report(world.store, world.inventory, Journal(world.store), record.id)
    assert text.startswith("## Drill report — jwt-access — staging")
