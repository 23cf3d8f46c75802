"""``aws-iam``: the CIS two-key overlap against moto in server mode on loopback (IAM + STS),
which enforces IAM's two-keys-per-user quota and records each key's last use."""

from __future__ import annotations

import itertools
import json
import os
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

import tests.crash as crash
from keyroll.errors import UsageError
from keyroll.inventory import Inventory, SecretClass, parse_inventory
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.render import collect
from keyroll.rotation.strategies.aws_iam import aws_options
from keyroll.stores.base import Store
from keyroll.stores.sqlite import SQLiteStore
from tests.aws_server import MotoServer
from tests.leaks import assert_no_leak
from tests.servers import ServerUnavailable
from tests.world import World

pytestmark = pytest.mark.integration

KEY_ENV, SECRET_ENV = "KR_TEST_AWS_ADMIN_KEY_ID", "KR_TEST_AWS_ADMIN_SECRET"
_users = itertools.count()
#: moto's admin credential, made up at run time (moto accepts any key in server mode)
ADMIN_KEY_ID = "AKIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
                                for _ in range(16))
ADMIN_SECRET = secrets.token_urlsafe(30)


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    try:
        server.start()
    except ServerUnavailable as exc:
        server.stop()
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def admin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, ADMIN_KEY_ID)
    monkeypatch.setenv(SECRET_ENV, ADMIN_SECRET)


_CLIENTS: dict[tuple[int, str], Any] = {}


def iam(moto: MotoServer) -> Any:
    """The test's own admin client (one per process: building one costs more than a call)."""
    key = (os.getpid(), moto.url)
    if key not in _CLIENTS:
        _CLIENTS[key] = boto3.client("iam", endpoint_url=moto.url, region_name="us-east-1",
                                     aws_access_key_id=ADMIN_KEY_ID,
                                     aws_secret_access_key=ADMIN_SECRET)
    return _CLIENTS[key]


def sts_arn(moto: MotoServer, key_id: str, secret: str) -> str:
    client = boto3.client("sts", endpoint_url=moto.url, region_name="us-east-1",
                          aws_access_key_id=key_id, aws_secret_access_key=secret)
    return str(client.get_caller_identity()["Arn"])


def keys_of(moto: MotoServer, user: str) -> dict[str, str]:
    listed = iam(moto).list_access_keys(UserName=user)["AccessKeyMetadata"]
    return {k["AccessKeyId"]: k["Status"] for k in listed}


def inventory_text(moto: MotoServer, user: str, *, overlap: str = '{ min = "1h", max = "2d" }',
                   extra: str = "") -> str:
    return f"""
project = "t"
[environments.prod]

[classes.s3-backup]
kind = "aws-iam"
env_vars = ["ACCESS_KEY_ID", "ACCESS_SECRET_KEY"]
cadence_days = 90
tier = "high"
blast_radius = "backups"
owner = "platform"
environments = ["prod"]
overlap = {overlap}
hooks.on_promote = [{{ write_dotenv = "backup.env" }}]

[classes.s3-backup.options]
user = "{user}"
endpoint_url = "{moto.url}"
admin_key_id_env = "{KEY_ENV}"
admin_secret_env = "{SECRET_ENV}"
delete_after = "1d"
test_timeout = "5s"
{extra}
"""


def new_user(moto: MotoServer) -> str:
    user = f"backup-{next(_users)}-{secrets.token_hex(3)}"
    iam(moto).create_user(UserName=user)
    return user


def seed(store: Store, moto: MotoServer, user: str, ref: SecretRef) -> tuple[str, str]:
    key = iam(moto).create_access_key(UserName=user)["AccessKey"]
    version = store.put_version(ref, SecretValue(key["SecretAccessKey"]),
                                meta={"key_id": key["AccessKeyId"]})
    store.set_labels(ref, expected={}, new={Label.CURRENT: version.number})
    return key["AccessKeyId"], key["SecretAccessKey"]


REF = SecretRef("prod", "s3-backup")


def make(tmp_path: Path, moto: MotoServer, **kwargs: Any) -> tuple[World, str, str, str]:
    user = new_user(moto)
    world = World.create(tmp_path, inventory_text(moto, user, **kwargs), real_clock=True)
    old_id, old_secret = seed(world.store, moto, user, REF)
    return world, user, old_id, old_secret


def outputs(world: World) -> list[str]:
    events = "\n".join(f"{e.message} {json.dumps(e.evidence, default=str)}" for e in world.events)
    return [world.journal_text(), world.records_text(), events,
            *(world.store.get_meta(k) or "" for k in world.store.list_meta())]


def test_two_key_overlap_deactivates_then_deletes_the_old_key(tmp_path: Path,
                                                              moto: MotoServer) -> None:
    world, user, old_id, old_secret = make(tmp_path, moto)
    engine = world.engine()
    record = engine.run(engine.start("s3-backup", "prod").id)
    assert record.state == "overlap"
    keys = keys_of(moto, user)
    assert len(keys) == 2 and keys[old_id] == "Active"
    current = world.store.get_version(REF, world.store.get_labels(REF)[Label.CURRENT])
    new_id = current.meta["key_id"]
    new_secret = world.store.read_value(REF, current.number).reveal()
    test_step = [s for s in record.body.steps if s.step == "test"][-1]
    assert test_step.evidence["checked"]["sts_arn"].endswith(f":user/{user}")
    assert sts_arn(moto, new_id, new_secret).endswith(f":user/{user}")
    env = {e.name: e.value.reveal() for e in collect(world.store, world.inventory, "prod")}
    assert env == {"ACCESS_KEY_ID": new_id, "ACCESS_SECRET_KEY": new_secret}
    # the old key was last used by the plan's check, before promote: after the deadline it
    # is deactivated, and deleted once delete_after has passed
    world.clock.tick(timedelta(minutes=61))
    record = engine.run(record.id)
    assert record.state == "overlap"
    assert "deactivated" in str(record.body.waiting)
    assert keys_of(moto, user) == {old_id: "Inactive", new_id: "Active"}
    world.clock.tick(timedelta(days=1, minutes=1))
    record = engine.run(record.id)
    assert record.state == "done"
    assert keys_of(moto, user) == {new_id: "Active"}
    assert_no_leak(outputs(world), [old_secret, new_secret], where="journal/records/events")


def test_old_key_in_use_after_promote_keeps_the_overlap_open(tmp_path: Path,
                                                             moto: MotoServer) -> None:
    world, user, old_id, old_secret = make(tmp_path, moto, extra='quiet = "3h"')
    engine = world.engine()
    record = engine.run(engine.start("s3-backup", "prod").id)
    sts_arn(moto, old_id, old_secret)  # an app still signs with the old key
    world.clock.tick(timedelta(minutes=61))
    record = engine.run(record.id)
    assert record.state == "overlap"
    assert "was used since the overlap began" in str(record.body.waiting)
    assert keys_of(moto, user)[old_id] == "Active"
    world.clock.tick(timedelta(hours=3))  # quiet for 3 h: now it may go
    record = engine.run(record.id)
    assert keys_of(moto, user)[old_id] == "Inactive"


def test_without_last_used_the_deadline_alone_deactivates(tmp_path: Path,
                                                          moto: MotoServer) -> None:
    world, user, old_id, old_secret = make(tmp_path, moto, extra="last_used = false")
    engine = world.engine()
    record = engine.run(engine.start("s3-backup", "prod").id)
    sts_arn(moto, old_id, old_secret)  # used after promote, but nobody asks
    world.clock.tick(timedelta(minutes=61))
    engine.run(record.id)
    assert keys_of(moto, user)[old_id] == "Inactive"


def test_user_with_two_keys_is_refused_in_one_line(tmp_path: Path, moto: MotoServer) -> None:
    world, user, old_id, _ = make(tmp_path, moto)
    spare = iam(moto).create_access_key(UserName=user)["AccessKey"]["AccessKeyId"]
    before = keys_of(moto, user)
    record = world.engine().run(world.engine().start("s3-backup", "prod").id)
    assert record.state == "rolled-back"
    assert record.body.error is not None
    message = record.body.error.message
    assert "\n" not in message
    assert f"already has 2 access keys ({old_id} active, {spare} active)" in message
    assert f"aws iam delete-access-key --user-name {user} --access-key-id {spare}" in message
    assert "nothing was changed" in message
    assert keys_of(moto, user) == before
    assert world.store.get_labels(REF) == {Label.CURRENT: 1}


def test_rollback_after_deactivation_reactivates_the_old_key(tmp_path: Path,
                                                             moto: MotoServer) -> None:
    world, user, old_id, old_secret = make(tmp_path, moto)
    engine = world.engine()
    record = engine.run(engine.start("s3-backup", "prod").id)
    new_id = next(k for k in keys_of(moto, user) if k != old_id)
    world.clock.tick(timedelta(minutes=61))
    engine.run(record.id)
    assert keys_of(moto, user)[old_id] == "Inactive"
    record = engine.rollback(record.id, reason="backups fail with the new key")
    assert record.reverted
    assert keys_of(moto, user) == {old_id: "Active", new_id: "Active"}
    current = world.store.get_labels(REF)[Label.CURRENT]
    assert world.store.read_value(REF, current).reveal() == old_secret
    promote = [s for s in record.body.steps if s.step == "promote"][-1]
    assert promote.evidence["reactivated"] == old_id
    assert promote.evidence["verified_current"]["sts"]["key_id"] == old_id
    for _ in range(4):
        world.clock.tick(timedelta(days=1, hours=2))
        record = engine.run(record.id)
    assert record.state == "rolled-back"
    assert keys_of(moto, user) == {old_id: "Active"}


def test_incident_deletes_the_old_key_at_once(tmp_path: Path, moto: MotoServer) -> None:
    world, user, old_id, _ = make(tmp_path, moto)
    record = world.engine().run(world.engine().start("s3-backup", "prod", incident=True).id)
    assert record.state == "done"
    keys = keys_of(moto, user)
    assert old_id not in keys and len(keys) == 1


def test_crash_matrix(tmp_path_factory: pytest.TempPathFactory, moto: MotoServer,
                      capsys: pytest.CaptureFixture[str]) -> None:
    counter = itertools.count()
    # the writes around the provider's side effects; the engine's own lock and journal points
    # are killed at by its matrix (tests/unit/rotation/test_crash.py)
    STRATEGY_WRITES = ("put_meta", "put_version", "set_labels", "destroy_version",
                       "save_rotation", "create_rotation")

    def make_world() -> tuple[Path, Inventory]:
        folder = tmp_path_factory.mktemp(f"aws-crash-{next(counter)}")
        user = new_user(moto)
        text = inventory_text(moto, user)
        (folder / "keyroll.toml").write_text(text)
        return folder, parse_inventory(text, folder / "keyroll.toml")

    def user_of(store: SQLiteStore) -> str:
        inventory = parse_inventory((store.path.parent / "keyroll.toml").read_text())
        return str(inventory.classes["s3-backup"].options["user"])

    def seed_key(store: SQLiteStore, inventory: Inventory, name: str, env: str) -> SecretRef:
        seed(store, moto, str(inventory.classes[name].options["user"]), REF)
        return REF

    def check_target(store: SQLiteStore, ref: SecretRef) -> None:
        user = user_of(store)
        labels = store.get_labels(ref)
        current = store.get_version(ref, labels[Label.CURRENT])
        assert keys_of(moto, user) == {current.meta["key_id"]: "Active"}, "IAM keys differ"
        assert sts_arn(moto, current.meta["key_id"],
                       store.read_value(ref, current.number).reveal()).endswith(f"/{user}")

    points = crash.run_crash_matrix(make_world, "s3-backup", "prod", check_target=check_target,
                                    seed=seed_key, kinds=STRATEGY_WRITES)
    first = next(p.kill_at for p in points if p.state_after_crash == "overlap")
    back = crash.run_crash_matrix(make_world, "s3-backup", "prod", check_target=check_target,
                                  seed=seed_key, rollback_at="overlap", start=first,
                                  kinds=STRATEGY_WRITES)
    with capsys.disabled():
        print("\n" + crash.format_table("aws-iam", points))
        print(crash.format_table("aws-iam, rollback after promote", back))
    assert {p.final for p in points} == {"done"}
    assert {p.final for p in back} == {"rolled-back"}


@pytest.mark.parametrize("options, env_vars, said", [
    ({}, ["A_ID", "A_SECRET"], "options.user: required"),
    ({"user": "u"}, ["ONLY"], "two env vars"),
    ({"user": "u", "endpoint_url": "ftp://x"}, ["A", "B"], "http:// or https://"),
    ({"user": "u", "admin_key_id_env": "X"}, ["A", "B"], "both admin_key_id_env"),
    ({"user": "u", "admin_key_id_env": "postgres://a:b@c", "admin_secret_env": "Y"}, ["A", "B"],
     "is not an env var name"),
    ({"user": "u", "delete_after": "later"}, ["A", "B"], "options.delete_after"),
    ({"user": "u", "regio": "eu"}, ["A", "B"], "unknown option"),
    ({"user": "u", "last_used": "no"}, ["A", "B"], "options.last_used: true"),
])
def test_bad_options_are_one_line_errors(options: dict[str, Any], env_vars: list[str],
                                         said: str) -> None:
    cls = SecretClass(name="k", kind="aws-iam", env_vars=env_vars, cadence_days=1, tier="low",
                      blast_radius="x", owner="y", environments=["dev"], options=options)
    with pytest.raises(UsageError) as error:
        aws_options(cls)
    assert said in str(error.value) and "\n" not in str(error.value)
    assert "a:b@c" not in str(error.value)
