"""Who may approve: ``approvers`` per environment and per class, groups, and every refusal
journaled (local store; the OpenBao identity is in tests/integration/test_openbao_approvals)."""

from __future__ import annotations

import pytest

from keyroll.errors import RotationRefused
from keyroll.inventory import parse_inventory
from tests.unit.conftest import INVENTORY, World

_POLICY = """
[groups]
cto = ["linh"]
"""


def _world(world: World, prod_approvers: str, class_approvers: str | None = None) -> World:
    text = INVENTORY.replace("[environments.prod]\napprovals = 2\n",
                             f"[environments.prod]\napprovals = 2\napprovers = {prod_approvers}\n")
    if class_approvers is not None:
        text = text.replace('blast_radius = "checkout"\n',
                            f'blast_radius = "checkout"\napprovers = {class_approvers}\n')
    world.inventory = parse_inventory(text + _POLICY, world.path / "keyroll.toml")
    return world


def _refusals(world: World) -> list[dict[str, object]]:
    engine = world.engine()
    return [dict(r.evidence) for r in engine.journal.records()
            if r.action == "rotation.approve" and r.outcome == "refused"]


def test_a_non_approver_and_the_requester_are_refused_and_journaled(world: World) -> None:
    _world(world, '["bob", "group:cto"]')
    world.seed("jwt-access", "prod")
    record = world.engine("alice").start("jwt-access", "prod")
    with pytest.raises(RotationRefused, match="alice requested rotation"):
        world.engine("alice").approve(record.id)
    with pytest.raises(RotationRefused, match="mallory may not approve rotations of prod/jwt-acc"):
        world.engine("mallory").approve(record.id)
    refusals = _refusals(world)
    assert [r["approver"] for r in refusals] == ["alice", "mallory"]
    assert "bob, group:cto" in str(refusals[1]["reason"])
    assert world.engine().get(record.id).state == "awaiting-approval"
    assert world.engine("linh").approve(record.id).state == "plan"  # linh is in [groups] cto
    assert world.engine().journal.verify().ok


def test_a_class_list_replaces_the_environment_list(world: World) -> None:
    _world(world, '["bob"]', '["group:payments-leads"]')
    world.seed("vnpay", "prod")
    record = world.engine("alice").start("vnpay", "prod")
    with pytest.raises(RotationRefused, match="bob may not approve"):
        world.engine("bob").approve(record.id)
    # a group the store's identity carries (OpenBao entity groups)
    engine = world.engine("quang")
    engine.actor_groups = frozenset({"payments-leads"})
    assert engine.approve(record.id).state == "plan"


def test_no_list_means_anyone_but_the_requester(world: World) -> None:
    world.seed("jwt-access", "prod")
    record = world.engine("alice").start("jwt-access", "prod")
    assert world.engine("bob").approve(record.id).state == "plan"
