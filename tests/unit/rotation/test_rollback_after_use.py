"""Rollback and incident never destroy what is in use (issue 10 §1).

Each test plays the operator's unhappy path on the real SQLite store with the runtime's own
key rings: keys that signed tokens or encrypted rows during the overlap stay accepted after a
rollback until the same overlap and gates say nothing uses them.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from keyroll.errors import InvalidToken, RotationRefused, StepFailed
from keyroll.inventory import parse_inventory
from keyroll.model import Label, SecretValue
from keyroll.reports import checklist, drill_report
from keyroll.runtime.fields import FieldCipher
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import StoreKeySource
from tests.unit.conftest import INVENTORY, World

COUNTING_FIELD = INVENTORY.replace(
    'hooks.remaining = [{ run = "cat remaining.txt" }]',
    # rows.txt: "<kid hex> <ciphertext>" per row, as the app wrote them; the hook counts the
    # rows under the kid keyroll asks about (the retiring one)
    r"""hooks.remaining = [{ run = "sh -c 'grep -c \"^$KEYROLL_OLD_KID \" rows.txt || true'" }]""",
)


def _cipher(world: World) -> FieldCipher:
    return FieldCipher(StoreKeySource(world.store, world.ref_field, refresh_interval=0))


@pytest.fixture
def field_world(world: World) -> World:
    (world.path / "keyroll.toml").write_text(COUNTING_FIELD)
    world.inventory = parse_inventory(COUNTING_FIELD, world.path / "keyroll.toml")
    world.ref_field = world.seed("field")  # type: ignore[attr-defined]
    (world.path / "rows.txt").write_text("")
    return world


def _write_rows(world: World, cipher: FieldCipher, count: int) -> list[tuple[str, bytes]]:
    rows = []
    with (world.path / "rows.txt").open("a") as out:
        for n in range(count):
            plain = f"row {n}".encode()
            blob = cipher.encrypt(plain, context=("t", "c", str(n)))
            out.write(f"{cipher.kid_of(blob):08x} {blob.hex()}\n")
            rows.append((str(n), blob))
    return rows


def test_encryption_key_rollback_after_use_keeps_rows_readable(field_world: World) -> None:
    world = field_world
    ref = world.ref_field  # type: ignore[attr-defined]
    engine = world.engine()
    record = engine.run(engine.start("field", "dev").id)
    assert record.state == "overlap"
    new_kid = world.store.get_version(ref, 2).kid
    # the app writes rows under the new key during the overlap
    rows = _write_rows(world, _cipher(world), 3)
    assert all(_cipher(world).kid_of(blob) == new_kid for _, blob in rows)

    back = engine.rollback(record.id, reason="bad deploy")
    assert back.state == "overlap" and back.reverted
    assert world.store.get_labels(ref) == {Label.CURRENT: 1, Label.PREVIOUS: 2}
    assert not world.store.list_versions(ref)[1].destroyed
    cipher = _cipher(world)
    fresh = cipher.encrypt(b"after", context="x")
    assert cipher.kid_of(fresh) == world.store.get_version(ref, 1).kid  # never encrypts
    for n, blob in rows:
        assert cipher.decrypt(blob, context=("t", "c", n)) == f"row {n}".encode()

    # the retire gate runs in reverse: rows under the rolled-back key hold it back
    world.clock.tick(timedelta(days=3))
    waiting = engine.run(record.id)
    assert waiting.state == "overlap"
    assert "3 records still encrypted" in (waiting.body.waiting or "")
    assert not world.store.list_versions(ref)[1].destroyed
    # the operator re-encrypts back to the old key, then the rolled-back key retires
    (world.path / "rows.txt").write_text("")
    done = engine.run(record.id)
    assert done.state == "rolled-back"
    assert world.store.get_labels(ref) == {Label.CURRENT: 1}
    assert world.store.list_versions(ref)[1].destroyed
    assert done.body.rollback["verified"]["round_trip"]["verified"] is True


def test_jwt_rollback_after_promote_keeps_overlap_tokens_valid(world: World) -> None:
    ref = world.seed("jwt-access")
    engine = world.engine()
    record = engine.run(engine.start("jwt-access", "dev").id)
    assert record.state == "overlap"
    ring = JWTKeyRing(StoreKeySource(world.store, ref, refresh_interval=0))
    token = ring.sign({"sub": "u1"}, ttl=timedelta(minutes=15))  # signed by the new key

    back = engine.rollback(record.id)
    assert back.state == "overlap" and back.reverted
    ring = JWTKeyRing(StoreKeySource(world.store, ref, refresh_interval=0))
    assert ring.verify(token)["sub"] == "u1"  # nobody is logged out
    _, signing_kid = ring.verify_with_kid(ring.sign({"sub": "u2"}, ttl=timedelta(minutes=1)))
    assert signing_kid == world.store.get_version(ref, 1).kid
    # the same overlap policy: token TTL + margin (15m + 1h)
    world.clock.tick(timedelta(minutes=30))
    assert engine.run(record.id).state == "overlap"
    assert ring.verify(token)["sub"] == "u1"
    world.clock.tick(timedelta(hours=1))
    assert engine.run(record.id).state == "rolled-back"
    ring = JWTKeyRing(StoreKeySource(world.store, ref, refresh_interval=0))
    with pytest.raises(InvalidToken):
        ring.verify(token)
    assert world.store.get_labels(ref) == {Label.CURRENT: 1}


def test_incident_failure_never_returns_to_the_burned_key(world: World) -> None:
    ref = world.seed("jwt-access")
    (world.path / "verify-fails").touch()
    engine = world.engine()
    record = engine.start("jwt-access", "dev", incident=True)
    with pytest.raises(StepFailed, match=r"incident rotation.*fix forward"):
        engine.run(record.id)
    stuck = engine.get(record.id)
    assert stuck.state == "promote"
    assert world.store.get_labels(ref)[Label.CURRENT] == 2  # the burned key is not current
    with pytest.raises(RotationRefused, match=r"incident rotation.*Rotate forward"):
        engine.rollback(record.id)
    assert world.store.get_labels(ref)[Label.CURRENT] == 2
    (world.path / "verify-fails").unlink()  # the operator fixes forward
    assert engine.run(record.id).state == "done"
    assert world.store.get_labels(ref) == {Label.CURRENT: 2}


def test_incident_rollback_before_create_is_allowed(world: World) -> None:
    world.seed("jwt-access", "prod")
    engine = world.engine()
    record = engine.start("jwt-access", "prod", incident=True)  # waits for approval
    assert engine.rollback(record.id).state == "rolled-back"


def test_provider_secret_rollback_refused_after_the_portal_step(world: World) -> None:
    ref = world.seed("vnpay")
    engine = world.engine()
    record = engine.run(engine.start("vnpay", "dev").id)
    assert record.body.awaiting == "drain"
    engine.confirm(record.id, "drain")
    record = engine.run(record.id)
    assert record.body.awaiting == "portal"
    engine.confirm(record.id, "portal")
    with pytest.raises(RotationRefused, match="provider has already replaced the value"):
        engine.rollback(record.id)
    record = engine.run(record.id)
    engine.confirm(record.id, "enter", SecretValue("vnp-hash-" + "9" * 24))
    record = engine.run(record.id)
    with pytest.raises(RotationRefused, match=r"[rR]otate forward"):
        engine.rollback(record.id)
    assert world.store.get_labels(ref).get(Label.CURRENT) in (1, 2)


def test_provider_secret_rollback_before_the_portal_step(world: World) -> None:
    ref = world.seed("vnpay")
    engine = world.engine()
    record = engine.run(engine.start("vnpay", "dev").id)
    engine.confirm(record.id, "drain")
    assert engine.rollback(engine.run(record.id).id).state == "rolled-back"
    assert world.store.get_labels(ref) == {Label.CURRENT: 1}


def test_rollback_records_what_it_verified_and_the_reports_say_so(world: World) -> None:
    ref = world.seed("api")
    engine = world.engine()
    strategy = engine.strategy(world.inventory.classes["api"])

    def failing(ctx: object) -> None:
        raise StepFailed("the new key does not work (test)")

    strategy.test = failing  # type: ignore[method-assign]
    record = engine.run(engine.start("api", "dev").id)
    assert record.state == "rolled-back"
    verified = record.body.rollback["verified"]
    assert verified == {"version": 1, "fingerprint": world.store.get_version(ref, 1).fingerprint,
                        "readable": True}
    text = checklist(world.store, world.inventory, engine.journal, "api", "dev", record.id)
    assert "[x] Secret store updated" not in text
    assert "ROLLED BACK at test" in text and "version 1 is current again, verified" in text
    assert "Old secret retired: no: the rotation was rolled back" in text
    report = drill_report(world.store, world.inventory, engine.journal, record.id)
    assert "Rollback triggered: yes (before promote" in report
    assert "verified afterwards: version 1 accepted" in report


def test_rotation_back_reports_verification(world: World) -> None:
    world.seed("webhook")
    engine = world.engine()
    record = engine.run(engine.start("webhook", "dev").id)
    engine.rollback(record.id)
    world.clock.tick(timedelta(hours=2))
    done = engine.run(record.id)
    assert done.state == "rolled-back"
    report = drill_report(world.store, world.inventory, engine.journal, record.id)
    assert "Rollback triggered: yes (after promote: a rotation back" in report
    assert "verified afterwards: version 1 accepted (round_trip)" in report
    text = checklist(world.store, world.inventory, engine.journal, "webhook", "dev", record.id)
    assert "[x] Secret store updated" not in text and "ROLLED BACK" in text


def test_strategies_are_told_when_a_rotation_runs_back(world: World) -> None:
    world.seed("jwt-access")
    engine = world.engine()
    cls = world.inventory.classes["jwt-access"]
    record = engine.run(engine.start("jwt-access", "dev").id)
    forward = engine._context(engine.get(record.id), cls)
    assert not forward.back and forward.old is not None and forward.new is not None
    assert forward.old.number < forward.new.number
    back = engine._context(engine.rollback(record.id), cls)
    assert back.back  # old is the rolled-back (newer) version, new the one that stays
    assert back.old is not None and back.new is not None and back.old.number > back.new.number
