"""`keyroll.status`: age, due date and state of every secret, and the rotation in flight."""

from __future__ import annotations

from datetime import timedelta

from keyroll.model import SecretRef
from keyroll.status import State, secret_status, statuses
from tests.unit.conftest import World


def _status(world: World, name: str, env: str = "dev", days: int = 0) -> State:
    cls, ref = world.inventory.resolve(name, env)
    return secret_status(world.store, world.inventory, cls, ref,
                         world.clock() + timedelta(days=days)).state


def test_a_secret_without_a_current_version_is_missing(world: World) -> None:
    assert _status(world, "jwt-access") is State.MISSING
    cls, ref = world.inventory.resolve("jwt-access", "dev")
    row = secret_status(world.store, world.inventory, cls, ref, world.clock())
    assert (row.version, row.fingerprint, row.due_at, row.days_left) == (None, None, None, None)


def test_ok_then_due_then_overdue_by_the_cadence(world: World) -> None:
    world.seed("opaque")  # cadence 30 days
    warn = world.inventory.policy("dev").warn_days
    assert _status(world, "opaque") is State.OK
    assert _status(world, "opaque", days=30 - warn) is State.DUE
    assert _status(world, "opaque", days=30) is State.OVERDUE


def test_days_left_counts_down_and_goes_negative(world: World) -> None:
    world.seed("opaque")
    cls, ref = world.inventory.resolve("opaque", "dev")
    at = world.clock()
    assert secret_status(world.store, world.inventory, cls, ref, at).days_left == 30
    late = secret_status(world.store, world.inventory, cls, ref, at + timedelta(days=31, hours=1))
    assert late.days_left == -2


def test_the_row_shows_fingerprint_and_kid_never_the_value(world: World) -> None:
    ref = world.seed("api")
    cls, _ = world.inventory.resolve("api", "dev")
    row = secret_status(world.store, world.inventory, cls, ref, world.clock())
    version, value = world.store.read(ref)
    document = row.to_json(world.clock())
    assert document["fingerprint"] == version.fingerprint
    assert document["kid"] == version.kid_hex
    assert value.reveal() not in str(document)


def test_statuses_lists_every_secret_and_the_rotation_in_flight(world: World) -> None:
    world.seed("jwt-access")
    record = world.engine().start("jwt-access", "dev")
    rows = {(s.ref.environment, s.cls.name): s for s in statuses(world.store, world.inventory,
                                                                   world.clock())}
    assert ("prod", "jwt-access") in rows and ("dev", "vnpay") in rows
    assert rows[("dev", "jwt-access")].rotation == record.id
    assert rows[("dev", "jwt-access")].rotation_state == record.state
    only_dev = statuses(world.store, world.inventory, world.clock(), environment="dev")
    assert {s.ref.environment for s in only_dev} == {"dev"}


def test_now_for_gives_each_environment_its_own_time(world: World) -> None:
    world.seed("jwt-access")
    world.seed("jwt-access", env="prod")
    moved = world.clock() + timedelta(days=200)
    rows = statuses(world.store, world.inventory, world.clock(),
                    now_for=lambda env: moved if env == "dev" else world.clock())
    states = {s.ref: s.state for s in rows if s.cls.name == "jwt-access"}
    assert states[SecretRef("dev", "jwt-access")] is State.OVERDUE
    assert states[SecretRef("prod", "jwt-access")] is State.OK
