"""The ``redis-acl`` strategy driven by the engine against a real redis-server (ACL file)."""

from __future__ import annotations

import hashlib
import itertools
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis

import tests.crash as crash
from keyroll.audit import Journal
from keyroll.errors import TargetError
from keyroll.generate import generate
from keyroll.inventory import Inventory, parse_inventory
from keyroll.model import SecretRef, SecretValue
from keyroll.stores.sqlite import SQLiteStore
from keyroll.targets.redis import RedisTarget
from tests.integration.rotation_world import EngineWorld, class_toml, inventory_text
from tests.leaks import assert_no_leak
from tests.servers import RedisServer

pytestmark = pytest.mark.integration

ADMIN_ENV = "KR_TEST_REDIS_ADMIN_URL"
OVERLAP = {"min": "1h", "settle": "10m", "max": "2d"}
RULES = ["~kr:*", "+@all", "-@dangerous"]


def admin(server: RedisServer) -> RedisTarget:
    return RedisTarget("127.0.0.1", server.port, admin_user=server.admin_user,
                       admin_password=SecretValue(server.password))


def admin_url(server: RedisServer) -> str:
    return f"redis://{server.admin_user}:{quote(server.password, safe='')}@127.0.0.1:{server.port}"


def logs_in(server: RedisServer, user: str, password: SecretValue) -> bool:
    try:
        admin(server).check_login(user, password)
    except TargetError:
        return False
    return True


def connect(server: RedisServer, user: str, password: SecretValue) -> redis.Redis:
    client = redis.Redis(host="127.0.0.1", port=server.port, username=user,
                         password=password.reveal(), socket_timeout=5)
    client.ping()
    return client


@dataclass
class RedisRig:
    world: EngineWorld
    first: SecretValue
    user: str
    users: tuple[str, str]
    ref: SecretRef


def _setup_user(server: RedisServer, user: str, password: SecretValue) -> None:
    target = admin(server)
    target.ensure_users([user], RULES)
    target.set_password(user, password)


@pytest.fixture
def make_rig(tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[Callable[..., RedisRig]]:
    monkeypatch.setenv(ADMIN_ENV, admin_url(redis_server))
    made: list[EngineWorld] = []
    names: list[str] = []

    def make(mode: str = "dual-password", store_password: SecretValue | None = None,
             **extra: Any) -> RedisRig:
        user = f"kr{secrets.token_hex(4)}"
        users = (f"{user}_a", f"{user}_b")
        names.extend([user, *users])
        first = generate("password-32")
        _setup_user(redis_server, user if mode == "dual-password" else users[0], first)
        options: dict[str, Any] = {"admin_url_env": ADMIN_ENV, "mode": mode, "user": user,
                                   **extra}
        text = inventory_text(class_toml("cache", "redis-acl", "REDIS_PASSWORD", options,
                                         OVERLAP))
        folder = tmp_path / f"world{len(made)}"
        folder.mkdir()
        world = EngineWorld.create(folder, text)
        made.append(world)
        role = user if mode == "dual-password" else users[0]
        ref = world.seed("cache", store_password or first, role=role)
        return RedisRig(world, first, user, users, ref)

    yield make
    for world in made:
        world.close()
    client = redis.Redis(host="127.0.0.1", port=redis_server.port, username="default",
                         password=redis_server.password)
    try:
        for name in names:
            client.acl_deluser(name)
    finally:
        client.close()


def _sha(value: SecretValue) -> str:
    return hashlib.sha256(value.reveal_bytes()).hexdigest()


def test_dual_password_rotation(make_rig: Callable[..., RedisRig], redis_server: RedisServer,
                                capfd: pytest.CaptureFixture[str]) -> None:
    rig = make_rig()
    held = connect(redis_server, rig.user, rig.first)  # an app connected before the rotation
    try:
        engine = rig.world.engine()
        record = engine.run(engine.start("cache", "dev").id)
        assert record.state == "overlap"
        _, new = rig.world.current("cache")
        assert logs_in(redis_server, rig.user, rig.first)  # both passwords work meanwhile
        assert logs_in(redis_server, rig.user, new)
        rig.world.clock.tick(timedelta(hours=2))
        record = engine.run(record.id)
        assert record.state == "done", record.body.error
        assert held.ping()  # retiring a password does not cut an authenticated connection
    finally:
        held.close()
    assert not logs_in(redis_server, rig.user, rig.first)
    assert logs_in(redis_server, rig.user, new)
    assert redis_server.aclfile is not None
    acl = redis_server.aclfile.read_text()
    assert _sha(new) in acl and _sha(rig.first) not in acl  # ACL SAVE ran
    assert Journal(rig.world.store).verify().ok
    captured = capfd.readouterr()
    assert_no_leak([captured.out, captured.err, rig.world.journal_text(),
                    rig.world.records_text(), acl, redis_server.log_text()],
                   [rig.first.reveal(), new.reveal(), redis_server.password])


def test_alternating_users_wait_for_the_old_users_connections(
    make_rig: Callable[..., RedisRig], redis_server: RedisServer,
) -> None:
    rig = make_rig("alternating-users")
    a, b = rig.users
    held = connect(redis_server, a, rig.first)
    try:
        engine = rig.world.engine()
        record = engine.run(engine.start("cache", "dev").id)
        role, new = rig.world.current("cache")
        assert role == b and logs_in(redis_server, b, new)
        rig.world.clock.tick(timedelta(hours=2))
        record = engine.run(record.id)
        assert record.state == "overlap"
        assert "still has open connections" in record.body.waiting
    finally:
        held.close()
    record = engine.run(record.id)
    assert record.state == "overlap"
    rig.world.clock.tick(timedelta(minutes=11))
    record = engine.run(record.id)
    assert record.state == "done", record.body.error
    assert not logs_in(redis_server, a, rig.first)
    assert admin(redis_server).permissions_of(b) == admin(redis_server).permissions_of(a)
    # and back to the first user
    assert rig.world.rotate("cache").state == "done"
    role, third = rig.world.current("cache")
    assert role == a and logs_in(redis_server, a, third) and not logs_in(redis_server, b, new)


def test_wrong_current_password_refuses(make_rig: Callable[..., RedisRig],
                                        redis_server: RedisServer) -> None:
    wrong = generate("password-32")
    rig = make_rig(store_password=wrong)
    record = rig.world.rotate("cache")
    assert record.state == "rolled-back" and record.body.error.step == "plan"
    assert "nothing was changed" in record.body.error.message
    assert len(rig.world.store.list_versions(rig.ref)) == 1
    info = redis.Redis(host="127.0.0.1", port=redis_server.port, username="default",
                       password=redis_server.password)
    try:
        user_info = info.acl_getuser(rig.user)
        assert user_info is not None
        hashes = user_info["passwords"]
    finally:
        info.close()
    assert hashes == [_sha(rig.first)]


def test_incident_closes_the_users_connections(make_rig: Callable[..., RedisRig],
                                               redis_server: RedisServer) -> None:
    rig = make_rig()
    held = connect(redis_server, rig.user, rig.first)
    try:
        record = rig.world.rotate("cache", incident=True)
        assert record.state == "done", record.body.error
        with pytest.raises(redis.exceptions.ConnectionError):
            held.execute_command("PING")  # type: ignore[no-untyped-call]
    finally:
        held.close()
    assert not logs_in(redis_server, rig.user, rig.first)


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "outcome"), [
    ("dual-password", "done"), ("alternating-users", "done"), ("dual-password", "rolled-back"),
])
def test_sigkill_at_every_step_boundary_resumes_and_redis_accepts_current(
    mode: str, outcome: str, tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ADMIN_ENV, admin_url(redis_server))
    counter = itertools.count()
    prefix = f"krc{secrets.token_hex(3)}"

    def make_world() -> tuple[Path, Inventory]:
        folder = tmp_path_factory.mktemp("redis-crash")
        options: dict[str, Any] = {"admin_url_env": ADMIN_ENV, "mode": mode,
                                   "user": f"{prefix}{next(counter)}"}
        if mode == "alternating-users":
            options["rules"] = RULES
        hooks = {"verify": [{"run": "false"}]} if outcome == "rolled-back" else None
        text = inventory_text(class_toml("cache", "redis-acl", "REDIS_PASSWORD", options,
                                         OVERLAP, hooks))
        (folder / "keyroll.toml").write_text(text)
        return folder, parse_inventory(text, folder / "keyroll.toml")

    def first_user(inventory: Inventory) -> str:
        user = str(inventory.classes["cache"].options["user"])
        return user if mode == "dual-password" else f"{user}_a"

    original_seed = crash.seed_version

    def seed(store: SQLiteStore, inventory: Inventory, name: str, env: str) -> SecretRef:
        ref = original_seed(store, inventory, name, env)
        _setup_user(redis_server, first_user(inventory), store.read(ref)[1])
        return ref

    def check_target(store: SQLiteStore, ref: SecretRef) -> None:
        version, value = store.read(ref)
        inventory = parse_inventory((store.path.parent / "keyroll.toml").read_text())
        user = str(version.meta.get("role") or first_user(inventory))
        assert logs_in(redis_server, user, value), "Redis refuses the current value"

    try:
        points = crash.run_crash_matrix(make_world, "cache", "dev", check_target=check_target,
                                       seed=seed)
    finally:
        client = redis.Redis(host="127.0.0.1", port=redis_server.port, username="default",
                             password=redis_server.password)
        try:
            for user in client.acl_users():
                name = user.decode() if isinstance(user, bytes) else str(user)
                if name.startswith(prefix):
                    client.acl_deluser(name)
        finally:
            client.close()
    with capsys.disabled():
        print("\n" + crash.format_table(f"redis-acl ({mode}), ends {outcome}", points))
    assert len(points) >= 20
    assert all(p.final == outcome for p in points), [p for p in points if p.final != outcome]


def test_acl_save_only_where_an_acl_file_is_used(
    tmp_path: Path, redis_server: RedisServer, redis_server_no_aclfile: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for number, (server, saved) in enumerate(((redis_server, "acl-file"),
                                              (redis_server_no_aclfile, "config-file"))):
        monkeypatch.setenv(ADMIN_ENV, admin_url(server))
        user = f"krsave{secrets.token_hex(3)}"
        first = generate("password-32")
        _setup_user(server, user, first)
        folder = tmp_path / str(number)
        folder.mkdir()
        world = EngineWorld.create(folder, inventory_text(class_toml(
            "cache", "redis-acl", "REDIS_PASSWORD", {"admin_url_env": ADMIN_ENV, "user": user},
            OVERLAP)))
        try:
            world.seed("cache", first, role=user)
            record = world.rotate("cache")
            assert record.state == "done", record.body.error
            steps = {s.step: s.evidence for s in record.body.steps}
            assert steps["apply"]["applied"]["persisted"] == saved
            assert steps["retire"]["retired_user"]["persisted"] == saved
            _, new = world.current("cache")
            assert logs_in(server, user, new) and not logs_in(server, user, first)
        finally:
            world.close()
            client = redis.Redis(host="127.0.0.1", port=server.port, username="default",
                                 password=server.password)
            try:
                client.acl_deluser(user)
            finally:
                client.close()
