"""The one-writer rule on the OpenBao backend (issue 10 §2): a process paused past its lease,
while another takes the rotation over and finishes it, writes nothing when it wakes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from keyroll.audit import Journal
from keyroll.errors import LeaseLost
from keyroll.model import Label, utcnow
from keyroll.rotation.engine import Engine
from keyroll.rotation.lock import LEASE_TTL
from keyroll.rotation.strategies.signing_key import JWTSigningStrategy
from keyroll.stores.openbao import OpenBaoStore
from tests.openbao_engine import EngineWorld
from tests.openbao_fixtures import bao_dev as bao_dev
from tests.openbao_fixtures import bao_store_factory as bao_store_factory

pytestmark = pytest.mark.integration


def test_a_writer_paused_past_its_lease_is_fenced_on_openbao(
    bao_store_factory: Callable[..., OpenBaoStore], tmp_path: Path
) -> None:
    world = EngineWorld.make(bao_store_factory(), tmp_path)
    ref = world.seed("jwt-access")
    inventory = world.inventory
    def take_over() -> None:
        store = bao_store_factory()  # the cron tick: another handle (another process's view)
        b = Engine(store, inventory, journal=Journal(store, actor="cron", clock=world.clock),
                   clock=world.clock, workdir=tmp_path,
                   wall_clock=lambda: utcnow() + LEASE_TTL * 2)
        record = b.run(rotation.id)
        for _ in range(4):
            if record.state == "done":
                break
            world.clock.tick(timedelta(hours=2))
            record = b.run(rotation.id)
        assert record.state == "done"

    class Paused(JWTSigningStrategy):
        armed = True

        def promote(self, ctx):  # type: ignore[no-untyped-def]
            if self.armed:
                self.armed = False
                take_over()

    a = Engine(world.store, inventory, journal=Journal(world.store, actor="a", clock=world.clock),
               clock=world.clock, workdir=tmp_path, strategies={"jwt-signing": Paused()},
               sleep=lambda s: world.clock.tick(timedelta(seconds=s)))
    rotation = a.start("jwt-access", "dev")
    with pytest.raises(LeaseLost):
        a.run(rotation.id)
    after = a.get(rotation.id)
    assert after.state == "done"
    assert world.store.get_labels(ref) == {Label.CURRENT: 2}
    journal = Journal(world.store)
    assert journal.verify().ok
    actions = [r.action for r in journal.records() if r.rotation == rotation.id]
    assert actions.count("rotation.promote") == 1 and actions.count("rotation.done") == 1
