"""The state machine on the local store, with a frozen clock and real hooks."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from keyroll.errors import InvalidToken, LockHeld, RotationRefused, StepFailed
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import StoreKeySource
from keyroll.runtime.usage import KidUsage, merge_usage
from tests.leaks import assert_no_leak
from tests.unit.conftest import INVENTORY, World


def _ring(world: World, ref: SecretRef) -> JWTKeyRing:
    source = StoreKeySource(world.store, ref, refresh_interval=0)
    return JWTKeyRing(source, clock=lambda: world.clock().timestamp())


def test_jwt_rotation_keeps_old_tokens_valid_through_the_overlap(world: World) -> None:
    ref = world.seed("jwt-access")
    ring = _ring(world, ref)
    old_token = ring.sign({"sub": "u1"}, ttl=timedelta(minutes=15))
    old_kid = world.store.list_versions(ref)[0].kid_hex

    engine = world.engine()
    record = engine.run(engine.start("jwt-access", "dev").id)
    assert record.state == "overlap"
    labels = world.store.get_labels(ref)
    assert labels == {Label.CURRENT: 2, Label.PREVIOUS: 1}
    # a token signed before still verifies; a new one carries the new kid
    assert ring.verify(old_token)["sub"] == "u1"
    new_token = ring.sign({"sub": "u2"}, ttl=timedelta(minutes=15))
    _, kid = ring.verify_with_kid(new_token)
    assert f"{kid:08x}" == world.store.list_versions(ref)[1].kid_hex != old_kid
    # the deploy hook wrote both keys for env-var apps
    app_env = (world.path / "app.env").read_text()
    assert "JWT_SECRET=" in app_env and "JWT_SECRET_PREVIOUS=" in app_env

    world.clock.tick(timedelta(minutes=30))
    assert engine.run(record.id).state == "overlap"  # 15m + 1h not over yet
    world.clock.tick(timedelta(hours=1))
    done = engine.run(record.id)
    assert done.state == "done"
    assert world.store.get_labels(ref) == {Label.CURRENT: 2}
    assert world.store.list_versions(ref)[0].destroyed
    with pytest.raises(InvalidToken):
        ring.verify(old_token, now=world.clock().timestamp() - 60)
    assert "JWT_SECRET_PREVIOUS" not in (world.path / "app.env").read_text()
    assert world.store.get_lock(ref, now=world.clock()) is None
    assert engine.journal.check().ok
    actions = [r.action for r in engine.journal.records()]
    assert actions[:2] == ["rotation.requested", "rotation.plan"]
    assert actions[-2:] == ["rotation.retire", "rotation.done"]


def test_overlap_waits_while_the_old_kid_is_still_used(world: World) -> None:
    ref = world.seed("jwt-access")
    engine = world.engine()
    record = engine.run(engine.start("jwt-access", "dev").id)
    old = world.store.list_versions(ref)[0]
    world.clock.tick(timedelta(hours=2))  # deadline passed
    merge_usage(world.store, ref, {old.kid: KidUsage(3, 0, world.clock() - timedelta(minutes=1))})
    waiting = engine.run(record.id)
    assert waiting.state == "overlap"
    assert "used within the last" in waiting.body.waiting
    world.clock.tick(timedelta(minutes=11))  # settle period without use
    assert engine.run(record.id).state == "done"


def test_overlap_max_ends_a_wait_on_a_busy_old_kid(world: World) -> None:
    ref = world.seed("jwt-access")
    engine = world.engine()
    record = engine.run(engine.start("jwt-access", "dev").id)
    old = world.store.list_versions(ref)[0]
    world.clock.tick(timedelta(days=1, minutes=1))
    merge_usage(world.store, ref, {old.kid: KidUsage(9, 0, world.clock())})
    done = engine.run(record.id)
    assert done.state == "done"
    overlap = next(s for s in done.body.steps if s.step == "overlap")
    assert "overlap max" in overlap.evidence["overlap"]


def test_incident_retires_at_once_and_revokes(world: World) -> None:
    ref = world.seed("jwt-access")
    engine = world.engine()
    record = engine.run(engine.start("jwt-access", "dev", incident=True).id)
    assert record.state == "done"
    assert world.store.get_labels(ref) == {Label.CURRENT: 2}
    assert (world.path / "revoked-sessions").exists()
    assert record.body.incident is True


def test_failed_verify_hook_turns_the_rotation_back_then_restores_labels(world: World) -> None:
    ref = world.seed("jwt-access")
    before = world.store.get_labels(ref)
    (world.path / "verify-fails").touch()
    engine = world.engine()
    record = engine.run(engine.start("jwt-access", "dev").id)
    # the new key was current (it may have signed tokens): a rotation back, not a destroy
    assert record.state == "overlap" and record.reverted
    assert record.body.error.step == "promote"
    assert "verify hook" in record.body.error.message
    assert world.store.get_labels(ref) == {Label.CURRENT: 1, Label.PREVIOUS: 2}
    env = (world.path / "app.env").read_text()
    assert f"JWT_SECRET={world.store.read_value(ref, 1).reveal()}" in env
    assert "JWT_SECRET_PREVIOUS=" in env  # the rolled-back key still verifies its tokens
    world.clock.tick(timedelta(hours=2))
    record = engine.run(record.id)
    assert record.state == "rolled-back"
    assert world.store.get_labels(ref) == before
    versions = world.store.list_versions(ref)
    assert [v.destroyed for v in versions] == [False, True]
    # the deployment was put back on the old value
    assert "JWT_SECRET_PREVIOUS" not in (world.path / "app.env").read_text()
    assert world.store.get_lock(ref, now=world.clock()) is None
    assert engine.journal.check().ok


def test_one_rotation_per_secret(world: World) -> None:
    world.seed("jwt-access")
    engine = world.engine()
    first = engine.run(engine.start("jwt-access", "dev").id)
    with pytest.raises(RotationRefused, match=f"rotation {first.id} is in flight"):
        engine.start("jwt-access", "dev")


def test_lock_held_by_another_process_is_a_clear_refusal(world: World) -> None:
    ref = world.seed("api")
    world.store.acquire_lock(ref, "r-other", ttl=timedelta(hours=1))  # leases: wall clock
    with pytest.raises(LockHeld, match="locked by rotation r-other"):
        world.engine().start("api", "dev")
    assert world.store.list_rotations() == []


def test_manual_rollback_during_overlap_restores_labels(world: World) -> None:
    ref = world.seed("webhook")
    engine = world.engine()
    record = engine.run(engine.start("webhook", "dev").id)
    assert record.state == "overlap"
    rolled = engine.rollback(record.id)
    # after promote: the old key signs again, the new one still verifies through the overlap
    assert rolled.state == "overlap" and rolled.reverted
    assert world.store.get_labels(ref) == {Label.CURRENT: 1, Label.PREVIOUS: 2}
    with pytest.raises(RotationRefused, match="already rolling back"):
        engine.rollback(record.id)
    world.clock.tick(timedelta(hours=2))
    assert engine.run(record.id).state == "rolled-back"
    assert world.store.get_labels(ref) == {Label.CURRENT: 1}
    assert world.store.list_versions(ref)[1].destroyed
    with pytest.raises(RotationRefused, match="too late"):
        engine.rollback(record.id)


def test_two_person_rule(world: World) -> None:
    ref = world.seed("jwt-access", "prod")
    alice = world.engine("alice")
    record = alice.start("jwt-access", "prod")
    assert record.state == "awaiting-approval"
    assert alice.run(record.id).state == "awaiting-approval"
    with pytest.raises(RotationRefused, match="cannot approve it"):
        alice.approve(record.id)
    bob = world.engine("bob")
    approved = bob.approve(record.id)
    assert approved.state == "plan"
    assert bob.run(record.id).state == "overlap"
    assert world.store.get_labels(ref)[Label.CURRENT] == 2
    plan = next(s for s in bob.get(record.id).body.steps if s.step == "plan")
    assert plan.evidence["approved_by"] == ["bob"]


@pytest.mark.parametrize("name", ["webhook", "api", "opaque"])
def test_other_key_kinds_rotate(world: World, name: str) -> None:
    ref = world.seed(name)
    engine = world.engine()
    record = engine.run(engine.start(name, "dev").id)
    world.clock.tick(timedelta(days=2))
    assert engine.run(record.id).state == "done"
    assert world.store.get_labels(ref) == {Label.CURRENT: 2}
    if name == "webhook":
        assert world.store.read_value(ref, 2).reveal().startswith("whsec_")


def test_encryption_key_retire_gate(world: World) -> None:
    ref = world.seed("field")
    (world.path / "remaining.txt").write_text("1\n")
    engine = world.engine()
    record = engine.run(engine.start("field", "dev").id)
    world.clock.tick(timedelta(hours=2))
    waiting = engine.run(record.id)
    assert waiting.state == "overlap"
    assert "1 records still encrypted under the old key" in waiting.body.waiting
    (world.path / "remaining.txt").write_text("0\n")
    done = engine.run(record.id)
    assert done.state == "done"
    overlap = next(s for s in done.body.steps if s.step == "overlap")
    assert overlap.evidence["remaining_under_old_key"] == 0
    assert world.store.get_labels(ref) == {Label.CURRENT: 2}


def test_provider_cut_over_pauses_for_people(world: World) -> None:
    ref = world.seed("vnpay", value="old-vnpay-hash-secret-0123456789")
    engine = world.engine()
    record = engine.run(engine.start("vnpay", "dev").id)
    assert (record.state, record.body.awaiting) == ("awaiting-confirmation", "drain")
    with pytest.raises(RotationRefused, match="waiting for 'drain', not 'enter'"):
        engine.confirm(record.id, "enter", SecretValue("x" * 32))
    engine.confirm(record.id, "drain")
    assert engine.run(record.id).body.awaiting == "portal"
    engine.confirm(record.id, "portal")
    assert engine.run(record.id).body.awaiting == "enter"
    with pytest.raises(RotationRefused, match="needs the new value"):
        engine.confirm(record.id, "enter")
    new_value = SecretValue("new-vnpay-hash-secret-from-portal-42")
    engine.confirm(record.id, "enter", new_value)
    paused = engine.run(record.id)
    assert (paused.state, paused.body.awaiting) == ("awaiting-confirmation", "smoke")
    assert world.store.read(ref)[1] == new_value
    engine.confirm(record.id, "smoke")
    assert engine.run(record.id).state == "done"
    assert world.store.get_labels(ref) == {Label.CURRENT: 2}


def test_failure_at_retire_keeps_the_rotation_for_a_retry(world: World) -> None:
    ref = world.seed("field")
    engine = world.engine()
    record = engine.run(engine.start("field", "dev").id)
    world.clock.tick(timedelta(hours=2))
    strategy = engine.strategy(world.inventory.classes["field"])
    answers = iter([0, 5])  # the overlap sees 0, then a row appears before retire re-checks
    strategy.counters = [lambda ctx, kid: next(answers)]  # type: ignore[attr-defined]
    with pytest.raises(StepFailed, match="rolling back is no longer safe"):
        engine.run(record.id)
    stuck = engine.get(record.id)
    assert stuck.state == "retire"
    assert "5 records still use it" in stuck.body.error.message
    assert world.store.get_labels(ref) == {Label.CURRENT: 2, Label.PREVIOUS: 1}
    strategy.counters = [lambda ctx, kid: 0]  # type: ignore[attr-defined]
    assert engine.run(record.id).state == "done"


def test_hook_output_is_redacted_evidence(world: World) -> None:
    text = INVENTORY_WITH_LEAKY_HOOK
    (world.path / "keyroll.toml").write_text(text)
    from keyroll.inventory import parse_inventory

    world.inventory = parse_inventory(text, world.path / "keyroll.toml")
    ref = world.seed("api")
    old = world.store.read_value(ref, 1).reveal()
    engine = world.engine()
    record = engine.run(engine.start("api", "dev").id)
    assert record.state == "done"
    values = [old, world.store.read_value(ref, 2).reveal()]
    promote = next(s for s in record.body.steps if s.step == "promote")
    hook = promote.evidence["hooks"][0]
    assert hook["ok"] is True
    assert "API_KEY=" in hook["output"]
    journal = json.dumps([r.to_json() for r in engine.journal.records()])
    assert_no_leak([json.dumps(record.body.to_json()), journal], values, where="evidence")


INVENTORY_WITH_LEAKY_HOOK = """
[environments.dev]
[classes.api]
kind = "api-key"
env_vars = ["API_KEY"]
cadence_days = 90
tier = "medium"
blast_radius = "x"
owner = "y"
environments = ["dev"]
hooks.on_promote = [{ run = "cat", stdin_dotenv = true }]
"""


def test_unknown_class_or_environment(world: World) -> None:
    from keyroll.errors import UnknownSecret

    engine = world.engine()
    with pytest.raises(UnknownSecret):
        engine.start("nope", "dev")
    with pytest.raises(UnknownSecret):
        engine.start("api", "qa")
    with pytest.raises(RotationRefused, match="no current version"):
        engine.start("api", "dev")
    assert world.store.list_rotations() == []


def test_step_failure_at_overlap_is_reported_not_rolled_back(world: World) -> None:
    world.seed("field")
    engine = world.engine()
    record = engine.run(engine.start("field", "dev").id)
    world.clock.tick(timedelta(hours=2))
    (world.path / "remaining.txt").write_text("not a number\n")
    waiting = engine.run(record.id)
    assert waiting.state == "overlap"
    assert "must print the number" in waiting.body.waiting


def test_promote_waits_for_apps_to_load_the_pending_key(world: World) -> None:
    ref = world.seed("jwt-access")
    engine = world.engine()
    record = engine.run(engine.start("jwt-access", "dev").id)
    steps = {s.step: s for s in record.body.steps}
    created = record.body.pending_since
    promoted = steps["promote"].started_at
    assert created is not None
    assert promoted - created >= world.inventory.classes["jwt-access"].overlap.propagation
    assert any("load the new key" in e.message for e in world.events)
    # env-var apps get the versions' random kids beside the values
    env = dict(line.split("=", 1) for line in (world.path / "app.env").read_text().splitlines())
    versions = world.store.list_versions(ref)
    assert env["JWT_SECRET_KID"] == versions[1].kid_hex
    assert env["JWT_SECRET_PREVIOUS_KID"] == versions[0].kid_hex


def test_incident_does_not_wait_for_propagation(world: World) -> None:
    world.seed("jwt-access")
    engine = world.engine()
    record = engine.run(engine.start("jwt-access", "dev", incident=True).id)
    assert record.state == "done"
    assert record.created_at == world.clock()


def test_store_outage_in_a_step_pauses_instead_of_rolling_back(world: World) -> None:
    from keyroll.errors import StoreUnavailable
    from keyroll.stores.sqlite import SQLiteStore

    class FlakyStore(SQLiteStore):
        down = False

        def set_labels(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            if self.down:
                raise StoreUnavailable("store down (test)")
            return super().set_labels(*args, **kwargs)  # type: ignore[arg-type]

    ref = world.seed("api")
    flaky = FlakyStore(world.path / ".keyroll" / "store.db", world.key)
    world.store = flaky
    engine = world.engine()
    record = engine.start("api", "dev")
    flaky.down = True
    with pytest.raises(StoreUnavailable):
        engine.run(record.id)
    paused = engine.get(record.id)
    assert paused.state == "create"
    assert world.store.get_labels(ref) == {Label.CURRENT: 1}
    flaky.down = False
    assert engine.run(record.id).state == "overlap"
    flaky.close()


def test_env_var_apps_accept_the_new_key_before_it_signs(world: World) -> None:
    """Two deploys: apply stages JWT_SECRET_NEXT, promote flips; an instance still on the staged
    .env verifies what a promoted instance signs."""
    from keyroll.runtime.keysource import EnvKeySource

    world.seed("jwt-access")
    snapshots: list[dict[str, str]] = []

    def capture(event: object) -> None:
        if getattr(event, "kind", "") == "step.finished" and getattr(event, "step", "") == "apply":
            text = (world.path / "app.env").read_text()
            snapshots.append(dict(line.split("=", 1) for line in text.splitlines()))

    engine = world.engine()
    engine.observers.append(capture)
    engine.run(engine.start("jwt-access", "dev").id)
    (staged,) = snapshots
    assert "JWT_SECRET_NEXT" in staged and "JWT_SECRET_PREVIOUS" not in staged
    promoted = dict(line.split("=", 1) for line in (world.path / "app.env").read_text().splitlines())
    assert promoted["JWT_SECRET"] == staged["JWT_SECRET_NEXT"]
    assert promoted["JWT_SECRET_PREVIOUS"] == staged["JWT_SECRET"]

    clock = lambda: world.clock().timestamp()  # noqa: E731
    old_instance = JWTKeyRing(EnvKeySource.jwt_secret(environ=staged), clock=clock)
    new_instance = JWTKeyRing(EnvKeySource.jwt_secret(environ=promoted), clock=clock)
    token = new_instance.sign({"sub": "u"}, ttl=timedelta(minutes=5))
    assert old_instance.verify(token)["sub"] == "u"
    legacy = old_instance.sign({"sub": "v"}, ttl=timedelta(minutes=5))
    assert new_instance.verify(legacy)["sub"] == "v"


def test_status_knows_every_in_flight_state() -> None:
    from keyroll.rotation import engine

    expected = {*engine.STEPS, engine.AWAITING_APPROVAL, engine.AWAITING_CONFIRMATION,
                engine.ROLLING_BACK}
    assert set(engine.ACTIVE) == expected
    assert not engine.ACTIVE & engine.TERMINAL


def test_a_foreign_exception_never_reaches_the_record_with_its_text(world: World) -> None:
    ref = world.seed("api")
    secret = world.store.read_value(ref, 1).reveal()
    engine = world.engine()
    strategy = engine.strategy(world.inventory.classes["api"])

    def leaky_test(ctx: object) -> None:
        raise RuntimeError(f"driver said: password {secret} rejected")

    strategy.test = leaky_test  # type: ignore[method-assign]
    record = engine.run(engine.start("api", "dev").id)
    assert record.state == "rolled-back"
    assert "RuntimeError in step test" in record.body.error.message
    journal = json.dumps([r.to_json() for r in engine.journal.records()])
    assert_no_leak([json.dumps(record.body.to_json()), journal], [secret], where="record and journal")


def test_two_processes_never_drive_one_rotation_at_once(world: World) -> None:
    world.seed("api")
    first, second = world.engine(), world.engine()
    record = first.start("api", "dev")
    lease = first._new_lease(record.ref, record.id, timedelta(minutes=2))
    lease.acquire()  # first is mid-step (a live process holds the lease)
    with pytest.raises(LockHeld, match="another keyroll process is working on it"):
        second.run(record.id)
    with pytest.raises(LockHeld):
        second.rollback(record.id)
    assert second.get(record.id).state == "plan"
    lease.release()
    assert second.run(record.id).state == "overlap"


def test_a_target_that_cannot_be_reset_keeps_the_rollback_open(world: World) -> None:
    from keyroll.errors import TargetError

    ref = world.seed("api")
    engine = world.engine()
    strategy = engine.strategy(world.inventory.classes["api"])
    calls: list[str] = []

    def reset(ctx: object) -> None:
        calls.append("reset")
        if len(calls) == 1:
            raise TargetError("target down (test)")

    def failing_test(ctx: object) -> None:
        raise StepFailed("the new key does not work (test)")

    strategy.rollback = reset  # type: ignore[method-assign]
    strategy.test = failing_test  # type: ignore[method-assign]
    record = engine.start("api", "dev")
    with pytest.raises(StepFailed, match="could not be reset"):
        engine.run(record.id)  # test fails before promote: the classic rollback
    stuck = engine.get(record.id)
    assert stuck.state == "rolling-back"
    assert world.store.get_labels(ref) == {Label.CURRENT: 1}  # labels first: still consistent
    assert engine.run(record.id).state == "rolled-back"
    assert calls == ["reset", "reset"]
    assert world.store.list_versions(ref)[1].destroyed


HOOK_ENV_INVENTORY = """
[environments.dev]
[classes.api]
kind = "api-key"
env_vars = ["API_KEY"]
cadence_days = 90
tier = "medium"
blast_radius = "x"
owner = "y"
environments = ["dev"]
hooks.on_promote = [
  { run = "env", name = "print env" },
  { run = "sh -c 'echo passed=$DEPLOY_TOKEN'", pass_env = ["DEPLOY_TOKEN"] },
  { run = "sh -c 'head -c 5000 /dev/zero | tr \\"\\\\0\\" x; cat'", stdin_dotenv = true },
]
"""


def test_hooks_get_a_small_environment_and_masked_output(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyroll.inventory import parse_inventory

    master = "master-key-material-" + "q" * 24
    deploy_token = "deploy-token-" + "z" * 24
    monkeypatch.setenv("KEYROLL_MASTER_KEY", master)
    monkeypatch.setenv("SOME_ADMIN_PASSWORD", "admin-password-" + "w" * 20)
    monkeypatch.setenv("DEPLOY_TOKEN", deploy_token)
    world.inventory = parse_inventory(HOOK_ENV_INVENTORY, world.path / "keyroll.toml")
    ref = world.seed("api")
    old = world.store.read_value(ref, 1).reveal()
    engine = world.engine()
    record = engine.run(engine.start("api", "dev").id)
    assert record.state == "done", record.body.error
    promote = next(s for s in record.body.steps if s.step == "promote")
    env_dump, passed, long_output = (h["output"] for h in promote.evidence["hooks"])
    assert "KEYROLL_ROTATION=" in env_dump and "PATH=" in env_dump
    assert "KEYROLL_MASTER_KEY" not in env_dump and "SOME_ADMIN_PASSWORD" not in env_dump
    assert passed.startswith("passed=") and deploy_token not in passed  # passed on, masked
    assert long_output.startswith("…") and "API_KEY=" in long_output
    new = world.store.read_value(ref, 2).reveal()
    journal = json.dumps([r.to_json() for r in engine.journal.records()])
    assert_no_leak([json.dumps(record.body.to_json()), journal], [old, new, master, deploy_token],
                   where="hook evidence")


def test_an_unapproved_request_expires_and_frees_the_secret(world: World) -> None:
    from keyroll.rotation.engine import APPROVAL_TTL

    world.seed("jwt-access", "prod")
    engine = world.engine("alice")
    record = engine.start("jwt-access", "prod")
    engine.advance(start_due=False)
    assert engine.get(record.id).state == "awaiting-approval"
    world.clock.tick(APPROVAL_TTL + timedelta(minutes=1))
    engine.advance(start_due=False)
    expired = engine.get(record.id)
    assert expired.state == "rolled-back"
    assert "approval request expired" in expired.body.error.message
    assert engine.start("jwt-access", "prod").state == "awaiting-approval"


def test_the_jwt_algorithm_travels_with_the_key(world: World) -> None:
    import jwt as pyjwt

    text = INVENTORY.replace('overlap = { token_ttl = "15m", margin = "1h", settle = "10m", '
                             'max = "1d" }',
                             'overlap = { token_ttl = "15m", margin = "1h", settle = "10m", '
                             'max = "1d" }\noptions = { algorithm = "HS512" }', 1)
    from keyroll.inventory import parse_inventory

    world.inventory = parse_inventory(text, world.path / "keyroll.toml")
    ref = world.seed("jwt-access")
    engine = world.engine()
    engine.run(engine.start("jwt-access", "dev").id)
    assert world.store.list_versions(ref)[1].meta["alg"] == "HS512"
    ring = _ring(world, ref)  # the app's ring defaults to HS256; the key says HS512
    token = ring.sign({"sub": "u"}, ttl=timedelta(minutes=5))
    assert pyjwt.get_unverified_header(token)["alg"] == "HS512"
