"""Issue 15 §4: a Redis rotation survives a real server restart, in each persistence mode.

- ``aclfile`` configured: every change is followed by ``ACL SAVE``;
- users in ``redis.conf`` (``requirepass`` there, no ACL file): ``CONFIG REWRITE``;
- neither (``redis-server --requirepass …`` on the command line, as a Compose ``command:``):
  the plan step refuses in a production environment (nothing changed) and warns elsewhere.

Each test starts its own redis-server (a restart would disturb the session's shared one) and
restarts it by its PID, then logs in with the new password and with the old one.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from keyroll.errors import TargetError
from keyroll.generate import generate
from keyroll.model import SecretRef, SecretValue
from keyroll.targets.redis import RedisTarget
from tests.integration.rotation_world import EngineWorld
from tests.leaks import assert_no_leak
from tests.servers import RedisServer, ServerUnavailable

pytestmark = pytest.mark.integration

ADMIN_ENV = "KR_TEST_REDIS_PERSIST_URL"
RULES = ["~kr:*", "+@all", "-@dangerous"]


def _inventory(user: str, mode: str = "dual-password") -> str:
    return f'''project = "t"
[environments.dev]
[environments.prod]
production = true

[classes.cache]
kind = "redis-acl"
env_vars = ["REDIS_PASSWORD"]
cadence_days = 30
tier = "high"
blast_radius = "test"
owner = "test"
environments = ["dev", "prod"]
overlap = {{ min = "0s", margin = "0s", until_unused = false }}
[classes.cache.options]
admin_url_env = "{ADMIN_ENV}"
user = "{user}"
mode = "{mode}"
'''


def _server(**kwargs: bool) -> RedisServer:
    server = RedisServer(**kwargs)
    try:
        return server.start()
    except ServerUnavailable as exc:
        server.stop()
        pytest.fail(str(exc), pytrace=False)


def _admin(server: RedisServer) -> RedisTarget:
    return RedisTarget("127.0.0.1", server.port, admin_user="default",
                       admin_password=SecretValue(server.password))


def _logs_in(server: RedisServer, user: str, password: SecretValue) -> bool:
    try:
        _admin(server).check_login(user, password)
    except TargetError:
        return False
    return True


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[EngineWorld, str, SecretValue]]:
    user = f"krp{secrets.token_hex(3)}"
    made = EngineWorld.create(tmp_path, _inventory(user))
    yield made, user, generate("password-32")
    made.close()


def _prepare(server: RedisServer, user: str, first: SecretValue,
             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ADMIN_ENV, f"redis://default:{quote(server.password, safe='')}"
                                  f"@127.0.0.1:{server.port}")
    target = _admin(server)
    target.ensure_users([user], RULES)
    target.set_password(user, first)


@pytest.mark.parametrize(("mode", "saved_with"), [("acl-file", "ACL SAVE"),
                                                  ("config-file", "CONFIG REWRITE")])
def test_the_new_password_survives_a_restart_and_the_old_one_stays_gone(
    mode: str, saved_with: str, world: tuple[EngineWorld, str, SecretValue],
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    engine_world, user, first = world
    server = _server(aclfile=mode == "acl-file")
    try:
        _prepare(server, user, first, monkeypatch)
        ref = engine_world.put_current(SecretRef("prod", "cache"), first, role=user)
        record = engine_world.rotate("cache", "prod")
        assert record.state == "done", record.body.error
        steps = {s.step: s.evidence for s in record.body.steps}
        assert steps["plan"]["persistence"] == {"mode": mode, "saved_with": saved_with}
        assert steps["retire"]["retired_user"]["persisted"] == mode
        new = engine_world.store.read(ref)[1]
        server.restart()
        assert _logs_in(server, user, new), "the new password did not survive the restart"
        assert not _logs_in(server, user, first), "the old password came back after restart"
        saved = (server.aclfile or server.dir / "redis.conf").read_text()
        captured = capfd.readouterr()
        assert_no_leak([saved, captured.out, captured.err, engine_world.journal_text(),
                        engine_world.records_text(), server.log_text()],
                       [first.reveal(), new.reveal()])
    finally:
        server.stop()


def test_memory_only_server_is_refused_in_production_and_nothing_changes(
    world: tuple[EngineWorld, str, SecretValue], monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine_world, user, first = world
    server = _server(cmdline=True)
    try:
        assert not (server.dir / "redis.conf").exists()
        _prepare(server, user, first, monkeypatch)
        ref = engine_world.put_current(SecretRef("prod", "cache"), first, role=user)
        before = _admin(server).permissions_of(user)
        record = engine_world.engine().run(engine_world.engine().start("cache", "prod").id)
        assert record.state == "rolled-back"
        assert record.body.error is not None and record.body.error.step == "plan"
        message = record.body.error.message
        assert "aclfile" in message and "production" in message and "\n" not in message
        assert [s.step for s in record.body.steps] == ["plan"]
        # nothing changed: one password (the first), same rules, same current version
        assert _logs_in(server, user, first)
        assert _admin(server).permissions_of(user) == before
        assert len(engine_world.store.list_versions(ref)) == 1
    finally:
        server.stop()


def test_memory_only_server_rotates_elsewhere_with_a_warning_that_a_restart_proves(
    world: tuple[EngineWorld, str, SecretValue], monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine_world, user, first = world
    server = _server(cmdline=True)
    try:
        _prepare(server, user, first, monkeypatch)
        engine_world.seed("cache", first, role=user)
        record = engine_world.rotate("cache", "dev")
        assert record.state == "done", record.body.error
        plan = next(s.evidence for s in record.body.steps if s.step == "plan")
        assert plan["persistence"]["mode"] == "none"
        assert "aclfile" in plan["persistence"]["warning"]
        assert any("warning: Redis at" in e.message for e in engine_world.events)
        _, new = engine_world.current("cache")
        assert _logs_in(server, user, new)
        server.restart()
        # the warning was right: the server forgot the user and its new password
        assert not _logs_in(server, user, new)
    finally:
        server.stop()


def test_alternating_users_survive_a_restart_with_config_rewrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """alternating-users: the idle user created and enabled at apply, the old one disabled at
    retire, every change written into redis.conf: after a restart the new user logs in and
    the retired one does not."""
    user = f"kra{secrets.token_hex(3)}"
    world = EngineWorld.create(tmp_path, _inventory(user, "alternating-users"))
    server = _server(aclfile=False)
    try:
        first = generate("password-32")
        _prepare(server, f"{user}_a", first, monkeypatch)
        ref = world.put_current(SecretRef("prod", "cache"), first, role=f"{user}_a")
        record = world.rotate("cache", "prod")
        assert record.state == "done", record.body.error
        version, new = world.store.read(ref)
        assert version.meta["role"] == f"{user}_b"
        server.restart()
        assert _logs_in(server, f"{user}_b", new)
        assert not _logs_in(server, f"{user}_a", first)
        conf = (server.dir / "redis.conf").read_text()
        assert f"user {user}_a off" in conf
    finally:
        server.stop()
        world.close()
