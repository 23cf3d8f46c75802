"""``issued-key``: the provider issues and revokes, through commands, against the fake
provider CLI in ``tests/fake_provider.py`` (its quota, its revocation record, its hostile
outputs), with a leak grep of every output and the SIGKILL crash matrix."""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import tests.crash as crash
import tests.fake_provider as fake
from keyroll.errors import UsageError
from keyroll.inventory import Inventory, parse_inventory
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.render import collect
from keyroll.rotation.strategies.issued_key import issued_options
from keyroll.stores.sqlite import SQLiteStore
from tests.leaks import assert_no_leak
from tests.world import World

FAKE = str(Path(fake.__file__).resolve())


def command(state: Path, action: str) -> str:
    return json.dumps([sys.executable, "-I", "-S", FAKE, str(state), action])


def inventory_text(state: Path, *, listing: bool = True, last_used: bool = True,
                   extra: str = "", overlap: str = '{ min = "1h", max = "3d" }') -> str:
    lines = [
        f"issue = {{ run = {command(state, 'issue')} }}",
        f"revoke = {{ run = {command(state, 'revoke')} }}",
        f"test = {{ run = {command(state, 'test')} }}",
    ]
    if listing:
        lines.append(f"list = {{ run = {command(state, 'list')} }}")
    if last_used:
        lines.append(f"last_used = {{ run = {command(state, 'last-used')} }}")
    options = "\n".join(lines) + "\n" + extra
    return f"""
project = "t"
[environments.dev]

[classes.openai]
kind = "issued-key"
env_vars = ["OPENAI_API_KEY"]
cadence_days = 90
tier = "medium"
blast_radius = "AI features"
owner = "platform"
environments = ["dev"]
overlap = {overlap}
hooks.on_promote = [{{ write_dotenv = "app.env" }}]

[classes.openai.options]
{options}
"""


def seed(store: SQLiteStore, state: Path, ref: SecretRef) -> tuple[str, str]:
    key_id, value = fake.issue_key(state)
    version = store.put_version(ref, SecretValue(value), meta={"key_id": key_id})
    store.set_labels(ref, expected={}, new={Label.CURRENT: version.number})
    return key_id, value


def make(tmp_path: Path, **kwargs: Any) -> tuple[World, Path, SecretRef, str, str]:
    state = fake.create_state(tmp_path / "provider.json")
    world = World.create(tmp_path, inventory_text(state, **kwargs))
    ref = SecretRef("dev", "openai")
    key_id, value = seed(world.store, state, ref)  # type: ignore[arg-type]
    return world, state, ref, key_id, value


def outputs(world: World, *extra: str) -> list[str]:
    events = "\n".join(f"{e.message} {json.dumps(e.evidence, default=str)}" for e in world.events)
    return [world.journal_text(), world.records_text(), events,
            *(world.store.get_meta(k) or "" for k in world.store.list_meta()), *extra]


def test_full_rotation_issues_tests_waits_for_quiet_and_revokes(tmp_path: Path) -> None:
    world, state, ref, old_id, old_value = make(tmp_path)
    engine = world.engine()
    record = engine.start("openai", "dev")
    record = engine.run(record.id)
    assert record.state == "overlap"
    keys = fake.live_keys(state)
    assert set(keys) - {old_id}, "the provider issued no second key"
    new_id = next(k for k in keys if k != old_id)
    current = world.store.get_version(ref, world.store.get_labels(ref)[Label.CURRENT])
    assert current.meta["key_id"] == new_id
    assert world.store.read_value(ref, current.number).reveal() == keys[new_id]
    # an app still uses the old key after promote: the overlap waits past its deadline
    world.clock.tick(timedelta(hours=2))
    fake.record_use(state, old_id, world.clock())
    world.clock.tick(timedelta(minutes=1))
    record = engine.run(record.id)
    assert record.state == "overlap"
    assert "used since the overlap began" in str(record.body.waiting)
    assert old_id in fake.live_keys(state)
    # quiet again long enough? no quiet is configured: only max ends it, or a restart of use
    world.clock.tick(timedelta(days=3))
    record = engine.run(record.id)
    assert record.state == "done"
    provider = fake.read_state(state)
    assert set(provider["keys"]) == {new_id}
    assert provider["revoked"] == [old_id]
    dotenv = (tmp_path / "app.env").read_text()
    assert keys[new_id].replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") in dotenv
    assert_no_leak(outputs(world), [old_value, keys[new_id]], where="journal/records/events")


def test_overlap_ends_when_the_old_key_was_last_used_before_promote(tmp_path: Path) -> None:
    world, state, _ref, old_id, _ = make(tmp_path, extra='quiet = "30m"\n')
    fake.record_use(state, old_id, world.clock() - timedelta(minutes=5))
    engine = world.engine()
    record = engine.run(engine.start("openai", "dev").id)
    assert record.state == "overlap"
    world.clock.tick(timedelta(minutes=61))
    record = engine.run(record.id)
    assert record.state == "done", record.body.waiting
    overlap = [s for s in record.body.steps if s.step == "overlap"][-1]
    assert overlap.evidence["overlap"].endswith("last used before the overlap began")


def test_quiet_period_ends_an_overlap_after_late_use(tmp_path: Path) -> None:
    world, state, _ref, old_id, _ = make(tmp_path, extra='quiet = "30m"\n')
    engine = world.engine()
    record = engine.run(engine.start("openai", "dev").id)
    world.clock.tick(timedelta(minutes=50))
    fake.record_use(state, old_id, world.clock())
    world.clock.tick(timedelta(minutes=15))
    assert engine.run(record.id).state == "overlap"
    world.clock.tick(timedelta(minutes=20))
    assert engine.run(record.id).state == "done"


def test_quota_full_refuses_in_one_line_and_changes_nothing(tmp_path: Path) -> None:
    world, state, ref, _old_id, _ = make(tmp_path, extra="max_keys = 2\n")
    fake.issue_key(state)  # someone made a second key by hand
    before = fake.read_state(state)
    record = world.engine().run(world.engine().start("openai", "dev").id)
    assert record.state == "rolled-back"
    assert record.body.error is not None
    assert record.body.error.step == "plan"
    message = record.body.error.message
    assert "\n" not in message and "already holds 2 keys" in message
    assert "revoke one that is not in use" in message
    assert fake.read_state(state) == before
    assert world.store.get_labels(ref) == {Label.CURRENT: 1}


def test_provider_quota_error_rolls_back_without_a_trace_of_a_key(tmp_path: Path) -> None:
    world, state, ref, old_id, _ = make(tmp_path)  # no max_keys: the provider refuses itself
    fake.issue_key(state)
    record = world.engine().run(world.engine().start("openai", "dev").id)
    assert record.state == "rolled-back"
    assert record.body.error is not None
    assert "quota exceeded" in record.body.error.message
    assert "exit code 4" in record.body.error.message
    assert world.store.get_labels(ref) == {Label.CURRENT: 1}
    assert old_id in fake.live_keys(state)


@pytest.mark.parametrize("mode, said", [
    ("empty", "printed nothing"),
    ("nonjson", "starts like JSON but is not JSON"),
    ("huge", "more than 65536 bytes"),
    ("array", "JSON that is not an object"),
    ("multi", "several lines"),
    ("echo", "exit code 5"),
])
def test_hostile_issue_output_rolls_back_and_leaks_nothing(tmp_path: Path, mode: str,
                                                          said: str) -> None:
    world, state, ref, old_id, old_value = make(tmp_path)
    fake.set_mode(state, mode)
    record = world.engine().run(world.engine().start("openai", "dev").id)
    assert record.state == "rolled-back"
    assert record.body.error is not None
    assert said in record.body.error.message
    assert "\n" not in record.body.error.message
    provider = fake.read_state(state)
    # whatever the provider issued (it did, for all but "empty"? no: every mode but the
    # quota one issues) was revoked by the rollback, found by `list`
    assert set(provider["keys"]) == {old_id}
    issued = list(provider["revoked"])
    assert len(issued) == provider["issued"] - 1
    secrets = [old_value]
    assert_no_leak(outputs(world), secrets, where=f"outputs after mode {mode}")
    assert world.store.get_labels(ref) == {Label.CURRENT: 1}
    assert len([v for v in world.store.list_versions(ref) if not v.destroyed]) == 1


def test_echoing_provider_value_is_masked_in_the_error(tmp_path: Path) -> None:
    """A CLI that writes the value to stderr and fails: the error quotes stderr redacted."""
    world, state, _ref, _old_id, _ = make(tmp_path, listing=False)
    fake.set_mode(state, "echo")
    record = world.engine().run(world.engine().start("openai", "dev").id)
    assert record.body.error is not None
    assert "debug: issued" in record.body.error.message
    # without `list` the rollback cannot find the key the failing CLI issued: it says so
    revoked = fake.read_state(state)["revoked"]
    assert revoked == []
    leaked = list(fake.live_keys(state).values())
    assert_no_leak(outputs(world), leaked, where="outputs of an echoing provider")


def test_bare_value_is_revoked_by_value_on_stdin(tmp_path: Path) -> None:
    world, state, _ref, old_id, _ = make(tmp_path)
    fake.set_mode(state, "bare")
    record = world.engine().run(world.engine().start("openai", "dev").id)
    assert record.state == "overlap"
    world.clock.tick(timedelta(days=4))
    assert world.engine().run(record.id).state == "done"
    assert fake.read_state(state)["revoked"] == [old_id]
    # the next rotation revokes the bare-issued key through its value on stdin
    fake.set_mode(state, "json")
    world.rotate("openai", tick=timedelta(days=4))
    provider = fake.read_state(state)
    assert len(provider["revoked"]) == 2 and len(provider["keys"]) == 1


def test_rollback_after_promote_revokes_the_new_key_once_unused(tmp_path: Path) -> None:
    world, state, ref, old_id, old_value = make(tmp_path)
    engine = world.engine()
    record = engine.run(engine.start("openai", "dev").id)
    assert record.state == "overlap"
    new_id = next(k for k in fake.live_keys(state) if k != old_id)
    record = engine.rollback(record.id, reason="new key misbehaves")
    assert record.reverted
    current = world.store.get_labels(ref)[Label.CURRENT]
    assert world.store.read_value(ref, current).reveal() == old_value
    world.clock.tick(timedelta(days=4))
    record = engine.run(record.id)
    assert record.state == "rolled-back"
    provider = fake.read_state(state)
    assert set(provider["keys"]) == {old_id}
    assert provider["revoked"] == [new_id]


def test_crash_inside_issue_is_reconciled_by_list(tmp_path: Path) -> None:
    """The provider issued a key, and keyroll died (SIGKILL) before it stored the value: the
    next run revokes that orphan and issues a fresh key; the quota is never exceeded."""
    world, state, ref, old_id, _ = make(tmp_path, extra="max_keys = 2\n")
    key = world.key
    world.store.close()
    fake.set_mode(state, "kill-parent")
    pid = os.fork()
    if pid == 0:
        try:
            with SQLiteStore(tmp_path / ".keyroll/store.db", key) as store:
                child = World(tmp_path, store, world.inventory, world.clock, key)
                child.engine().run(child.engine().start("openai", "dev").id)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    orphan = next(k for k in fake.live_keys(state) if k != old_id)
    fake.set_mode(state, "json")
    with SQLiteStore(tmp_path / ".keyroll/store.db", key) as store:
        again = World(tmp_path, store, world.inventory, world.clock, key)
        active = store.list_rotations(ref)[-1]
        record = again.finish(active.id, tick=timedelta(days=4))
        assert record.state == "done"
        create = [s for s in record.body.steps if s.step == "create"][-1]
        assert create.evidence["reconciled"] == [{"key_id": orphan, "outcome": "revoked"}]
        current = store.get_version(ref, store.get_labels(ref)[Label.CURRENT])
    provider = fake.read_state(state)
    assert set(provider["keys"]) == {current.meta["key_id"]}
    assert provider["revoked"] == [orphan, old_id]


def test_crash_inside_issue_without_list_stops_with_the_manual_step(tmp_path: Path) -> None:
    world, state, ref, _old_id, _ = make(tmp_path, listing=False)
    key = world.key
    world.store.close()
    fake.set_mode(state, "kill-parent")
    pid = os.fork()
    if pid == 0:
        try:
            with SQLiteStore(tmp_path / ".keyroll/store.db", key) as store:
                child = World(tmp_path, store, world.inventory, world.clock, key)
                child.engine().run(child.engine().start("openai", "dev").id)
        finally:
            os._exit(3)
    os.waitpid(pid, 0)
    fake.set_mode(state, "json")
    with SQLiteStore(tmp_path / ".keyroll/store.db", key) as store:
        again = World(tmp_path, store, world.inventory, world.clock, key)
        active = store.list_rotations(ref)[-1]
        record = again.engine().run(active.id)
        assert record.state == "rolled-back"
        message = record.body.error.message if record.body.error else ""
        assert "cannot tell whether the provider issued one" in message
        assert "revoke it, and start a new rotation" in message
        assert store.get_labels(ref) == {Label.CURRENT: 1}
    assert fake.read_state(state)["issued"] == 2  # the orphan, and no second issue


def test_crash_matrix(tmp_path_factory: pytest.TempPathFactory,
                      capsys: pytest.CaptureFixture[str]) -> None:
    counter = itertools.count()
    # the writes around the provider's side effects; the engine's own lock and journal points
    # are killed at by its matrix (tests/unit/rotation/test_crash.py)
    STRATEGY_WRITES = ("put_meta", "put_version", "set_labels", "destroy_version",
                       "save_rotation", "create_rotation")

    def make_world() -> tuple[Path, Inventory]:
        folder = tmp_path_factory.mktemp(f"issued-crash-{next(counter)}")
        state = fake.create_state(folder / "provider.json")
        # issue, revoke and list: the commands the crash safety rests on (test and
        # last_used add time, not kill points)
        text = inventory_text(state, extra="max_keys = 2\n", last_used=False).replace(
            f"test = {{ run = {command(state, 'test')} }}\n", "")
        (folder / "keyroll.toml").write_text(text)
        return folder, parse_inventory(text, folder / "keyroll.toml")

    def seed_key(store: SQLiteStore, inventory: Inventory, name: str, env: str) -> SecretRef:
        ref = SecretRef(env, name)
        seed(store, store.path.parent / "provider.json", ref)
        return ref

    def check_target(store: SQLiteStore, ref: SecretRef) -> None:
        labels = store.get_labels(ref)
        keys = fake.live_keys(store.path.parent / "provider.json")
        held = {store.get_version(ref, n).meta["key_id"] for n in labels.values()}
        assert set(keys) == held, f"provider keys {sorted(keys)} != stored {sorted(held)}"
        current = labels[Label.CURRENT]
        assert keys[store.get_version(ref, current).meta["key_id"]] == \
            store.read_value(ref, current).reveal()

    points = crash.run_crash_matrix(make_world, "openai", "dev", check_target=check_target,
                                    seed=seed_key, kinds=STRATEGY_WRITES)
    # the rollback matrix kills only from the overlap on: before it, both runs are the same
    first = next(p.kill_at for p in points if p.state_after_crash == "overlap")
    back = crash.run_crash_matrix(make_world, "openai", "dev", check_target=check_target,
                                  seed=seed_key, rollback_at="overlap", start=first,
                                  kinds=STRATEGY_WRITES)
    with capsys.disabled():
        print("\n" + crash.format_table("issued-key", points))
        print(crash.format_table("issued-key, rollback after promote", back))
    assert any(p.write == "put_meta" for p in points), "no kill point between intent and issue"
    assert {p.final for p in points} == {"done"}
    assert {p.final for p in back} == {"rolled-back"}


def test_pair_delivers_the_key_id_and_the_value_as_two_variables(tmp_path: Path) -> None:
    state = fake.create_state(tmp_path / "provider.json")
    text = inventory_text(state, extra='id_var = "MINIO_ACCESS_KEY"\n').replace(
        'env_vars = ["OPENAI_API_KEY"]', 'env_vars = ["MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"]')
    world = World.create(tmp_path, text)
    ref = SecretRef("dev", "openai")
    key_id, value = seed(world.store, state, ref)  # type: ignore[arg-type]
    entries = {e.name: e.value.reveal() for e in collect(world.store, world.inventory, "dev")}
    assert entries == {"MINIO_ACCESS_KEY": key_id, "MINIO_SECRET_KEY": value}


@pytest.mark.parametrize("options, said", [
    ({}, "options.issue: required"),
    ({"issue": "x", "revoke": {"run": "x"}}, "write it as { run"),
    ({"issue": {"run": []}, "revoke": {"run": "x"}}, "write it as { run"),
    ({"issue": {"run": "x", "env": 1}, "revoke": {"run": "x"}}, "unknown field 'env'"),
    ({"issue": {"run": "x"}, "revoke": {"run": "x"}, "max_keys": 2}, "needs list"),
    ({"issue": {"run": "x"}, "revoke": {"run": "x"}, "id_var": "NOPE"}, "one of the class's"),
    ({"issue": {"run": "x"}, "revoke": {"run": "x"}, "quiet": "soon"}, "options.quiet"),
    ({"issue": {"run": "x", "pass_env": ["bad name"]}, "revoke": {"run": "x"}}, "pass_env"),
    ({"issue": {"run": "x"}, "revoke": {"run": "x"}, "frobnicate": 1}, "unknown option"),
])
def test_bad_options_are_one_line_errors(options: dict[str, Any], said: str) -> None:
    from keyroll.inventory import SecretClass

    cls = SecretClass(name="k", kind="issued-key", env_vars=["K"], cadence_days=1, tier="low",
                      blast_radius="x", owner="y", environments=["dev"], options=options)
    with pytest.raises(UsageError) as error:
        issued_options(cls)
    assert said in str(error.value) and "\n" not in str(error.value)
