"""`keyroll.targets.redis` against a real redis-server."""

from __future__ import annotations

import secrets

import pytest
import redis

from keyroll.errors import TargetError
from keyroll.generate import generate
from keyroll.model import SecretValue
from keyroll.targets.redis import RedisTarget, password_hash
from tests.servers import RedisServer, free_port

pytestmark = pytest.mark.integration


def _target(server: RedisServer) -> RedisTarget:
    return RedisTarget("127.0.0.1", server.port, admin_user=server.admin_user,
                       admin_password=SecretValue(server.password))


@pytest.fixture
def target(redis_server: RedisServer) -> RedisTarget:
    return _target(redis_server)


@pytest.fixture
def user(target: RedisTarget) -> str:
    return f"kr_{secrets.token_hex(4)}"


def _connect(server: RedisServer, user: str, password: SecretValue) -> redis.Redis:
    client = redis.Redis(host="127.0.0.1", port=server.port, username=user,
                         password=password.reveal(), protocol=2, socket_timeout=5)
    client.ping()
    return client


RULES = ["~cache:*", "+@read", "+@write", "+ping", "-@dangerous"]


def test_dual_password_apply_test_retire(
    redis_server: RedisServer, target: RedisTarget, user: str
) -> None:
    old, new = generate("password-32"), generate("password-32")
    with pytest.raises(TargetError, match="does not exist"):
        target.add_password(user, old)  # never creates a user by accident
    assert not target.user_exists(user)
    target.ensure_users([user], RULES)
    target.set_password(user, old)
    target.check_login(user, old)
    live = _connect(redis_server, user, old)
    try:
        target.add_password(user, new)  # apply
        assert target.has_password(user, old)
        assert target.has_password(user, new)
        target.check_login(user, new)  # test
        target.check_login(user, old)  # both accepted during the overlap
        solo, only = f"{user}_solo", generate("password-32")
        target.ensure_users([solo], RULES)
        target.set_password(solo, only)
        with pytest.raises(TargetError, match="only password"):
            target.remove_password(solo, only)  # would lock the user out
        target.remove_password(user, old)  # retire
        target.remove_password(user, old)  # idempotent
        assert not target.has_password(user, old)
        with pytest.raises(TargetError, match="credential was refused") as info:
            target.check_login(user, old)
        assert old.reveal() not in str(info.value)
        target.check_login(user, new)
        assert live.set("cache:k", "v")  # the session opened with the old password lives on
    finally:
        live.close()


def test_alternating_users_overlap_and_incident(
    redis_server: RedisServer, target: RedisTarget, user: str
) -> None:
    user_a, user_b = f"{user}_a", f"{user}_b"
    target.ensure_users([user_a, user_b], RULES)
    target.ensure_users([user_a, user_b], RULES)  # idempotent
    first, second = generate("password-32"), generate("password-32")
    target.set_password(user_a, first)
    clients = [_connect(redis_server, user_a, first) for _ in range(2)]
    try:
        assert target.connection_count(user_a) == 2
        assert target.connection_count(user_b) == 0
        target.set_password(user_b, second)  # apply on the idle user
        target.check_login(user_b, second)
        target.check_login(user_a, first)
        clients.append(_connect(redis_server, user_b, second))
        assert target.connection_count(user_b) == 1
        # Same permissions for both users:
        assert clients[0].set("cache:a", "1")
        assert clients[2].get("cache:a") == b"1"
        with pytest.raises(redis.exceptions.NoPermissionError):
            clients[2].set("other:a", "1")
        target.disable_user(user_a)  # retire
        with pytest.raises(TargetError):
            target.check_login(user_a, first)
        assert target.connection_count(user_a) == 2  # retire does not end sessions...
        assert target.kill_connections(user_a) == 2  # ...incident mode does
        assert target.connection_count(user_a) == 0
        assert target.connection_count(user_b) == 1
    finally:
        for client in clients:
            client.close()


def test_ensure_users_refuses_password_rules(target: RedisTarget, user: str) -> None:
    for rule in (">plain", "#" + "0" * 64, "nopass", "on", "reset", ""):
        with pytest.raises(TargetError, match="not allowed"):
            target.ensure_users([user], [rule])
    assert not target.user_exists(user)
    with pytest.raises(TargetError, match="whitespace"):
        target.ensure_users(["two words"], RULES)
    with pytest.raises(TargetError, match="the server refused"):
        target.ensure_users([user], ["+nosuchcommand"])


def test_acl_file_is_saved_after_every_change(
    redis_server: RedisServer, target: RedisTarget, user: str
) -> None:
    assert redis_server.aclfile is not None
    password = generate("password-32")
    target.ensure_users([user], RULES)
    target.set_password(user, password)
    text = redis_server.aclfile.read_text()
    assert f"user {user} on #{password_hash(password)}" in text
    assert password.reveal() not in text
    assert target.persist() == "acl-file"


def test_server_without_acl_file_needs_no_save(redis_server_no_aclfile: RedisServer) -> None:
    target = _target(redis_server_no_aclfile)
    user = f"kr_{secrets.token_hex(4)}"
    password = generate("password-32")
    target.ensure_users([user], RULES)
    target.set_password(user, password)
    target.check_login(user, password)
    assert target.persist() == "config-file"


def test_passwords_never_reach_slowlog_monitor_or_messages(
    redis_server: RedisServer, target: RedisTarget, user: str
) -> None:
    admin = redis.Redis(host="127.0.0.1", port=redis_server.port, username="default",
                        password=redis_server.password, protocol=2, decode_responses=True)
    try:
        admin.config_set("slowlog-log-slower-than", 0)
        admin.slowlog_reset()
        planted = [generate("password-32") for _ in range(3)]
        target.ensure_users([user], RULES)
        target.set_password(user, planted[0])
        target.add_password(user, planted[1])
        target.remove_password(user, planted[0])
        with pytest.raises(TargetError) as info:
            target.check_login(user, planted[2])
        entries = repr(admin.slowlog_get(128))
        assert "SETUSER" in entries.upper()
        for value in planted:
            assert value.reveal() not in entries
            assert value.reveal() not in str(info.value)
    finally:
        admin.config_set("slowlog-log-slower-than", 10000)
        admin.close()


def test_bad_admin_credential_and_dead_server(redis_server: RedisServer) -> None:
    wrong = generate("password-32")
    bad = RedisTarget("127.0.0.1", redis_server.port, admin_password=wrong)
    with pytest.raises(TargetError, match="admin credential was refused") as info:
        bad.user_exists("default")
    assert wrong.reveal() not in str(info.value)
    dead = RedisTarget("127.0.0.1", free_port(), admin_password=wrong, timeout=2)
    with pytest.raises(TargetError, match="cannot reach the server"):
        dead.connection_count("x")


def test_alternating_pair_copies_the_permissions_of_an_existing_user(
    redis_server: RedisServer, target: RedisTarget, user: str
) -> None:
    admin = redis.Redis(host="127.0.0.1", port=redis_server.port, username="default",
                        password=redis_server.password, protocol=2, decode_responses=True)
    try:
        admin.execute_command("ACL", "SETUSER", user, "on", ">legacy-password-1234",
                              "~cache:*", "%R~ro:*", "&chan*", "+@read", "-keys", "+ping")  # type: ignore[no-untyped-call]
        rules = target.permissions_of(user)
        assert set(rules) == {"~cache:*", "%R~ro:*", "resetchannels", "&chan*", "-@all",
                              "+@read", "+ping", "-keys"}
        pair = [f"{user}_a", f"{user}_b"]
        target.ensure_users(pair, rules)
        assert target.permissions_of(pair[0]) == rules
        assert target.permissions_of(pair[1]) == rules
        admin.execute_command("ACL", "SETUSER", f"{user}_sel", "on", "nopass", "(~x +get)")  # type: ignore[no-untyped-call]
        with pytest.raises(TargetError, match="selectors"):
            target.permissions_of(f"{user}_sel")
    finally:
        admin.close()
