"""Issue 11 §6: retire is recorded as done only after its deploy hook succeeded; until then the
old value is not destroyed and `advance` retries."""

from __future__ import annotations

from datetime import timedelta

from keyroll.inventory import parse_inventory
from keyroll.model import Label
from tests.unit.conftest import INVENTORY, World

HOOK = 'hooks.on_promote = [{ write_dotenv = "app.env" }, { run = "test ! -e deploy-fails" }]'


def test_failed_retire_deploy_keeps_the_rotation_in_retire(world: World) -> None:
    text = INVENTORY.replace('hooks.on_promote = [{ write_dotenv = "app.env" }]', HOOK)
    world.inventory = parse_inventory(text, world.path / "keyroll.toml")
    ref = world.seed("jwt-access")
    old = world.store.get_labels(ref)[Label.CURRENT]
    engine = world.engine()
    record = engine.run(engine.start("jwt-access", "dev").id)
    assert record.state == "overlap"
    (world.path / "deploy-fails").touch()
    world.clock.tick(timedelta(days=2))
    report = engine.advance(start_due=False)
    stuck = engine.get(record.id)
    assert stuck.state == "retire"
    assert stuck.body.error is not None and "deploy-fails" in stuck.body.error.message
    assert not world.store.get_version(ref, old).destroyed  # the app may still use it
    assert report is not None
    (world.path / "deploy-fails").unlink()
    engine.advance(start_due=False)
    done = engine.get(record.id)
    assert done.state == "done"
    assert world.store.get_version(ref, old).destroyed
    assert "JWT_SECRET_PREVIOUS" not in (world.path / "app.env").read_text()
